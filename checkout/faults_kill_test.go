package checkout_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// TestFaultRedisKilled: a private redis-server is SIGKILLed in the middle
// of a checkout storm and restarted, (a) from a snapshot taken earlier in
// the storm, so the sale's keys come back but lag MySQL (the orders of the
// last moments before the crash are in MySQL only, and orders in flight at
// the snapshot come back pending: what a crash of the machine under
// `appendfsync everysec`, or a failover to a lagging replica, does; a
// SIGKILL of redis-server alone loses nothing under AOF, since every write
// reached the kernel before its reply), and (b) empty (no persistence:
// everything is rebuilt from MySQL).
//
// While Redis is down every checkout answers 503 with Retry-After within
// 5 s. Once it is back the node sells again by itself (no restart), and
// before it sells it has made Redis agree with MySQL: the shoppers who
// bought in the lost moments find their ticket used, Redis's units are
// MySQL's (so Redis never lets a buyer past the stock), and a dry
// reconciliation finds nothing. At the end the stock is sold exactly once,
// every 201 is a live order in MySQL, no shopper without a 201 has one, and
// every 503 left its ticket able to buy.
func TestFaultRedisKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs its own redis-server; skipped with -short")
	}
	t.Parallel()
	// on the cluster backend, the master of the sale's slot dies
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		t.Run("restarted from a snapshot: writes lost", func(t *testing.T) {
			t.Parallel()
			redisKilled(t, b, true)
		})
		t.Run("restarted empty", func(t *testing.T) {
			t.Parallel()
			redisKilled(t, b, false)
		})
	})
}

