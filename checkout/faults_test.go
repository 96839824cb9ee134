package checkout_test

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/faults"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
)

// shopper is one user with a ticket, and every answer their checkouts got.
type shopper struct {
	user, ticket string
	answers      []answer
	took         []time.Duration
}

// last is the shopper's latest answer.
func (sh *shopper) last() answer { return sh.answers[len(sh.answers)-1] }

// checkoutAll sends one checkout for each shopper, workers at a time, and
// calls between after each answer (from the answering goroutine).
func checkoutAll(s *testenv.Server, saleID string, shoppers []*shopper, workers int, between func(n int)) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	// A connection dialled and never used holds the node's graceful
	// shutdown for 5 s (net/http counts it busy until then).
	defer client.CloseIdleConnections()
	var mu sync.Mutex
	n := 0
	next := make(chan *shopper)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for sh := range next {
				start := time.Now()
				a := send(client, "POST", s.URL+checkoutPath(saleID), sh.ticket, nil)
				mu.Lock()
				sh.answers = append(sh.answers, a)
				sh.took = append(sh.took, time.Since(start))
				n++
				k := n
				mu.Unlock()
				if between != nil {
					between(k)
				}
			}
		})
	}
	for _, sh := range shoppers {
		next <- sh
	}
	close(next)
	wg.Wait()
}

func newShoppers(s *testenv.Server, saleID, prefix string, n int) []*shopper {
	out := make([]*shopper, n)
	for i := range out {
		user := prefix + strconv.Itoa(i)
		out[i] = &shopper{user: user, ticket: s.Ticket(saleID, user, 5*time.Minute)}
	}
	return out
}

// unavailable are the shoppers whose last answer was a 503.
func unavailable(shoppers []*shopper) []*shopper {
	var out []*shopper
	for _, sh := range shoppers {
		if sh.last().status == http.StatusServiceUnavailable {
			out = append(out, sh)
		}
	}
	return out
}

// privateRedis is a Redis of the test's own, which it may flush, kill or
// restart: one redis-server, or (on the cluster backend) a private
// 3-master cluster, never the shared one other tests use.
type privateRedis struct {
	server  *faults.Redis
	cluster *faults.RedisCluster
}

// holder is the server that holds key: the one server, or the master of
// key's slot.
func (p *privateRedis) holder(t *testing.T, key string) *faults.Redis {
	t.Helper()
	if p.cluster != nil {
		return p.cluster.MasterFor(t, key)
	}
	return p.server
}

// onPrivateRedis starts a node on a private Redis of backend b's kind and
// a MySQL database of its own.
func onPrivateRedis(t *testing.T, b testenv.Backend, opts ...testenv.Options) (*privateRedis, *testenv.Server) {
	t.Helper()
	p := &privateRedis{}
	var (
		rdb redis.UniversalClient
		ks  sale.Keyspace
		url string
	)
	if b.Cluster {
		p.cluster = faults.StartRedisCluster(t)
		url = p.cluster.URL
		rdb, ks = testdb.RedisClusterOn(t, url)
	} else {
		p.server = faults.StartRedis(t)
		url = p.server.URL
		rdb, ks = testenv.RedisOn(t, url)
	}
	dsn, db := testenv.MySQL(t)
	keyPath, keys := testenv.KeyFile(t)
	on := func(c *node.Config) { c.RedisURL, c.RedisCluster = url, b.Cluster }
	return p, testenv.StartOn(t, rdb, ks, dsn, db, keyPath, keys, append([]testenv.Options{on}, opts...)...)
}

// flushAll is FLUSHALL on every server (every master of a cluster): a
// cluster client's own FLUSHALL reaches one.
func flushAll(ctx context.Context, rdb redis.UniversalClient) error {
	return testdb.ForEachServer(ctx, rdb, func(ctx context.Context, c *redis.Client) error {
		return c.FlushAll(ctx).Err()
	})
}

// buyFirst has n shoppers check out (workers at a time), each of whom must
// get a 201, and confirms every paidEvery-th order.
func buyFirst(t *testing.T, s *testenv.Server, saleID string, n, workers, paidEvery int) []*shopper {
	t.Helper()
	early := newShoppers(s, saleID, "early-", n)
	checkoutAll(s, saleID, early, workers, nil)
	for i, sh := range early {
		require.Equal(t, http.StatusCreated, sh.last().status, "%s", sh.last().body)
		if i%paidEvery == 0 {
			require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/orders/"+sh.last().order+"/confirm", s.ServiceToken, nil).Status)
		}
	}
	return early
}

