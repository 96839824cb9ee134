package waitingroom_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// startAdmitter runs an Admitter on the env's stores until the test ends.
func (e *storeEnv) startAdmitter(t *testing.T, holder string) *waitingroom.Admitter {
	t.Helper()
	a := waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Holder: holder, Logger: quiet}, e.rdb, e.store)
	a.Start(context.Background())
	t.Cleanup(a.Stop)
	return a
}

func (e *storeEnv) admitted(t *testing.T, saleID string) int64 {
	t.Helper()
	return hint(t, e.rdb, e.ks.Sale(saleID).Stats, "admitted_total")
}

// every runs fn every period until it returns false or d has passed (a
// sampling loop: it waits on a ticker, never a sleep).
func every(period, d time.Duration, fn func() bool) {
	tick := time.NewTicker(period)
	defer tick.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) && fn() {
		<-tick.C
	}
}

// TestAdmitterRate: at 20/s the admitter admits 200 (±10%) in 10 s of
// real time, and at no sampled instant more than the rate allows.
func TestAdmitterRate(t *testing.T) {
	t.Parallel()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newStoreEnvOn(t, rdb, ks)
		s := e.createSale(t, func(r *sale.CreateRequest) {
			r.AdmissionRate, r.MaxActive, r.Stock = ptr(20.0), ptr(100_000), ptr(100_000)
		})
		q := startQueue(t, e.rdb, e.ks)
		joinMany(t, q, s.ID, "u", 400)
		e.startAdmitter(t, "")

		// past the first second's burst
		testenv.Eventually(t, 5*time.Second, func() bool { return e.admitted(t, s.ID) >= 20 }, "the burst")
		t0, n0 := time.Now(), e.admitted(t, s.ID)
		every(100*time.Millisecond, 10*time.Second, func() bool {
			n, el := e.admitted(t, s.ID)-n0, time.Since(t0).Seconds()
			// GCRA: at most rate × elapsed plus the burst, from any instant
			require.LessOrEqual(t, float64(n), 20*el+20, "%d admitted in %.2f s", n, el)
			return true
		})
		n, el := e.admitted(t, s.ID)-n0, time.Since(t0)
		require.GreaterOrEqual(t, el, 10*time.Second)
		require.InDelta(t, 200, float64(n), 20, "admitted in %s", el)
		require.Less(t, el, 11*time.Second)
	})
}

// TestAdmitterLimits: while admitting, live tickets never exceed max_active
// and reservations never exceed the stock; capacity that expired tickets
// free is used again.
func TestAdmitterLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		stock, active int
		limit         int64 // live tickets at most
	}{
		{"max_active 5", 1000, 5, 5},
		{"stock 3", 3, 100, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				e := newStoreEnvOn(t, rdb, ks)
				s := e.createSale(t, func(r *sale.CreateRequest) {
					r.Stock, r.MaxActive, r.AdmissionRate, r.TicketTTL = ptr(tc.stock), ptr(tc.active), ptr(50.0), ptr(10)
				})
				k := e.ks.Sale(s.ID)
				q := startQueue(t, e.rdb, e.ks)
				joinMany(t, q, s.ID, "u", 30)
				e.startAdmitter(t, "")

				// tickets live 9-10 s; within 15 s a second wave is admitted
				var maxLive, samples int64
				ok := false
				every(20*time.Millisecond, 15*time.Second, func() bool {
					pipe := e.rdb.Pipeline()
					card := pipe.ZCard(ctx, k.Adm)
					live := pipe.ZCount(ctx, k.Adm, "("+strconv.FormatInt(time.Now().UnixMilli(), 10), "+inf")
					units := pipe.HMGet(ctx, k.Units, "remaining", "reserved")
					_, err := pipe.Exec(ctx)
					require.NoError(t, err)
					samples++
					maxLive = max(maxLive, live.Val())
					require.LessOrEqual(t, card.Val(), tc.limit, "tickets in the lease set")
					require.LessOrEqual(t, live.Val(), tc.limit, "live tickets")
					rem, res := atoi(t, units.Val()[0]), atoi(t, units.Val()[1])
					require.LessOrEqual(t, res, rem, "reserved ≤ remaining")
					require.LessOrEqual(t, res, int64(tc.stock))
					ok = e.admitted(t, s.ID) >= 2*tc.limit
					return !ok
				})
				require.True(t, ok, "a second wave after the first tickets expired (admitted %d)", e.admitted(t, s.ID))
				require.Equal(t, tc.limit, maxLive, "the limit is reached")
				require.Greater(t, samples, int64(100))
				require.GreaterOrEqual(t, hint(t, e.rdb, k.Stats, "tickets_expired_total"), tc.limit)
				require.EqualValues(t, tc.stock, hint(t, e.rdb, k.Units, "remaining"), "nothing sold")
			})
		})
	}
}