func redisKilled(t *testing.T, b testenv.Backend, snapshot bool) {
	p, s := onPrivateRedis(t, b)
	rdb := s.Redis
	ctx := context.Background()
	const stock = 100
	saleID := newSale(t, s, map[string]any{"stock": stock, "hold_ttl_seconds": 600})
	k := s.Keys.Sale(saleID)
	r := p.holder(t, k.Cfg)

	// Orders before the snapshot, a third of them paid.
	early := buyFirst(t, s, saleID, 24, 8, 3)
	// The sale was checked on this server (the sweeper stamps a new sale
	// within a second): a restore to a state from before that stamp is the
	// gap docs/DESIGN-NOTES.md names.
	eventually(t, 10*time.Second, func() bool { return rdb.HGet(ctx, k.Cfg, "rid").Val() != "" },
		"the sale is stamped with this Redis's run id")

	// The storm: a snapshot after its 8th answer (with checkouts in
	// flight), and Redis dies after its 24th.
	storm := newShoppers(s, saleID, "storm-", 64)
	saveAt, killAt := make(chan struct{}), make(chan struct{})
	stormDone := make(chan struct{})
	go func() {
		defer close(stormDone)
		checkoutAll(s, saleID, storm, 16, func(n int) {
			switch n {
			case 8:
				close(saveAt)
			case 24:
				close(killAt)
			}
		})
	}()
	<-saveAt
	if snapshot {
		require.NoError(t, r.Client(t).Save(ctx).Err(), "snapshot (dump.rdb, loaded on restart)")
	}
	// A witness buys after the snapshot: Redis will have lost its order.
	witness := newShoppers(s, saleID, "witness-", 1)
	checkoutAll(s, saleID, witness, 1, nil)
	require.Equal(t, http.StatusCreated, witness[0].last().status, "%s", witness[0].last().body)
	<-killAt
	r.Kill()
	<-stormDone

	// While it is down: 503 with Retry-After, within 5 s.
	outage := newShoppers(s, saleID, "outage-", 8)
	checkoutAll(s, saleID, outage, 8, nil)
	for _, sh := range outage {
		a := sh.last()
		require.Equal(t, http.StatusServiceUnavailable, a.status, "%s: %s", sh.user, a.body)
		require.Equal(t, "unavailable", a.code)
		require.NotEmpty(t, a.retry, "a 503 has Retry-After")
		require.Less(t, sh.took[0], 5*time.Second, "a 503 within 5 s")
	}
	statuses := map[int]int{}
	var lost []*shopper // storm shoppers answered 201 whose Redis step the snapshot does not have
	for _, sh := range storm {
		a := sh.last()
		statuses[a.status]++
		require.Contains(t, []int{http.StatusCreated, http.StatusServiceUnavailable}, a.status, "%s: %s", sh.user, a.body)
		if a.status == http.StatusCreated {
			lost = append(lost, sh)
		} else {
			require.Equal(t, "unavailable", a.code)
			require.NotEmpty(t, a.retry, "a 503 has Retry-After")
		}
		// no hang: the node's Redis deadlines, plus room for two cores
		// running every package's tests under -race (CI saw 5.3 s)
		require.Less(t, sh.took[0], 8*time.Second, "%s answered within 8 s", sh.user)
	}
	t.Logf("the storm around the kill, by status: %v", statuses)
	require.NotEmpty(t, lost, "some storm checkouts bought before the kill")
	require.Positive(t, statuses[http.StatusServiceUnavailable], "some storm checkouts met Redis down")

	r.Restart()
	if snapshot {
		require.EqualValues(t, 1, rdb.Exists(ctx, k.Units).Val(), "the sale's keys came back")
		t.Logf("restored: %d buyers, %d pending (the node may have revalidated already)",
			rdb.HLen(ctx, k.Buyers).Val(), rdb.HLen(ctx, k.Pending).Val())
	}

	// The witness retries with its ticket at once and until Redis answers:
	// the first answer that is not a 503 is ticket_used. (Before the fix the
	// lagging Redis let it through to MySQL, which refused a second live
	// order: 409 already_bought.)
	eventually(t, 15*time.Second, func() bool {
		checkoutAll(s, saleID, witness, 1, nil)
		a := witness[0].last()
		return a.status != http.StatusServiceUnavailable && a.err == nil
	}, "the witness's retry is answered after Redis is back")
	a := witness[0].last()
	require.Equal(t, http.StatusUnauthorized, a.status, "the first answer after the restart: %s", a.body)
	require.Equal(t, "ticket_used", a.code)
	t.Logf("the witness got %d 503s before Redis answered", len(witness[0].answers)-2)

	// The node sells again by itself.
	probe := newShoppers(s, saleID, "probe-", 1)
	checkoutAll(s, saleID, probe, 1, nil)
	require.Equal(t, http.StatusCreated, probe[0].last().status, "%s", probe[0].last().body)

	// Before it sold, Redis was made to agree with MySQL.
	eventually(t, 10*time.Second, func() bool { return rdb.HLen(ctx, k.Pending).Val() == 0 }, "no order in flight")
	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "Redis agrees with MySQL without a manual repair: %v", rep.Remaining)
	_, liveUnits := liveOrders(t, s, saleID)
	sold, held := saleRow(t, s, saleID)
	require.Equal(t, map[string]int{"remaining": stock - liveUnits, "reserved": 0, "held": held, "sold": sold, "stock": stock},
		redisUnits(t, s, saleID), "Redis's units are MySQL's: it lets no buyer past the stock")
	// Whoever bought in the lost moments finds the ticket used in Redis.
	checkoutAll(s, saleID, lost, 8, nil)
	for _, sh := range lost {
		a := sh.last()
		require.Equal(t, http.StatusUnauthorized, a.status, "%s bought before the kill: %s", sh.user, a.body)
		require.Equal(t, "ticket_used", a.code)
	}

	// The shoppers who got 503 retry with the same tickets, and more
	// shoppers than units are left come.
	retry := append(unavailable(storm), outage...)
	rest := newShoppers(s, saleID, "rest-", stock)
	checkoutAll(s, saleID, append(retry, rest...), 16, nil)
	for _, sh := range append(retry, rest...) {
		a := sh.last()
		require.Contains(t, []int{http.StatusCreated, http.StatusGone}, a.status, "%s: %s", sh.user, a.body)
		if a.status == http.StatusGone {
			require.Equal(t, "sold_out", a.code, "%s: a 503 did not use the ticket up", sh.user)
		}
	}
	eventually(t, 10*time.Second, func() bool { return rdb.HLen(ctx, k.Pending).Val() == 0 }, "no order in flight")

	// Every 201 lives, nobody else has an order, the stock sold exactly once.
	all := append(append(append(append(append(early, storm...), witness...), outage...), probe...), rest...)
	live := map[string]string{}
	rows, err := s.DB.Query(`SELECT user_id, id FROM orders WHERE sale_id = ? AND status IN ('held','paid')`, saleID)
	require.NoError(t, err)
	for rows.Next() {
		var user, id string
		require.NoError(t, rows.Scan(&user, &id))
		live[user] = id
	}
	require.NoError(t, rows.Err())
	rows.Close()
	created := 0
	for _, sh := range all {
		var order string
		for _, a := range sh.answers {
			require.NoError(t, a.err, "%s", sh.user)
			if a.status == http.StatusCreated {
				require.Empty(t, order, "%s bought twice", sh.user)
				order = a.order
				created++
			}
		}
		require.Equal(t, order, live[sh.user], "%s: a live order iff a 201, and the one answered", sh.user)
	}
	require.Len(t, live, created, "no live order without a 201")
	_, liveUnits = liveOrders(t, s, saleID)
	require.Equal(t, stock, liveUnits, "every unit sold, none twice")
	require.Equal(t, stock, created)
	sold, held = saleRow(t, s, saleID)
	require.Equal(t, map[string]int{"remaining": 0, "reserved": 0, "held": held, "sold": sold, "stock": stock},
		redisUnits(t, s, saleID))
	rep, err = s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)
	sum := summary(t, s, saleID)
	require.Equal(t, true, sum["consistent"], "summary: %v", sum)
}

