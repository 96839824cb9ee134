package checkout_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// benchSale makes a sale with a large stock in MySQL and Redis.
func benchSale(b *testing.B, db *sql.DB, st *sale.Store, hold int) string {
	b.Helper()
	id := "bench-" + testenv.RandomID()
	name, cur, mode := "Bench", "EUR", sale.FIFO
	price, stock, rate, maxActive, per, ttl, abandon, ret := int64(100), 10_000_000, 1.0, 10, 1, 300, 60, 900
	req := sale.CreateRequest{ID: &id, Name: &name, PriceCents: &price, Currency: &cur, Stock: &stock,
		AdmissionRate: &rate, MaxActive: &maxActive, PerUserLimit: &per, TicketTTL: &ttl, HoldTTL: &hold,
		QueueMode: &mode, AbandonAfter: &abandon, ReturnWindow: &ret}
	s, err := req.Build(time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Create(context.Background(), s); err != nil {
		b.Fatal(err)
	}
	return id
}

// BenchmarkReserveStep is the checkout's Redis step alone: one reserve.lua
// call per op, each a different user and ticket, from parallel callers.
func BenchmarkReserveStep(b *testing.B) {
	rdb, ks := testenv.Redis(b)
	_, db := testenv.MySQL(b)
	st := sale.NewStore(db, rdb, ks)
	id := benchSale(b, db, st, 0)
	k := ks.Sale(id)
	keys := []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending, k.Stats}
	var n atomic.Int64
	b.SetParallelism(16) // 32 callers: Redis, not the round trip, is measured
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			u := fmt.Sprintf("u%d", i)
			if err := checkout.ReserveScript.Run(ctx, rdb, keys, u, "j"+u, 1, "o"+u).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOrdersCreate is the durable write alone: Orders.Create (group
// commit with the unit guard) from parallel callers, holds off.
func BenchmarkOrdersCreate(b *testing.B) { benchOrdersCreate(b, 0) }

// BenchmarkOrdersCreateHeld is the same with holds on: held orders with
// their hold's expiry, counted in the sale's held units.
func BenchmarkOrdersCreateHeld(b *testing.B) { benchOrdersCreate(b, 300) }

func benchOrdersCreate(b *testing.B, hold int) {
	rdb, ks := testenv.Redis(b)
	_, db := testenv.MySQL(b)
	st := sale.NewStore(db, rdb, ks)
	id := benchSale(b, db, st, hold)
	orders := checkout.NewOrders(db, slog.New(slog.NewTextHandler(io.Discard, nil)), 4)
	defer orders.Close()
	status := checkout.StatusPaid
	var expires *time.Time
	if hold > 0 {
		status = checkout.StatusHeld
		t := time.Now().Add(time.Duration(hold) * time.Second).UTC()
		expires = &t
	}
	var n atomic.Int64
	b.SetParallelism(16) // 32 callers on 2 cores, like a busy checkout node
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			i := n.Add(1)
			u := fmt.Sprintf("u%d", i)
			o := &checkout.Order{ID: "o" + u, SaleID: id, UserID: u, Quantity: 1, AmountCents: 100,
				Currency: "EUR", Status: status, TicketJTI: "j" + u, HoldExpiresAt: expires, CreatedAt: time.Now().UTC()}
			if _, err := orders.Create(ctx, o); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkGuardedInsert is what the unit guard costs without group commit:
// per op one transaction of the guarded UPDATE of the sale's row and the
// INSERT, from the same callers. Every transaction locks the one sale row,
// so they queue on it: against BenchmarkSingleInsert this is the guard's
// price, against BenchmarkOrdersCreate what group commit wins back.
func BenchmarkGuardedInsert(b *testing.B) {
	_, db := testenv.MySQL(b)
	for _, q := range []string{`CREATE TABLE bench_orders LIKE orders`,
		`CREATE TABLE bench_sales (id VARCHAR(64) PRIMARY KEY, stock INT NOT NULL, sold INT NOT NULL, held INT NOT NULL)`,
		`INSERT INTO bench_sales VALUES ('bench', 100000000, 0, 0)`} {
		if _, err := db.Exec(q); err != nil {
			b.Fatal(err)
		}
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			u := fmt.Sprintf("u%d", i)
			tx, err := db.Begin()
			if err != nil {
				b.Fatal(err)
			}
			res, err := tx.Exec(`UPDATE bench_sales SET sold = sold + 1 WHERE id = 'bench' AND sold + held + 1 <= stock`)
			if err == nil {
				if k, _ := res.RowsAffected(); k != 1 {
					err = fmt.Errorf("guard refused")
				}
			}
			if err == nil {
				_, err = tx.Exec(`INSERT INTO bench_orders (id, sale_id, user_id, quantity, amount_cents, currency,
					status, ticket_jti, created_at) VALUES (?, 'bench', ?, 1, 100, 'EUR', 'paid', ?, ?)`,
					"o"+u, u, "j"+u, time.Now().UTC())
			}
			if err == nil {
				err = tx.Commit()
			}
			if err != nil {
				_ = tx.Rollback()
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSingleInsert is the baseline: one autocommitted single-row INSERT
// into an orders-shaped table per op (no guard, no group commit), from the
// same number of parallel callers.
func BenchmarkSingleInsert(b *testing.B) {
	_, db := testenv.MySQL(b)
	if _, err := db.Exec(`CREATE TABLE bench_orders LIKE orders`); err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			u := fmt.Sprintf("u%d", i)
			if _, err := db.Exec(`INSERT INTO bench_orders (id, sale_id, user_id, quantity, amount_cents, currency,
				status, ticket_jti, created_at) VALUES (?, 'bench', ?, 1, 100, 'EUR', 'paid', ?, ?)`,
				"o"+u, u, "j"+u, time.Now().UTC()); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReserveBatch is the reserve step for several orders of a sale in
// one reserve.lua call (as concurrent checkouts share one), per order, by
// orders per call, from one caller; besides ns/op (an order) it reports
// Redis's own time per order (INFO commandstats around the run: exact only
// while no one else runs scripts on that Redis). Run it with
//
//	go test -run '^$' -bench 'ReserveBatch|FinalizeBatch' -benchtime 20000x ./checkout/
func BenchmarkReserveBatch(b *testing.B) {
	rdb, ks := testenv.Redis(b)
	_, db := testenv.MySQL(b)
	st := sale.NewStore(db, rdb, ks)
	id := benchSale(b, db, st, 0)
	k := ks.Sale(id)
	keys := []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}
	var n atomic.Int64
	for _, size := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("orders=%d", size), func(b *testing.B) {
			ctx := context.Background()
			usec0 := scriptUsec(b, rdb)
			for done := 0; done < b.N; done += size {
				args := make([]any, 0, 4*size)
				for range min(size, b.N-done) {
					u := fmt.Sprintf("u%d", n.Add(1))
					args = append(args, u, "j"+u, 1, "o"+u)
				}
				if err := checkout.ReserveScript.Run(ctx, rdb, keys, args...).Err(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(scriptUsec(b, rdb)-usec0)/float64(b.N), "server-µs/order")
		})
	}
}

// BenchmarkFinalizeBatch is the finalize step of reserved orders, several
// in one finalize.lua call, as BenchmarkReserveBatch measures the reserve
// step (the reserve calls are outside the timing and Redis's time).
func BenchmarkFinalizeBatch(b *testing.B) {
	rdb, ks := testenv.Redis(b)
	_, db := testenv.MySQL(b)
	st := sale.NewStore(db, rdb, ks)
	id := benchSale(b, db, st, 0)
	k := ks.Sale(id)
	rkeys := []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}
	fkeys := []string{k.Units, k.Tix, k.Adm, k.Pending, k.Holds, k.Orders, k.Ev, k.Stats}
	body := `{"amount_cents":100,"created_at":"2026-12-03T18:00:00Z","currency":"EUR","hold_expires_at":null,` +
		`"id":"ord_aaaaaaaaaaaaaaaaaaaaaaaaaa","quantity":1,"sale_id":"bench","status":"paid","user_id":"u1234567"}`
	var n atomic.Int64
	for _, size := range []int{1, 4, 16, 64} {
		b.Run(fmt.Sprintf("orders=%d", size), func(b *testing.B) {
			ctx := context.Background()
			var usec int64
			for done := 0; done < b.N; done += size {
				b.StopTimer()
				rargs := make([]any, 0, 4*size)
				fargs := make([]any, 0, 3*size+1)
				for range min(size, b.N-done) {
					u := fmt.Sprintf("u%d", n.Add(1))
					rargs = append(rargs, u, "j"+u, 1, "o"+u)
					fargs = append(fargs, "o"+u, 0, body)
				}
				fargs = append(fargs, sale.EventStreamLen)
				if err := checkout.ReserveScript.Run(ctx, rdb, rkeys, rargs...).Err(); err != nil {
					b.Fatal(err)
				}
				usec0 := scriptUsec(b, rdb)
				b.StartTimer()
				if err := checkout.FinalizeScript.Run(ctx, rdb, fkeys, fargs...).Err(); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				usec += scriptUsec(b, rdb) - usec0
				b.StartTimer()
			}
			b.ReportMetric(float64(usec)/float64(b.N), "server-µs/order")
		})
	}
}

// scriptUsec is Redis's total time in EVALSHA so far (µs), from INFO
// commandstats.
func scriptUsec(b *testing.B, rdb redis.UniversalClient) int64 {
	b.Helper()
	s, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(s, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(kv, "usec="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	}
	return 0
}
