package multinode_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Nobody loses their place: not when the node holding their socket dies
// and restarts, not when Redis loses the sale's keys.

// queueScores reads the sale's waiting set: user → place.
func (c *cluster) queueScores(saleID string) map[string]float64 {
	c.t.Helper()
	zs, err := c.rdb.ZRangeWithScores(context.Background(), c.ks.Sale(saleID).Q, 0, -1).Result()
	require.NoError(c.t, err)
	out := make(map[string]float64, len(zs))
	for _, z := range zs {
		out[z.Member.(string)] = z.Score
	}
	return out
}

// waitersOnline connects every shopper (shopper i to procs[i%len]) and
// waits for each one's first position frame.
func waitersOnline(t *testing.T, c *cluster, saleID string, shoppers []*shopper, procs []*proc) {
	t.Helper()
	for i, s := range shoppers {
		s.connect(c, saleID, procs[i%len(procs)])
		t.Cleanup(s.stop)
	}
	for _, s := range shoppers {
		poll(t, 10*time.Second, func() bool { _, ok := s.find("position", 0); return ok }, "%s's first frame", s.user)
	}
}

// requirePositionsNeverRose checks every position frame a shopper got.
func requirePositionsNeverRose(t *testing.T, shoppers []*shopper) {
	t.Helper()
	for _, s := range shoppers {
		s.mu.Lock()
		last := float64(0)
		for _, f := range s.frames {
			if f.m["type"] != "position" {
				continue
			}
			pos, _ := f.m["position"].(float64)
			require.True(t, last == 0 || pos <= last, "%s's position rose from %v to %v", s.user, last, pos)
			last = pos
		}
		s.mu.Unlock()
	}
}

// requireAdmittedInPlaceOrder opens the sale and waits until every shopper
// is admitted, exactly once, in the order of their places, with nobody
// skipped.
func requireAdmittedInPlaceOrder(t *testing.T, c *cluster, p *proc, saleID string, shoppers []*shopper) {
	t.Helper()
	c.patch(p, saleID, map[string]any{"state": "open", "admission_rate": 50})
	poll(t, 20*time.Second, func() bool { return len(c.admissions(saleID)) >= len(shoppers) }, "everyone admitted")
	byUser := map[string]*shopper{}
	for _, s := range shoppers {
		byUser[s.user] = s
	}
	seen := map[string]bool{}
	// the first len(shoppers) admissions (a newcomer behind them may follow)
	for i, a := range c.admissions(saleID)[:len(shoppers)] {
		require.False(t, seen[a.user], "%s admitted twice", a.user)
		seen[a.user] = true
		s := byUser[a.user]
		require.NotNil(t, s, "admitted an unknown user %q", a.user)
		require.EqualValues(t, i+1, s.place, "admission %d is %s, who joined at position %d", i+1, a.user, s.place)
	}
	require.Zero(t, c.stat(saleID, "skipped_total"), "nobody was skipped")
}

// TestNodeRestartKeepsPlaces: every waiter's socket is on one node, which
// is SIGKILLed and started again; the shoppers reconnect (to the other
// node, then some to the new one), keep their places and positions, and
// are admitted in join order without a skip.
func TestNodeRestartKeepsPlaces(t *testing.T) {
	if testing.Short() {
		t.Skip("runs flashsale processes; skipped with -short")
	}
	c := newCluster(t, 2)
	procs := c.alive()
	saleID := c.createSale(procs[0], map[string]any{"admission_rate": 5, "abandon_after_seconds": 10})
	c.patch(procs[0], saleID, map[string]any{"state": "paused"})

	users := make([]string, 40)
	for i := range users {
		users[i] = fmt.Sprintf("r%02d-%s", i, saleID)
	}
	shoppers := c.joinAll(saleID, users, procs)
	waitersOnline(t, c, saleID, shoppers, procs[:1])
	before := c.queueScores(saleID)
	require.Len(t, before, len(users))

	procs[0].kill()
	for _, s := range shoppers {
		poll(t, 10*time.Second, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.conns >= 2 },
			"%s reconnects to a living node", s.user)
	}
	restarted := c.start(binary(t), "node0-restarted")
	restarted.awaitServing(t)
	// a shopper who polls the restarted node sees the same position
	for _, s := range shoppers[:5] {
		status, m := c.do(restarted, "GET", "/api/v1/sales/"+saleID+"/status", s.qt, nil)
		require.Equal(t, http.StatusOK, status, "%s: %v", s.user, m)
		require.EqualValues(t, s.place, m["position"], "%s's position after the restart", s.user)
	}
	require.Equal(t, before, c.queueScores(saleID), "every place is kept")

	requireAdmittedInPlaceOrder(t, c, restarted, saleID, shoppers)
	requirePositionsNeverRose(t, shoppers)
}

// TestRedisLossPutsBackWaiters: Redis loses every key of the deployment
// (the test's key prefix) while 60 shoppers wait with sockets on two nodes
// and nobody makes a request. The nodes notice on their own, the sale is
// rebuilt, and each node puts back the waiters it holds at their places;
// a newcomer waits (503) meanwhile and then lands behind all of them;
// positions never rise; everyone is admitted in the old order.
func TestRedisLossPutsBackWaiters(t *testing.T) {
	if testing.Short() {
		t.Skip("runs flashsale processes; skipped with -short")
	}
	ctx := context.Background()
	c := newCluster(t, 2)
	procs := c.alive()
	saleID := c.createSale(procs[0], map[string]any{"admission_rate": 5, "abandon_after_seconds": 10})
	c.patch(procs[0], saleID, map[string]any{"state": "paused"})

	users := make([]string, 60)
	for i := range users {
		users[i] = fmt.Sprintf("l%02d-%s", i, saleID)
	}
	shoppers := c.joinAll(saleID, users, procs)
	waitersOnline(t, c, saleID, shoppers, procs)
	before := c.queueScores(saleID)
	require.Len(t, before, len(users))

	// the loss: every key under the test's prefix, as a FLUSHALL would
	keys, err := c.rdb.Keys(ctx, c.ks.Prefix+":*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	require.NoError(t, c.rdb.Del(ctx, keys...).Err())
	lost := time.Now()

	poll(t, 15*time.Second, func() bool { return len(c.queueScores(saleID)) == len(users) }, "every waiter put back")
	took := time.Since(lost)
	require.Equal(t, before, c.queueScores(saleID), "every waiter is back at their own place")
	require.EqualValues(t, len(users), c.stat(saleID, "requeued_total"))

	// a newcomer: 503 with Retry-After while nodes put waiters back, then
	// a place behind every one of them
	var answer map[string]any
	poll(t, 15*time.Second, func() bool {
		status, b, err := c.tryDo(procs[1], "POST", "/api/v1/sales/"+saleID+"/join", c.userToken("newcomer-"+saleID), nil)
		require.NoError(t, err)
		require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, status, "%s", b)
		if status == http.StatusOK {
			answer = map[string]any{}
			require.NoError(t, json.Unmarshal(b, &answer))
		}
		return status == http.StatusOK
	}, "the newcomer joins")
	require.EqualValues(t, len(users)+1, answer["position"], "the newcomer is behind everyone put back: %v", answer)

	requireAdmittedInPlaceOrder(t, c, procs[0], saleID, shoppers)
	requirePositionsNeverRose(t, shoppers)
	t.Logf("%d waiters put back %.2f s after the loss", len(users), took.Seconds())
}
