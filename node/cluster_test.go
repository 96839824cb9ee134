package node_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestRedisCluster runs a sale's whole life on the local 3-master Redis
// Cluster (--redis-cluster): sales spread over the masters; joins, the
// admitter, the shared rate limits (one call per key), a checkout storm
// that sells the stock exactly once, holds paid and cancelled, a socket
// that hears the sale resume, a ban, a loss of the sale's keys rebuilt
// from MySQL, and a reconciliation that finds Redis and MySQL agreeing.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	s := testenv.StartCluster(t, func(c *node.Config) {
		c.IPRate, c.IPBurst, c.UserRate, c.UserBurst = 1000, 1000, 100, 100
	})
	rdb := s.Redis.(*redis.ClusterClient)
	ctx := context.Background()

	// sales spread over the masters
	masterOf := map[string]string{}
	masters := map[string]bool{}
	var ids []string
	for range 8 {
		id := s.CreateSale(t, map[string]any{"stock": 20, "admission_rate": 1000, "max_active": 100, "hold_ttl_seconds": 600})["id"].(string)
		ids = append(ids, id)
		m, err := rdb.MasterForKey(ctx, s.Keys.Sale(id).Cfg)
		require.NoError(t, err)
		masterOf[id] = m.Options().Addr
		masters[masterOf[id]] = true
	}
	require.GreaterOrEqual(t, len(masters), 2, "8 sales on one master: the hash tags do not spread them")
	saleID := ids[0]
	// two paused sales on two masters
	paused := []string{ids[1]}
	for _, id := range ids[2:] {
		if masterOf[id] != masterOf[ids[1]] {
			paused = append(paused, id)
			break
		}
	}
	require.Len(t, paused, 2)

	// a socket in each paused sale hears it resume (the events of sales on
	// several masters are read one stream a command)
	var sockets []*websocket.Conn
	for _, id := range paused {
		require.Equal(t, http.StatusOK, s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "paused"}).Status)
		j := s.Do(t, "POST", "/api/v1/sales/"+id+"/join", s.UserToken(t, "listener"), nil)
		require.Equal(t, http.StatusOK, j.Status, "%s", j.Body)
		ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+id+"/ws?qt="+j.JSON(t)["queue_token"].(string), nil)
		require.NoError(t, err)
		defer ws.Close()
		var frame map[string]any
		require.NoError(t, ws.ReadJSON(&frame))
		sockets = append(sockets, ws)
	}
	for i, id := range paused {
		require.Equal(t, http.StatusOK, s.Do(t, "PATCH", "/api/v1/admin/sales/"+id, s.AdminToken, map[string]any{"state": "open"}).Status)
		ws := sockets[i]
		require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
		var frame map[string]any
		for frame["type"] != "open" && frame["type"] != "admitted" {
			frame = nil
			require.NoError(t, ws.ReadJSON(&frame), "the resume of sale %d reaches its socket", i)
		}
	}

	// the storm: 60 shoppers join for 20 units; the admitter lets in 20
	// (never more than the stock), and each of them clicks Buy twice at
	// once: the stock sells exactly once
	const shoppers = 60
	qts := make([]string, shoppers)
	var wg sync.WaitGroup
	for i := range shoppers {
		wg.Go(func() {
			j := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, fmt.Sprintf("storm-%d", i)), nil)
			if j.Status != http.StatusOK {
				t.Errorf("join %d: %d %s", i, j.Status, j.Body)
				return
			}
			qts[i] = j.JSON(t)["queue_token"].(string)
		})
	}
	wg.Wait()
	tickets := map[int]string{}
	testenv.Eventually(t, 20*time.Second, func() bool {
		for i, qt := range qts {
			if _, ok := tickets[i]; ok {
				continue
			}
			r := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			if tok, _ := r.JSON(t)["ticket"].(string); tok != "" {
				tickets[i] = tok
			}
		}
		return len(tickets) >= 20
	}, "20 shoppers admitted")
	require.Len(t, tickets, 20, "never more admitted than the stock")
	var created atomic.Int64
	orders := make(chan string, 2*shoppers)
	for i, tok := range tickets {
		for click := range 2 {
			wg.Go(func() {
				r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, `{"quantity":1}`,
					"Idempotency-Key", fmt.Sprintf("k-%d-%d", i, click))
				switch r.Status {
				case http.StatusCreated:
					created.Add(1)
					orders <- r.JSON(t)["id"].(string)
				case http.StatusUnauthorized, http.StatusConflict:
					// the other click: ticket_used (or already_bought)
					if c := r.Code(t); c != "ticket_used" && c != "already_bought" {
						t.Errorf("checkout %d's second click: %d %s", i, r.Status, r.Body)
					}
				default:
					t.Errorf("checkout %d: %d %s", i, r.Status, r.Body)
				}
			})
		}
	}
	wg.Wait()
	close(orders)
	require.EqualValues(t, 20, created.Load(), "the stock sold exactly once")
	var held []string
	for id := range orders {
		held = append(held, id)
	}
	for _, id := range held[:5] {
		require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+id+"/confirm", s.ServiceToken, nil).Status)
	}
	for _, id := range held[5:10] {
		require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+id+"/cancel", s.AdminToken, nil).Status)
	}
	summary := func() map[string]any {
		return s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/summary", s.AdminToken, nil).JSON(t)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		sum := summary()
		return sum["consistent"] == true && sum["sold"] == float64(5) && sum["held"] == float64(10)
	}, "summary: 5 sold, 10 held, consistent: %v", summary())

	// a ban takes the user's place at once
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/sales/"+ids[7]+"/join", s.UserToken(t, "scalper"), nil).Status)
	require.Equal(t, http.StatusCreated, s.Do(t, "POST", "/api/v1/admin/bans", s.AdminToken, map[string]any{"user_id": "scalper"}).Status)
	testenv.Eventually(t, 3*time.Second, func() bool {
		return rdb.ZScore(ctx, s.Keys.Sale(ids[7]).Q, "scalper").Err() == redis.Nil
	}, "the banned user's place is gone")

	// the sale's keys are lost: rebuilt from MySQL on first use
	k := s.Keys.Sale(saleID)
	for _, key := range k.All() {
		require.NoError(t, rdb.Del(ctx, key).Err())
	}
	testenv.Eventually(t, 15*time.Second, func() bool {
		r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "late"), nil)
		return r.Status == http.StatusOK || r.Status == http.StatusGone
	}, "the sale answers again after the rebuild")
	testenv.Eventually(t, 15*time.Second, func() bool {
		sum := summary()
		return sum["consistent"] == true && sum["sold"] == float64(5) && sum["held"] == float64(10) && sum["remaining"] == float64(5)
	}, "the rebuilt sale agrees with MySQL: %v", summary())
	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.Empty(t, rep.Remaining, "reconcile finds Redis and MySQL agreeing")
}
