package ratelimit_test

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/testdb"
)

// mode is one way of reaching Redis: one script over both keys (one
// server), or one call per key in a pipeline with a refund (Redis Cluster,
// run here on the one test server); each either a round trip per request
// or batched (Start); and both with the script's path for a Redis older
// than 7.0.
type mode struct {
	name    string
	new     func(ratelimit.Config, redis.UniversalClient, string) (*ratelimit.Limiter, error)
	batched bool
}

var modes = []mode{
	{"one script", ratelimit.New, false}, {"cluster pipeline", ratelimit.NewSplit, false},
	{"one script batched", ratelimit.New, true}, {"cluster pipeline batched", ratelimit.NewSplit, true},
	{"one script before Redis 7", ratelimit.NewBefore7(false), false},
	{"cluster pipeline before Redis 7", ratelimit.NewBefore7(true), true},
}

// forModes runs f once per mode, in parallel.
func forModes(t *testing.T, f func(t *testing.T, m mode)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			f(t, m)
		})
	}
}

func (m mode) limiter(t testing.TB, cfg ratelimit.Config, rdb redis.UniversalClient, prefix string) *ratelimit.Limiter {
	t.Helper()
	if cfg.Timeout == 0 {
		// on a busy machine a batch may wait longer than the default 200 ms;
		// these tests check the limits, not failing open (TestFailsOpen does)
		cfg.Timeout = 10 * time.Second
	}
	l, err := m.new(cfg, rdb, prefix)
	require.NoError(t, err)
	if m.batched {
		l.Start(context.Background())
		t.Cleanup(l.Stop)
	}
	return l
}

// client is the prefix a client is counted by, as the HTTP layer gives it.
func client(addr string) netip.Prefix { return clientaddr.Key(netip.MustParseAddr(addr)) }

// rateLimited checks err is the contract's 429 and returns it.
func rateLimited(t testing.TB, err error) *api.Error {
	t.Helper()
	require.Error(t, err, "the request must be refused")
	var e *api.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Equal(t, "rate_limited", e.Code)
	require.GreaterOrEqual(t, e.RetryAfter, 1)
	return e
}

// redisMicros is Redis's clock in µs, the clock of the TATs.
func redisMicros(t testing.TB, rdb *redis.Client) int64 {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	require.NoError(t, err)
	return now.UnixMicro()
}

// TestBurstThenSteadyRate: a burst is allowed at once, then the rate; the
// next request over it is 429 with Retry-After 1 (the next slot is 250 ms
// away), and over the whole run no more than rate × t + burst get through.
// (At 4/s the six calls of burst and refusal have 250 ms, room enough for
// six round trips on a loaded machine under -race; CI saw 10/s's 100 ms
// run out.)
func TestBurstThenSteadyRate(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		for _, tc := range []struct {
			name string
			cfg  ratelimit.Config
			addr netip.Prefix
			user string
		}{
			{"address", ratelimit.Config{IPRate: 4, IPBurst: 5}, client("192.0.2.1"), ""},
			{"user", ratelimit.Config{UserRate: 4, UserBurst: 5}, netip.Prefix{}, "auth0|alice"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				l := m.limiter(t, tc.cfg, rdb, ks.Prefix)
				ctx := context.Background()
				start := time.Now()
				allowed := 0
				for range 5 {
					require.NoError(t, l.Allow(ctx, tc.addr, tc.user), "the burst is allowed at once")
					allowed++
				}
				e := rateLimited(t, l.Allow(ctx, tc.addr, tc.user))
				require.Equal(t, 1, e.RetryAfter, "the next slot is 250 ms away")
				require.Contains(t, e.Message, tc.name)

				// Steady, a little under the rate: every request goes through.
				tick := time.NewTicker(300 * time.Millisecond)
				defer tick.Stop()
				for i := range 8 {
					<-tick.C
					require.NoError(t, l.Allow(ctx, tc.addr, tc.user), "steady request %d", i)
					allowed++
				}
				// Then as fast as it can: what the steady pace left unspent
				// (about 2 slots) goes through, then 429.
				refusedAt := -1
				for i := range 10 {
					if err := l.Allow(ctx, tc.addr, tc.user); err != nil {
						rateLimited(t, err)
						refusedAt = i
						break
					}
					allowed++
				}
				require.GreaterOrEqual(t, refusedAt, 0, "a flood after the steady run must be refused")
				require.LessOrEqual(t, refusedAt, 5)
				elapsed := time.Since(start).Seconds()
				require.LessOrEqual(t, float64(allowed), 4*elapsed+5+1, "allowed %d in %.2f s", allowed, elapsed)
			})
		}
	})
}