// requireNoneLost checks invariant 7 on MySQL: every order answered 201 is
// live, and the shoppers whose last answer was not a 201 have no live
// order. It returns the live units.
func requireNoneLost(t *testing.T, s *testenv.Server, saleID string, shoppers []*shopper) int {
	t.Helper()
	live := map[string]string{} // user → order
	rows, err := s.DB.Query(`SELECT user_id, id FROM orders WHERE sale_id = ? AND status IN ('held','paid')`, saleID)
	require.NoError(t, err)
	for rows.Next() {
		var user, id string
		require.NoError(t, rows.Scan(&user, &id))
		live[user] = id
	}
	require.NoError(t, rows.Err())
	rows.Close()
	for _, sh := range shoppers {
		for _, a := range sh.answers {
			require.NoError(t, a.err, "user %s", sh.user)
		}
		a := sh.last()
		if a.status == http.StatusCreated {
			require.Equal(t, a.order, live[sh.user], "user %s: the order answered 201 lives", sh.user)
		} else {
			require.Empty(t, live[sh.user], "user %s answered %d %s has no live order", sh.user, a.status, a.code)
		}
	}
	_, units := liveOrders(t, s, saleID)
	return units
}

// TestFaultRedisFlushed: a private Redis is flushed (FLUSHALL) in the
// middle of a sale's checkouts. Checkouts answer 503 while the sale's live
// state is rebuilt from MySQL, then sell again; nothing is oversold, every
// 201 is in MySQL, and the rebuilt units are stock - sold - held
// (invariant 7).
func TestFaultRedisFlushed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs its own redis-server; skipped with -short")
	}
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		_, s := onPrivateRedis(t, b)
		rdb := s.Redis
		ctx := context.Background()
		const stock = 40
		saleID := newSale(t, s, map[string]any{"stock": stock, "hold_ttl_seconds": 300})
		k := s.Keys.Sale(saleID)

		// Some orders first, half of them paid.
		early := buyFirst(t, s, saleID, 10, 4, 2)

		// Redis is flushed after the 5th answer, with checkouts in flight.
		storm := newShoppers(s, saleID, "storm-", 20)
		var flushOnce sync.Once
		var flushErr error
		checkoutAll(s, saleID, storm, 8, func(n int) {
			if n == 5 {
				flushOnce.Do(func() { flushErr = flushAll(ctx, rdb) })
			}
		})
		require.NoError(t, flushErr)
		statuses := map[int]int{}
		for _, sh := range storm {
			statuses[sh.last().status]++
		}
		t.Logf("answers around the flush, by status: %v", statuses)
		require.Positive(t, statuses[http.StatusServiceUnavailable], "some checkouts met the lost state: %v", statuses)
		require.Equal(t, len(storm), statuses[http.StatusCreated]+statuses[http.StatusServiceUnavailable],
			"units are left: every answer is 201 or 503: %v", statuses)
		for _, sh := range unavailable(storm) {
			require.Equal(t, "unavailable", sh.last().code)
			require.NotEmpty(t, sh.last().retry, "a 503 has Retry-After")
		}
		eventually(t, 10*time.Second, func() bool { return rdb.Exists(ctx, k.Units).Val() == 1 }, "the units are rebuilt")

		// Flushed again with nothing in flight: the next checkout answers 503
		// (rebuilding), and the same ticket then buys.
		require.NoError(t, flushAll(ctx, rdb))
		late := newShoppers(s, saleID, "late-", 1)
		checkoutAll(s, saleID, late, 1, nil)
		a := late[0].last()
		require.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a.body)
		require.Equal(t, "unavailable", a.code)
		require.NotEmpty(t, a.retry)
		eventually(t, 10*time.Second, func() bool {
			checkoutAll(s, saleID, late, 1, nil)
			return late[0].last().status != http.StatusServiceUnavailable
		}, "checkouts sell again after the rebuild")
		require.Equal(t, http.StatusCreated, late[0].last().status, "the 503 did not use the ticket up: %s", late[0].last().body)

		// The shoppers who got 503 retry with the same tickets, and more
		// shoppers than units are left come.
		checkoutAll(s, saleID, unavailable(storm), 8, nil)
		for _, sh := range storm {
			require.Equal(t, http.StatusCreated, sh.last().status, "%s: %s", sh.user, sh.last().body)
		}
		rest := newShoppers(s, saleID, "rest-", 20)
		checkoutAll(s, saleID, rest, 8, nil)
		eventually(t, 10*time.Second, func() bool { return rdb.HLen(ctx, k.Pending).Val() == 0 }, "no order in flight")

		all := append(append(append(early, storm...), late...), rest...)
		units := requireNoneLost(t, s, saleID, all)
		require.LessOrEqual(t, units, stock, "never oversold")
		created := 0
		for _, sh := range all {
			if sh.last().status == http.StatusCreated {
				created++
			}
		}
		require.Equal(t, stock, created, "every unit sold once the state was back")
		sold, held := saleRow(t, s, saleID)
		u := redisUnits(t, s, saleID)
		require.Equal(t, map[string]int{"remaining": stock - sold - held, "reserved": 0, "held": held, "sold": sold, "stock": stock}, u,
			"the rebuilt units are stock - sold - held")
		rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
		require.NoError(t, err)
		require.True(t, rep.Consistent(), "%v", rep.Remaining)
	})
}

