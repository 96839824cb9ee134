package waitingroom_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math/big"
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

// TestRanks: the leader's rank table samples every rank below 100 and then
// ranks at most rank/divisor apart, so a position computed from it is exact
// for the first 100 waiters and within 1% for every one.
func TestRanks(t *testing.T) {
	t.Parallel()
	const n = 20_000
	for _, tc := range []struct {
		name   string
		scores func() []float64
		units  [2]int // remaining, reserved
	}{
		// arrival places with holes (left, admitted, skipped), gaps 1..8
		{"fifo with holes", func() []float64 {
			out := make([]float64, n)
			s := 0.0
			for i := range out {
				s += float64(1 + randN(8))
				out[i] = s
			}
			return out
		}, [2]int{10, 3}},
		// random 52-bit places, as a prequeue sale gives before its start
		{"prequeue places", func() []float64 {
			seen := map[float64]bool{}
			out := make([]float64, 0, n)
			for len(out) < n {
				var b [8]byte
				_, _ = rand.Read(b[:])
				p := float64(binary.BigEndian.Uint64(b[:]) >> 12)
				if !seen[p] {
					seen[p] = true
					out = append(out, p)
				}
			}
			slices.Sort(out)
			return out
		}, [2]int{10, 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rdb, ks := testenv.Redis(t)
			k := ks.Sale("s1")
			seedSale(t, rdb, k, nil, tc.units[0])
			require.NoError(t, rdb.HSet(ctx, k.Units, "reserved", tc.units[1]).Err())
			require.NoError(t, rdb.HSet(ctx, k.Stats, "admitted_total", 40, "skipped_total", 2).Err())
			require.NoError(t, rdb.ZAdd(ctx, k.Lane, redisZ(0, "back1"), redisZ(0.5, "back2")).Err())

			scores := tc.scores()
			pipe := rdb.Pipeline()
			for lo := 0; lo < n; lo += 1000 {
				zs := make([]redis.Z, 0, 1000)
				for i := lo; i < lo+1000; i++ {
					zs = append(zs, redisZ(scores[i], fmt.Sprintf("u%05d", i)))
				}
				pipe.ZAdd(ctx, k.Q, zs...)
			}
			_, err := pipe.Exec(ctx)
			require.NoError(t, err)
			require.EqualValues(t, n, rdb.ZCard(ctx, k.Q).Val())

			count, err := waitingroom.PublishRanks(ctx, rdb, k, 5*time.Second)
			require.NoError(t, err)
			raw, err := rdb.Get(ctx, k.Ranks).Result()
			require.NoError(t, err)
			pttl := rdb.PTTL(ctx, k.Ranks).Val()
			require.Greater(t, pttl, time.Duration(0))
			require.LessOrEqual(t, pttl, 5*time.Second, "the table expires unless republished")

			tab, err := waitingroom.ParseRankTable(raw)
			require.NoError(t, err)
			qlen, adv, state, allReserved := tab.Header()
			require.EqualValues(t, n+2, qlen, "queue_length counts the lane too")
			require.EqualValues(t, 42, adv, "advance = admitted + skipped")
			require.Equal(t, "open", state)
			require.Equal(t, tc.units[0] == tc.units[1], allReserved)

			ranks, sampled := tab.Samples()
			require.EqualValues(t, count, len(ranks))
			require.Less(t, len(ranks), 1500, "a small table")
			for i := range 100 {
				require.EqualValues(t, i, ranks[i], "every rank below 100")
			}
			for i, r := range ranks {
				require.Equal(t, scores[r], sampled[i], "the score at rank %d", r)
				if i > 0 && r > 100 {
					gap := r - ranks[i-1]
					require.LessOrEqual(t, gap, max(1, ranks[i-1]/waitingroom.RankDivisor), "samples at %d and %d", ranks[i-1], r)
				}
			}
			require.EqualValues(t, n-1, ranks[len(ranks)-1], "the tail is sampled")

			for i, sc := range scores {
				pos, want := tab.Position(sc), int64(i+1)
				if i < 100 {
					require.Equal(t, want, pos, "exact at rank %d", i)
					continue
				}
				require.LessOrEqual(t, abs(pos-want)*100, want, "rank %d: position %d, want %d within 1%%", i, pos, want)
			}
			require.EqualValues(t, 1, tab.Position(0.5), "the lane is ahead of the head")
			require.EqualValues(t, n+1, tab.Position(scores[n-1]+1), "behind the tail")
		})
	}
}

func TestRanksEmptyQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		seedSale(t, rdb, k, map[string]any{"state": "paused"}, 10)
		count, err := waitingroom.PublishRanks(ctx, rdb, k, time.Second)
		require.NoError(t, err)
		require.Zero(t, count)
		tab, err := waitingroom.ParseRankTable(rdb.Get(ctx, k.Ranks).Val())
		require.NoError(t, err)
		qlen, adv, state, allReserved := tab.Header()
		require.Equal(t, []any{int64(0), int64(0), "paused", false}, []any{qlen, adv, state, allReserved})
		require.EqualValues(t, 1, tab.Position(7))

		// no sale: no table
		require.NoError(t, rdb.Del(ctx, k.Cfg, k.Ranks).Err())
		count, err = waitingroom.PublishRanks(ctx, rdb, k, time.Second)
		require.NoError(t, err)
		require.Zero(t, count)
		require.Zero(t, rdb.Exists(ctx, k.Ranks).Val())
	})
}

func TestPresence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		// an old mark is overwritten
		markSeen(t, rdb, k, 1000, "b")

		before := redisNow(t, rdb)
		n, err := waitingroom.MarkPresent(ctx, rdb, k, "a", "b", "c")
		require.NoError(t, err)
		require.EqualValues(t, 3, n)
		now := redisNow(t, rdb)
		for _, u := range []string{"a", "b", "c"} {
			seen, ok := seenAt(t, rdb, k, u)
			require.True(t, ok, u)
			require.InDelta(t, float64(now), seen, 1000, "%s is marked on Redis time", u)
			require.GreaterOrEqual(t, seen, float64(before))
			require.LessOrEqual(t, seen, float64(now))
			require.Equal(t, float64(int64(seen)), seen, "whole milliseconds")
		}
		require.Len(t, seenAll(t, rdb, k), 3)

		n, err = waitingroom.MarkPresent(ctx, rdb, k)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Len(t, seenAll(t, rdb, k), 3)
	})
}

func randN(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