// TestRetryAfterIsTheWaitRoundedUp seeds a TAT and checks Retry-After is
// the time until the request would be allowed, in whole seconds rounded up,
// and that the refusal wrote nothing.
func TestRetryAfterIsTheWaitRoundedUp(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		ctx := context.Background()
		// Burst 1: a request is allowed once Redis's clock reaches the TAT.
		l := m.limiter(t, ratelimit.Config{IPRate: 1, IPBurst: 1, UserRate: 1, UserBurst: 1}, rdb, ks.Prefix)
		for i, tc := range []struct {
			ipAhead, userAhead time.Duration // 0: no seed
			want               int
			what               string
		}{
			{ipAhead: 200 * time.Millisecond, want: 1, what: "address"},
			{ipAhead: 4300 * time.Millisecond, want: 5, what: "address"},
			{userAhead: 9500 * time.Millisecond, want: 10, what: "user"},
			{ipAhead: 2300 * time.Millisecond, userAhead: 6300 * time.Millisecond, want: 7, what: "user"},
			{ipAhead: 3300 * time.Millisecond, userAhead: 1300 * time.Millisecond, want: 4, what: "address"},
		} {
			addr := client("198.51.100." + strconv.Itoa(i+1))
			user := "user-" + strconv.Itoa(i)
			seeds := map[string]string{}
			now := redisMicros(t, rdb)
			for key, ahead := range map[string]time.Duration{l.IPKey(addr): tc.ipAhead, l.UserKey(user): tc.userAhead} {
				if ahead > 0 {
					seeds[key] = strconv.FormatInt(now+ahead.Microseconds(), 10)
					require.NoError(t, rdb.Set(ctx, key, seeds[key], time.Minute).Err())
				}
			}
			e := rateLimited(t, l.Allow(ctx, addr, user))
			require.Equal(t, tc.want, e.RetryAfter, "case %d", i)
			require.Contains(t, e.Message, tc.what)
			for key, want := range seeds {
				got, err := rdb.Get(ctx, key).Result()
				require.NoError(t, err)
				require.Equal(t, want, got, "a refused request spends nothing")
			}
			if len(seeds) == 1 {
				// the limit that allowed spent nothing either
				for _, key := range []string{l.IPKey(addr), l.UserKey(user)} {
					if _, seeded := seeds[key]; !seeded {
						require.Zero(t, rdb.Exists(ctx, key).Val(), "case %d: %s was spent for a refused request", i, key)
					}
				}
			}
		}
	})
}

