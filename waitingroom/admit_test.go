package waitingroom_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// admitEnv is a seeded sale and an Admitter to run single admit steps with
// a lease planted by hand.
type admitEnv struct {
	rdb redis.UniversalClient
	k   sale.Keys
	a   *waitingroom.Admitter
}

const leaseValue = "me|6"

// newAdmitEnv is newAdmitEnvOn on one Redis.
func newAdmitEnv(t *testing.T, cfg map[string]any, stock int) *admitEnv {
	t.Helper()
	rdb, ks := testenv.Redis(t)
	return newAdmitEnvOn(t, rdb, ks, cfg, stock)
}

// newAdmitEnvOn seeds sale s1 on rdb under ks, with the lease planted.
func newAdmitEnvOn(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace, cfg map[string]any, stock int) *admitEnv {
	t.Helper()
	k := ks.Sale("s1")
	seedSale(t, rdb, k, cfg, stock)
	require.NoError(t, rdb.Set(context.Background(), k.Lease, leaseValue, 0).Err())
	a := waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Logger: quiet}, rdb, sale.NewStore(nil, rdb, ks))
	return &admitEnv{rdb: rdb, k: k, a: a}
}

// wait puts users in the queue at places 1, 2, ...; present ones are seen now.
func (e *admitEnv) wait(t *testing.T, present map[string]bool, users ...string) {
	t.Helper()
	ctx := context.Background()
	now := redisNow(t, e.rdb)
	for i, u := range users {
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Q, redisZ(float64(i+1), u)).Err())
		if present == nil || present[u] {
			markSeen(t, e.rdb, e.k, now, u)
		}
	}
}

func (e *admitEnv) admit(t *testing.T) waitingroom.AdmitResult {
	t.Helper()
	res, err := e.a.Admit(context.Background(), "s1", leaseValue)
	require.NoError(t, err)
	return res
}

func (e *admitEnv) queue(t *testing.T) []string {
	t.Helper()
	v, err := e.rdb.ZRange(context.Background(), e.k.Q, 0, -1).Result()
	require.NoError(t, err)
	return v
}

// admissions checks the admission records of users, in place order: a
// record "jti|iat|exp|reserved" per user with the given reservations,
// iat on Redis time, exp = iat + ttl, a live ticket scored exp*1000, one
// adm event each on the stream in that order; it returns the records.
func (e *admitEnv) admissions(t *testing.T, before, after int64, ttl int64, users []string, reserved []int64) []admitRecord {
	t.Helper()
	ctx := context.Background()
	var recs []admitRecord
	jtis := map[string]bool{}
	var evs []event
	for _, ev := range events(t, e.rdb, e.k) {
		if ev.T == "adm" {
			evs = append(evs, ev)
		}
	}
	require.Len(t, evs, len(users), "one adm event per admission")
	for i, u := range users {
		rec, ok := tix(t, e.rdb, e.k, u)
		require.True(t, ok, "%s has an admission record", u)
		require.GreaterOrEqual(t, rec.IAT, before/1000)
		require.LessOrEqual(t, rec.IAT, after/1000)
		require.Equal(t, rec.IAT+ttl, rec.Exp)
		require.Equal(t, reserved[i], rec.Reserved, "%s's reservation", u)
		require.NotEmpty(t, rec.JTI)
		require.False(t, jtis[rec.JTI], "jti %s is unique", rec.JTI)
		jtis[rec.JTI] = true
		score, ok := zscore(t, e.rdb, e.k.Adm, u)
		require.True(t, ok, "%s holds a live ticket", u)
		require.Equal(t, float64(rec.Exp*1000), score)
		require.Equal(t, event{T: "adm", U: u, D: fmt.Sprintf("%s|%d|%d", rec.JTI, rec.IAT, rec.Exp)}, evs[i])
		recs = append(recs, rec)
	}
	require.EqualValues(t, len(users), e.rdb.ZCard(ctx, e.k.Adm).Val())
	require.EqualValues(t, len(users), e.rdb.HLen(ctx, e.k.Tix).Val())
	return recs
}

