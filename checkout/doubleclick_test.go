package checkout_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestCheckoutDoubleClicks: shoppers fire one ticket several times at once
// (a double click, two tabs, a retry with a fresh Idempotency-Key). No store
// is down, so no answer is a 5xx: the second use waits for the first one's
// order and answers what it is (DESIGN.md, "A second use of a ticket").
func TestCheckoutDoubleClicks(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		tests := []struct {
			name          string
			users, clicks int // the first clickers users fire one ticket clicks times
			clickers      int
			stock         int
			keys          bool // each click with its own Idempotency-Key
		}{
			{name: "200 users race 20 units, 40 click three times with new keys", users: 200, clickers: 40, clicks: 3, stock: 20, keys: true},
			{name: "10 users click six times", users: 10, clickers: 10, clicks: 6, stock: 100},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				s := b.Start(t)
				saleID := newSale(t, s, map[string]any{"stock": tt.stock})
				client := stormClient(t)
				url := s.URL + checkoutPath(saleID)
				type click struct {
					user string
					a    answer
				}
				var clicks []*click
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range tt.users {
					user := fmt.Sprintf("dc-%03d", i)
					tok := s.Ticket(saleID, user, 5*time.Minute)
					n := 1
					if i < tt.clickers {
						n = tt.clicks
					}
					for j := range n {
						c := &click{user: user}
						clicks = append(clicks, c)
						cl := client
						if tt.keys {
							cl = withKey(client, fmt.Sprintf("k-%d", j))
						}
						wg.Go(func() {
							<-start
							c.a = send(cl, "POST", url, tok, []byte(`{"quantity":1}`))
						})
					}
				}
				close(start)
				wg.Wait()

				bought := map[string]int{}
				for _, c := range clicks {
					a := c.a
					require.NoError(t, a.err, "user %s", c.user)
					require.Less(t, a.status, 500, "no 5xx without a store fault: user %s got %d %s", c.user, a.status, a.body)
					switch {
					case a.status == http.StatusCreated:
						bought[c.user]++
					case a.status == http.StatusUnauthorized && a.code == "ticket_used":
					case a.status == http.StatusConflict && a.code == "already_bought":
					case a.status == http.StatusGone && a.code == "sold_out":
						require.Less(t, tt.stock, tt.users, "sold out with stock to spare: %s", a.body)
					default:
						t.Fatalf("user %s: unexpected %d %s", c.user, a.status, a.body)
					}
				}
				for user, n := range bought {
					require.Equal(t, 1, n, "orders of %s", user)
				}
				require.Len(t, bought, min(tt.stock, tt.users))
				count, units := liveOrders(t, s, saleID)
				require.Equal(t, len(bought), count)
				require.Equal(t, len(bought), units)
				sum := summary(t, s, saleID)
				require.Equal(t, true, sum["consistent"], "summary: %v", sum)
			})
		}
	})
}
