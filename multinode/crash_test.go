package multinode_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// crashShopper is one shopper of TestCrashMidCheckout: a ticket minted
// directly (no queue: the storm hits the checkout), the answer of the storm
// and, for those who lost it, of the retry, and the order they own.
type crashShopper struct {
	user, saleID, ticket string
	storm, retry         crashAnswer
	order                string // answered 201, or found live after the crash
}

// crashAnswer is one checkout's answer; status 0 when the request failed.
type crashAnswer struct {
	status      int
	code, order string
	err         error
}

// checkout sends the shopper's checkout to p (from any goroutine).
func (sh *crashShopper) checkout(c *cluster, p *proc) crashAnswer {
	status, body, err := c.tryDo(p, "POST", "/api/v1/sales/"+sh.saleID+"/checkout", sh.ticket, nil)
	if err != nil {
		return crashAnswer{err: err}
	}
	var m struct {
		ID    string
		Error struct{ Code string }
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return crashAnswer{status: status, err: fmt.Errorf("%d %q: %w", status, body, err)}
	}
	return crashAnswer{status: status, code: m.Error.Code, order: m.ID}
}

// TestCrashMidCheckout SIGKILLs the only process during a checkout storm on
// two sales (one holding orders, one selling them paid), then restarts a
// process on the same stores. Orders the dead process left between the
// Redis step and MySQL are settled: sale B's at once by `flashsale
// reconcile --sale B --repair`, sale A's by the restarted process itself
// once they are --reconcile-pending-after old (no operator, within a bound).
// Afterwards every 201 answered is a live order in MySQL; Redis and MySQL
// agree on both sales (units, buyers, used tickets; the summary says
// consistent); nothing is oversold; and each shopper whose request died
// with the process either has their order (their ticket is used, their
// status says purchased with it) or buys with the same ticket.
func TestCrashMidCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("runs flashsale processes; skipped with -short")
	}
	const (
		age            = 5 * time.Second // --reconcile-pending-after (its least)
		stockA, usersA = 200, 400
		stockB, usersB = 100, usersA / 2
		killAfter      = 60 // 201s before the kill
		workers        = 200
	)
	ctx := context.Background()
	flags := []string{"--reconcile-pending-after", age.String()}
	c := newCluster(t, 1, flags...)
	db, err := sql.Open("mysql", c.dsn)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	p := c.alive()[0]
	saleA := c.createSale(p, map[string]any{"stock": stockA, "hold_ttl_seconds": 600})
	saleB := c.createSale(p, map[string]any{"stock": stockB})

	// Two of A's shoppers, then one of B's, and so on.
	now := time.Now().Unix()
	var shoppers []*crashShopper
	add := func(saleID string, i int) {
		user := fmt.Sprintf("u%03d-%s", i, saleID)
		shoppers = append(shoppers, &crashShopper{user: user, saleID: saleID, ticket: c.issuer.Ticket(ticket.Admission{
			Sale: saleID, User: user, JTI: "crash-" + testenv.RandomID(), IssuedAt: now, ExpiresAt: now + 900})})
	}
	for i := range usersB {
		add(saleA, 2*i)
		add(saleA, 2*i+1)
		add(saleB, i)
	}

	// The storm: 200 goroutines send the checkouts, each the next as soon
	// as it has an answer (so the process always has about 200 in flight:
	// the test's client cannot fall behind it), and the first one to get a
	// 201 from the 60th on stops the process and, when both sales have
	// orders between the Redis step and MySQL, kills it (concurrent
	// checkouts share their Redis steps, so a sale's marks come and go in
	// bunches: the 60th 201 alone may find none of sale B's).
	var created atomic.Int64
	var killed time.Time
	var killMu sync.Mutex
	bothPending := func() bool {
		return c.rdb.HLen(ctx, c.ks.Sale(saleA).Pending).Val() > 0 &&
			c.rdb.HLen(ctx, c.ks.Sale(saleB).Pending).Val() > 0
	}
	next := make(chan *crashShopper)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for sh := range next {
				sh.storm = sh.checkout(c, p)
				if sh.storm.status != http.StatusCreated || created.Add(1) < killAfter {
					continue
				}
				killMu.Lock()
				if killed.IsZero() {
					// stopped while we look, so no mark we see goes
					// before the kill
					_ = p.cmd.Process.Signal(syscall.SIGSTOP)
					if bothPending() {
						p.kill()
						killed = time.Now()
					} else {
						_ = p.cmd.Process.Signal(syscall.SIGCONT)
					}
				}
				killMu.Unlock()
			}
		})
	}
	for _, sh := range shoppers {
		next <- sh
	}
	close(next)
	wg.Wait()
	require.True(t, p.isKilled(), "the storm ended with %d 201s, before the kill", created.Load())

	byStatus := map[int]int{}
	var lostAnswer []*crashShopper // no answer, or 503: they may retry
	inFlight := 0
	for _, sh := range shoppers {
		a := sh.storm
		byStatus[a.status]++
		switch a.status {
		case 0:
			lostAnswer = append(lostAnswer, sh)
			if !errors.Is(a.err, syscall.ECONNREFUSED) {
				inFlight++ // sent before the kill, no answer
			}
		case http.StatusCreated:
			require.NotEmpty(t, a.order, "%s", sh.user)
			sh.order = a.order
		case http.StatusServiceUnavailable:
			lostAnswer = append(lostAnswer, sh)
		default:
			require.NoError(t, a.err, "%s", sh.user)
			require.Equal(t, [2]any{http.StatusGone, "sold_out"}, [2]any{a.status, a.code}, "%s", sh.user)
		}
	}
	pendingA := c.rdb.HLen(ctx, c.ks.Sale(saleA).Pending).Val()
	pendingB := c.rdb.HLen(ctx, c.ks.Sale(saleB).Pending).Val()
	t.Logf("answers by status (0: the request died): %v; %d died in flight; pending marks left: A %d, B %d",
		byStatus, inFlight, pendingA, pendingB)
	require.Positive(t, inFlight, "requests were in flight at the kill")
	require.Positive(t, pendingA, "the kill left sale A orders between the Redis step and MySQL")
	require.Positive(t, pendingB, "the kill left sale B orders between the Redis step and MySQL")

	// Sale B: an operator reconciles it before any process is back.
	dry, out := crashReconcile(t, c, saleB, false)
	require.Equal(t, 1, dry, "reconcile reports the pending orders:\n%s", out)
	require.Contains(t, out, "pending")
	code, out := crashReconcile(t, c, saleB, true)
	require.Equal(t, 0, code, "reconcile --repair:\n%s", out)
	require.True(t, strings.HasSuffix(strings.TrimSpace(out), "consistent"), "%s", out)
	require.Zero(t, c.rdb.HLen(ctx, c.ks.Sale(saleB).Pending).Val(), "the repair settled B's pending orders")
	require.Equal(t, pendingA, c.rdb.HLen(ctx, c.ks.Sale(saleA).Pending).Val(), "sale A is left to the restarted process")

	// Sale A: a new process repairs it by itself, once the orders are
	// --reconcile-pending-after old.
	q := c.start(binary(t), "node1", flags...)
	q.awaitServing(t)
	poll(t, age+15*time.Second, func() bool { return c.rdb.HLen(ctx, c.ks.Sale(saleA).Pending).Val() == 0 },
		"the restarted process settles sale A's pending orders")
	t.Logf("sale A repaired %s after the kill", time.Since(killed).Round(time.Millisecond))

	for _, id := range []string{saleA, saleB} {
		crashAgree(t, c, db, q, id)
	}
	for _, sh := range shoppers {
		if sh.order != "" {
			require.Equal(t, sh.order, crashLiveOrder(t, db, sh.saleID, sh.user), "%s's order answered 201 lives", sh.user)
		}
	}

	// Whoever lost their answer: their order, or their ticket still buys.
	survived := 0
	for _, sh := range lostAnswer {
		live := crashLiveOrder(t, db, sh.saleID, sh.user)
		if live == "" {
			continue
		}
		require.Zero(t, sh.storm.status, "%s: a 503 never hides a live order", sh.user)
		survived++
		sh.order = live
		status, m := c.do(q, "GET", "/api/v1/sales/"+sh.saleID+"/status", c.userToken(sh.user), nil)
		require.Equal(t, http.StatusOK, status, "%s: %v", sh.user, m)
		require.Equal(t, map[string]any{"state": "purchased", "order_id": live}, m, "%s sees the order that survived", sh.user)
	}
	left := map[string]int{}
	want := map[string]int{} // 201s the retries should get: one each while units are left
	got := map[string]int{}
	for _, id := range []string{saleA, saleB} {
		left[id] = crashUnits(t, c, id)["remaining"]
		want[id], got[id] = 0, 0
	}
	for _, sh := range lostAnswer {
		if sh.order == "" {
			want[sh.saleID]++
		}
	}
	for id := range want {
		want[id] = min(want[id], left[id])
	}
	var rwg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, sh := range lostAnswer {
		rwg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			sh.retry = sh.checkout(c, q)
		})
	}
	rwg.Wait()
	for _, sh := range lostAnswer {
		a := sh.retry
		require.NoError(t, a.err, "%s retried", sh.user)
		switch {
		case sh.order != "":
			require.Equal(t, [2]any{http.StatusUnauthorized, "ticket_used"}, [2]any{a.status, a.code},
				"%s's order survived: the ticket is used", sh.user)
		case a.status == http.StatusCreated:
			got[sh.saleID]++
			sh.order = a.order
		default:
			require.Equal(t, [2]any{http.StatusGone, "sold_out"}, [2]any{a.status, a.code},
				"%s had no order: the ticket buys while units are left", sh.user)
		}
	}
	t.Logf("%d shoppers lost their answer: %d of their orders survived; the retries bought %v (units left %v)",
		len(lostAnswer), survived, got, left)
	require.Equal(t, want, got, "every retry without an order bought while units were left")
	for _, id := range []string{saleA, saleB} {
		crashAgree(t, c, db, q, id)
	}
	for _, sh := range shoppers {
		require.Equal(t, sh.order, crashLiveOrder(t, db, sh.saleID, sh.user), "%s: a live order iff it was answered 201 or survived", sh.user)
	}
}

