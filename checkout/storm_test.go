package checkout_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// stormClient opens as many connections as the storm has shoppers.
func stormClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 1000}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// shot is one checkout of a storm.
type shot struct {
	user, ticket string
	body         []byte
}

// fire sends every shot at once (all goroutines wait on one start signal)
// and returns the answers in the shots' order.
func fire(t *testing.T, s *testenv.Server, saleID string, shots []shot) []answer {
	t.Helper()
	client := stormClient(t)
	url := s.URL + checkoutPath(saleID)
	out := make([]answer, len(shots))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, sh := range shots {
		wg.Go(func() {
			<-start
			a := send(client, "POST", url, sh.ticket, sh.body)
			a.user = sh.user
			out[i] = a
		})
	}
	close(start)
	wg.Wait()
	for _, a := range out {
		require.NoError(t, a.err, "user %s", a.user)
	}
	return out
}

// requireSoldOutState waits for the sale to turn sold_out (MySQL counted
// every unit paid) and checks that one more shopper is refused.
func requireSoldOutState(t *testing.T, s *testenv.Server, saleID string) {
	t.Helper()
	eventually(t, 10*time.Second, func() bool {
		r := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID, s.AdminToken, nil)
		return r.Status == http.StatusOK && r.JSON(t)["state"] == "sold_out"
	}, "sale %s turns sold_out", saleID)
	late := buy(t, s, saleID, s.Ticket(saleID, "late-comer", time.Minute), nil)
	require.Equal(t, http.StatusGone, late.Status, "a checkout after the sale sold out: %s", late.Body)
}

// TestCheckoutStorm: 500 shoppers with valid tickets fire at once at a sale
// of 50 units. Exactly 50 buy, each a different shopper; Redis, MySQL and
// the summary agree. With Redis's units wrong on purpose (as if it had lost
// writes and let everyone through), MySQL's guard still stops at 50.
func TestCheckoutStorm(t *testing.T) {
	t.Parallel()
	const stock, shoppers = 50, 500
	tests := []struct {
		name string
		// corrupt sets Redis's remaining units to this before the storm (0:
		// leave them right).
		corrupt int
	}{
		{name: "redis right"},
		{name: "redis lost writes: 500 units remaining", corrupt: 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.Start(t)
			saleID := newSale(t, s, map[string]any{"stock": stock})
			ctx := context.Background()
			k := s.Keys.Sale(saleID)
			if tt.corrupt > 0 {
				require.NoError(t, s.Redis.HSet(ctx, k.Units, "remaining", tt.corrupt).Err())
			}
			shots := make([]shot, shoppers)
			for i := range shots {
				user := fmt.Sprintf("storm-%03d", i)
				shots[i] = shot{user: user, ticket: s.Ticket(saleID, user, 5*time.Minute), body: []byte(`{"quantity":1}`)}
			}

			answers := fire(t, s, saleID, shots)

			created := map[string]string{} // user → order
			for _, a := range answers {
				require.Less(t, a.status, 500, "never a 5xx: user %s got %d %s", a.user, a.status, a.body)
			}
			orders := map[string]bool{}
			for _, a := range answers {
				switch a.status {
				case http.StatusCreated:
					require.NotContains(t, created, a.user, "one order per shopper")
					require.NotEmpty(t, a.order)
					created[a.user] = a.order
					orders[a.order] = true
				case http.StatusGone:
					require.Equal(t, "sold_out", a.code, "user %s: %s", a.user, a.body)
				case http.StatusConflict:
					require.Equal(t, "already_bought", a.code, "user %s: %s", a.user, a.body)
				default:
					t.Fatalf("user %s: unexpected %d %s", a.user, a.status, a.body)
				}
			}
			require.Len(t, created, stock, "exactly the stock is sold, to distinct shoppers")
			require.Len(t, orders, stock, "distinct order ids")

			// MySQL: exactly 50 live orders of 50 units, the guarded row
			// agrees, and no other row (refused orders never lived).
			count, units := liveOrders(t, s, saleID)
			require.Equal(t, stock, count)
			require.Equal(t, stock, units)
			sold, held := saleRow(t, s, saleID)
			require.Equal(t, stock, sold)
			require.Zero(t, held)
			require.Equal(t, stock, orderRows(t, s, saleID))
			rows, err := s.DB.Query(`SELECT id, user_id, status FROM orders WHERE sale_id = ?`, saleID)
			require.NoError(t, err)
			for rows.Next() {
				var id, user, status string
				require.NoError(t, rows.Scan(&id, &user, &status))
				require.Equal(t, created[user], id, "MySQL's order of %s is the one answered 201", user)
				require.Equal(t, "paid", status)
			}
			require.NoError(t, rows.Err())
			rows.Close()

			// Redis: every refused order was undone, the buyers are the
			// 201s, and the units sold are the stock.
			eventually(t, 10*time.Second, func() bool {
				n, err := s.Redis.HLen(ctx, k.Pending).Result()
				return err == nil && n == 0
			}, "no order left pending")
			buyers, err := s.Redis.HGetAll(ctx, k.Buyers).Result()
			require.NoError(t, err)
			require.Equal(t, created, buyers)
			used, err := s.Redis.HLen(ctx, k.JTI).Result()
			require.NoError(t, err)
			require.EqualValues(t, stock, used, "used tickets")
			u := redisUnits(t, s, saleID)
			require.Equal(t, stock, u["sold"])
			require.Zero(t, u["held"])
			if tt.corrupt == 0 {
				require.Zero(t, u["remaining"])
				requireUnitsAddUp(t, u)
				sum := summary(t, s, saleID)
				require.Equal(t, true, sum["consistent"], "summary: %v", sum)
				require.EqualValues(t, stock, sum["sold"])
				require.EqualValues(t, stock, sum["orders_total"])
			} else {
				// Redis is still wrong by the units it invented; the summary
				// says so rather than hiding it.
				require.Equal(t, tt.corrupt-stock, u["remaining"])
				sum := summary(t, s, saleID)
				require.Equal(t, false, sum["consistent"], "summary: %v", sum)
				require.EqualValues(t, stock, sum["mysql"].(map[string]any)["paid"])
				require.EqualValues(t, stock, sum["orders_total"], "orders the guard refused never existed")
			}
			requireSoldOutState(t, s, saleID)
		})
	}
}