func TestAdmitFenced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		lease string // "" for none
	}{
		{"a deposed leader", "other|7"},
		{"no leader", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100"}, 10)
				e.wait(t, nil, "u1", "u2", "u3")
				nowS := redisNow(t, e.rdb) / 1000
				require.NoError(t, e.rdb.HSet(ctx, e.k.Tix, "old", fmt.Sprintf("j|%d|%d|1", nowS-400, nowS-100)).Err())
				require.NoError(t, e.rdb.ZAdd(ctx, e.k.Adm, redisZ(float64((nowS-100)*1000), "old")).Err())
				require.NoError(t, e.rdb.Del(ctx, e.k.Lease).Err())
				if tc.lease != "" {
					require.NoError(t, e.rdb.Set(ctx, e.k.Lease, tc.lease, 0).Err())
				}

				_, err := e.a.Admit(ctx, "s1", "me|6")
				require.ErrorIs(t, err, waitingroom.ErrFenced)
				require.Equal(t, []string{"u1", "u2", "u3"}, e.queue(t), "nothing admitted")
				require.EqualValues(t, 1, e.rdb.ZCard(ctx, e.k.Adm).Val(), "nothing pruned either")
				require.EqualValues(t, 1, e.rdb.HLen(ctx, e.k.Tix).Val())
				require.Zero(t, e.rdb.Exists(ctx, e.k.Bucket, e.k.Stats, e.k.Ev, e.k.Expired).Val())
				require.EqualValues(t, 0, hint(t, e.rdb, e.k.Units, "reserved"))
			})
		})
	}
}

func TestAdmitInPlaceOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100", "ttl": 120, "max_active": 3}, 10)
		users := []string{"u1", "u2", "u3", "u4", "u5"}
		e.wait(t, nil, users...)
		before := redisNow(t, e.rdb)
		res := e.admit(t)
		after := redisNow(t, e.rdb)

		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Admitted: 3, QueueLen: 2, Active: 3, Unreserved: 7}, res)
		require.Equal(t, []string{"u4", "u5"}, e.queue(t), "the head goes first")
		e.admissions(t, before, after, 120, users[:3], []int64{1, 1, 1})
		require.EqualValues(t, 3, hint(t, e.rdb, e.k.Units, "reserved"))
		require.EqualValues(t, 10, hint(t, e.rdb, e.k.Units, "remaining"))
		require.EqualValues(t, 3, hint(t, e.rdb, e.k.Stats, "admitted_total"))
		require.EqualValues(t, 1, e.rdb.Exists(ctx, e.k.Bucket).Val(), "the limiter's state is kept")
	})
}

func TestAdmitLaneFirst(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100", "max_active": 2}, 10)
		e.wait(t, nil, "u1", "u2")
		// back from a skip, with their original places
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Lane, redisZ(7, "back7"), redisZ(0.5, "back0")).Err())
		res := e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Admitted: 2, QueueLen: 2, Active: 2, Unreserved: 8}, res)
		require.EqualValues(t, 0, e.rdb.ZCard(ctx, e.k.Lane).Val())
		require.Equal(t, []string{"u1", "u2"}, e.queue(t))
		var order []string
		for _, ev := range events(t, e.rdb, e.k) {
			order = append(order, ev.U)
		}
		require.Equal(t, []string{"back0", "back7"}, order)
	})
}

func TestAdmitSkipsAbsent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100", "abandon": 60}, 10)
		e.wait(t, map[string]bool{"u2": true, "u4": true, "u5": true}, "u1", "u2", "u3", "u4", "u5")
		// u1 was seen 61 s ago, u3 never, u5 45 s ago (within abandon_after)
		now := redisNow(t, e.rdb)
		markSeen(t, e.rdb, e.k, now-61_000, "u1")
		markSeen(t, e.rdb, e.k, now-45_000, "u5")

		before := redisNow(t, e.rdb)
		res := e.admit(t)
		after := redisNow(t, e.rdb)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Admitted: 3, Skipped: 2, QueueLen: 0, Active: 3, Unreserved: 7}, res)
		e.admissions(t, before, after, 300, []string{"u2", "u4", "u5"}, []int64{1, 1, 1})
		skipped, err := e.rdb.HGetAll(ctx, e.k.Skipped).Result()
		require.NoError(t, err)
		require.Len(t, skipped, 2)
		for u, place := range map[string]string{"u1": "1", "u3": "3"} {
			p, at, ok := strings.Cut(skipped[u], ":")
			require.True(t, ok, "skipped[%s] = %q", u, skipped[u])
			require.Equal(t, place, p, "%s keeps the original place", u)
			ms, err := strconv.ParseInt(at, 10, 64)
			require.NoError(t, err)
			require.GreaterOrEqual(t, ms, before)
			require.LessOrEqual(t, ms, after)
		}
		require.EqualValues(t, 2, hint(t, e.rdb, e.k.Stats, "skipped_total"))
		require.EqualValues(t, 3, hint(t, e.rdb, e.k.Stats, "admitted_total"))
		// presence is for waiters: neither the admitted nor the skipped keep an entry
		require.Empty(t, seenAll(t, e.rdb, e.k), "presence left")
	})
}