// crashReconcile runs `flashsale reconcile` on the cluster's stores and
// returns its exit code and output.
func crashReconcile(t *testing.T, c *cluster, saleID string, repair bool) (int, string) {
	t.Helper()
	args := []string{"reconcile", "--sale", saleID, "--mysql-dsn", c.dsn, "--redis-url", testenv.RedisURL(),
		"--redis-key-prefix", c.ks.Prefix}
	if repair {
		args = append(args, "--repair")
	}
	out, err := exec.Command(binary(t), args...).CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), string(out)
	}
	require.NoError(t, err, "%s", out)
	return 0, string(out)
}

// crashLiveOrder is the user's live (held or paid) order in MySQL, "" when none.
func crashLiveOrder(t *testing.T, db *sql.DB, saleID, user string) string {
	t.Helper()
	var ids []string
	rows, err := db.Query(`SELECT id FROM orders WHERE sale_id = ? AND user_id = ? AND status IN ('held','paid')`, saleID, user)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	require.LessOrEqual(t, len(ids), 1, "%s has one live order at most: %v", user, ids)
	if len(ids) == 0 {
		return ""
	}
	return ids[0]
}

// crashUnits reads a sale's units hash in Redis.
func crashUnits(t *testing.T, c *cluster, saleID string) map[string]int {
	t.Helper()
	m, err := c.rdb.HGetAll(context.Background(), c.ks.Sale(saleID).Units).Result()
	require.NoError(t, err)
	out := map[string]int{}
	for k, v := range m {
		var n int
		_, err := fmt.Sscan(v, &n)
		require.NoError(t, err, "units %s = %q", k, v)
		out[k] = n
	}
	return out
}

