package checkout_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// Concurrent checkouts share their Redis steps: one reserve.lua call and
// one finalize.lua call for several orders of a sale. These tests hold
// such a call to doing exactly what the same orders' calls one by one do.

// batchSale is a real sale (MySQL and its live copy in Redis) for the
// script tests: stock 10, per-user limit 2, holds after hold (seconds).
func batchSale(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace, st *sale.Store, hold int) sale.Keys {
	t.Helper()
	return perfSale(t, rdb, ks, st, 10, hold)
}

// perfSale is batchSale with the stock given.
func perfSale(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace, st *sale.Store, stock, hold int) sale.Keys {
	t.Helper()
	id := "batch-" + testenv.RandomID()
	name, cur, mode := "Batch", "EUR", sale.FIFO
	price, rate, maxActive, per, ttl, abandon, ret := int64(100), 1.0, 10, 2, 300, 60, 900
	req := sale.CreateRequest{ID: &id, Name: &name, PriceCents: &price, Currency: &cur, Stock: &stock,
		AdmissionRate: &rate, MaxActive: &maxActive, PerUserLimit: &per, TicketTTL: &ttl, HoldTTL: &hold,
		QueueMode: &mode, AbandonAfter: &abandon, ReturnWindow: &ret}
	s, err := req.Build(time.Now())
	require.NoError(t, err)
	require.NoError(t, st.Create(context.Background(), s))
	k := ks.Sale(id)
	// u1 was admitted with j1 reserving 2, u2 with j2 reserving 1: 7 units
	// unreserved.
	ctx := context.Background()
	require.NoError(t, rdb.HSet(ctx, k.Tix, "u1", "j1|100|400|2", "u2", "j2|100|400|1").Err())
	require.NoError(t, rdb.ZAdd(ctx, k.Adm, redis.Z{Score: 400000, Member: "u1"}, redis.Z{Score: 400000, Member: "u2"}).Err())
	require.NoError(t, rdb.HSet(ctx, k.Units, "reserved", 3).Err())
	return k
}

// batchState is every key of a sale the two steps read or write, with the
// ms of pending marks and the ids of stream entries left out (they are
// Redis's clock).
func batchState(t *testing.T, rdb redis.UniversalClient, k sale.Keys) map[string]any {
	t.Helper()
	ctx := context.Background()
	st := map[string]any{}
	for name, key := range map[string]string{"units": k.Units, "tix": k.Tix, "buyers": k.Buyers, "jti": k.JTI,
		"pending": k.Pending, "orders": k.Orders, "stats": k.Stats} {
		m, err := rdb.HGetAll(ctx, key).Result()
		require.NoError(t, err)
		if name == "pending" {
			for id, mark := range m {
				m[id] = pendingMs.ReplaceAllString(mark, "|MS|")
			}
		}
		st[name] = m
	}
	for name, key := range map[string]string{"adm": k.Adm, "holds": k.Holds} {
		z, err := rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		require.NoError(t, err)
		st[name] = z
	}
	xs, err := rdb.XRange(ctx, k.Ev, "-", "+").Result()
	require.NoError(t, err)
	var evs []map[string]any
	for _, x := range xs {
		evs = append(evs, x.Values)
	}
	st["events"] = evs
	return st
}

// pendingMs is the ms field of a pending mark "qty|jti|from|kind|ms|flag|user"
// (Redis's clock: the only field of a mark a test cannot know).
var pendingMs = regexp.MustCompile(`\|[0-9]{12,}\|`)

// batchOrder is one order's reserve arguments.
type batchOrder struct{ user, jti, qty, id string }

func reserveArgs(os ...batchOrder) []any {
	var args []any
	for _, o := range os {
		args = append(args, o.user, o.jti, o.qty, o.id)
	}
	return args
}

func reserveKeys(k sale.Keys) []string {
	return []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}
}

func finalizeKeys(k sale.Keys) []string {
	return []string{k.Units, k.Tix, k.Adm, k.Pending, k.Holds, k.Orders, k.Ev, k.Stats}
}

