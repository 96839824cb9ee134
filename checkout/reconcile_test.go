package checkout_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// reconcileSale is a sale with one paid order (alice, 2 units), one held
// (bob, 1) and one cancelled (carol), consistent in Redis and MySQL.
type reconcileSale struct {
	id                 string
	paid, held, cancel string // order ids
	paidJTI            string
}

func newReconcileSale(t *testing.T, s *testenv.Server) reconcileSale {
	t.Helper()
	rs := reconcileSale{id: newSale(t, s, map[string]any{"stock": 10, "per_user_limit": 2, "hold_ttl_seconds": 300})}
	order := func(user string, qty int) string {
		r := buy(t, s, rs.id, s.Ticket(rs.id, user, time.Minute), map[string]any{"quantity": qty})
		require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
		return r.JSON(t)["id"].(string)
	}
	rs.paid, rs.held, rs.cancel = order("alice", 2), order("bob", 1), order("carol", 1)
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+rs.paid+"/confirm", s.ServiceToken, nil).Status)
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+rs.cancel+"/cancel", s.AdminToken, nil).Status)
	require.NoError(t, s.DB.QueryRow(`SELECT ticket_jti FROM orders WHERE id = ?`, rs.paid).Scan(&rs.paidJTI))
	return rs
}

// mysqlSnapshot is what reconcile could change in MySQL: the row's counts
// and every order's status.
func mysqlSnapshot(t *testing.T, s *testenv.Server, saleID string) map[string]any {
	t.Helper()
	sold, held := saleRow(t, s, saleID)
	rows, err := s.DB.Query(`SELECT id, status FROM orders WHERE sale_id = ? ORDER BY id`, saleID)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]any{"sold": sold, "held": held}
	for rows.Next() {
		var id, status string
		require.NoError(t, rows.Scan(&id, &status))
		out[id] = status
	}
	require.NoError(t, rows.Err())
	return out
}

func kinds(ds []checkout.Difference) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Kind)
	}
	return out
}