// TestRefusedRequestSpendsNothing: a request one limit refuses costs the
// other nothing, and a client polling while refused is allowed once its
// Retry-After has passed (were refusals spent, each would push its turn
// further and polling would never get through).
func TestRefusedRequestSpendsNothing(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		ctx := context.Background()

		t.Run("one limit refuses, the other is not spent", func(t *testing.T) {
			l := m.limiter(t, ratelimit.Config{IPRate: 1, IPBurst: 1, UserRate: 1, UserBurst: 1}, rdb, ks.Prefix+":a")
			a, b := client("203.0.113.1"), client("203.0.113.2")
			require.NoError(t, l.Allow(ctx, a, "u"))
			tatA, tatU := rdb.Get(ctx, l.IPKey(a)).Val(), rdb.Get(ctx, l.UserKey("u")).Val()
			require.NotEmpty(t, tatA)
			require.NotEmpty(t, tatU)

			e := rateLimited(t, l.Allow(ctx, a, "v"))
			require.Contains(t, e.Message, "address")
			require.Zero(t, rdb.Exists(ctx, l.UserKey("v")).Val(), "the user limit was spent for a request the address limit refused")

			e = rateLimited(t, l.Allow(ctx, b, "u"))
			require.Contains(t, e.Message, "user")
			require.Zero(t, rdb.Exists(ctx, l.IPKey(b)).Val(), "the address limit was spent for a request the user limit refused")

			require.Equal(t, tatA, rdb.Get(ctx, l.IPKey(a)).Val())
			require.Equal(t, tatU, rdb.Get(ctx, l.UserKey("u")).Val())
		})

		t.Run("allowed after Retry-After while polling", func(t *testing.T) {
			l := m.limiter(t, ratelimit.Config{IPRate: 2, IPBurst: 1, UserRate: 2, UserBurst: 1}, rdb, ks.Prefix+":b")
			addr := client("203.0.113.9")
			require.NoError(t, l.Allow(ctx, addr, "w"))
			refused := time.Now()
			e := rateLimited(t, l.Allow(ctx, addr, "w"))
			require.Equal(t, 1, e.RetryAfter)
			var polls int
			require.Eventually(t, func() bool {
				polls++
				return l.Allow(ctx, addr, "w") == nil
			}, time.Duration(e.RetryAfter)*time.Second+500*time.Millisecond, 20*time.Millisecond)
			require.Greater(t, polls, 5, "the client polled while refused")
			// the slot was 500 ms after the first request; the pre-filter may
			// add its own 250 ms
			require.Less(t, time.Since(refused), time.Duration(e.RetryAfter)*time.Second+300*time.Millisecond)
		})
	})
}

// TestTwoNodesKeepOneLimit: two Limiters on one Redis (two nodes) hammered
// at once let through no more than one limit, rate × t + burst, together.
func TestTwoNodesKeepOneLimit(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		for _, tc := range []struct {
			name string
			cfg  ratelimit.Config
			addr netip.Prefix
			user string
		}{
			{"address", ratelimit.Config{IPRate: 20, IPBurst: 10}, client("192.0.2.77"), ""},
			{"user", ratelimit.Config{UserRate: 20, UserBurst: 10}, netip.Prefix{}, "google-oauth2|123"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				a := m.limiter(t, tc.cfg, rdb, ks.Prefix)
				b := m.limiter(t, tc.cfg, rdb, ks.Prefix)
				ctx := context.Background()
				var allowed, wrong atomic.Int64
				start := time.Now()
				var wg sync.WaitGroup
				for _, l := range []*ratelimit.Limiter{a, b, a, b} {
					wg.Go(func() {
						tick := time.NewTicker(2 * time.Millisecond)
						defer tick.Stop()
						for time.Since(start) < time.Second {
							<-tick.C
							err := l.Allow(ctx, tc.addr, tc.user)
							var e *api.Error
							switch {
							case err == nil:
								allowed.Add(1)
							case !errors.As(err, &e) || e.Code != "rate_limited" || e.RetryAfter < 1:
								wrong.Add(1)
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start).Seconds()
				require.Zero(t, wrong.Load(), "every refusal is a 429 rate_limited with Retry-After")
				got := float64(allowed.Load())
				require.LessOrEqual(t, got, 20*elapsed+10+1, "two nodes let %v through in %.2f s", got, elapsed)
				require.GreaterOrEqual(t, got, 0.75*(20*1+10), "the limit must be reached, not starved by the pre-filter")
			})
		}
	})
}

// TestZeroTurnsALimitOff: a rate of 0 turns its limit off (no key is
// written for it); both off, Allow never asks Redis.
func TestZeroTurnsALimitOff(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		ctx := context.Background()

		t.Run("address off", func(t *testing.T) {
			l := m.limiter(t, ratelimit.Config{UserRate: 1, UserBurst: 1}, rdb, ks.Prefix+":a")
			addr := client("192.0.2.5")
			for i := range 100 {
				require.NoError(t, l.Allow(ctx, addr, "user-"+strconv.Itoa(i)))
			}
			require.Empty(t, keys(t, rdb, ks.Prefix+":a:rl:ip:*"))
			rateLimited(t, l.Allow(ctx, addr, "user-0")) // the user limit still holds
		})
		t.Run("user off", func(t *testing.T) {
			l := m.limiter(t, ratelimit.Config{IPRate: 1, IPBurst: 1}, rdb, ks.Prefix+":b")
			for i := range 100 {
				require.NoError(t, l.Allow(ctx, client("10.1.0."+strconv.Itoa(i)), "alice"))
			}
			require.Empty(t, keys(t, rdb, ks.Prefix+":b:rl:u:*"))
			rateLimited(t, l.Allow(ctx, client("10.1.0.0"), "bob")) // the address limit still holds
		})
		t.Run("both off", func(t *testing.T) {
			var log testdb.SyncBuffer
			dead := redis.NewClient(&redis.Options{Addr: freeAddr(t)})
			t.Cleanup(func() { dead.Close() })
			l := m.limiter(t, ratelimit.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))}, dead, "fs")
			for range 100 {
				require.NoError(t, l.Allow(ctx, client("192.0.2.5"), "alice"))
			}
			require.Empty(t, log.String(), "with both limits off Allow must not ask Redis")
		})
	})
}

