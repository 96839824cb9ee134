package waitingroom_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// TestRequeueScript: the requeue op of join.lua puts a user who is nowhere
// back at a known place only when the sale's keys changed generation since
// that place was known; otherwise it is a status. During the requeue window
// a newcomer (and a status of someone not back yet) waits with "restoring",
// and arrivals after it queue behind everyone put back.
func TestRequeueScript(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {

		t.Run("same generation: a status", func(t *testing.T) {
			k := ks.Sale("same")
			seedSale(t, rdb, k, map[string]any{"state": "open", "gen": "g1"}, 10)
			st, err := waitingroom.RunJoin(ctx, rdb, k, "r", "left-earlier", "42|g1")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindNotInQueue, st[0].Kind, "a user who left is not put back")
			_, ok := zscore(t, rdb, k.Q, "left-earlier")
			require.False(t, ok)
			st, err = waitingroom.RunJoin(ctx, rdb, k, "r", "no-place", "|g0")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindNotInQueue, st[0].Kind, "no place, nothing to put back")
		})

		t.Run("a new generation puts waiters back", func(t *testing.T) {
			k := ks.Sale("lost")
			now := redisNow(t, rdb)
			seedSale(t, rdb, k, map[string]any{"state": "open", "gen": "g2", "requeue_until": now + 60_000}, 10)
			// the admitted and the buyers MySQL restored keep their own state
			require.NoError(t, rdb.HSet(ctx, k.Buyers, "bought", "o-1").Err())

			fresh, err := waitingroom.RunJoin(ctx, rdb, k, "j", "newcomer", "")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindRestoring, fresh[0].Kind, "a newcomer waits while waiters are put back")
			st, err := waitingroom.RunJoin(ctx, rdb, k, "s", "not-back-yet", "")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindRestoring, st[0].Kind)

			st, err = waitingroom.RunJoin(ctx, rdb, k,
				"r", "w500", "500|g1", "r", "w7", "7|g1", "r", "bought", "3|g1", "r", "w9000", "9000|g1")
			require.NoError(t, err)
			require.Equal(t, []string{waitingroom.KindWaiting, waitingroom.KindWaiting, waitingroom.KindPurchased, waitingroom.KindWaiting},
				[]string{st[0].Kind, st[1].Kind, st[2].Kind, st[3].Kind})
			require.Equal(t, 500.0, st[0].Place)
			require.EqualValues(t, 1, st[1].Position, "w7 is ahead of w500")
			require.EqualValues(t, 3, st[3].Position)
			for u, place := range map[string]float64{"w7": 7, "w500": 500, "w9000": 9000} {
				got, ok := zscore(t, rdb, k.Q, u)
				require.True(t, ok, u)
				require.Equal(t, place, got, u)
			}
			_, ok := zscore(t, rdb, k.Q, "bought")
			require.False(t, ok, "a buyer is not put back")
			require.EqualValues(t, 9000, hint(t, rdb, k.Stats, "seq"), "arrivals after the loss queue behind")
			require.EqualValues(t, 3, hint(t, rdb, k.Stats, "requeued_total"))

			// a second requeue by another node changes nothing
			st, err = waitingroom.RunJoin(ctx, rdb, k, "r", "w500", "500|g1")
			require.NoError(t, err)
			require.EqualValues(t, 2, st[0].Position)
			require.EqualValues(t, 3, hint(t, rdb, k.Stats, "requeued_total"))

			// the window over, a newcomer joins behind everyone put back
			require.NoError(t, rdb.HSet(ctx, k.Cfg, "requeue_until", now-1).Err())
			fresh, err = waitingroom.RunJoin(ctx, rdb, k, "j", "newcomer", "")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindWaiting, fresh[0].Kind)
			require.Equal(t, 9001.0, fresh[0].Place)
			require.EqualValues(t, 4, fresh[0].Position)
		})

		t.Run("prequeue places", func(t *testing.T) {
			k := ks.Sale("pq")
			now := redisNow(t, rdb)
			seedSale(t, rdb, k, map[string]any{"state": "open", "mode": "prequeue", "starts": now - 1000, "gen": "g2"}, 10)
			require.NoError(t, rdb.HSet(ctx, k.Stats, "seq", 5).Err())
			_, err := waitingroom.RunJoin(ctx, rdb, k, "r", "random", "123456789|g1", "r", "late", fmt.Sprintf("%d|g1", twoTo52+40))
			require.NoError(t, err)
			require.EqualValues(t, 40, hint(t, rdb, k.Stats, "seq"), "only an arrival-order place moves the sequence")
			st, err := waitingroom.RunJoin(ctx, rdb, k, "j", "after", "")
			require.NoError(t, err)
			require.Equal(t, float64(twoTo52+41), st[0].Place)
		})
	})
}