func TestAdmitMaxActive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100", "max_active": 3}, 10)
		nowS := redisNow(t, e.rdb) / 1000
		require.NoError(t, e.rdb.HSet(ctx, e.k.Tix, "old", fmt.Sprintf("j-old|%d|%d|1", nowS, nowS+300)).Err())
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Adm, redisZ(float64((nowS+300)*1000), "old")).Err())
		require.NoError(t, e.rdb.HSet(ctx, e.k.Units, "reserved", 1).Err())
		e.wait(t, nil, "u1", "u2", "u3", "u4")

		res := e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Admitted: 2, QueueLen: 2, Active: 3, Unreserved: 7}, res)
		require.Equal(t, []string{"u3", "u4"}, e.queue(t))
		require.EqualValues(t, 3, e.rdb.ZCard(ctx, e.k.Adm).Val())
		res = e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, QueueLen: 2, Active: 3, Unreserved: 7}, res, "full: nobody more")

		// a lower max_active than the live tickets admits nobody and ends none
		require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "max_active", 1).Err())
		res = e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, QueueLen: 2, Active: 3, Unreserved: 7}, res)
	})
}

func TestAdmitReservesUnits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100", "per_user": 2}, 5)
		e.wait(t, nil, "u1", "u2", "u3", "u4")
		before := redisNow(t, e.rdb)
		res := e.admit(t)
		after := redisNow(t, e.rdb)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Admitted: 3, QueueLen: 1, Active: 3, Unreserved: 0}, res)
		e.admissions(t, before, after, 300, []string{"u1", "u2", "u3"}, []int64{2, 2, 1})
		require.EqualValues(t, 5, hint(t, e.rdb, e.k.Units, "reserved"))
		require.EqualValues(t, 5, hint(t, e.rdb, e.k.Units, "remaining"))
		require.Equal(t, []string{"u4"}, e.queue(t), "no unit left unreserved: u4 waits")

		// all reserved: nobody admitted, nobody skipped, even an absent head
		require.NoError(t, e.rdb.HDel(ctx, e.k.SeenKey("u4"), "u4").Err())
		res = e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, QueueLen: 1, Active: 3, Unreserved: 0}, res)
		require.Equal(t, []string{"u4"}, e.queue(t))
		require.EqualValues(t, 5, hint(t, e.rdb, e.k.Units, "reserved"))
	})
}

func TestAdmitRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "5"}, 100)
		users := make([]string, 40)
		for i := range users {
			users[i] = fmt.Sprintf("u%02d", i)
		}
		e.wait(t, nil, users...)

		t0 := redisNow(t, e.rdb)
		res := e.admit(t)
		t1 := redisNow(t, e.rdb)
		require.EqualValues(t, 5, res.Admitted, "a burst of one second's admissions")
		res = e.admit(t)
		require.EqualValues(t, 0, res.Admitted, "then nothing at once")
		raw, err := e.rdb.Get(ctx, e.k.Bucket).Result()
		require.NoError(t, err)
		tatStr, interval, ok := strings.Cut(raw, "|")
		require.True(t, ok, "the bucket is tat|interval: %q", raw)
		require.Equal(t, "200.000000", interval, "the interval of 5/s, in ms")
		tat, err := strconv.ParseFloat(tatStr, 64)
		require.NoError(t, err)
		// the theoretical arrival time is 5 intervals (a second) past the burst
		require.GreaterOrEqual(t, tat, float64(t0+1000))
		require.LessOrEqual(t, tat, float64(t1+1000))
		pttl, err := e.rdb.PTTL(ctx, e.k.Bucket).Result()
		require.NoError(t, err)
		require.Greater(t, pttl.Milliseconds(), int64(60_000), "the bucket outlives a minute of idling")

		// then one every 200 ms: never more than the burst plus elapsed/T
		total := int64(5)
		testenv.Eventually(t, 10*time.Second, func() bool {
			res := e.admit(t)
			total += res.Admitted
			elapsed := redisNow(t, e.rdb) - t0
			require.LessOrEqual(t, total, 5+elapsed/200+1, "over the rate after %d ms", elapsed)
			return total >= 8
		}, "three more admissions at 5/s")
		elapsed := redisNow(t, e.rdb) - t0
		require.GreaterOrEqual(t, elapsed, int64(3*200-50), "8 admissions take 3 intervals after the burst")
		require.EqualValues(t, total, hint(t, e.rdb, e.k.Stats, "admitted_total"))
	})
}