// TestReserveBatchSameAsOneByOne: orders that meet in one reserve.lua call
// (a user twice, a ticket twice, a reservation, unreserved units running
// out) get the replies and leave the state that calls one by one give, with
// holds off and on; then one finalize.lua call for several of them does
// what finalizing them one by one does.
func TestReserveBatchSameAsOneByOne(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	st := sale.NewStore(db, rdb, ks)
	ctx := context.Background()
	orders := []batchOrder{
		{"u1", "j1", "2", "o1"},  // all of u1's reservation
		{"u1", "j1", "1", "o2"},  // the same ticket again: its order is pending
		{"u3", "j3", "2", "o3"},  // unreserved units
		{"u3", "j9", "1", "o4"},  // u3 again with another ticket: pending
		{"u4", "j4", "2", "o5"},  // unreserved
		{"u5", "j5", "2", "o6"},  // unreserved: 3 of 7 left
		{"u6", "j6", "2", "o7"},  // 1 unreserved left (u2's 1 is reserved): sold out
		{"u2", "j2", "1", "o8"},  // u2's own reservation still sells
		{"u7", "j1", "1", "o9"},  // u1's ticket by another user: pending
		{"u2", "j2", "1", "o10"}, // again: pending
	}
	for _, hold := range []int{0, 300} {
		t.Run(fmt.Sprintf("hold=%d", hold), func(t *testing.T) {
			one, all := batchSale(t, rdb, ks, st, hold), batchSale(t, rdb, ks, st, hold)
			var want []any
			for _, o := range orders {
				v, err := checkout.ReserveScript.Run(ctx, rdb, reserveKeys(one), reserveArgs(o)...).Slice()
				require.NoError(t, err)
				want = append(want, v)
			}
			got, err := checkout.ReserveScript.Run(ctx, rdb, reserveKeys(all), reserveArgs(orders...)...).Slice()
			require.NoError(t, err)
			require.Equal(t, want, got, "one reply per order, in order")
			require.Contains(t, fmt.Sprint(got), "inflight", "the batch has orders that meet their own batch's")
			require.Contains(t, fmt.Sprint(got), "sold_out", "the batch runs out of unreserved units")
			require.Equal(t, batchState(t, rdb, one), batchState(t, rdb, all), "the same state")

			// finalize o1, o3, o6 and an order never reserved (o7 sold
			// out): one by one, and together
			fin := [][]any{{"o1", 1700000000000, `{"id":"o1"}`}, {"o3", 1700000001000, `{"id":"o3"}`},
				{"o7", 0, `{"id":"o7"}`}, {"o6", 1700000002000, `{"id":"o6"}`}}
			var n int64
			var args []any
			for _, f := range fin {
				m, err := checkout.FinalizeScript.Run(ctx, rdb, finalizeKeys(one), append(f, sale.EventStreamLen)...).Int64()
				require.NoError(t, err)
				n += m
				args = append(args, f...)
			}
			require.EqualValues(t, 3, n, "o7 was never pending")
			m, err := checkout.FinalizeScript.Run(ctx, rdb, finalizeKeys(all), append(args, sale.EventStreamLen)...).Int64()
			require.NoError(t, err)
			require.EqualValues(t, n, m, "the finalized orders counted alike")
			require.Equal(t, batchState(t, rdb, one), batchState(t, rdb, all), "the same state after finalize")
		})
	}
}

