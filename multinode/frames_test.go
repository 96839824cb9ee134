package multinode_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFramesCrossNodes runs two processes with one shopper's socket on each:
// both get their admitted frame (one of them on the node that is not the
// admitter leader), and a PATCH sent to one node reaches the sockets of
// both as state frames within 1 s; closed ends both sockets with 4410.
func TestFramesCrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two flashsale processes; skipped with -short")
	}
	c := newCluster(t, 2)
	procs := c.alive()
	saleID := c.createSale(procs[0], map[string]any{"admission_rate": 10})
	c.patch(procs[0], saleID, map[string]any{"state": "paused"})

	shoppers := c.joinAll(saleID, []string{"ann", "bob"}, procs)
	for i, s := range shoppers {
		s.connect(c, saleID, procs[i])
		t.Cleanup(s.stop)
	}
	for _, s := range shoppers {
		poll(t, 5*time.Second, func() bool { _, ok := s.find("position", 0); return ok }, "%s's first frame", s.user)
		f, _ := s.find("position", 0)
		require.Equal(t, true, f.m["paused"], "%s: %v", s.user, f.m)
	}

	// expect waits for a frame of typ on every socket, from index from on,
	// and returns how long after sent the last one arrived.
	expect := func(typ string, from []int, sent time.Time, within time.Duration) time.Duration {
		t.Helper()
		var worst time.Duration
		for i, s := range shoppers {
			poll(t, within, func() bool { _, ok := s.find(typ, from[i]); return ok },
				"%s's %q frame on %s", s.user, typ, procs[i].name)
			f, _ := s.find(typ, from[i])
			require.Equal(t, procs[i].name, f.node, "%s stayed on its node", s.user)
			worst = max(worst, f.at.Sub(sent))
		}
		return worst
	}
	marks := func() []int { return []int{shoppers[0].count(), shoppers[1].count()} }

	from, sent := marks(), time.Now()
	c.patch(procs[1], saleID, map[string]any{"state": "open"})
	d := expect("open", from, sent, time.Second)
	expect("admitted", from, sent, 5*time.Second)
	var leader *proc
	poll(t, 5*time.Second, func() bool { leader = c.leader(saleID); return leader != nil }, "the leader")
	for i, s := range shoppers {
		f, _ := s.find("admitted", from[i])
		claims, err := c.issuer.VerifyTicket(f.m["ticket"].(string), saleID, time.Now())
		require.NoError(t, err)
		require.Equal(t, s.user, claims.Subject)
		if procs[i] != leader {
			t.Logf("%s's admitted frame came from %s, not the leader %s", s.user, procs[i].name, leader.name)
		}
	}
	t.Logf("open: %s", d)

	for i, state := range []string{"paused", "open"} {
		from, sent = marks(), time.Now()
		c.patch(procs[i%2], saleID, map[string]any{"state": state})
		t.Logf("%s: %s", state, expect(state, from, sent, time.Second))
	}

	from, sent = marks(), time.Now()
	c.patch(procs[0], saleID, map[string]any{"state": "closed"})
	t.Logf("closed: %s", expect("closed", from, sent, time.Second))
	for _, s := range shoppers {
		poll(t, time.Second, func() bool { return s.finalCode() == 4410 }, "%s's socket closed with 4410", s.user)
		// the frame before the close is the closed one
		s.mu.Lock()
		last := s.frames[len(s.frames)-1]
		s.mu.Unlock()
		require.Equal(t, "closed", last.m["type"])
	}
}
