package multinode_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/faults"
)

// TestLeaderStall freezes the admitter leader (SIGSTOP) of a sale on three
// processes until its lease runs out and another process takes it over,
// lets the new leader admit, thaws the old one (which wakes up believing it
// leads) and keeps the sale running. Then, from the event stream and each
// process's own count of its admissions, it checks:
//   - the new lease has a larger fence and another holder, and the old
//     process never led again;
//   - the frozen process made exactly the admissions before its freeze and
//     the others made every one after: none came from the stale leader,
//     every admission after the takeover was made under the new fence;
//   - nobody was admitted in the gap while the frozen leader's lease ran out;
//   - the rate held across the whole run, takeover included: no 1 s window
//     holds more than rate + burst admissions (burst: one second's worth);
//   - nobody was admitted twice.
func TestLeaderStall(t *testing.T) {
	if testing.Short() {
		t.Skip("runs flashsale processes; skipped with -short")
	}
	const (
		rate    = 10
		burst   = rate // the admit script's burst: one second's admissions
		waiters = 300  // more than the run admits: the queue never runs dry
	)
	ctx := context.Background()
	c := newCluster(t, 3)
	procs := c.alive()
	// abandon_after_seconds 120: nobody is skipped for want of a socket
	// within the test's minute
	saleID := c.createSale(procs[0], map[string]any{"admission_rate": rate, "abandon_after_seconds": 120})
	c.patch(procs[0], saleID, map[string]any{"state": "paused"})
	k := c.ks.Sale(saleID)
	users := make([]string, waiters)
	for i := range users {
		users[i] = fmt.Sprintf("u%03d-%s", i, saleID)
	}
	c.joinAll(saleID, users, procs)
	c.patch(procs[1], saleID, map[string]any{"state": "open"})

	poll(t, 10*time.Second, func() bool { return c.stat(saleID, "admitted_total") >= 2*rate }, "the leader admits")
	var old *proc
	poll(t, 5*time.Second, func() bool { old = c.leader(saleID); return old != nil },
		"a process logs the current lease as its own")
	before := old.leaseOf(saleID)

	faults.Freeze(t, old.name, old.cmd.Process)
	stopMS := c.redisMS()
	pttl := c.rdb.PTTL(ctx, k.Lease).Val()
	t.Logf("froze %s (lease %s, %s left) at %d", old.name, before, pttl, stopMS)

	var after string
	poll(t, 10*time.Second, func() bool {
		after = c.rdb.Get(ctx, k.Lease).Val()
		return after != "" && after != before
	}, "another process takes the lease of the frozen one")
	require.NotEqual(t, holderOf(before), holderOf(after), "a new holder")
	require.Greater(t, fenceOf(t, after), fenceOf(t, before), "a larger fence: %s → %s", before, after)
	var leader *proc
	poll(t, 5*time.Second, func() bool { leader = c.leader(saleID); return leader != nil },
		"a living process logs lease %s", after)
	require.NotSame(t, old, leader)
	// the new leader admits for a while before the old one wakes up
	poll(t, 10*time.Second, func() bool { return countAfter(c.admissions(saleID), stopMS) >= 2*rate },
		"the new leader admits")

	faults.Thaw(t, old.name, old.cmd.Process)
	resumeMS := c.redisMS()
	t.Logf("%s took over with %s; thawed %s at %d", leader.name, after, old.name, resumeMS)
	// the old process runs beside the new leader for a few seconds: it
	// would admit at its next tick if nothing fenced it
	poll(t, 10*time.Second, func() bool { return c.redisMS() >= resumeMS+3000 }, "3 s after the thaw")
	require.Greater(t, countAfter(c.admissions(saleID), resumeMS), 2*rate, "admissions went on after the thaw")

	// Pause (no admission after PATCH returns); each process's counter of
	// its own admissions then adds up to the stream's.
	c.patch(leader, saleID, map[string]any{"state": "paused"})
	adm := c.admissions(saleID)
	counts := map[*proc]int{}
	poll(t, 10*time.Second, func() bool {
		sum := 0
		for _, p := range procs {
			counts[p] = admittedBy(t, c, p)
			sum += counts[p]
		}
		return sum == len(adm)
	}, "the processes' admission counters add up to the %d admissions in the stream", len(adm))

	require.Equal(t, after, c.rdb.Get(ctx, k.Lease).Val(), "the lease stayed with the new leader")
	require.Equal(t, before, old.leaseOf(saleID), "the thawed process never led again")
	require.EqualValues(t, len(adm), c.stat(saleID, "admitted_total"))
	require.Less(t, len(adm), waiters, "the queue never ran dry (else the rate says nothing)")
	seen := map[string]bool{}
	for _, a := range adm {
		require.False(t, seen[a.user], "%s admitted twice", a.user)
		seen[a.user] = true
	}

	// Who admitted what. The frozen process's last admission ran at most as
	// it froze (a script it had sent); the new leader's first came after the
	// old lease ran out, pttl later: nobody admitted in between.
	edge := stopMS + 200
	for _, a := range adm {
		require.False(t, a.ms > edge && a.ms < stopMS+pttl.Milliseconds(),
			"an admission at %d, while the frozen leader's lease still ran (froze at %d, lease left %s)", a.ms, stopMS, pttl)
	}
	oldAdm := len(adm) - countAfter(adm, edge)
	require.Positive(t, oldAdm)
	require.Equal(t, oldAdm, counts[old],
		"%s made exactly the %d admissions before it froze: none after it woke (it made %d)", old.name, oldAdm, counts[old])
	for _, p := range procs {
		if p != old && p != leader {
			require.Zero(t, counts[p], "%s never led", p.name)
		}
	}
	require.Equal(t, countAfter(adm, edge), counts[leader], "%s, under fence %d, made every admission after the takeover",
		leader.name, fenceOf(t, after))
	// and the stream says so too: each admission carries its lease's fence
	for _, a := range adm {
		want := fenceOf(t, before)
		if a.ms > edge {
			want = fenceOf(t, after)
		}
		require.Equal(t, strconv.FormatInt(want, 10), a.fence, "the fence of %s's admission at %d", a.user, a.ms)
	}

	// The rate: at most rate + burst in any 1 s window of Redis time.
	worst, worstAt := 0, int64(0)
	for i, a := range adm {
		n := 0
		for _, b := range adm[i:] {
			if b.ms < a.ms+1000 {
				n++
			}
		}
		if n > worst {
			worst, worstAt = n, a.ms
		}
	}
	t.Logf("%d admitted (%d by the old leader); at most %d in 1 s (from %d)", len(adm), oldAdm, worst, worstAt)
	require.LessOrEqual(t, worst, rate+burst, "admissions in the 1 s from %d", worstAt)
}

// holderOf is the holder of a lease value "holder|fence".
func holderOf(lease string) string {
	return lease[:max(0, strings.LastIndexByte(lease, '|'))]
}

// countAfter counts the admissions after ms.
func countAfter(adm []admission, ms int64) int {
	n := 0
	for _, a := range adm {
		if a.ms > ms {
			n++
		}
	}
	return n
}

// admittedBy reads a process's own count of its admissions (its
// flashsale_admissions_total; the cluster runs one sale).
func admittedBy(t testing.TB, c *cluster, p *proc) int {
	t.Helper()
	resp, err := c.http.Get(p.url() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: GET /metrics", p.name)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "flashsale_admissions_total "); ok {
			n, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, "%s: %q", p.name, sc.Text())
			return int(n)
		}
	}
	require.NoError(t, sc.Err())
	t.Fatalf("%s: no flashsale_admissions_total in /metrics", p.name)
	return 0
}