// keys lists the keys matching pattern.
func keys(t testing.TB, rdb *redis.Client, pattern string) []string {
	t.Helper()
	var out []string
	iter := rdb.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for iter.Next(context.Background()) {
		out = append(out, iter.Val())
	}
	require.NoError(t, iter.Err())
	return out
}

// TestOddUserIDsAreSeparate: user ids holding separators, braces, non-ASCII
// or 255 bytes each get a limit of their own, under a hashed key that never
// holds the raw id.
func TestOddUserIDsAreSeparate(t *testing.T) {
	forModes(t, func(t *testing.T, m mode) {
		rdb, ks := testdb.Redis(t)
		ctx := context.Background()
		l := m.limiter(t, ratelimit.Config{UserRate: 1, UserBurst: 1}, rdb, ks.Prefix)
		long := strings.Repeat("x", 255)
		users := []string{"a|b", "a:b", "a", "b", "ab", "{x}", "a b", "ünï", "auth0|abc", "auth0|abd",
			long, long[:254] + "y", "rl:ip:1.2.3.4/32", "*"}
		for _, u := range users {
			require.NoError(t, l.Allow(ctx, netip.Prefix{}, u), "user %q", u)
		}
		for _, u := range users {
			rateLimited(t, l.Allow(ctx, netip.Prefix{}, u))
		}
		got := keys(t, rdb, ks.Prefix+":rl:*")
		require.Len(t, got, len(users))
		shape := regexp.MustCompile("^" + regexp.QuoteMeta(ks.Prefix) + `:rl:u:[0-9a-f]{32}$`)
		for _, k := range got {
			require.Regexp(t, shape, k)
		}
	})
}

// TestKeysExpireWhenIdle: each key lives as long as its TAT lies ahead
// (burst × interval at most), plus a second.
func TestKeysExpireWhenIdle(t *testing.T) {
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	l, err := ratelimit.New(ratelimit.Config{IPRate: 10, IPBurst: 5, UserRate: 2, UserBurst: 3}, rdb, ks.Prefix)
	require.NoError(t, err)
	addr := client("2001:db8:aa::1")
	require.Equal(t, ks.Prefix+":rl:ip:2001:db8:aa::/64", l.IPKey(addr))
	require.NoError(t, l.Allow(ctx, addr, "carol"))
	ipTTL := rdb.PTTL(ctx, l.IPKey(addr)).Val()
	require.Greater(t, ipTTL, time.Second)
	require.LessOrEqual(t, ipTTL, 1100*time.Millisecond) // one interval ahead
	userTTL := rdb.PTTL(ctx, l.UserKey("carol")).Val()
	require.Greater(t, userTTL, 1400*time.Millisecond)
	require.LessOrEqual(t, userTTL, 1500*time.Millisecond)
	for range 4 {
		require.NoError(t, l.Allow(ctx, addr, ""))
	}
	ipTTL = rdb.PTTL(ctx, l.IPKey(addr)).Val()
	require.Greater(t, ipTTL, 1400*time.Millisecond)
	require.LessOrEqual(t, ipTTL, 1500*time.Millisecond) // five intervals ahead
}