// TestReconcile plants each kind of difference between Redis and MySQL. A
// dry run reports it and changes nothing; a repair fixes it (Redis is back
// as it was before the plant) and then the sale is consistent.
func TestReconcile(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		ctx := context.Background()
		svc := s.Node.Checkout

		// reservePending runs the Lua step alone, as a process that died after it.
		reservePending := func(t *testing.T, saleID, user string, qty int) *checkout.Order {
			ord := newOrder(saleID, user, checkout.StatusHeld, qty)
			k := s.Keys.Sale(saleID)
			v, err := checkout.ReserveScript.Run(ctx, s.Redis, []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending},
				user, ord.TicketJTI, qty, ord.ID).StringSlice()
			require.NoError(t, err)
			require.Equal(t, []string{"ok", "held"}, v)
			return ord
		}

		cases := []struct {
			name string
			kind string
			// plant makes the difference; it returns what Redis should be
			// after the repair when that is not the state before the plant.
			plant func(t *testing.T, rs reconcileSale) (after func(t *testing.T, rs reconcileSale))
		}{
			{name: "buyer missing in Redis", kind: "buyer", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				require.NoError(t, s.Redis.HDel(ctx, s.Keys.Sale(rs.id).Buyers, "alice").Err())
				return nil
			}},
			{name: "buyer without a live MySQL order", kind: "buyer", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				require.NoError(t, s.Redis.HSet(ctx, s.Keys.Sale(rs.id).Buyers, "carol", rs.cancel, "mallory", "ord_x").Err())
				return nil
			}},
			{name: "used ticket missing in Redis", kind: "ticket", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				require.NoError(t, s.Redis.HDel(ctx, s.Keys.Sale(rs.id).JTI, rs.paidJTI).Err())
				return nil
			}},
			{name: "used ticket without a MySQL order", kind: "ticket", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				require.NoError(t, s.Redis.HSet(ctx, s.Keys.Sale(rs.id).JTI, "jti-ghost", "ord_ghost").Err())
				return nil
			}},
			{name: "hold missing in Redis", kind: "hold", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				k := s.Keys.Sale(rs.id)
				require.NoError(t, s.Redis.ZRem(ctx, k.Holds, rs.held).Err())
				require.NoError(t, s.Redis.HDel(ctx, k.Orders, rs.held).Err())
				return nil
			}},
			{name: "hold MySQL does not have", kind: "hold", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				k := s.Keys.Sale(rs.id)
				require.NoError(t, s.Redis.ZAdd(ctx, k.Holds, redisZ(1, rs.paid)).Err())
				require.NoError(t, s.Redis.HSet(ctx, k.Orders, rs.paid, sale.HoldRecord("alice", 2), "ord_ghost", sale.HoldRecord("x", 1)).Err())
				return nil
			}},
			{name: "units off (more remaining than MySQL allows)", kind: "units", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				k := s.Keys.Sale(rs.id)
				require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "remaining", 3).Err())
				require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "sold", -2).Err())
				require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "reserved", 4).Err())
				return nil
			}},
			{name: "pending order MySQL never had", kind: "pending", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				before := redisSnapshot(t, s, rs.id)
				ord := reservePending(t, rs.id, "dave", 2)
				return func(t *testing.T, rs reconcileSale) {
					require.Equal(t, before, redisSnapshot(t, s, rs.id), "Redis is as it was before the reserve")
					var status string
					require.NoError(t, s.DB.QueryRow(`SELECT status FROM orders WHERE id = ?`, ord.ID).Scan(&status))
					require.Equal(t, "cancelled", status, "a tombstone")
					_, err := s.Node.Orders.Create(ctx, ord)
					require.ErrorIs(t, err, checkout.ErrTombstoned, "a late write cannot land")
				}
			}},
			{name: "pending order MySQL has", kind: "pending", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				ord := reservePending(t, rs.id, "erin", 1)
				_, err := s.Node.Orders.Create(ctx, ord)
				require.NoError(t, err)
				return func(t *testing.T, rs reconcileSale) {
					k := s.Keys.Sale(rs.id)
					require.Equal(t, ord.ID, s.Redis.HGet(ctx, k.Buyers, "erin").Val())
					require.Equal(t, ord.ID, s.Redis.HGet(ctx, k.JTI, ord.TicketJTI).Val())
					require.Equal(t, sale.HoldRecord("erin", 1), s.Redis.HGet(ctx, k.Orders, ord.ID).Val())
					require.Equal(t, map[string]int{"remaining": 6, "reserved": 0, "held": 2, "sold": 2, "stock": 10}, redisUnits(t, s, rs.id))
				}
			}},
			{name: "sales row off its orders", kind: "sale_row", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				_, err := s.DB.Exec(`UPDATE sales SET sold = sold + 3 WHERE id = ?`, rs.id)
				require.NoError(t, err)
				return func(t *testing.T, rs reconcileSale) {
					sold, held := saleRow(t, s, rs.id)
					require.Equal(t, [2]int{2, 1}, [2]int{sold, held}, "the row recounted from its orders")
				}
			}},
			{name: "live state gone", kind: "state", plant: func(t *testing.T, rs reconcileSale) func(*testing.T, reconcileSale) {
				k := s.Keys.Sale(rs.id)
				require.NoError(t, s.Redis.Del(ctx, k.All()...).Err())
				return func(t *testing.T, rs reconcileSale) {
					require.Equal(t, map[string]int{"remaining": 7, "reserved": 0, "held": 1, "sold": 2, "stock": 10}, redisUnits(t, s, rs.id))
					require.Equal(t, map[string]string{"alice": rs.paid, "bob": rs.held}, s.Redis.HGetAll(ctx, k.Buyers).Val())
				}
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				rs := newReconcileSale(t, s)
				rep, err := svc.Reconcile(ctx, rs.id, false)
				require.NoError(t, err)
				require.True(t, rep.Consistent(), "before the plant: %v", rep.Differences)
				require.Empty(t, rep.Differences)
				redisBefore, mysqlBefore := redisSnapshot(t, s, rs.id), mysqlSnapshot(t, s, rs.id)

				after := tc.plant(t, rs)
				redisPlanted, mysqlPlanted := redisSnapshot(t, s, rs.id), mysqlSnapshot(t, s, rs.id)

				rep, err = svc.Reconcile(ctx, rs.id, false)
				require.NoError(t, err)
				require.False(t, rep.Consistent())
				require.Contains(t, kinds(rep.Differences), tc.kind, "%v", rep.Differences)
				for _, d := range rep.Differences {
					require.False(t, d.Repaired, "a dry run repairs nothing: %v", d)
				}
				require.Equal(t, redisPlanted, redisSnapshot(t, s, rs.id), "a dry run changes nothing in Redis")
				require.Equal(t, mysqlPlanted, mysqlSnapshot(t, s, rs.id), "a dry run changes nothing in MySQL")

				rep, err = svc.Reconcile(ctx, rs.id, true)
				require.NoError(t, err)
				require.True(t, rep.Consistent(), "after the repair: %v", rep.Remaining)
				require.Contains(t, kinds(rep.Differences), tc.kind, "%v", rep.Differences)
				for _, d := range rep.Differences {
					require.True(t, d.Repaired, "%v", d)
				}
				require.Zero(t, s.Redis.HLen(ctx, s.Keys.Sale(rs.id).Pending).Val(), "no pending mark left")
				if after != nil {
					after(t, rs)
				} else {
					require.Equal(t, redisBefore, redisSnapshot(t, s, rs.id), "Redis is as it was before the plant")
					require.Equal(t, mysqlBefore, mysqlSnapshot(t, s, rs.id))
				}
				sum := summary(t, s, rs.id)
				require.Equal(t, true, sum["consistent"], "summary: %v", sum)
				rep, err = svc.Reconcile(ctx, rs.id, false)
				require.NoError(t, err)
				require.True(t, rep.Consistent(), "a second check: %v", rep.Differences)
			})
		}
	})
}