// TestReserveBatchWholeCallAnswers: a closed sale, a sale whose live state
// is missing and one stamped by another Redis process answer once for the
// whole call and change nothing.
func TestReserveBatchWholeCallAnswers(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	st := sale.NewStore(db, rdb, ks)
	ctx := context.Background()
	orders := reserveArgs(batchOrder{"u1", "j1", "1", "o1"}, batchOrder{"u3", "j3", "1", "o2"})
	for _, tt := range []struct {
		name  string
		spoil func(k sale.Keys)
		reply string
	}{
		{"closed", func(k sale.Keys) { require.NoError(t, rdb.HSet(ctx, k.Cfg, "state", "closed").Err()) }, "closed"},
		{"no units", func(k sale.Keys) { require.NoError(t, rdb.Del(ctx, k.Units).Err()) }, "nostate"},
		{"no cfg", func(k sale.Keys) { require.NoError(t, rdb.Del(ctx, k.Cfg).Err()) }, "nostate"},
		{"another Redis process", func(k sale.Keys) {
			require.NoError(t, rdb.HSet(ctx, k.Cfg, "rid", "0123456789012345678901234567890123456789").Err())
		}, "stale"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			k := batchSale(t, rdb, ks, st, 0)
			tt.spoil(k)
			before := batchState(t, rdb, k)
			v, err := checkout.ReserveScript.Run(ctx, rdb, reserveKeys(k), orders...).StringSlice()
			require.NoError(t, err)
			require.Equal(t, []string{tt.reply}, v)
			require.Equal(t, before, batchState(t, rdb, k), "nothing changed")
		})
	}
}

// TestFinalizeBatchBadMarkChangesNothing: a pending mark finalize cannot
// read fails the whole call before it finalizes the good orders before it.
func TestFinalizeBatchBadMarkChangesNothing(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	st := sale.NewStore(db, rdb, ks)
	ctx := context.Background()
	k := batchSale(t, rdb, ks, st, 0)
	_, err := checkout.ReserveScript.Run(ctx, rdb, reserveKeys(k), reserveArgs(batchOrder{"u1", "j1", "1", "o1"})...).Result()
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, k.Pending, "o2", "garbage").Err())
	before := batchState(t, rdb, k)
	err = checkout.FinalizeScript.Run(ctx, rdb, finalizeKeys(k), "o1", 0, "{}", "o2", 0, "{}", sale.EventStreamLen).Err()
	require.ErrorContains(t, err, "bad pending mark")
	require.Equal(t, before, batchState(t, rdb, k), "o1 is still pending, nothing counted")
}

// TestConcurrentCheckoutsShareSteps: many shoppers buying at once, their
// Redis steps combined, each get their own answer: every order MySQL has
// was answered 201 and every 201 is in MySQL, each ticket and user once,
// and Redis's counts agree with MySQL's.
func TestConcurrentCheckoutsShareSteps(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	const shoppers, stock = 120, 100
	saleID := newSale(t, s, map[string]any{"stock": stock, "per_user_limit": 1})
	toks := make([]string, shoppers)
	now := time.Now().Unix()
	for i := range toks {
		u := fmt.Sprintf("shopper-%d", i)
		toks[i] = s.Issuer.Ticket(ticket.Admission{Sale: saleID, User: u, JTI: "t-" + u, IssuedAt: now, ExpiresAt: now + 300})
	}
	client := &http.Client{Timeout: 30 * time.Second}
	answers := make([]answer, 2*shoppers)
	var wg sync.WaitGroup
	for i := range answers {
		// every shopper twice at once: a double click
		wg.Go(func() {
			answers[i] = send(client, "POST", s.URL+checkoutPath(saleID), toks[i%shoppers], []byte(`{"quantity":1}`))
		})
	}
	wg.Wait()
	created := map[string]bool{}
	codes := map[string]int{}
	for _, a := range answers {
		require.NoError(t, a.err)
		if a.status == http.StatusCreated {
			require.False(t, created[a.order], "order %s answered twice", a.order)
			created[a.order] = true
			continue
		}
		codes[a.code]++
	}
	require.Len(t, created, stock, "every unit sold once: %v", codes)
	for code := range codes {
		require.Contains(t, []string{"sold_out", "ticket_used", "already_bought"}, code, "no other answer: %v", codes)
	}
	rows, err := s.DB.Query(`SELECT id FROM orders WHERE sale_id = ? AND status = 'paid'`, saleID)
	require.NoError(t, err)
	inMySQL := map[string]bool{}
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		inMySQL[id] = true
	}
	require.NoError(t, rows.Err())
	require.Equal(t, created, inMySQL, "MySQL has exactly the orders answered 201")
	sold, held := saleRow(t, s, saleID)
	require.Equal(t, [2]int{stock, 0}, [2]int{sold, held})
	u := redisUnits(t, s, saleID)
	requireUnitsAddUp(t, u)
	require.Equal(t, stock, u["sold"])
	pending, err := s.Redis.HLen(context.Background(), s.Keys.Sale(saleID).Pending).Result()
	require.NoError(t, err)
	require.Zero(t, pending, "every order finalized")
	require.EqualValues(t, stock, summary(t, s, saleID)["orders_total"])
}