// TestPreFilterStaysBounded: 3× LocalKeys distinct addresses and users
// leave at most LocalKeys limiters in each map, whether the full shards
// find idle limiters to drop (a fast rate refills them at once) or must
// start over (a slow one); and a flooding client whose local limiter was
// dropped is still refused (by Redis).
func TestPreFilterStaysBounded(t *testing.T) {
	for _, tc := range []struct {
		bound int
		rate  float64
	}{
		{1000, 0.01}, // one shard, started over
		{4096, 0.01}, // sixteen shards, started over
		{4096, 1e5},  // sixteen shards, idle limiters dropped
	} {
		t.Run(strconv.Itoa(tc.bound)+"@"+strconv.FormatFloat(tc.rate, 'g', -1, 64), func(t *testing.T) {
			t.Parallel()
			rdb, ks := testdb.Redis(t)
			ctx := context.Background()
			l, err := ratelimit.New(ratelimit.Config{IPRate: tc.rate, IPBurst: 1, UserRate: tc.rate, UserBurst: 1, LocalKeys: tc.bound}, rdb, ks.Prefix)
			require.NoError(t, err)
			flood := client("198.18.0.1")
			require.NoError(t, l.Allow(ctx, flood, ""))
			for i := range 3 * tc.bound {
				addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
				require.NoError(t, l.Allow(ctx, clientaddr.Key(addr), "u"+strconv.Itoa(i)))
				if i%97 == 0 {
					ip, user := l.LocalLen()
					require.LessOrEqual(t, ip, tc.bound)
					require.LessOrEqual(t, user, tc.bound)
				}
			}
			ip, user := l.LocalLen()
			require.LessOrEqual(t, ip, tc.bound)
			require.LessOrEqual(t, user, tc.bound)
			require.Positive(t, ip)
			if tc.rate < 1 { // one request per 100 s: still spent
				rateLimited(t, l.Allow(ctx, flood, ""))
			}
		})
	}
}

// TestSweepForgetsIdleClients: the periodic sweep drops the pre-filter's
// limiters of clients refilled to their burst and keeps those still in
// debt, so a node's maps hold its recent clients, not all it ever saw.
func TestSweepForgetsIdleClients(t *testing.T) {
	t.Parallel()
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	// local pre-filter: 2/s, burst 4 per address and per user
	l, err := ratelimit.New(ratelimit.Config{IPRate: 1, IPBurst: 2, UserRate: 1, UserBurst: 2}, rdb, ks.Prefix)
	require.NoError(t, err)
	for i := range 50 {
		require.NoError(t, l.Allow(ctx, client("10.9.0."+strconv.Itoa(i)), "idle"+strconv.Itoa(i)))
	}
	busy := client("192.0.2.99")
	require.NoError(t, l.Allow(ctx, busy, "busy"))
	require.NoError(t, l.Allow(ctx, busy, "busy"))
	ip, user := l.LocalLen()
	require.Equal(t, 51, ip)
	require.Equal(t, 51, user)

	// now: nobody has refilled (every one spent at least one of 4 tokens)
	l.Sweep(time.Now())
	ip, user = l.LocalLen()
	require.Equal(t, 51, ip, "limiters still in debt are kept")
	require.Equal(t, 51, user)
	// 1.1 s on, the one-request clients are full again (2/s); the busy one
	// spent two and has refilled too by 2.1 s: at 1.1 s only it is kept
	l.Sweep(time.Now().Add(600 * time.Millisecond))
	ip, user = l.LocalLen()
	require.Equal(t, 1, ip, "idle addresses forgotten")
	require.Equal(t, 1, user, "idle users forgotten")
	l.Sweep(time.Now().Add(3 * time.Second))
	ip, user = l.LocalLen()
	require.Zero(t, ip)
	require.Zero(t, user)
}