// TestFaultMySQLStopped: a private MariaDB freezes (SIGSTOP) while
// checkouts run, then comes back; later it crashes (SIGKILL) and restarts
// on the same data. While it is down every checkout answers 503 with
// Retry-After within 5 s; once the breaker is open they fail fast and leave
// nothing in Redis; readyz says MySQL is not ready. When it is back,
// checkouts sell again without restarting the node, no order answered 503
// lives, every 201 is in MySQL, and the 503s did not use their tickets up.
func TestFaultMySQLStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("runs its own mariadbd; skipped with -short")
	}
	t.Parallel()
	m := faults.StartMariaDB(t)
	dsn, db := testenv.MySQLOn(t, m.DSN)
	rdb, ks := testenv.Redis(t)
	keyPath, keys := testenv.KeyFile(t)
	s := testenv.StartOn(t, rdb, ks, dsn, db, keyPath, keys)
	ctx := context.Background()
	const stock = 200
	saleID := newSale(t, s, map[string]any{"stock": stock})
	k := s.Keys.Sale(saleID)
	breaker := s.Node.Orders.Breaker()

	before := newShoppers(s, saleID, "before-", 10)
	checkoutAll(s, saleID, before, 4, nil)
	for _, sh := range before {
		require.Equal(t, http.StatusCreated, sh.last().status, "%s", sh.last().body)
	}
	all := before

	// down takes MySQL down, checks the outage's answers, and brings it
	// back with up.
	down := func(name string, stop, up func()) {
		stop()
		var outage []*shopper
		for round := 0; breaker.State() == "closed"; round++ {
			require.Less(t, round, 10, "the breaker opens")
			batch := newShoppers(s, saleID, name+"-"+strconv.Itoa(round)+"-", 8)
			checkoutAll(s, saleID, batch, 8, nil)
			outage = append(outage, batch...)
		}
		slowest := time.Duration(0)
		for _, sh := range outage {
			slowest = max(slowest, sh.took[0])
		}
		t.Logf("%s: %d checkouts before the breaker opened, the slowest answered in %s", name, len(outage), slowest)
		for _, sh := range outage {
			a := sh.last()
			require.Equal(t, http.StatusServiceUnavailable, a.status, "%s: %s", sh.user, a.body)
			require.Equal(t, "unavailable", a.code)
			require.NotEmpty(t, a.retry, "a 503 has Retry-After")
			// the checkout gives MySQL its write timeout (4 s), then answers;
			// 2 s more for a 2-core machine running every package's tests
			// under -race at once (CI saw 5.17 s)
			require.Less(t, sh.took[0], 6*time.Second, "a 503 within 6 s")
		}

		// Open: a checkout fails at once and touches nothing in Redis (sent
		// while no probe is due for a while, so it is not the probe).
		eventually(t, 10*time.Second, func() bool { return breaker.ProbeIn() > time.Second }, "no probe due")
		redisBefore := redisSnapshot(t, s, saleID)
		fast := newShoppers(s, saleID, name+"-fast-", 1)
		checkoutAll(s, saleID, fast, 1, nil)
		a := fast[0].last()
		require.Equal(t, http.StatusServiceUnavailable, a.status, "%s", a.body)
		require.NotEmpty(t, a.retry)
		require.Less(t, fast[0].took[0], time.Second, "an open breaker answers at once")
		require.Equal(t, redisBefore, redisSnapshot(t, s, saleID), "an open breaker reserves nothing")
		r := s.Do(t, "GET", "/readyz", "", nil)
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s", r.Body)
		require.NotEqual(t, "ok", r.JSON(t)["mysql"], "%s", r.Body)
		require.Equal(t, "ok", r.JSON(t)["redis"], "%s", r.Body)
		outage = append(outage, fast...)

		up()
		back := newShoppers(s, saleID, name+"-back-", 1)
		eventually(t, 15*time.Second, func() bool {
			checkoutAll(s, saleID, back, 1, nil)
			return back[0].last().status == http.StatusCreated
		}, "checkouts sell again once MySQL is back")
		eventually(t, 20*time.Second, func() bool { return rdb.HLen(ctx, k.Pending).Val() == 0 },
			"every compensation finished")
		require.Equal(t, http.StatusOK, s.Do(t, "GET", "/readyz", "", nil).Status)

		requireNoneLost(t, s, saleID, outage)
		// The 503s did not use their tickets up.
		require.Len(t, unavailable(outage), len(outage))
		checkoutAll(s, saleID, outage, 8, nil)
		for _, sh := range outage {
			require.Equal(t, http.StatusCreated, sh.last().status, "%s retried: %s", sh.user, sh.last().body)
		}
		all = append(all, outage...)
		all = append(all, back...)
	}
	down("frozen", m.Pause, m.Resume)
	down("crashed", m.Kill, m.Restart)

	units := requireNoneLost(t, s, saleID, all)
	require.LessOrEqual(t, units, stock)
	require.Equal(t, len(all), units, "one unit for each shopper, each answered 201 in the end")
	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)
}