// TestReserveScriptStale: a sale stamped with another Redis server
// process's run id (Redis restarted or failed over since its state was
// checked against MySQL) sells nothing and changes nothing; one stamped by
// this process, or never stamped, sells as before.
func TestReserveScriptStale(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		e := newLuaEnvOn(t, b.Backend)
		run := testenv.RunID(t, e.rdb, e.k.Cfg)
		for _, tt := range []struct {
			name, rid string
			reply     []string
		}{
			{"stamped by another run: stale", strings.Repeat("0", len(run)), []string{"stale"}},
			{"stamped by this run", run, []string{"ok", "sold"}},
			{"never stamped", "", []string{"ok", "sold"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				before := reserveBase()
				if tt.rid != "" {
					before.Cfg = cfgWith("rid", tt.rid)
				}
				e.seed(before)
				require.Equal(t, tt.reply, e.reserve("u3", "j3", 1, "o-new"))
				if tt.reply[0] == "stale" {
					require.Equal(t, before.clone(), e.dump(), "a stale sale is left as it is")
				}
			})
		}
	})
}

// TestRevalidate plants what a restart from a lagging snapshot leaves (the
// sale stamped with another run id; an order pending that MySQL has since
// made durable; an order Redis never heard of) and checks that no checkout
// sells on that state: the first answer is a 503 (or, if a sweeper
// revalidated first, already the truth), and then the sale is MySQL's
// again, stamped with this run id. An order whose Redis step was lost and
// whose write lands in MySQL after the revalidation read it is put back by
// the second check, --reconcile-pending-after later.
func TestRevalidate(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t, func(c *node.Config) { c.ReconcilePendingAfter = node.MinReconcilePendingAfter })
		ctx := context.Background()
		saleID := newSale(t, s, map[string]any{"stock": 10, "hold_ttl_seconds": 300})
		k := s.Keys.Sale(saleID)
		run := testenv.RunID(t, s.Redis, k.Cfg)
		eventually(t, 10*time.Second, func() bool { return s.Redis.HGet(ctx, k.Cfg, "rid").Val() == run },
			"the sweeper stamps the new sale")
		gen := s.Redis.HGet(ctx, k.Cfg, "gen").Val()
		require.NotEmpty(t, gen)

		tickets := map[string]string{}
		orders := map[string]string{}
		for _, user := range []string{"alice", "bob", "dave"} {
			tickets[user] = s.Ticket(saleID, user, 5*time.Minute)
			r := buy(t, s, saleID, tickets[user], nil)
			require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
			orders[user] = r.JSON(t)["id"].(string)
		}
		want := redisSnapshot(t, s, saleID)

		// The lagging state, in one step: bob's order still pending (not
		// finalized: no hold yet), dave's unknown, the stamp another run's.
		var bobJTI, daveJTI string
		require.NoError(t, s.DB.QueryRow(`SELECT ticket_jti FROM orders WHERE id = ?`, orders["bob"]).Scan(&bobJTI))
		require.NoError(t, s.DB.QueryRow(`SELECT ticket_jti FROM orders WHERE id = ?`, orders["dave"]).Scan(&daveJTI))
		pipe := s.Redis.TxPipeline()
		pipe.HDel(ctx, k.Orders, orders["bob"], orders["dave"])
		pipe.ZRem(ctx, k.Holds, orders["bob"], orders["dave"])
		pipe.HSet(ctx, k.Pending, orders["bob"], sale.Pending{User: "bob", Quantity: 1, JTI: bobJTI, Kind: "held", AtMs: time.Now().UnixMilli()}.Encode())
		pipe.HDel(ctx, k.Buyers, "dave")
		pipe.HDel(ctx, k.JTI, daveJTI)
		pipe.HIncrBy(ctx, k.Units, "held", -1)
		pipe.HIncrBy(ctx, k.Units, "remaining", 1)
		pipe.HSet(ctx, k.Cfg, "rid", strings.Repeat("0", len(run)))
		_, err := pipe.Exec(ctx)
		require.NoError(t, err)

		first := buy(t, s, saleID, tickets["dave"], nil)
		if first.Status == http.StatusServiceUnavailable {
			requireError(t, first, http.StatusServiceUnavailable, "unavailable")
		} else {
			requireError(t, first, http.StatusUnauthorized, "ticket_used")
		}
		eventually(t, 10*time.Second, func() bool { return s.Redis.HGet(ctx, k.Cfg, "rid").Val() == run },
			"the sale is revalidated and stamped with this run id")
		requireError(t, buy(t, s, saleID, tickets["dave"], nil), http.StatusUnauthorized, "ticket_used")
		require.NotEqual(t, gen, s.Redis.HGet(ctx, k.Cfg, "gen").Val(), "a new generation: nodes put back the waiters the lagging queue lacks")
		got := redisSnapshot(t, s, saleID)
		got["stats"], want["stats"] = nil, nil // orders_total counts bob's order once more: finalize ran again
		require.Equal(t, want, got, "Redis is MySQL's again")
		require.NotEmpty(t, s.Redis.HGet(ctx, k.Cfg, "restored").Val(), "the restore is noted for a second check")
		rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
		require.NoError(t, err)
		require.True(t, rep.Consistent(), "%v", rep.Remaining)

		// erin's write lands after the revalidation (Redis had lost her step).
		erin := newOrder(saleID, "erin", checkout.StatusHeld, 1)
		_, err = s.Node.Orders.Create(ctx, erin)
		require.NoError(t, err)
		eventually(t, 15*time.Second, func() bool { return s.Redis.HGet(ctx, k.Cfg, "restored").Val() == "" },
			"the second check runs")
		require.Equal(t, erin.ID, s.Redis.HGet(ctx, k.Buyers, "erin").Val(), "the second check put erin's order back")
		require.Equal(t, map[string]int{"remaining": 6, "reserved": 0, "held": 4, "sold": 0, "stock": 10}, redisUnits(t, s, saleID))
		rep, err = s.Node.Checkout.Reconcile(ctx, saleID, false)
		require.NoError(t, err)
		require.True(t, rep.Consistent(), "%v", rep.Remaining)
	})
}