// TestIPv6CountedByItsSlash64: addresses of one /64 share a limit (the HTTP
// layer passes clientaddr.Key), another /64 has its own, and an
// IPv4-mapped address is its IPv4 client.
func TestIPv6CountedByItsSlash64(t *testing.T) {
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	l, err := ratelimit.New(ratelimit.Config{IPRate: 1, IPBurst: 2}, rdb, ks.Prefix)
	require.NoError(t, err)
	a1, a2 := client("2001:db8:1:2::1"), client("2001:db8:1:2:ffff:ffff:ffff:fff0")
	require.NoError(t, l.Allow(ctx, a1, ""))
	require.NoError(t, l.Allow(ctx, a2, ""))
	rateLimited(t, l.Allow(ctx, a1, ""))
	rateLimited(t, l.Allow(ctx, a2, ""))
	require.NoError(t, l.Allow(ctx, client("2001:db8:1:3::1"), ""), "another /64 is another client")

	require.NoError(t, l.Allow(ctx, client("::ffff:192.0.2.8"), ""))
	require.NoError(t, l.Allow(ctx, client("192.0.2.8"), ""))
	rateLimited(t, l.Allow(ctx, client("::ffff:192.0.2.8"), ""))

	// an unmasked prefix counts as its network
	require.NoError(t, l.Allow(ctx, netip.MustParsePrefix("2001:db8:9::1/64"), ""))
	require.NoError(t, l.Allow(ctx, netip.MustParsePrefix("2001:db8:9::2/64"), ""))
	rateLimited(t, l.Allow(ctx, netip.MustParsePrefix("2001:db8:9::/64"), ""))
}

// TestPoliteClientNeverLimited: with the defaults, a shopper who loads the
// page (token, challenge, join, socket, status at once) and then polls
// status every poll_after_seconds (2 s) is never refused. After each poll
// the state is the same (the TAT one interval ahead), so two polls stand
// for any number.
func TestPoliteClientNeverLimited(t *testing.T) {
	t.Parallel()
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	l, err := ratelimit.New(ratelimit.DefaultConfig(), rdb, ks.Prefix)
	require.NoError(t, err)
	addr, user := client("2001:db8:77::5"), "auth0|shopper"
	for i := range 6 { // dev token, challenge, join, WebSocket, status, a socket reconnect
		require.NoError(t, l.Allow(ctx, addr, user), "page load call %d", i)
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for i := range 2 {
		<-tick.C
		require.NoError(t, l.Allow(ctx, addr, user), "poll %d", i)
		require.NoError(t, l.Allow(ctx, addr, user), "the socket's reconnect with poll %d", i)
	}
}

// TestPreFilterShedsFloods: a flood from one client reaches Redis only
// until the node's pre-filter (twice the rate and burst) is spent; the rest
// is refused locally, with a Retry-After too.
func TestPreFilterShedsFloods(t *testing.T) {
	rdb, ks := testdb.Redis(t)
	calls := &callCounter{}
	rdb.AddHook(calls)
	ctx := context.Background()
	l, err := ratelimit.New(ratelimit.Config{IPRate: 1, IPBurst: 2, UserRate: 1, UserBurst: 2}, rdb, ks.Prefix)
	require.NoError(t, err)
	addr := client("192.0.2.200")
	allowed := 0
	for range 1000 {
		if err := l.Allow(ctx, addr, "mallory"); err == nil {
			allowed++
		} else {
			rateLimited(t, err)
		}
	}
	require.Equal(t, 2, allowed, "the burst")
	// the pre-filter's burst of 4: 2 allowed by Redis, 2 refused by it
	require.LessOrEqual(t, calls.n.Load(), int64(4), "the flood reached Redis %d times", calls.n.Load())
	rateLimited(t, l.PreFilter(addr, "mallory"))
	// A request one pre-filter refuses costs the other nothing: the
	// address's local burst of 4 is whole after the user's refusals.
	other := client("192.0.2.201")
	for range 20 {
		rateLimited(t, l.PreFilter(other, "mallory"))
	}
	for i := range 4 {
		require.NoError(t, l.PreFilter(other, "user-"+strconv.Itoa(i)))
	}
}

// callCounter counts the calls a Redis client makes (a pipeline is one).
type callCounter struct{ n atomic.Int64 }

func (c *callCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *callCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *callCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmds)
	}
}