// TestReconcileUnderCheckouts repairs a sale whose units are off while
// checkouts run: the guarded step never re-seeds the units under an order in
// flight, so afterwards Redis and MySQL agree and nothing is oversold.
func TestReconcileUnderCheckouts(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		ctx := context.Background()
		saleID := newSale(t, s, map[string]any{"stock": 60})
		k := s.Keys.Sale(saleID)
		// Redis lost two sales' worth of units: it would sell 62.
		require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "remaining", 2).Err())
		require.NoError(t, s.Redis.HIncrBy(ctx, k.Units, "stock", 2).Err())

		client := stormClient(t)
		answers := make(chan answer, 80)
		for i := range 80 {
			go func() {
				a := send(client, "POST", s.URL+checkoutPath(saleID), s.Ticket(saleID, "u"+itoa(int64(i)), time.Minute), nil)
				answers <- a
			}()
		}
		var repairErr error
		repaired := make(chan struct{})
		go func() {
			defer close(repaired)
			_, repairErr = s.Node.Checkout.Reconcile(ctx, saleID, true)
		}()
		created := 0
		for range 80 {
			a := <-answers
			require.NoError(t, a.err)
			if a.status == http.StatusCreated {
				created++
			}
		}
		<-repaired
		require.NoError(t, repairErr)
		eventually(t, 10*time.Second, func() bool { return s.Redis.HLen(ctx, k.Pending).Val() == 0 }, "no order in flight")
		rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
		require.NoError(t, err)
		require.True(t, rep.Consistent(), "%v", rep.Remaining)
		count, units := liveOrders(t, s, saleID)
		require.Equal(t, created, count, "every 201 is in MySQL, and only those")
		require.LessOrEqual(t, units, 60, "never oversold")
		u := redisUnits(t, s, saleID)
		require.Equal(t, 60, u["stock"])
		require.Equal(t, 60-units, u["remaining"])
	})
}

// waiting counts the statements of the test's database running (waiting
// for the sale's row lock, here) whose text starts with prefix.
func waiting(t *testing.T, s *testenv.Server, prefix string) int {
	t.Helper()
	var n int
	require.NoError(t, s.DB.QueryRow(`SELECT COUNT(*) FROM information_schema.PROCESSLIST
		WHERE DB = DATABASE() AND COMMAND = 'Execute' AND INFO LIKE CONCAT(?, '%')`, prefix).Scan(&n))
	return n
}