// crashAgree checks a sale with no order in flight: MySQL's live units are
// within the stock and are its sales row's and Redis's sold + held; Redis's
// units add up to the stock; Redis's buyers and used tickets are exactly
// MySQL's live orders; the summary says consistent.
func crashAgree(t *testing.T, c *cluster, db *sql.DB, p *proc, saleID string) {
	t.Helper()
	ctx := context.Background()
	k := c.ks.Sale(saleID)
	require.Zero(t, c.rdb.HLen(ctx, k.Pending).Val(), "sale %s: no order in flight", saleID)
	var stock, rowSold, rowHeld int
	require.NoError(t, db.QueryRow(`SELECT stock_total, sold, held FROM sales WHERE id = ?`, saleID).
		Scan(&stock, &rowSold, &rowHeld))
	buyers, jtis := map[string]string{}, map[string]string{}
	liveUnits := 0
	rows, err := db.Query(`SELECT id, user_id, quantity, ticket_jti FROM orders
		WHERE sale_id = ? AND status IN ('held','paid')`, saleID)
	require.NoError(t, err)
	for rows.Next() {
		var id, user, jti string
		var qty int
		require.NoError(t, rows.Scan(&id, &user, &qty, &jti))
		buyers[user], jtis[jti] = id, id
		liveUnits += qty
	}
	require.NoError(t, rows.Err())
	rows.Close()
	require.LessOrEqual(t, liveUnits, stock, "sale %s: never oversold", saleID)
	require.Equal(t, liveUnits, rowSold+rowHeld, "sale %s: the sales row counts its live orders", saleID)
	u := crashUnits(t, c, saleID)
	require.Equal(t, stock, u["stock"], "sale %s: %v", saleID, u)
	require.Equal(t, stock, u["remaining"]+u["held"]+u["sold"], "sale %s: remaining + held + sold = stock: %v", saleID, u)
	require.Equal(t, liveUnits, u["held"]+u["sold"], "sale %s: Redis's held + sold are MySQL's live units: %v", saleID, u)
	require.Equal(t, [2]int{rowSold, rowHeld}, [2]int{u["sold"], u["held"]}, "sale %s: %v", saleID, u)
	require.Equal(t, buyers, c.rdb.HGetAll(ctx, k.Buyers).Val(), "sale %s: Redis's buyers are MySQL's live orders", saleID)
	require.Equal(t, jtis, c.rdb.HGetAll(ctx, k.JTI).Val(), "sale %s: Redis's used tickets are MySQL's live orders'", saleID)
	status, m := c.do(p, "GET", "/api/v1/admin/sales/"+saleID+"/summary", c.admin, nil)
	require.Equal(t, http.StatusOK, status, "%v", m)
	require.Equal(t, true, m["consistent"], "sale %s: summary %v", saleID, m)
}