// freeAddr is a local address nothing listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// silentServer accepts connections and never answers: a Redis that hangs.
func silentServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestFailsOpen: a Redis that refuses connections or never answers lets
// requests through within the timeout, warns once, and while Redis is
// being left alone each node's pre-filter still limits.
func TestFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(testing.TB) string
	}{
		{"nothing listens", freeAddr},
		{"never answers", silentServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// ContextTimeoutEnabled: else go-redis bounds socket reads by its
			// ReadTimeout (3 s), not by Allow's context
			rdb := redis.NewClient(&redis.Options{Addr: tc.addr(t), ContextTimeoutEnabled: true})
			t.Cleanup(func() { rdb.Close() })
			var log testdb.SyncBuffer
			cfg := ratelimit.Config{IPRate: 1, IPBurst: 1, UserRate: 1, UserBurst: 1,
				Timeout: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&log, nil))}
			for _, m := range modes {
				l := m.limiter(t, cfg, rdb, "fs")
				start := time.Now()
				require.NoError(t, l.Allow(context.Background(), client("192.0.2.1"), "alice"), m.name)
				require.Less(t, time.Since(start), time.Second, "%s: Allow must not wait for a dead Redis", m.name)
				start = time.Now()
				require.NoError(t, l.Allow(context.Background(), client("192.0.2.1"), "alice"), m.name)
				require.Less(t, time.Since(start), 50*time.Millisecond, "%s: Redis is left alone for a second after a failure", m.name)
				// the pre-filter (burst 2) still holds
				rateLimited(t, l.Allow(context.Background(), client("192.0.2.1"), "alice"))
				require.NoError(t, l.Allow(context.Background(), client("192.0.2.2"), "bob"))
			}
			require.Equal(t, len(modes), strings.Count(log.String(), "rate limits: Redis failed"), "one warning per Limiter:\n%s", log.String())
		})
	}
}

// TestFailOpenWarnsAtMostEvery10s: a Redis down for longer than the pause
// after a failure is asked again, fails again, and is not logged again.
func TestFailOpenWarnsAtMostEvery10s(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: freeAddr(t)})
	t.Cleanup(func() { rdb.Close() })
	var log testdb.SyncBuffer
	calls := &callCounter{}
	rdb.AddHook(calls)
	l, err := ratelimit.New(ratelimit.Config{UserRate: 1000, UserBurst: 1000,
		Logger: slog.New(slog.NewTextHandler(&log, nil))}, rdb, "fs")
	require.NoError(t, err)
	i := 0
	require.Eventually(t, func() bool {
		i++
		require.NoError(t, l.Allow(context.Background(), netip.Prefix{}, "u"+strconv.Itoa(i)))
		return calls.n.Load() >= 2 // a second failure, after the pause
	}, 3*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, strings.Count(log.String(), "rate limits: Redis failed"), log.String())
}

// TestCanceledRequestIsNotAnOutage: a request whose client hung up allows
// (nothing to limit) without calling Redis down.
func TestCanceledRequestIsNotAnOutage(t *testing.T) {
	rdb, ks := testdb.Redis(t)
	var log testdb.SyncBuffer
	l, err := ratelimit.New(ratelimit.Config{IPRate: 1, IPBurst: 1, Logger: slog.New(slog.NewTextHandler(&log, nil))}, rdb, ks.Prefix)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, l.Allow(ctx, client("192.0.2.3"), ""))
	require.Empty(t, log.String())
	// Redis is still asked: the next request spends and the one after is refused.
	require.NoError(t, l.Allow(context.Background(), client("192.0.2.3"), ""))
	rateLimited(t, l.Allow(context.Background(), client("192.0.2.3"), ""))
}