// TestAdmitterTwoNodes: two admitters on one sale share its rate (one
// leads), and when the leader stops the other takes over and goes on.
func TestAdmitterTwoNodes(t *testing.T) {
	t.Parallel()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newStoreEnvOn(t, rdb, ks)
		s := e.createSale(t, func(r *sale.CreateRequest) {
			r.AdmissionRate, r.MaxActive, r.Stock = ptr(10.0), ptr(100_000), ptr(100_000)
		})
		q := startQueue(t, e.rdb, e.ks)
		joinMany(t, q, s.ID, "u", 300)
		a := e.startAdmitter(t, "node-a")
		b := e.startAdmitter(t, "node-b")
		leaders := func() []*waitingroom.Admitter {
			var out []*waitingroom.Admitter
			for _, x := range []*waitingroom.Admitter{a, b} {
				if _, ok := x.Leading()[s.ID]; ok {
					out = append(out, x)
				}
			}
			return out
		}

		testenv.Eventually(t, 5*time.Second, func() bool { return e.admitted(t, s.ID) >= 10 }, "the burst")
		t0, n0 := time.Now(), e.admitted(t, s.ID)
		var leader *waitingroom.Admitter
		every(20*time.Millisecond, 5*time.Second, func() bool {
			l := leaders()
			require.Len(t, l, 1, "exactly one leader")
			if leader == nil {
				leader = l[0]
			}
			require.Same(t, leader, l[0], "the leader holds on")
			return true
		})
		n, el := e.admitted(t, s.ID)-n0, time.Since(t0)
		require.InDelta(t, 50, float64(n)*5/el.Seconds(), 7.5, "%d admitted in %s", n, el)

		old := leader.Leading()[s.ID]
		require.Equal(t, old, e.rdb.Get(context.Background(), e.ks.Sale(s.ID).Lease).Val())
		other := a
		if leader == a {
			other = b
		}
		leader.Stop()
		stopped := time.Now()
		require.Empty(t, leader.Leading())
		testenv.Eventually(t, 5*time.Second, func() bool { _, ok := other.Leading()[s.ID]; return ok }, "takeover")
		took := time.Since(stopped)
		cur := other.Leading()[s.ID]
		require.True(t, strings.HasPrefix(cur, other.Holder()+"|"), "lease %q", cur)
		require.Greater(t, fence(t, cur), fence(t, old), "a new leader, a larger fence")
		n1 := e.admitted(t, s.ID)
		testenv.Eventually(t, 5*time.Second, func() bool { return e.admitted(t, s.ID) >= n1+5 }, "admission goes on")
		t.Logf("takeover in %s", took)
	})
}

// TestAdmitterPause: a pause stops admission at once (the next admit step
// reads it); resume restarts it.
func TestAdmitterPause(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newStoreEnvOn(t, rdb, ks)
		s := e.createSale(t, func(r *sale.CreateRequest) {
			r.AdmissionRate, r.MaxActive, r.Stock = ptr(20.0), ptr(100_000), ptr(100_000)
		})
		k := e.ks.Sale(s.ID)
		q := startQueue(t, e.rdb, e.ks)
		joinMany(t, q, s.ID, "u", 200)
		e.startAdmitter(t, "")
		testenv.Eventually(t, 5*time.Second, func() bool { return e.admitted(t, s.ID) >= 25 }, "admitting")

		_, err := e.store.Patch(ctx, s.ID, &sale.PatchRequest{State: ptr("paused")}, time.Now())
		require.NoError(t, err)
		// the admit step is atomic and reads the state each tick: nothing after
		// Patch returned may admit
		a0, q0 := e.admitted(t, s.ID), e.rdb.ZCard(ctx, k.Q).Val()
		every(20*time.Millisecond, time.Second, func() bool {
			require.Equal(t, a0, e.admitted(t, s.ID), "admitted while paused")
			return true
		})
		require.Equal(t, q0, e.rdb.ZCard(ctx, k.Q).Val(), "waiters keep their places")
		testenv.Eventually(t, 2*time.Second, func() bool {
			tab, err := waitingroom.ParseRankTable(e.rdb.Get(ctx, k.Ranks).Val())
			if err != nil {
				return false
			}
			_, _, state, _ := tab.Header()
			return state == "paused"
		}, "the rank table says paused")

		_, err = e.store.Patch(ctx, s.ID, &sale.PatchRequest{State: ptr("open")}, time.Now())
		require.NoError(t, err)
		testenv.Eventually(t, time.Second, func() bool { return e.admitted(t, s.ID) > a0 }, "admission resumes")
	})
}