// TestReconcileInFlight: a repair settles pending orders whatever their
// age, so it can meet an order whose write is still on the way. Here the
// write is queued on the sale's row lock first and the reconciliation's
// tombstone right behind it: the write commits and the shopper gets 201,
// so the reconciliation must keep that order (finalize it), never cancel
// it.
func TestReconcileInFlight(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()
	saleID := newSale(t, s, map[string]any{"stock": 5})
	k := s.Keys.Sale(saleID)
	tok := admit(t, s, saleID, "gina", 1)

	tx, err := s.DB.BeginTx(ctx, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	var sold int
	require.NoError(t, tx.QueryRow(`SELECT sold FROM sales WHERE id = ? FOR UPDATE`, saleID).Scan(&sold))
	res := make(chan answer, 1)
	go func() { res <- send(http.DefaultClient, "POST", s.URL+checkoutPath(saleID), tok, nil) }()
	eventually(t, 5*time.Second, func() bool {
		return s.Redis.HLen(ctx, k.Pending).Val() == 1 && waiting(t, s, "UPDATE sales SET sold") == 1
	}, "the checkout reserved and its write waits on the row")
	repDone := make(chan error, 1)
	go func() {
		_, err := s.Node.Checkout.Reconcile(ctx, saleID, true)
		repDone <- err
	}()
	eventually(t, 5*time.Second, func() bool {
		select {
		case err := <-repDone:
			t.Fatalf("the reconciliation ended before the write: %v", err)
		default:
		}
		return waiting(t, s, "SELECT 1 FROM sales") == 1
	}, "the tombstone waits behind the write")
	require.NoError(t, tx.Rollback())

	r := <-res
	require.NoError(t, r.err)
	require.NoError(t, <-repDone)
	require.Equal(t, http.StatusCreated, r.status, "the write was first: %s", r.body)
	count, _ := liveOrders(t, s, saleID)
	require.Equal(t, 1, count, "the order answered 201 lives")
	var status string
	require.NoError(t, s.DB.QueryRow(`SELECT status FROM orders WHERE id = ?`, r.order).Scan(&status))
	require.Equal(t, "paid", status)
	require.Zero(t, s.Redis.HLen(ctx, k.Pending).Val())
	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)
}

// TestReconcileTombstoneFirst: the other order of the race. The order's
// write waits in its writer's queue (the writer is stuck on another sale's
// row) when a repair tombstones it; the write then fails on the order's id.
// The shopper gets 503 with Retry-After (not ticket_used: the ticket is
// free), no order lives, and the ticket buys on retry.
func TestReconcileTombstoneFirst(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()
	saleID := newSale(t, s, map[string]any{"stock": 5})
	k := s.Keys.Sale(saleID)
	tok := admit(t, s, saleID, "hank", 1)
	// Another sale whose orders go to the same writer.
	var other string
	for other == "" || s.Node.Orders.Shard(other) != s.Node.Orders.Shard(saleID) {
		other = newSale(t, s, map[string]any{"stock": 5})
	}
	tx, err := s.DB.BeginTx(ctx, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback() })
	var sold int
	require.NoError(t, tx.QueryRow(`SELECT sold FROM sales WHERE id = ? FOR UPDATE`, other).Scan(&sold))
	otherRes := make(chan answer, 1)
	go func() {
		otherRes <- send(http.DefaultClient, "POST", s.URL+checkoutPath(other), s.Ticket(other, "ivy", time.Minute), nil)
	}()
	eventually(t, 5*time.Second, func() bool { return waiting(t, s, "UPDATE sales SET sold") == 1 }, "the writer waits on the other sale")
	res := make(chan answer, 1)
	go func() { res <- send(http.DefaultClient, "POST", s.URL+checkoutPath(saleID), tok, nil) }()
	eventually(t, 5*time.Second, func() bool { return s.Redis.HLen(ctx, k.Pending).Val() == 1 }, "the checkout reserved")

	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, true)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)
	require.NoError(t, tx.Rollback())

	r := <-res
	require.NoError(t, r.err)
	requireStatus := func(a answer, status int) {
		t.Helper()
		require.Equal(t, status, a.status, "%s", a.body)
	}
	requireStatus(r, http.StatusServiceUnavailable)
	require.Equal(t, "unavailable", r.code)
	require.Equal(t, "1", r.retry)
	o := <-otherRes
	require.NoError(t, o.err)
	requireStatus(o, http.StatusCreated)
	count, _ := liveOrders(t, s, saleID)
	require.Zero(t, count, "a 503 never hides a live order")
	again := buy(t, s, saleID, tok, nil)
	require.Equal(t, http.StatusCreated, again.Status, "the 503 did not use the ticket up: %s", again.Body)
	rep, err = s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)
}