// TestGroupCommitStatementsPrepared: a group commit prepares only its
// multi-row INSERT (whose text depends on the number of orders); the
// guarded UPDATE and the sold-out read are prepared once per connection,
// not prepared, run and closed on every commit.
func TestGroupCommitStatementsPrepared(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	dsn, db := testenv.MySQL(t)
	st := sale.NewStore(db, rdb, ks)
	k := perfSale(t, rdb, ks, st, 1000, 0)
	saleID := strings.TrimSuffix(strings.TrimPrefix(k.Cfg, ks.Prefix+":{"), "}:cfg")
	cfg, err := mysql.ParseDSN(dsn)
	require.NoError(t, err)
	conn, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	var prepares atomic.Int64
	counted := sql.OpenDB(countingConnector{conn, &prepares})
	defer counted.Close()
	orders := checkout.NewOrders(counted, slog.New(slog.NewTextHandler(io.Discard, nil)), 1)
	defer orders.Close()
	const commits = 40
	for i := range commits {
		u := fmt.Sprintf("u%d", i)
		o := &checkout.Order{ID: "o" + u, SaleID: saleID, UserID: u, Quantity: 1, AmountCents: 100,
			Currency: "EUR", Status: checkout.StatusPaid, TicketJTI: "j" + u, CreatedAt: time.Now().UTC()}
		_, err := orders.Create(context.Background(), o) // one at a time: a commit each
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM orders WHERE sale_id = ?`, saleID).Scan(&n))
	require.Equal(t, commits, n)
	open := counted.Stats().OpenConnections
	require.LessOrEqual(t, prepares.Load(), int64(commits+2*open),
		"an INSERT per commit, and the 2 fixed statements once on each of the %d connections", open)
}

// countingConnector counts the statements its connections prepare.
type countingConnector struct {
	driver.Connector
	prepares *atomic.Int64
}

func (c countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return countingConn{conn.(mysqlConn), c.prepares}, nil
}

// mysqlConn is what go-sql-driver's connection implements, so that
// database/sql uses the wrapper as it would use the driver's own.
type mysqlConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.Pinger
	driver.SessionResetter
	driver.Validator
	driver.NamedValueChecker
}

type countingConn struct {
	mysqlConn
	prepares *atomic.Int64
}

func (c countingConn) Prepare(q string) (driver.Stmt, error) {
	c.prepares.Add(1)
	return c.mysqlConn.Prepare(q)
}

func (c countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	c.prepares.Add(1)
	return c.mysqlConn.PrepareContext(ctx, q)
}

// TestOrderIDsSortByTime: an order id made in a later millisecond sorts
// after (bytes, as MySQL's primary key orders them), so inserts land at the
// end of the orders table; ids keep the contract's shape and never repeat.
func TestOrderIDsSortByTime(t *testing.T) {
	t.Parallel()
	shape := regexp.MustCompile(`^ord_[a-z2-7]{26}$`)
	var ids []string
	for range 20 {
		// the next millisecond
		for ms := time.Now().UnixMilli(); time.Now().UnixMilli() == ms; {
			runtime.Gosched()
		}
		ids = append(ids, checkout.NewOrderID())
	}
	require.True(t, slices.IsSorted(ids), "ids in creation order: %v", ids)
	seen := map[string]bool{}
	for range 10000 {
		id := checkout.NewOrderID()
		require.Regexp(t, shape, id)
		require.False(t, seen[id], "id %s made twice", id)
		seen[id] = true
	}
}
