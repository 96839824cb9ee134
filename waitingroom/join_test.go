package waitingroom_test

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/waitingroom"
)

// 2^52: post-start places of a prequeue sale start here, behind every
// random pre-start place.
const twoTo52 = 1 << 52

func waitingAt(pos, qlen int64, place float64) waitingroom.UserState {
	return waitingroom.UserState{Kind: waitingroom.KindWaiting, Position: pos, QueueLen: qlen, Place: place}
}

// joinedAt is waitingAt as the join that placed the user answers it.
func joinedAt(pos, qlen int64, place float64) waitingroom.UserState {
	st := waitingAt(pos, qlen, place)
	st.New = true
	return st
}

func TestJoinFIFOPlacesInArrivalOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		q := startQueue(t, rdb, ks)

		before := redisNow(t, rdb)
		users := []string{"ann", "bob", "cat", "dan"}
		for i, u := range users {
			st, err := q.Join(ctx, "s1", u)
			require.NoError(t, err)
			n := int64(i + 1)
			require.Equal(t, joinedAt(n, n, float64(n)), st, "join %s", u)
			score, ok := zscore(t, rdb, k.Q, u)
			require.True(t, ok)
			require.Equal(t, float64(n), score, "%s's place is the arrival sequence", u)
		}
		st, err := q.Status(ctx, "s1", "cat")
		require.NoError(t, err)
		require.Equal(t, waitingAt(3, 4, 3), st)
		after := redisNow(t, rdb)
		require.EqualValues(t, 4, hint(t, rdb, k.Stats, "seq"))
		require.EqualValues(t, 4, hint(t, rdb, k.Stats, "joins_total"))
		// a join is presence, on Redis time
		for _, u := range users {
			seen, ok := seenAt(t, rdb, k, u)
			require.True(t, ok, "%s is present", u)
			require.GreaterOrEqual(t, seen, float64(before))
			require.LessOrEqual(t, seen, float64(after))
		}
	})
}

func TestJoinRejoinKeepsPlace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		q := startQueue(t, rdb, ks)
		joinMany(t, q, "s1", "u", 3)

		st, err := q.Join(ctx, "s1", "u-0000")
		require.NoError(t, err)
		require.Equal(t, waitingAt(1, 3, 1), st)
		st, err = q.Join(ctx, "s1", "u-0002")
		require.NoError(t, err)
		require.Equal(t, waitingAt(3, 3, 3), st)
		require.EqualValues(t, 3, rdb.ZCard(ctx, k.Q).Val())
		require.EqualValues(t, 3, hint(t, rdb, k.Stats, "seq"), "a rejoin takes no new place")
		require.EqualValues(t, 3, hint(t, rdb, k.Stats, "joins_total"))
	})
}

func TestJoinLeave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		q := startQueue(t, rdb, ks)
		joinMany(t, q, "s1", "u", 3)
		require.NoError(t, rdb.ZAdd(ctx, k.Lane, redisZ(0.5, "back")).Err())

		st, err := q.Leave(ctx, "s1", "u-0000")
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindLeft, st.Kind)
		_, ok := zscore(t, rdb, k.Q, "u-0000")
		require.False(t, ok, "left the queue")
		_, ok = seenAt(t, rdb, k, "u-0000")
		require.False(t, ok, "no longer present")

		st, err = q.Status(ctx, "s1", "u-0001")
		require.NoError(t, err)
		require.Equal(t, waitingAt(1, 3, 2), st, "the next one moves up")

		st, err = q.Leave(ctx, "s1", "back")
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindLeft, st.Kind, "leave also takes a user out of the lane")
		require.EqualValues(t, 0, rdb.ZCard(ctx, k.Lane).Val())

		for _, op := range []func(context.Context, string, string) (waitingroom.UserState, error){q.Leave, q.Status} {
			st, err = op(ctx, "s1", "u-0000")
			require.NoError(t, err)
			require.Equal(t, waitingroom.KindNotInQueue, st.Kind)
		}
		require.EqualValues(t, 2, rdb.ZCard(ctx, k.Q).Val())
	})
}

func TestJoinStatusNotInQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		q := startQueue(t, rdb, ks)

		st, err := q.Status(ctx, "s1", "zed")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindNotInQueue}, st)
		n, err := rdb.Exists(ctx, k.Q, k.SeenKey("zed"), k.Lane, k.Stats).Result()
		require.NoError(t, err)
		require.Zero(t, n, "a status call of a stranger writes nothing")
		require.Empty(t, seenAll(t, rdb, k))
	})
}

func TestJoinQueueNotOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		now := redisNow(t, rdb)
		seedSale(t, rdb, k, map[string]any{"state": "upcoming", "starts": now + 120_000, "qopens": now + 60_000}, 10)
		q := startQueue(t, rdb, ks)

		st, err := q.Join(ctx, "s1", "ann")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindNotOpen}, st)
		require.EqualValues(t, 0, rdb.ZCard(ctx, k.Q).Val())
		require.EqualValues(t, 0, hint(t, rdb, k.Stats, "seq"))

		// once the queue opens (before the start), a fifo sale answers waiting
		require.NoError(t, rdb.HSet(ctx, k.Cfg, "qopens", now-1000).Err())
		st, err = q.Join(ctx, "s1", "ann")
		require.NoError(t, err)
		require.Equal(t, joinedAt(1, 1, 1), st)
	})
}

func TestJoinEndedSale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(now int64) map[string]any
		want string
	}{
		{"closed", func(int64) map[string]any { return map[string]any{"state": "closed"} }, waitingroom.KindClosed},
		{"sold out", func(int64) map[string]any { return map[string]any{"state": "sold_out"} }, waitingroom.KindSoldOut},
		{"past its end", func(now int64) map[string]any { return map[string]any{"ends": now - 1000} }, waitingroom.KindClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				k := ks.Sale("s1")
				seedSale(t, rdb, k, tc.cfg(redisNow(t, rdb)), 10)
				require.NoError(t, rdb.HSet(ctx, k.Buyers, "buyer", "ord_1").Err())
				// still in the set: the admitter deletes a final sale's queue at its next tick
				require.NoError(t, rdb.ZAdd(ctx, k.Q, redisZ(1, "waiter")).Err())
				q := startQueue(t, rdb, ks)

				st, err := q.Join(ctx, "s1", "ann")
				require.NoError(t, err)
				require.Equal(t, waitingroom.UserState{Kind: tc.want}, st)
				st, err = q.Status(ctx, "s1", "ann")
				require.NoError(t, err)
				require.Equal(t, waitingroom.UserState{Kind: tc.want}, st)
				require.Equal(t, []string{"waiter"}, rdb.ZRange(ctx, k.Q, 0, -1).Val(), "nobody joins an ended sale")
				for _, op := range []func(context.Context, string, string) (waitingroom.UserState, error){q.Status, q.Join} {
					st, err = op(ctx, "s1", "waiter")
					require.NoError(t, err)
					require.Equal(t, waitingroom.UserState{Kind: tc.want}, st, "the queue has ended for a waiter too")
				}

				// a user's own state wins over the sale's end
				st, err = q.Status(ctx, "s1", "buyer")
				require.NoError(t, err)
				require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindPurchased, OrderID: "ord_1"}, st)
			})
		})
	}
}

func TestJoinPrequeueBeforeStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		now := redisNow(t, rdb)
		seedSale(t, rdb, k, map[string]any{"state": "upcoming", "mode": "prequeue", "starts": now + 600_000}, 10)
		q := startQueue(t, rdb, ks)

		const n = 1000
		states := make([]waitingroom.UserState, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { states[i], errs[i] = q.Join(ctx, "s1", fmt.Sprintf("u-%04d", i)) })
		}
		wg.Wait()
		places := map[string]float64{}
		for i, st := range states {
			require.NoError(t, errs[i])
			require.Equal(t, waitingroom.KindPrequeue, st.Kind)
			places[fmt.Sprintf("u-%04d", i)] = st.Place
		}

		distinct := map[float64]bool{}
		var sum float64
		quartiles := make([]int, 4)
		for u, p := range places {
			score, ok := zscore(t, rdb, k.Q, u)
			require.True(t, ok)
			require.Equal(t, p, score, "the answered place is the score")
			require.GreaterOrEqual(t, p, 0.0)
			require.Less(t, p, float64(twoTo52), "a 52-bit random place")
			require.Equal(t, p, math.Trunc(p))
			distinct[p] = true
			sum += p / twoTo52
			quartiles[int(p/twoTo52*4)]++
		}
		require.Len(t, distinct, n)
		// Uniform: the mean within 5.5 sigma of 1/2, each quartile within 5.8
		// sigma of n/4 (a false alarm is rarer than 1 in 10^7).
		require.InDelta(t, 0.5, sum/n, 0.05)
		for i, c := range quartiles {
			require.InDelta(t, n/4, c, 80, "quartile %d", i)
		}
		require.EqualValues(t, 0, hint(t, rdb, k.Stats, "seq"), "no arrival sequence before the start")

		st, err := q.Status(ctx, "s1", "u-0007")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindPrequeue, Place: places["u-0007"]}, st)
		st, err = q.Join(ctx, "s1", "u-0007")
		require.NoError(t, err)
		require.Equal(t, places["u-0007"], st.Place, "a rejoin keeps the random place")
	})
}

func TestJoinPrequeueAfterStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		now := redisNow(t, rdb)
		seedSale(t, rdb, k, map[string]any{"state": "upcoming", "mode": "prequeue", "starts": now - 1000}, 10)
		// two who joined before the start, at random places
		require.NoError(t, rdb.ZAdd(ctx, k.Q, redisZ(12345, "early1"), redisZ(twoTo52-1, "early2")).Err())
		q := startQueue(t, rdb, ks)

		st, err := q.Join(ctx, "s1", "late1")
		require.NoError(t, err)
		require.Equal(t, joinedAt(3, 3, twoTo52+1), st)
		st, err = q.Join(ctx, "s1", "late2")
		require.NoError(t, err)
		require.Equal(t, joinedAt(4, 4, twoTo52+2), st)
		for u, want := range map[string]string{"late1": "4503599627370497", "late2": "4503599627370498"} {
			got, ok := zscore(t, rdb, k.Q, u)
			require.True(t, ok)
			require.Equal(t, want, strconv.FormatFloat(got, 'f', -1, 64), "%s's score is exactly 2^52 + its arrival", u)
		}
		st, err = q.Status(ctx, "s1", "early2")
		require.NoError(t, err)
		require.Equal(t, waitingAt(2, 4, twoTo52-1), st, "after the start, early joiners wait too")
	})
}

func TestJoinAdmissionRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		nowS := redisNow(t, rdb) / 1000
		// ann's ticket expired unused (2 units reserved), cat's is live (1)
		require.NoError(t, rdb.HSet(ctx, k.Units, "reserved", 3).Err())
		require.NoError(t, rdb.HSet(ctx, k.Tix, "ann", fmt.Sprintf("j-ann|%d|%d|2", nowS-305, nowS-5),
			"cat", fmt.Sprintf("j-cat|%d|%d|1", nowS, nowS+300)).Err())
		require.NoError(t, rdb.ZAdd(ctx, k.Adm, redisZ(float64((nowS-5)*1000), "ann"), redisZ(float64((nowS+300)*1000), "cat")).Err())
		require.NoError(t, rdb.SAdd(ctx, k.Expired, "dan").Err())
		require.NoError(t, rdb.HSet(ctx, k.Stats, "seq", 1).Err())
		require.NoError(t, rdb.ZAdd(ctx, k.Q, redisZ(1, "bob")).Err())
		q := startQueue(t, rdb, ks)

		admitted := waitingroom.UserState{Kind: waitingroom.KindAdmitted, JTI: "j-cat", IssuedAt: nowS, Expires: nowS + 300}
		for _, op := range []func(context.Context, string, string) (waitingroom.UserState, error){q.Status, q.Join} {
			st, err := op(ctx, "s1", "cat")
			require.NoError(t, err)
			require.Equal(t, admitted, st)
		}

		// status reads an expired admission and changes nothing
		for _, u := range []string{"ann", "dan"} {
			st, err := q.Status(ctx, "s1", u)
			require.NoError(t, err)
			require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindExpired}, st, u)
		}
		require.EqualValues(t, 3, hint(t, rdb, k.Units, "reserved"))
		_, ok := tix(t, rdb, k, "ann")
		require.True(t, ok)

		// join requeues at the back and ends the admission: its reservation returns
		st, err := q.Join(ctx, "s1", "ann")
		require.NoError(t, err)
		require.Equal(t, joinedAt(2, 2, 2), st)
		require.EqualValues(t, 1, hint(t, rdb, k.Units, "reserved"), "ann's 2 units return")
		_, ok = tix(t, rdb, k, "ann")
		require.False(t, ok)
		_, ok = zscore(t, rdb, k.Adm, "ann")
		require.False(t, ok, "no longer a live ticket")
		require.EqualValues(t, 1, hint(t, rdb, k.Stats, "tickets_expired_total"))
		_, ok = zscore(t, rdb, k.Adm, "cat")
		require.True(t, ok)

		st, err = q.Join(ctx, "s1", "dan")
		require.NoError(t, err)
		require.Equal(t, joinedAt(3, 3, 3), st)
		require.False(t, rdb.SIsMember(ctx, k.Expired, "dan").Val(), "a rejoin clears expired")
		require.EqualValues(t, 10, hint(t, rdb, k.Units, "remaining"))
	})
}