// TestReconcileGivenUpOrder: an order whose request gave it up (its write's
// outcome was unknown, so its shopper got 503 and its compensation began,
// noting it on the pending mark) but whose write did commit is cancelled by
// reconciliation, never finalized, as the compensation would: a 503 never
// hides a live order, even when a sweeper meets the mark first (a MySQL
// outage longer than --reconcile-pending-after) or the compensation gave up.
// The ticket then buys.
func TestReconcileGivenUpOrder(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	ctx := context.Background()
	saleID := newSale(t, s, map[string]any{"stock": 5})
	k := s.Keys.Sale(saleID)
	before := redisSnapshot(t, s, saleID)
	ord := newOrder(saleID, "gus", checkout.StatusPaid, 1)
	v, err := checkout.ReserveScript.Run(ctx, s.Redis, []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending},
		"gus", ord.TicketJTI, 1, ord.ID).StringSlice()
	require.NoError(t, err)
	require.Equal(t, []string{"ok", "sold"}, v)
	_, err = s.Node.Orders.Create(ctx, ord)
	require.NoError(t, err, "the write commits; its request had stopped waiting")
	mark, ok := sale.ParsePending(s.Redis.HGet(ctx, k.Pending, ord.ID).Val())
	require.True(t, ok)
	mark.Compensating = true
	require.NoError(t, s.Redis.HSet(ctx, k.Pending, ord.ID, mark.Encode()).Err(), "as compensating.lua notes it")

	rep, err := s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.Contains(t, kinds(rep.Differences), "pending", "a dry run reports the mark: %v", rep.Differences)
	n, err := s.Node.Checkout.ReconcilePending(ctx, 0)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, orderRow{Status: "cancelled"}, readOrder(t, s, ord.ID), "cancelled, its ticket freed")
	sold, held := saleRow(t, s, saleID)
	require.Zero(t, sold+held)
	require.Equal(t, before, redisSnapshot(t, s, saleID), "Redis is as it was before the reserve")
	rep, err = s.Node.Checkout.Reconcile(ctx, saleID, false)
	require.NoError(t, err)
	require.True(t, rep.Consistent(), "%v", rep.Remaining)

	now := time.Now().Unix()
	tok := s.Issuer.Ticket(ticket.Admission{Sale: saleID, User: "gus", JTI: ord.TicketJTI, IssuedAt: now, ExpiresAt: now + 60})
	r := buy(t, s, saleID, tok, nil)
	require.Equal(t, http.StatusCreated, r.Status, "the 503 did not use the ticket up: %s", r.Body)
}