// TestHubPutsBackWaiters: when the rank table shows a new generation of a
// sale's keys (Redis lost them and they were written again), the hub puts
// the waiters whose sockets it holds back at the places it knows, in one
// call, and only those still waiting; positions go on from there.
func TestHubPutsBackWaiters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newHubEnv(t, 0)
	now := redisNow(t, e.rdb)
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "gen", "before").Err())
	conns := map[string]*waitingroom.Conn{}
	for _, place := range []int{3, 50, 120, 121} {
		u := fmt.Sprintf("w%d", place)
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Q, redisZ(float64(place), u)).Err())
		conns[u] = e.hub.AddTestConn("s1", u, waitingroom.KindWaiting, float64(place), 0)
	}
	admitted := e.hub.AddTestConn("s1", "admitted", waitingroom.KindAdmitted, 1, 0)
	e.ranks(t)
	e.hub.Tick(ctx)
	for _, c := range conns {
		c.Drain()
	}

	// Redis loses the sale; its live copy comes back with a new generation
	for _, key := range e.k.All() {
		require.NoError(t, e.rdb.Del(ctx, key).Err())
	}
	seedSale(t, e.rdb, e.k, map[string]any{"state": "open", "gen": "after", "requeue_until": now + 60_000}, 10)
	st, err := waitingroom.RunJoin(ctx, e.rdb, e.k, "j", "newcomer", "")
	require.NoError(t, err)
	require.Equal(t, waitingroom.KindRestoring, st[0].Kind)
	e.ranks(t)
	e.hub.Tick(ctx)

	members, err := e.rdb.ZRangeWithScores(ctx, e.k.Q, 0, -1).Result()
	require.NoError(t, err)
	got := map[string]float64{}
	for _, m := range members {
		got[m.Member.(string)] = m.Score
	}
	require.Equal(t, map[string]float64{"w3": 3, "w50": 50, "w120": 120, "w121": 121}, got,
		"every waiting socket is back at its place; the admitted one is not")
	_, ok := seenAt(t, e.rdb, e.k, "w50")
	require.True(t, ok, "those put back are present")
	require.Empty(t, admitted.Drain())

	require.Empty(t, conns["w121"].Drain(), "no position from a table made before the waiters were back")
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Empty(t, conns["w121"].Drain(), "no position while nodes are putting waiters back")

	// the window over, positions go on from the places put back (w121's is
	// 4 of 4, as before the loss: nothing new to send), and a waiter who
	// leaves now stays out: the same generation is put back only once
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "requeue_until", now-1).Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Empty(t, conns["w121"].Drain(), "the same position as before the loss")
	require.EqualValues(t, 4, hint(t, e.rdb, e.k.Stats, "requeued_total"))
	require.NoError(t, e.rdb.ZRem(ctx, e.k.Q, "w3").Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	require.Equal(t, []map[string]any{position(3, 3, false)}, decode(t, conns["w121"].Drain()))
	_, ok = zscore(t, e.rdb, e.k.Q, "w3")
	require.False(t, ok, "a waiter who left after the loss stays out")
}

// TestHubRequeueWaitsForState: while the sale's units are not rebuilt yet
// (the scripts answer no state), the hub keeps the old generation and puts
// the waiters back at a later tick.
func TestHubRequeueWaitsForState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newHubEnv(t, 0)
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "gen", "before").Err())
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Q, redisZ(9, "w9")).Err())
	e.hub.AddTestConn("s1", "w9", waitingroom.KindWaiting, 9, 0)
	e.ranks(t)
	e.hub.Tick(ctx)

	for _, key := range e.k.All() {
		require.NoError(t, e.rdb.Del(ctx, key).Err())
	}
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, liveCfg(map[string]any{"state": "open", "gen": "after"})).Err())
	e.ranks(t)
	e.hub.Tick(ctx) // no units: no state
	_, ok := zscore(t, e.rdb, e.k.Q, "w9")
	require.False(t, ok)

	require.NoError(t, e.rdb.HSet(ctx, e.k.Units, "remaining", 5, "reserved", 0, "held", 0, "sold", 0, "stock", 5).Err())
	e.ranks(t)
	e.hub.Tick(ctx)
	got, ok := zscore(t, e.rdb, e.k.Q, "w9")
	require.True(t, ok, "put back once the units are there")
	require.Equal(t, 9.0, got)
}

