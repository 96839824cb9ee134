package multinode_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestLiveControlAcrossNodes: the operator steers through a node that is
// not the admitter leader. A rate raised from 0.5/s to 40/s shows in the
// admissions within one second (Redis time), and a max_active lowered to
// the live count stops admissions at the leader's next tick.
func TestLiveControlAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two flashsale processes; skipped with -short")
	}
	ctx := context.Background()
	c := newCluster(t, 2)
	procs := c.alive()
	saleID := c.createSale(procs[0], map[string]any{"admission_rate": 0.5, "stock": 1000, "max_active": 1000})
	users := make([]string, 150)
	for i := range users {
		users[i] = fmt.Sprintf("c%03d-%s", i, saleID)
	}
	c.joinAll(saleID, users, procs)

	var leader *proc
	poll(t, 5*time.Second, func() bool { leader = c.leader(saleID); return leader != nil }, "a leader")
	other := procs[0]
	if other == leader {
		other = procs[1]
	}
	poll(t, 5*time.Second, func() bool { return c.stat(saleID, "admitted_total") >= 1 }, "the first admission at 0.5/s")

	// the raise, sent to the other node
	raisedAt := c.redisMS()
	c.patch(other, saleID, map[string]any{"admission_rate": 40})
	poll(t, 5*time.Second, func() bool { return c.redisMS() >= raisedAt+2000 }, "2 s after the raise")
	var first int64
	inWindow := 0
	for _, a := range c.admissions(saleID) {
		if a.ms > raisedAt {
			if first == 0 {
				first = a.ms
			}
			if a.ms <= raisedAt+2000 {
				inWindow++
			}
		}
	}
	require.Positive(t, first, "admissions after the raise")
	require.LessOrEqual(t, first-raisedAt, int64(1000), "the new rate acts within a tick")
	// 2 s at 40/s, plus at most a one-second burst: 80 to 120, and far
	// above the 1 or 2 that 0.5/s would have admitted
	require.GreaterOrEqual(t, inWindow, 60, "admissions in the 2 s after the raise")
	require.LessOrEqual(t, inWindow, 125, "admissions in the 2 s after the raise")

	// the cap, sent to the other node: max_active = what is live now
	k := c.ks.Sale(saleID)
	live := c.rdb.ZCard(ctx, k.Adm).Val()
	cappedAt := c.redisMS()
	status, m := c.do(other, "PATCH", "/api/v1/admin/sales/"+saleID, c.admin, map[string]any{"max_active": live})
	require.Equal(t, http.StatusOK, status, "%v", m)
	poll(t, 5*time.Second, func() bool { return c.redisMS() >= cappedAt+2000 }, "2 s after the cap")
	late := 0
	for _, a := range c.admissions(saleID) {
		if a.ms > cappedAt+1000 {
			late++
		}
	}
	require.Zero(t, late, "no admission a tick after max_active was lowered to the live count")
	require.LessOrEqual(t, c.rdb.ZCard(ctx, k.Adm).Val(), live+40, "live tickets: at most one tick in flight over the cap")
	require.Less(t, c.stat(saleID, "admitted_total"), int64(len(users)), "the queue never ran dry")
}