func TestAdmitExpiresTickets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, nil, 10)
		nowS := redisNow(t, e.rdb) / 1000
		require.NoError(t, e.rdb.HSet(ctx, e.k.Units, "reserved", 3).Err())
		require.NoError(t, e.rdb.HSet(ctx, e.k.Tix,
			"gone", fmt.Sprintf("j-gone|%d|%d|2", nowS-301, nowS-1),
			"live", fmt.Sprintf("j-live|%d|%d|1", nowS, nowS+300)).Err())
		require.NoError(t, e.rdb.ZAdd(ctx, e.k.Adm, redisZ(float64((nowS-1)*1000), "gone"), redisZ(float64((nowS+300)*1000), "live")).Err())

		res := e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Open, Expired: 1, Active: 1, Unreserved: 9}, res)
		require.EqualValues(t, 1, hint(t, e.rdb, e.k.Units, "reserved"), "the expired ticket's 2 units return")
		_, ok := tix(t, e.rdb, e.k, "gone")
		require.False(t, ok)
		_, ok = tix(t, e.rdb, e.k, "live")
		require.True(t, ok)
		require.Equal(t, []string{"live"}, e.rdb.ZRange(ctx, e.k.Adm, 0, -1).Val())
		require.Equal(t, []string{"gone"}, e.rdb.SMembers(ctx, e.k.Expired).Val())
		require.EqualValues(t, 1, hint(t, e.rdb, e.k.Stats, "tickets_expired_total"))
		require.Equal(t, []event{{T: "exp", U: "gone"}}, events(t, e.rdb, e.k))

		// the user sees expired
		st, err := waitingroom.RunJoin(ctx, e.rdb, e.k, "s", "gone", "")
		require.NoError(t, err)
		require.Equal(t, []waitingroom.UserState{{Kind: waitingroom.KindExpired}}, st)
	})
}

func TestAdmitPaused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"state": "paused", "rate": "100"}, 10)
		e.wait(t, nil, "u1", "u2")
		res := e.admit(t)
		require.Equal(t, waitingroom.AdmitResult{State: sale.Paused, QueueLen: 2, Unreserved: 10}, res)
		require.Equal(t, []string{"u1", "u2"}, e.queue(t))
		require.Zero(t, e.rdb.Exists(ctx, e.k.Bucket, e.k.Tix, e.k.Adm, e.k.Ev).Val())
	})
}

func TestAdmitFinalSaleEndsQueue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(now int64) map[string]any
		want sale.State
	}{
		{"closed", func(int64) map[string]any { return map[string]any{"state": "closed"} }, sale.Closed},
		{"sold out", func(int64) map[string]any { return map[string]any{"state": "sold_out"} }, sale.SoldOut},
		{"past its end", func(now int64) map[string]any { return map[string]any{"ends": now - 1} }, sale.Closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				e := newAdmitEnvOn(t, rdb, ks, nil, 10)
				require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, tc.cfg(redisNow(t, e.rdb))).Err())
				e.wait(t, nil, "u1", "u2")
				require.NoError(t, e.rdb.ZAdd(ctx, e.k.Lane, redisZ(0.5, "back")).Err())
				res := e.admit(t)
				require.Equal(t, waitingroom.AdmitResult{State: tc.want}, res)
				require.Zero(t, e.rdb.Exists(ctx, e.k.Q, e.k.Lane, e.k.Tix, e.k.Adm).Val(), "the queue is gone, nobody admitted")
				require.Empty(t, seenAll(t, e.rdb, e.k), "and its presence")
			})
		})
	}
}

func TestAdmitNoState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, nil, 10)
		e.wait(t, nil, "u1")
		require.NoError(t, e.rdb.Del(ctx, e.k.Units).Err())
		_, err := e.a.Admit(ctx, "s1", leaseValue)
		require.ErrorIs(t, err, waitingroom.ErrNoState)
		require.Equal(t, []string{"u1"}, e.queue(t))
		require.Zero(t, e.rdb.Exists(ctx, e.k.Units).Val(), "missing units are never taken as 0 or full")
	})
}