// TestCheckoutStormPerUser: per_user_limit 2, and some shoppers fire three
// checkouts at once, each with a different valid ticket. Nobody ends with
// more than one live order; with stock to spare each shopper gets exactly
// one.
func TestCheckoutStormPerUser(t *testing.T) {
	t.Parallel()
	const users, greedy = 150, 50 // the first 50 users fire 3 tickets each
	tests := []struct {
		name  string
		stock int
	}{
		{name: "stock to spare", stock: 1000},
		{name: "stock runs out", stock: 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.Start(t)
			saleID := newSale(t, s, map[string]any{"stock": tt.stock, "per_user_limit": 2})
			var shots []shot
			multi := map[string]bool{}
			for i := range users {
				user := fmt.Sprintf("pu-%03d", i)
				n := 1
				if i < greedy {
					n = 3
					multi[user] = true
				}
				for j := range n {
					qty := 1 + (i+j)%2
					shots = append(shots, shot{user: user, ticket: s.Ticket(saleID, user, 5*time.Minute),
						body: fmt.Appendf(nil, `{"quantity":%d}`, qty)})
				}
			}

			answers := fire(t, s, saleID, shots)

			created := map[string]string{}
			retried := 0
			for _, a := range answers {
				switch {
				case a.status == http.StatusCreated:
					require.NotContains(t, created, a.user, "a second order for %s", a.user)
					created[a.user] = a.order
				case a.status == http.StatusConflict && a.code == "already_bought":
				case a.status == http.StatusGone && a.code == "sold_out":
					require.Less(t, tt.stock, 1000, "sold out with stock to spare: %s", a.body)
				case a.status == http.StatusServiceUnavailable && a.code == "unavailable":
					// The shopper's other checkout was still being written:
					// "retry", never a promise of an order that may yet fail.
					require.True(t, multi[a.user], "503 for %s, who fired once: %s", a.user, a.body)
					require.Contains(t, string(a.body), "still being written")
					require.NotEmpty(t, a.retry, "503 without Retry-After")
					retried++
				default:
					t.Fatalf("user %s: unexpected %d %s", a.user, a.status, a.body)
				}
			}
			if tt.stock == 1000 {
				require.Len(t, created, users, "each shopper buys exactly once")
			}
			t.Logf("%d answers 503 (the shopper's other order in flight)", retried)

			rows, err := s.DB.Query(`SELECT user_id, COUNT(*), SUM(quantity) FROM orders
				WHERE sale_id = ? AND status IN ('held','paid') GROUP BY user_id`, saleID)
			require.NoError(t, err)
			defer rows.Close()
			live, units := 0, 0
			for rows.Next() {
				var user string
				var n, q int
				require.NoError(t, rows.Scan(&user, &n, &q))
				require.Equal(t, 1, n, "live orders of %s", user)
				require.LessOrEqual(t, q, 2, "units of %s", user)
				require.Contains(t, created, user)
				live++
				units += q
			}
			require.NoError(t, rows.Err())
			require.Equal(t, len(created), live)
			require.LessOrEqual(t, units, tt.stock, "never oversold")
			require.Equal(t, live, orderRows(t, s, saleID), "no other order row")

			eventually(t, 10*time.Second, func() bool {
				n, err := s.Redis.HLen(context.Background(), s.Keys.Sale(saleID).Pending).Result()
				return err == nil && n == 0
			}, "no order left pending")
			u := redisUnits(t, s, saleID)
			requireUnitsAddUp(t, u)
			require.Equal(t, units, u["sold"])
			sold, _ := saleRow(t, s, saleID)
			require.Equal(t, units, sold)
			sum := summary(t, s, saleID)
			require.Equal(t, true, sum["consistent"], "summary: %v", sum)
		})
	}
}