func TestJoinPurchased(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		require.NoError(t, rdb.HSet(ctx, k.Buyers, "ann", "ord_42").Err())
		q := startQueue(t, rdb, ks)

		for _, op := range []func(context.Context, string, string) (waitingroom.UserState, error){q.Status, q.Join} {
			st, err := op(ctx, "s1", "ann")
			require.NoError(t, err)
			require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindPurchased, OrderID: "ord_42"}, st)
		}
		require.EqualValues(t, 0, rdb.ZCard(ctx, k.Q).Val(), "a buyer does not queue again")
	})
}

func TestJoinSkippedReturn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, map[string]any{"return_window": 900}, 10)
		now := redisNow(t, rdb)
		require.NoError(t, rdb.HSet(ctx, k.Skipped,
			"ann", fmt.Sprintf("7:%d", now-5_000), // within the window, polls
			"eve", fmt.Sprintf("6:%d", now-880_000), // within the window (by 20 s), joins
			"dan", fmt.Sprintf("4:%d", now-901_000), // beyond it
		).Err())
		require.NoError(t, rdb.ZAdd(ctx, k.Q, redisZ(8, "bob"), redisZ(9, "cat")).Err())
		require.NoError(t, rdb.HSet(ctx, k.Stats, "seq", 9).Err())
		q := startQueue(t, rdb, ks)

		st, err := q.Status(ctx, "s1", "ann")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindLane, Position: 1, QueueLen: 3, Place: 7}, st)
		place, ok := zscore(t, rdb, k.Lane, "ann")
		require.True(t, ok)
		require.Equal(t, 7.0, place, "the lane keeps the original place")
		require.False(t, rdb.HExists(ctx, k.Skipped, "ann").Val())
		_, ok = seenAt(t, rdb, k, "ann")
		require.True(t, ok, "the poll is presence")

		st, err = q.Join(ctx, "s1", "eve")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindLane, Position: 1, QueueLen: 4, Place: 6}, st)

		// nobody else's position goes up
		st, err = q.Status(ctx, "s1", "bob")
		require.NoError(t, err)
		require.Equal(t, waitingAt(1, 4, 8), st)

		// beyond the window: expired; status keeps the record, join requeues at the back
		st, err = q.Status(ctx, "s1", "dan")
		require.NoError(t, err)
		require.Equal(t, waitingroom.UserState{Kind: waitingroom.KindExpired}, st)
		require.True(t, rdb.HExists(ctx, k.Skipped, "dan").Val())
		st, err = q.Join(ctx, "s1", "dan")
		require.NoError(t, err)
		require.Equal(t, joinedAt(3, 5, 10), st)
		require.False(t, rdb.HExists(ctx, k.Skipped, "dan").Val())
		_, ok = zscore(t, rdb, k.Lane, "dan")
		require.False(t, ok)
	})
}