func fence(t *testing.T, lease string) int64 {
	t.Helper()
	i := strings.LastIndexByte(lease, '|')
	require.Positive(t, i, "lease %q", lease)
	n, err := strconv.ParseInt(lease[i+1:], 10, 64)
	require.NoError(t, err)
	return n
}

func atoi(t *testing.T, v any) int64 {
	t.Helper()
	s, ok := v.(string)
	require.True(t, ok, "%v", v)
	n, err := strconv.ParseInt(s, 10, 64)
	require.NoError(t, err)
	return n
}

// TestAdmitterGaugesOnlyOnLeader: the per-sale gauges are exported by the
// sale's leader only, so a sum across nodes counts each sale once; a node
// that loses or gives up the lease drops them.
func TestAdmitterGaugesOnlyOnLeader(t *testing.T) {
	t.Parallel()
	e := newStoreEnv(t)
	s := e.createSale(t, func(r *sale.CreateRequest) { r.AdmissionRate = ptr(0.001) })
	q := startQueue(t, e.rdb, e.ks)
	joinMany(t, q, s.ID, "u", 5)
	start := func(holder string) (*waitingroom.Admitter, *prometheus.Registry) {
		reg := prometheus.NewRegistry()
		a := waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Holder: holder, Logger: quiet,
			Metrics: waitingroom.NewMetrics(reg)}, e.rdb, e.store)
		a.Start(context.Background())
		t.Cleanup(a.Stop)
		return a, reg
	}
	// series counts a gauge's series; value reads the one of this sale.
	series := func(reg *prometheus.Registry, name string) (n int, value float64) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == name {
				for _, m := range mf.GetMetric() {
					n++
					value = m.GetGauge().GetValue()
				}
			}
		}
		return n, value
	}
	count := func(reg *prometheus.Registry, name string) int { n, _ := series(reg, name); return n }
	a, ma := start("node-a")
	testenv.Eventually(t, 5*time.Second, func() bool { _, ok := a.Leading()[s.ID]; return ok }, "a leads")
	testenv.Eventually(t, 5*time.Second, func() bool { return count(ma, "flashsale_queue_length") == 1 }, "a exports")
	b, mb := start("node-b")
	_ = b
	require.Zero(t, count(mb, "flashsale_queue_length"), "b does not lead: no gauge")

	a.Stop()
	require.Zero(t, count(ma, "flashsale_queue_length"), "a resigned: its gauges went with the lease")
	require.Zero(t, count(ma, "flashsale_active_tickets"))
	testenv.Eventually(t, 5*time.Second, func() bool { return count(mb, "flashsale_queue_length") == 1 }, "b took over and exports")
	_, v := series(mb, "flashsale_queue_length")
	require.EqualValues(t, e.rdb.ZCard(context.Background(), e.ks.Sale(s.ID).Q).Val(), v)
}

// TestBigQueueRanksLessOften: a sale whose queue is at least BigQueue gets
// its rank table every RankEveryBig, not every RankEvery (ranks.lua's cost
// grows with the queue); a smaller queue keeps the fast pace.
func TestBigQueueRanksLessOften(t *testing.T) {
	ctx := context.Background()
	count := func(t *testing.T, bigQueue int64) int {
		e := newStoreEnv(t)
		s := e.createSale(t, func(r *sale.CreateRequest) {
			r.AdmissionRate, r.MaxActive, r.Stock = ptr(1.0), ptr(10), ptr(100)
		})
		_, err := e.store.Patch(ctx, s.ID, &sale.PatchRequest{State: ptr("paused")}, time.Now())
		require.NoError(t, err)
		k := e.ks.Sale(s.ID)
		joinMany(t, startQueue(t, e.rdb, e.ks), s.ID, "u", 30)
		a := waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Logger: quiet, RankEvery: 20 * time.Millisecond,
			BigQueue: bigQueue, RankEveryBig: 1500 * time.Millisecond}, e.rdb, e.store)
		a.Start(ctx)
		t.Cleanup(a.Stop)
		testenv.Eventually(t, 5*time.Second, func() bool { return e.rdb.Exists(ctx, k.Ranks).Val() == 1 }, "a first table")
		seen := map[string]bool{}
		every(10*time.Millisecond, 2*time.Second, func() bool {
			if tab := e.rdb.Get(ctx, k.Ranks).Val(); tab != "" {
				seen[tab[:strings.IndexByte(tab, '|')]] = true // the table's ms
			}
			return true
		})
		return len(seen)
	}
	big := count(t, 10)
	require.LessOrEqual(t, big, 3, "30 waiters ≥ BigQueue 10: a table every 1.5 s (%d in 2 s)", big)
	small := count(t, 1000)
	require.GreaterOrEqual(t, small, 10, "30 waiters < BigQueue 1000: a table every 20 ms (%d in 2 s)", small)
}