// TestNewSaleStamped: a sale is stamped with the Redis server's run id when
// it is created (not only by a sweeper a second later), so a restore from
// its very first second is noticed too.
func TestNewSaleStamped(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := newSale(t, s, map[string]any{"stock": 3})
		k := s.Keys.Sale(saleID)
		require.Equal(t, testenv.RunID(t, s.Redis, k.Cfg), s.Redis.HGet(context.Background(), k.Cfg, "rid").Val())
	})
}

// TestFaultClusterWorkingSetLost: on Redis Cluster the working set (the
// set of live sales every loop walks, Keyspace.Sales) has no sale's hash
// tag, so it lives on one master and the sales on others. That master is
// killed and restarts empty: the sales' own keys are intact, so nothing
// rebuilds them and nothing puts them back in the set. Admission must go
// on all the same (and the sweepers must walk the sale again): the sale is
// back in the working set within seconds, from MySQL's live sales.
func TestFaultClusterWorkingSetLost(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a private Redis Cluster; skipped with -short")
	}
	t.Parallel()
	p, s := onPrivateRedis(t, testenv.Backend{Backend: testdb.Backend{Name: "cluster", Cluster: true}},
		func(c *node.Config) { c.IPRate, c.IPBurst, c.UserRate, c.UserBurst = 1000, 1000, 100, 100 })
	ctx := context.Background()
	setMaster := p.holder(t, s.Keys.Sales())
	var saleID string
	for range 20 {
		id := newSale(t, s, map[string]any{"stock": 100, "admission_rate": 2, "max_active": 100})
		if p.holder(t, s.Keys.Sale(id).Cfg) != setMaster {
			saleID = id
			break
		}
	}
	require.NotEmpty(t, saleID, "20 sales on the working set's master: the hash tags do not spread them")
	k := s.Keys.Sale(saleID)
	for i := range 40 {
		r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "w"+strconv.Itoa(i)), nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	admitted := func() int64 { n, _ := s.Redis.HGet(ctx, k.Stats, "admitted_total").Int64(); return n }
	eventually(t, 10*time.Second, func() bool { return admitted() > 0 }, "admission runs")

	setMaster.Kill()
	setMaster.Restart()
	eventually(t, 10*time.Second, func() bool { return s.Redis.Exists(ctx, s.Keys.Sales()).Err() == nil },
		"the restarted master answers")
	require.EqualValues(t, 1, s.Redis.Exists(ctx, k.Units).Val(), "the sale's own keys are intact")
	before := admitted()
	eventually(t, 10*time.Second, func() bool { return s.Redis.SIsMember(ctx, s.Keys.Sales(), saleID).Val() },
		"the sale is back in the working set")
	eventually(t, 10*time.Second, func() bool { return admitted() >= before+2 }, "admission goes on (%d admitted before)", before)
}
