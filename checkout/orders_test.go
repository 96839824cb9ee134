package checkout_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// orderRow is what MySQL keeps of an order, as Compensate leaves it.
type orderRow struct {
	Status         string
	TicketJTI      sql.NullString
	IdempotencyKey sql.NullString
}

func readOrder(t *testing.T, s *testenv.Server, id string) orderRow {
	t.Helper()
	var r orderRow
	require.NoError(t, s.DB.QueryRow(`SELECT status, ticket_jti, idempotency_key FROM orders WHERE id = ?`, id).
		Scan(&r.Status, &r.TicketJTI, &r.IdempotencyKey))
	return r
}

func newOrder(saleID, user, status string, qty int) *checkout.Order {
	o := &checkout.Order{ID: checkout.NewOrderID(), SaleID: saleID, UserID: user, Quantity: qty,
		AmountCents: 1000 * int64(qty), Currency: "EUR", Status: status, TicketJTI: "jti-" + testenv.RandomID(),
		IdempotencyKey: "key-" + testenv.RandomID(), CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	if status == checkout.StatusHeld {
		exp := o.CreatedAt.Add(time.Minute)
		o.HoldExpiresAt = &exp
	}
	return o
}

// TestOrdersCompensate: Compensate makes sure an order whose write failed or
// whose outcome is unknown never lives, by its id.
func TestOrdersCompensate(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	orders := s.Node.Orders
	ctx := context.Background()

	for _, status := range []string{checkout.StatusPaid, checkout.StatusHeld} {
		t.Run("committed "+status+": cancelled, units returned, ticket and key freed", func(t *testing.T) {
			saleID := newSale(t, s, nil)
			ord := newOrder(saleID, "u1", status, 2)
			_, err := orders.Create(ctx, ord)
			require.NoError(t, err)
			sold, held := saleRow(t, s, saleID)
			require.Equal(t, 2, sold+held)

			cancelled, err := orders.Compensate(ctx, ord)
			require.NoError(t, err)
			require.True(t, cancelled)
			require.Equal(t, orderRow{Status: "cancelled"}, readOrder(t, s, ord.ID))
			sold, held = saleRow(t, s, saleID)
			require.Equal(t, [2]int{0, 0}, [2]int{sold, held}, "units back in the sales row")

			// Again: nothing more to do, and the units are not returned twice.
			cancelled, err = orders.Compensate(ctx, ord)
			require.NoError(t, err)
			require.False(t, cancelled)
			sold, held = saleRow(t, s, saleID)
			require.Equal(t, [2]int{0, 0}, [2]int{sold, held})

			// The ticket and the key can make a new order.
			retry := newOrder(saleID, "u1", status, 1)
			retry.TicketJTI, retry.IdempotencyKey = ord.TicketJTI, ord.IdempotencyKey
			_, err = orders.Create(ctx, retry)
			require.NoError(t, err)
		})
	}

	t.Run("never committed: a tombstone, and a late write of it fails", func(t *testing.T) {
		saleID := newSale(t, s, nil)
		ord := newOrder(saleID, "u2", checkout.StatusPaid, 1)
		cancelled, err := orders.Compensate(ctx, ord)
		require.NoError(t, err)
		require.False(t, cancelled)
		require.Equal(t, orderRow{Status: "cancelled"}, readOrder(t, s, ord.ID))
		sold, held := saleRow(t, s, saleID)
		require.Equal(t, [2]int{0, 0}, [2]int{sold, held})

		_, err = orders.Create(ctx, ord)
		require.ErrorIs(t, err, checkout.ErrDuplicate)
		require.Equal(t, orderRow{Status: "cancelled"}, readOrder(t, s, ord.ID), "the tombstone stands")
		count, _ := liveOrders(t, s, saleID)
		require.Zero(t, count)
		sold, held = saleRow(t, s, saleID)
		require.Equal(t, [2]int{0, 0}, [2]int{sold, held}, "the refused write's guarded update rolled back")

		// The user's ticket was not used up by the tombstone.
		fresh := newOrder(saleID, "u2", checkout.StatusPaid, 1)
		fresh.TicketJTI = ord.TicketJTI
		_, err = orders.Create(ctx, fresh)
		require.NoError(t, err)
	})
}

// TestOrdersCreate: MySQL's own guards, whatever Redis said: the unit count
// and one live order per user.
func TestOrdersCreate(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	orders := s.Node.Orders
	ctx := context.Background()
	saleID := newSale(t, s, map[string]any{"stock": 3})

	soldOut, err := orders.Create(ctx, newOrder(saleID, "a", checkout.StatusPaid, 2))
	require.NoError(t, err)
	require.False(t, soldOut)
	_, err = orders.Create(ctx, newOrder(saleID, "b", checkout.StatusPaid, 2))
	require.ErrorIs(t, err, checkout.ErrGuard, "2 more units than the stock")
	_, err = orders.Create(ctx, newOrder(saleID, "a", checkout.StatusPaid, 1))
	require.ErrorIs(t, err, checkout.ErrDuplicate, "a second live order of a user")
	soldOut, err = orders.Create(ctx, newOrder(saleID, "c", checkout.StatusPaid, 1))
	require.NoError(t, err)
	require.True(t, soldOut, "the order that sells the last unit says so")
	sold, held := saleRow(t, s, saleID)
	require.Equal(t, [2]int{3, 0}, [2]int{sold, held})
	require.Equal(t, 2, orderRows(t, s, saleID))
}

// TestOrdersCreateConcurrent: many orders at once, more units than the
// stock (as when Redis lost writes): MySQL commits at most the stock, and
// refuses an order only when it does not fit in what is left.
func TestOrdersCreateConcurrent(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	orders := s.Node.Orders
	const stock, n = 20, 120
	saleID := newSale(t, s, map[string]any{"stock": stock, "per_user_limit": 3})
	ords := make([]*checkout.Order, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ords {
		status := checkout.StatusPaid
		if i%4 == 0 {
			status = checkout.StatusHeld
		}
		ords[i] = newOrder(saleID, "cc-"+strconv.Itoa(i), status, 1+i%3)
		wg.Go(func() { _, errs[i] = orders.Create(context.Background(), ords[i]) })
	}
	wg.Wait()
	committed := 0
	var refused []int
	for i, err := range errs {
		switch {
		case err == nil:
			committed += ords[i].Quantity
		case errors.Is(err, checkout.ErrGuard):
			refused = append(refused, ords[i].Quantity)
		default:
			t.Fatalf("order %d: %v", i, err)
		}
	}
	sold, held := saleRow(t, s, saleID)
	require.Equal(t, committed, sold+held)
	require.LessOrEqual(t, committed, stock)
	_, live := liveOrders(t, s, saleID)
	require.Equal(t, committed, live)
	require.NotEmpty(t, refused)
	for _, q := range refused {
		require.Greater(t, q, stock-committed, "an order of %d refused while %d units were left", q, stock-committed)
	}
}

// TestOrdersGuardRecovery: the reads and repairs of recovery and
// reconciliation are Orders' calls, through its breaker like a checkout's:
// while it is open they fail fast instead of queueing on a MySQL that does
// not answer, and MySQL's answers of no such sale or order keep it closed.
func TestOrdersGuardRecovery(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	_, db := testenv.MySQL(t)
	sales := sale.NewStore(db, rdb, ks)
	ctx := context.Background()
	id := "guard-" + testenv.RandomID()
	name, cur, mode := "Guard", "EUR", sale.FIFO
	price, stock, rate, maxActive, per, ttl, hold, abandon, ret := int64(100), 5, 1.0, 10, 1, 300, 0, 60, 900
	req := sale.CreateRequest{ID: &id, Name: &name, PriceCents: &price, Currency: &cur, Stock: &stock,
		AdmissionRate: &rate, MaxActive: &maxActive, PerUserLimit: &per, TicketTTL: &ttl, HoldTTL: &hold,
		QueueMode: &mode, AbandonAfter: &abandon, ReturnWindow: &ret}
	sl, err := req.Build(time.Now())
	require.NoError(t, err)
	require.NoError(t, sales.Create(ctx, sl))

	b, _ := newTestBreaker() // its clock stands still: no probe comes due
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	orders := checkout.NewOrdersWithBreaker(db, log, 1, b)
	t.Cleanup(orders.Close)
	svc := checkout.NewService(checkout.Config{Logger: log}, rdb, sales, orders)
	t.Cleanup(svc.Close)

	for range 6 {
		_, err := orders.SaleSnapshot(ctx, "no-such-sale")
		require.ErrorIs(t, err, checkout.ErrNoSale)
		_, err = orders.LiveOrderOf(ctx, id, "nobody")
		require.ErrorIs(t, err, checkout.ErrNoOrder)
	}
	require.Equal(t, checkout.BreakerClosed, b.State(), "answers are not failures")
	_, err = svc.Reconcile(ctx, id, true)
	require.NoError(t, err)

	for range 5 {
		b.Record(errDown)
	}
	require.Equal(t, checkout.BreakerOpen, b.State())
	_, err = svc.Reconcile(ctx, id, false)
	require.ErrorIs(t, err, checkout.ErrBreakerOpen, "the dry run reads MySQL through the breaker")
	_, err = svc.Reconcile(ctx, id, true)
	require.ErrorIs(t, err, checkout.ErrBreakerOpen, "so does the repair")
	units := ks.Sale(id).Units
	require.NoError(t, rdb.Del(ctx, units).Err())
	require.ErrorIs(t, svc.Rebuild(ctx, id), checkout.ErrBreakerOpen, "and the rebuild")
	require.Zero(t, rdb.Exists(ctx, units).Val(), "nothing was rebuilt from a MySQL read refused")

	b.Record(nil) // MySQL answers again
	require.NoError(t, svc.Rebuild(ctx, id))
	require.Equal(t, map[string]string{"remaining": "5", "reserved": "0", "held": "0", "sold": "0", "stock": "5"},
		rdb.HGetAll(ctx, units).Val())
}