// TestPollersPutBackByTheirToken: shoppers who only poll (no socket) are
// put back after Redis loses the sale's keys by the place their queue
// token remembers, at their first poll after the rebuild, in their old
// order.
func TestPollersPutBackByTheirToken(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := pausedSale(t, s, map[string]any{"stock": 50})
		tokens := map[string]string{}
		places := map[string]float64{}
		for i := range 5 {
			u := fmt.Sprintf("poller%d-%s", i, testenv.RandomID())
			jb := join(t, s, saleID, u)
			tokens[u] = jb["queue_token"].(string)
			require.EqualValues(t, i+1, jb["position"])
		}
		k := s.Keys.Sale(saleID)
		for u := range tokens {
			sc, ok := zscore(t, s.Redis, k.Q, u)
			require.True(t, ok)
			places[u] = sc
		}
		// the loss: every key of the deployment's prefix, on every master
		require.Positive(t, s.FlushRedis(t))

		// each poller polls until answered (503 while the sale is rebuilt)
		for u, qt := range tokens {
			var body map[string]any
			testenv.Eventually(t, 15*time.Second, func() bool {
				r := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
				require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, r.Status, "%s", r.Body)
				if r.Status == http.StatusOK {
					body = r.JSON(t)
				}
				return r.Status == http.StatusOK
			}, "%s's status after the loss", u)
			require.Equal(t, "waiting", body["state"], "%v", body)
			sc, ok := zscore(t, s.Redis, k.Q, u)
			require.True(t, ok, "%s is back", u)
			require.Equal(t, places[u], sc, "%s is back at their own place", u)
		}
		for u := range tokens {
			r := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", tokens[u], nil)
			require.Equal(t, http.StatusOK, r.Status)
			require.EqualValues(t, slices.Index(sortedByPlace(places), u)+1, r.JSON(t)["position"], "%s's position", u)
		}
	})
}

func sortedByPlace(places map[string]float64) []string {
	users := make([]string, 0, len(places))
	for u := range places {
		users = append(users, u)
	}
	slices.SortFunc(users, func(a, b string) int { return cmp.Compare(places[a], places[b]) })
	return users
}

// TestLeavingVoidsTheToken: a shopper who left is not put back by their
// old queue token after Redis loses the sale's keys (the place given up is
// recorded in MySQL, which outlives the loss), while one who stayed is; and
// a shopper who left and joined again keeps the new place.
func TestLeavingVoidsTheToken(t *testing.T) {
	t.Parallel()
	testenv.EachBackend(t, func(t *testing.T, b testenv.Backend) {
		s := b.Start(t)
		saleID := pausedSale(t, s, map[string]any{"stock": 50})
		stayer, leaver, rejoiner := "stay-"+testenv.RandomID(), "leave-"+testenv.RandomID(), "rejoin-"+testenv.RandomID()
		tokens := map[string]string{}
		for _, u := range []string{leaver, rejoiner, stayer} {
			tokens[u] = join(t, s, saleID, u)["queue_token"].(string)
		}
		for _, u := range []string{leaver, rejoiner} {
			r := s.Do(t, "DELETE", "/api/v1/sales/"+saleID+"/join", tokens[u], nil)
			require.Equal(t, http.StatusNoContent, r.Status, "%s", r.Body)
		}
		fresh := join(t, s, saleID, rejoiner)["queue_token"].(string)
		k := s.Keys.Sale(saleID)
		rejoinPlace, ok := zscore(t, s.Redis, k.Q, rejoiner)
		require.True(t, ok)

		require.Positive(t, s.FlushRedis(t))

		poll := func(qt string) *testenv.Response {
			var r *testenv.Response
			testenv.Eventually(t, 15*time.Second, func() bool {
				r = s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
				return r.Status != http.StatusServiceUnavailable
			}, "an answer after the loss")
			return r
		}
		require.Equal(t, "waiting", poll(tokens[stayer]).JSON(t)["state"], "the stayer is put back")
		r := poll(tokens[leaver])
		require.Equal(t, http.StatusNotFound, r.Status, "the leaver's old token puts nobody back: %s", r.Body)
		require.Equal(t, "not_in_queue", r.Code(t))
		_, ok = zscore(t, s.Redis, k.Q, leaver)
		require.False(t, ok)
		// the rejoiner's old token is void; the new one puts them back at the new place
		require.Equal(t, http.StatusNotFound, poll(tokens[rejoiner]).Status)
		require.Equal(t, "waiting", poll(fresh).JSON(t)["state"])
		got, ok := zscore(t, s.Redis, k.Q, rejoiner)
		require.True(t, ok)
		require.Equal(t, rejoinPlace, got)
	})
}