// TestAdmitAfterRedisRestart: a sale stamped by another Redis server
// process (Redis restarted or failed over, maybe behind MySQL) admits
// nobody and takes no newcomer until the checkout has checked it again
// (and stamped it with this server's run id); waiters keep their status.
func TestAdmitAfterRedisRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "100"}, 10)
		e.wait(t, nil, "u1", "u2")
		// the run id of the server that holds the sale (its master on a cluster)
		run := testenv.RunID(t, e.rdb, e.k.Cfg)
		require.Len(t, run, 40)

		require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "rid", strings.Repeat("0", 40)).Err())
		_, err := e.a.Admit(ctx, "s1", leaseValue)
		require.ErrorIs(t, err, waitingroom.ErrStale)
		require.Equal(t, []string{"u1", "u2"}, e.queue(t), "nobody admitted")
		st, err := waitingroom.RunJoin(ctx, e.rdb, e.k, "j", "newcomer", "", "s", "u2", "")
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindRestoring, st[0].Kind, "a newcomer waits")
		require.Equal(t, waitingroom.KindWaiting, st[1].Kind, "a waiter's status is answered")

		require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "rid", run).Err())
		res := e.admit(t)
		require.EqualValues(t, 2, res.Admitted, "checked on this server: admission goes on")
		st, err = waitingroom.RunJoin(ctx, e.rdb, e.k, "j", "newcomer", "")
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindWaiting, st[0].Kind)
	})
}

// TestAdmitTinyRate: a rate below what the API accepts (stored before the
// check, or by hand) is clamped by the script, which must never fail half
// way: one waiter of a one-unit sale is admitted, the units add up, and the
// bucket is written.
func TestAdmitTinyRate(t *testing.T) {
	t.Parallel()
	for _, rate := range []string{"1e-300", "0", "-5", "nan", "inf"} {
		t.Run(rate, func(t *testing.T) {
			t.Parallel()
			testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
				e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": rate}, 1)
				e.wait(t, nil, "u1", "u2", "u3")
				res := e.admit(t)
				require.LessOrEqual(t, res.Admitted, int64(1), "one unit: at most one admission")
				ctx := context.Background()
				u, err := e.rdb.HGetAll(ctx, e.k.Units).Result()
				require.NoError(t, err)
				require.Equal(t, strconv.FormatInt(res.Admitted, 10), u["reserved"], "units: %v", u)
				require.EqualValues(t, res.Admitted, e.rdb.HLen(ctx, e.k.Tix).Val())
				for range 3 {
					e.admit(t)
				}
				require.LessOrEqual(t, e.rdb.HLen(ctx, e.k.Tix).Val(), int64(1), "never more admissions than units")
			})
		})
	}
}

// TestAdmitPassesWithinLimits: pass holders are admitted ahead of the
// queue and outside the rate, but never beyond max_active or the units;
// one who left the lane (left or banned) is dropped, not admitted.
func TestAdmitPassesWithinLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		e := newAdmitEnvOn(t, rdb, ks, map[string]any{"rate": "0.001", "max_active": "2"}, 5)
		e.wait(t, nil, "q1", "q2")
		for _, u := range []string{"p1", "p2", "p3", "gone"} {
			require.NoError(t, e.rdb.ZAdd(ctx, e.k.Lane, redisZ(0, u)).Err())
			require.NoError(t, e.rdb.ZAdd(ctx, e.k.Passes, redisZ(1, u)).Err())
		}
		require.NoError(t, e.rdb.ZRem(ctx, e.k.Lane, "gone").Err()) // left before the tick
		res := e.admit(t)
		require.EqualValues(t, 2, res.Admitted, "max_active 2")
		for _, u := range []string{"gone", "p1", "p2"} {
			_, ok := tix(t, e.rdb, e.k, u)
			require.Equal(t, u != "gone", ok, "%s admitted", u)
		}
		require.Equal(t, "2", e.rdb.HGet(ctx, e.k.Units, "reserved").Val())
		require.Equal(t, "2", e.rdb.HGet(ctx, e.k.Stats, "admitted_total").Val())
		require.Equal(t, []string{"p3"}, e.rdb.ZRange(ctx, e.k.Passes, 0, -1).Val(), "p3 waits; gone was dropped")
		require.Equal(t, []string{"q1", "q2"}, e.queue(t), "the queue did not move")
	})
}