func TestJoinNoState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		keys func(k sale.Keys) []string
	}{
		{"no cfg and no units", func(k sale.Keys) []string { return []string{k.Cfg, k.Units} }},
		{"no cfg", func(k sale.Keys) []string { return []string{k.Cfg} }},
		{"no units", func(k sale.Keys) []string { return []string{k.Units} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				k := ks.Sale("s1")
				seedSale(t, rdb, k, nil, 10)
				require.NoError(t, rdb.Del(ctx, tc.keys(k)...).Err())
				q := startQueue(t, rdb, ks)

				_, err := q.Join(ctx, "s1", "ann")
				require.ErrorIs(t, err, waitingroom.ErrNoState)
				_, err = q.Status(ctx, "s1", "ann")
				require.ErrorIs(t, err, waitingroom.ErrNoState)
				_, err = waitingroom.RunJoin(ctx, rdb, k, "j", "ann", "", "s", "bob", "")
				require.ErrorIs(t, err, waitingroom.ErrNoState)
				require.EqualValues(t, 0, rdb.ZCard(ctx, k.Q).Val(), "nothing queued on a missing state")
			})
		})
	}
}

// TestJoinBatch: 500 concurrent joins through one Queue (batched into few
// script calls) give 500 distinct places, positions 1..500, and no error.
func TestJoinBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, nil, 10)
		q := startQueue(t, rdb, ks)

		const n = 500
		states := make([]waitingroom.UserState, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { states[i], errs[i] = q.Join(ctx, "s1", "u-"+strconv.Itoa(i)) })
		}
		wg.Wait()
		positions := make([]int, 0, n)
		for i, st := range states {
			require.NoError(t, errs[i])
			require.Equal(t, waitingroom.KindWaiting, st.Kind)
			require.Equal(t, float64(st.Position), st.Place, "fifo: position at join = place")
			score, ok := zscore(t, rdb, k.Q, "u-"+strconv.Itoa(i))
			require.True(t, ok)
			require.Equal(t, st.Place, score)
			positions = append(positions, int(st.Position))
		}
		sort.Ints(positions)
		for i, p := range positions {
			require.Equal(t, i+1, p)
		}
		require.EqualValues(t, n, rdb.ZCard(ctx, k.Q).Val())
		require.EqualValues(t, n, hint(t, rdb, k.Stats, "seq"))
		require.EqualValues(t, n, hint(t, rdb, k.Stats, "joins_total"))
	})
}

// TestJoinManySales: concurrent joins to 8 sales through one Queue, whose
// batches call one script per sale in one pipeline. On the cluster the
// sales sit on several masters (a pipeline there is split by slot), and
// each sale still places its 40 joiners at positions 1..40.
func TestJoinManySales(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		const sales, per = 8, 40
		servers := map[string]bool{}
		for i := range sales {
			k := ks.Sale(fmt.Sprintf("m%d", i))
			seedSale(t, rdb, k, nil, 10)
			c, err := testdb.ServerOf(ctx, rdb, k.Cfg)
			require.NoError(t, err)
			servers[c.Options().Addr] = true
		}
		if _, cluster := rdb.(*redis.ClusterClient); cluster {
			require.GreaterOrEqual(t, len(servers), 2, "the sales are spread over the masters")
		}
		q := startQueue(t, rdb, ks)

		states := make([][]waitingroom.UserState, sales)
		errs := make([][]error, sales)
		var wg sync.WaitGroup
		for i := range sales {
			states[i], errs[i] = make([]waitingroom.UserState, per), make([]error, per)
			for j := range per {
				wg.Go(func() { states[i][j], errs[i][j] = q.Join(ctx, fmt.Sprintf("m%d", i), fmt.Sprintf("u-%d", j)) })
			}
		}
		wg.Wait()
		for i := range sales {
			positions := make([]int, 0, per)
			for j, st := range states[i] {
				require.NoError(t, errs[i][j], "sale m%d, user %d", i, j)
				require.Equal(t, waitingroom.KindWaiting, st.Kind)
				positions = append(positions, int(st.Position))
			}
			sort.Ints(positions)
			for j, p := range positions {
				require.Equal(t, j+1, p, "sale m%d", i)
			}
			require.EqualValues(t, per, rdb.ZCard(ctx, ks.Sale(fmt.Sprintf("m%d", i)).Q).Val())
		}
	})
}