// TestConfigValidate names every bad flag at once.
func TestConfigValidate(t *testing.T) {
	require.NoError(t, ratelimit.DefaultConfig().Validate())
	require.NoError(t, ratelimit.Config{}.Validate(), "all off")
	require.NoError(t, ratelimit.Config{IPRate: 0, IPBurst: 0, UserRate: 0.5, UserBurst: 1}.Validate())

	err := ratelimit.Config{IPRate: -1, UserRate: 5, UserBurst: 0}.Validate()
	require.ErrorContains(t, err, "--ip-rate")
	require.ErrorContains(t, err, "--user-burst")
	require.NotContains(t, err.Error(), "ratelimit.Config")

	for _, c := range []ratelimit.Config{
		{IPRate: 2e6, IPBurst: 1},
		{IPRate: 0.0001, IPBurst: 1},
		{IPRate: math.NaN(), IPBurst: 1},
		{IPRate: 1, IPBurst: 2_000_000},
		{IPRate: 1, IPBurst: -1},
	} {
		require.ErrorContains(t, c.Validate(), "--ip-", "%+v", c)
		_, err := ratelimit.New(c, nil, "fs")
		require.Error(t, err)
	}
}

// TestBatchesShareRoundTrips: many requests at once from many clients and
// from one greedy user cost far fewer Redis calls than requests, and the
// limits are as exact as one call each: every distinct client is allowed,
// and the greedy user gets exactly its burst.
func TestBatchesShareRoundTrips(t *testing.T) {
	for _, m := range modes {
		if !m.batched {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			rdb, ks := testdb.Redis(t)
			calls := &callCounter{}
			counted := redis.NewClient(rdb.Options())
			t.Cleanup(func() { counted.Close() })
			counted.AddHook(calls)
			// a slow rate: nothing refills during the test
			// a Timeout long enough that a busy machine never makes it fail open
			l := m.limiter(t, ratelimit.Config{IPRate: 0.01, IPBurst: 1, UserRate: 0.01, UserBurst: 10, Timeout: 20 * time.Second}, counted, ks.Prefix)

			const clients = 400
			var allowed, greedy atomic.Int64
			var wg sync.WaitGroup
			for i := range clients {
				wg.Go(func() {
					addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
					if err := l.Allow(context.Background(), addr, "user-"+strconv.Itoa(i)); err == nil {
						allowed.Add(1)
					} else {
						rateLimited(t, err)
					}
				})
				wg.Go(func() {
					// the greedy user, from addresses of its own
					addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)}), 32)
					if err := l.Allow(context.Background(), addr, "greedy"); err == nil {
						greedy.Add(1)
					} else {
						rateLimited(t, err)
					}
				})
			}
			wg.Wait()
			require.EqualValues(t, clients, allowed.Load(), "every distinct client is within its limits")
			require.EqualValues(t, 10, greedy.Load(), "one user gets its burst, however its requests were batched")
			// 2×400 requests; the greedy user's are shed by the pre-filter
			// after its local burst of 20, so 420 reach the batchers
			require.Less(t, calls.n.Load(), int64(clients), "batches must share round trips (%d calls)", calls.n.Load())
			t.Logf("%d Redis calls for %d requests", calls.n.Load(), 2*clients)
		})
	}
}

// TestStopThenStartAgain: after Stop, Allow goes on with a round trip
// of its own, and a second Start batches again.
func TestStopThenStartAgain(t *testing.T) {
	rdb, ks := testdb.Redis(t)
	l, err := ratelimit.New(ratelimit.Config{UserRate: 0.01, UserBurst: 2}, rdb, ks.Prefix)
	require.NoError(t, err)
	l.Start(context.Background())
	require.NoError(t, l.Allow(context.Background(), netip.Prefix{}, "carol"))
	l.Stop()
	require.NoError(t, l.Allow(context.Background(), netip.Prefix{}, "carol"))
	l.Start(context.Background())
	defer l.Stop()
	rateLimited(t, l.Allow(context.Background(), netip.Prefix{}, "carol"))
}
