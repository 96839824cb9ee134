// Package ratelimit keeps the shopper calls' rate limits (DESIGN.md, "Abuse
// defence" → "Rate limits"): one per client address and one per user, each
// shared by every node, so N nodes do not multiply a limit.
//
// # Two layers
//
// The limit itself is a GCRA kept in Redis on Redis's clock (gcra.lua, with
// now_ms() of the shared prelude): one key per client address and per user
// holding the theoretical arrival time, expiring when idle. The rate and
// burst come in ARGV on every call, so a node started with other flags
// simply carries on from the same state.
//
// In front of it, each node keeps a local golang.org/x/time/rate limiter per
// key at twice the rate and twice the burst. A client within its limit sends
// no more than rate×t + burst to all nodes together, so it never meets the
// pre-filter; a flood does, and is shed before it costs Redis anything. The
// pre-filter counts every request it lets through, whether Redis then allows
// it or not, so a client that hammers past its limit is shed locally for as
// long as it keeps on.
//
// # Why our own script and not go-redis/redis_rate
//
// redis_rate is not among the project's chosen dependencies, and it would
// not fit if it were: it owns its key layout ("rate:" + key), checks one key
// per call, so a request refused by its user limit would still have spent
// its address's, and reads TIME itself instead of through the prelude every
// other script shares. The GCRA is 30 lines of Lua.
//
// # One round trip
//
// On one Redis server (a *redis.Client) both keys go to one call of
// gcra.lua: every key allows or nothing is spent, atomically. On Redis
// Cluster (or any other client) an address's key and a user's key live on
// different slots, which one script may not touch together (CROSSSLOT), so
// Allow sends two single-key calls in one pipeline; when one allows and the
// other refuses, a second call (refund.lua, on the refusal path only) gives
// the spent request back.
//
// # Redis down or slow
//
// A rate limiter must not take the shop down: when Redis fails or does not
// answer within Config.Timeout, Allow allows, logs at most once every 10 s,
// and for the next second leaves Redis alone (the pre-filter still limits
// each node on its own), so an outage adds no latency to every request.
//
// # Bounded memory
//
// The pre-filter's maps are keyed by client input (addresses, user ids), so
// each holds at most Config.LocalKeys limiters, in shards; a full shard first
// drops its idle limiters (those refilled to their burst, which forgetting
// changes nothing), and when that frees less than a quarter of it, it starts
// over empty. Forgetting a busy key costs nothing but a fresh local burst:
// Redis still holds its limit.
package ratelimit

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed gcra.lua
	gcraLua string
	//go:embed refund.lua
	refundLua string

	gcraScript   = sale.NewScript(gcraLua)
	refundScript = sale.NewScript(refundLua)
)

const (
	// logEvery spaces the warnings of a Redis outage: one per 10 s, however
	// many requests meet it.
	logEvery = 10 * time.Second
	// downFor is how long Allow leaves Redis alone after a failure.
	downFor = time.Second

	// The bounds keep a TAT (Redis µs, about 1.7e15) plus burst×interval
	// (at most 1e6 × 1e9 µs) exact in a Lua double (2^53 ≈ 9e15).
	minRate  = 0.001
	maxRate  = 1_000_000
	maxBurst = 1_000_000
)

// Config sets the limits. Zero rates turn a limit off; DefaultConfig has the
// contract's defaults.
type Config struct {
	IPRate    float64 // requests per second per client address (--ip-rate); 0 = off
	IPBurst   int     // requests at once per client address (--ip-burst)
	UserRate  float64 // requests per second per user (--user-rate); 0 = off
	UserBurst int     // requests at once per user (--user-burst)

	// LocalKeys bounds each of the pre-filter's two maps (addresses, users);
	// default 100,000 (about 15 MB each when full).
	LocalKeys int
	// Timeout bounds Allow's Redis call; default 200 ms. go-redis applies
	// a context's deadline to its socket reads and writes only with
	// Options.ContextTimeoutEnabled; without it a Redis that hangs holds
	// Allow for the client's ReadTimeout (3 s by default).
	Timeout time.Duration
	// Logger gets the Redis-outage warnings; default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig is the contract's defaults: 20/s with a burst of 40 per
// client address, 5/s with a burst of 10 per user.
func DefaultConfig() Config {
	return Config{IPRate: 20, IPBurst: 40, UserRate: 5, UserBurst: 10}
}

// Validate returns every problem of the limits at once, by flag name.
func (c Config) Validate() error {
	var errs []error
	check := func(rateFlag string, rate float64, burstFlag string, burst int) {
		switch {
		case math.IsNaN(rate) || rate < 0 || rate > maxRate:
			errs = append(errs, fmt.Errorf("%s must be 0 (off) or between %g and %d requests per second (it is %g)", rateFlag, minRate, maxRate, rate))
			return
		case rate == 0:
			return
		case rate < minRate:
			errs = append(errs, fmt.Errorf("%s must be at least %g requests per second, or 0 to turn the limit off (it is %g)", rateFlag, minRate, rate))
		}
		if burst < 1 || burst > maxBurst {
			errs = append(errs, fmt.Errorf("%s must be between 1 and %d while %s is on (it is %d); set %s 0 to turn the limit off", burstFlag, maxBurst, rateFlag, burst, rateFlag))
		}
	}
	check("--ip-rate", c.IPRate, "--ip-burst", c.IPBurst)
	check("--user-rate", c.UserRate, "--user-burst", c.UserBurst)
	if c.LocalKeys < 0 {
		errs = append(errs, fmt.Errorf("the pre-filter's LocalKeys must be 0 (default) or more (it is %d)", c.LocalKeys))
	}
	return errors.Join(errs...)
}

// Limiter checks requests against the limits. It is safe for concurrent use
// and owns no goroutine.
type Limiter struct {
	cfg    Config
	rdb    redis.UniversalClient
	prefix string
	// split: the two keys of a request may live on different servers (Redis
	// Cluster): one call per key, in one pipeline.
	split bool
	ip    limit[netip.Prefix]
	user  limit[[16]byte]

	downUntil atomic.Int64 // unix ns: Redis is left alone until then
	lastLog   atomic.Int64 // unix ns of the last outage warning
}

// limit is one of the two limits: its GCRA parameters and its pre-filter.
type limit[K comparable] struct {
	on       bool
	what     string // "address" or "user", for the refusal's message
	interval string // ARGV: the emission interval in µs
	burst    string // ARGV
	local    *local[K]
}

func newLimit[K comparable](what string, rate float64, burst, localKeys int) limit[K] {
	if rate == 0 {
		return limit[K]{what: what}
	}
	us := max(1, int64(math.Round(1e6/rate)))
	return limit[K]{
		on: true, what: what,
		interval: strconv.FormatInt(us, 10), burst: strconv.Itoa(burst),
		local: newLocal[K](2*rate, 2*burst, localKeys),
	}
}

// New builds a Limiter on rdb; prefix is the Redis key prefix ("fs" when
// empty), the same as sale.Keyspace's. The error names the flag to fix.
func New(cfg Config, rdb redis.UniversalClient, prefix string) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.LocalKeys == 0 {
		cfg.LocalKeys = 100_000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if prefix == "" {
		prefix = "fs"
	}
	_, single := rdb.(*redis.Client)
	return &Limiter{
		cfg: cfg, rdb: rdb, prefix: prefix, split: !single,
		ip:   newLimit[netip.Prefix]("address", cfg.IPRate, cfg.IPBurst, cfg.LocalKeys),
		user: newLimit[[16]byte]("user", cfg.UserRate, cfg.UserBurst, cfg.LocalKeys),
	}, nil
}

// IPKey is the Redis key of a client address's limit (addr as clientaddr.Key
// gives it).
func (l *Limiter) IPKey(addr netip.Prefix) string {
	return l.prefix + ":rl:ip:" + addr.Masked().String()
}

// UserKey is the Redis key of a user's limit: the user id hashed, since it
// may hold any byte.
func (l *Limiter) UserKey(user string) string {
	h := userHash(user)
	return l.prefix + ":rl:u:" + hex.EncodeToString(h[:])
}

func userHash(user string) [16]byte {
	sum := sha256.Sum256([]byte(user))
	return [16]byte(sum[:16])
}

// check is one key of a request on its way to Redis.
type check struct {
	key, interval, burst, what string
}

// Allow spends one request of the client at addr (clientaddr.Key of its
// address; the invalid Prefix skips the address limit) and, when user is
// not "", of the user. It answers nil when every limit that is on allows,
// else the 429 rate_limited *api.Error with RetryAfter, the whole seconds
// (at least 1) until the request would be allowed; a refused request spends
// nothing in Redis. It makes at most one Redis round trip (two on Redis
// Cluster when one limit allows and the other refuses), and allows when
// Redis fails or is slow.
func (l *Limiter) Allow(ctx context.Context, addr netip.Prefix, user string) error {
	now := time.Now()
	checks, n, err := l.preFilter(now, addr, user)
	if err != nil || n == 0 {
		return err
	}
	if now.UnixNano() < l.downUntil.Load() {
		return nil // Redis failed a moment ago: the pre-filter alone limits
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	wait, what, refundErr, err := l.spend(rctx, checks[:n])
	if err != nil {
		l.failed(ctx, err)
		return nil
	}
	if refundErr != nil {
		// The request is still refused, the safe side; one interval of
		// the other limit stays spent.
		l.failed(ctx, refundErr)
	}
	if wait > 0 {
		return refusal(time.Duration(wait)*time.Microsecond, what)
	}
	return nil
}

// preFilter asks the local limiters and, when they allow, returns the
// Redis checks to make (n of them). Both reservations are taken, then both
// given back when either must wait, so one limit's refusal costs the other
// nothing.
func (l *Limiter) preFilter(now time.Time, addr netip.Prefix, user string) (checks [2]check, n int, err error) {
	var ipRes, userRes reservation
	var h [16]byte
	ipOn := l.ip.on && addr.IsValid()
	userOn := l.user.on && user != ""
	if ipOn {
		addr = addr.Masked()
		ipRes = l.ip.local.reserve(addr, now)
	}
	if userOn {
		h = userHash(user)
		userRes = l.user.local.reserve(h, now)
	}
	ipWait, userWait := ipRes.delay(now), userRes.delay(now)
	if ipWait > 0 || userWait > 0 {
		ipRes.cancel(now)
		userRes.cancel(now)
		if ipWait >= userWait {
			return checks, 0, refusal(ipWait, l.ip.what)
		}
		return checks, 0, refusal(userWait, l.user.what)
	}
	// the keys only now: a shed flood costs no strings
	if ipOn {
		checks[n] = check{key: l.IPKey(addr), interval: l.ip.interval, burst: l.ip.burst, what: l.ip.what}
		n++
	}
	if userOn {
		checks[n] = check{key: l.prefix + ":rl:u:" + hex.EncodeToString(h[:]), interval: l.user.interval, burst: l.user.burst, what: l.user.what}
		n++
	}
	return checks, n, nil
}

// spend runs the GCRA of the checks: the µs to wait and which limit asks
// it, or 0 when every check allowed (and spent). refundErr is a failure to
// give back what one limit spent when the other refused (Redis Cluster).
func (l *Limiter) spend(ctx context.Context, checks []check) (wait int64, what string, refundErr, err error) {
	if !l.split || len(checks) == 1 {
		keys := make([]string, len(checks))
		args := make([]any, 0, 2*len(checks))
		for i, c := range checks {
			keys[i] = c.key
			args = append(args, c.interval, c.burst)
		}
		allowed, w, worst, err := gcraReply(gcraScript.Run(ctx, l.rdb, keys, args...))
		if err != nil || allowed {
			return 0, "", nil, err
		}
		if worst < 1 || worst > len(checks) {
			return 0, "", nil, fmt.Errorf("ratelimit: gcra.lua named key %d of %d", worst, len(checks))
		}
		return w, checks[worst-1].what, nil, nil
	}

	// Redis Cluster: one single-key call per limit, in one pipeline.
	var cmds [2]*redis.Cmd
	err = sale.ExecPipeline(ctx, l.rdb, func(pipe redis.Pipeliner) {
		for i, c := range checks {
			cmds[i] = gcraScript.EvalSha(ctx, pipe, []string{c.key}, c.interval, c.burst)
		}
	})
	if err != nil {
		return 0, "", nil, err
	}
	var spent []check
	for i, c := range checks {
		allowed, w, _, err := gcraReply(cmds[i])
		if err != nil {
			return 0, "", nil, err
		}
		if allowed {
			spent = append(spent, c)
		} else if w > wait {
			wait, what = w, c.what
		}
	}
	if wait == 0 {
		return 0, "", nil, nil
	}
	// Refused by one limit: the other gives its request back, so a refused
	// request costs nothing.
	for _, c := range spent {
		if err := refundScript.Run(ctx, l.rdb, []string{c.key}, c.interval).Err(); err != nil {
			refundErr = fmt.Errorf("ratelimit: refund of the %s limit: %w", c.what, err)
		}
	}
	return wait, what, refundErr, nil
}

// gcraReply reads gcra.lua's {allowed, wait_µs, worst key} and rejects any
// other reply.
func gcraReply(cmd *redis.Cmd) (allowed bool, wait int64, worst int, err error) {
	v, err := cmd.Slice()
	if err != nil {
		return false, 0, 0, fmt.Errorf("ratelimit: gcra.lua: %w", err)
	}
	if len(v) == 3 {
		code, ok1 := v[0].(int64)
		w, ok2 := v[1].(int64)
		k, ok3 := v[2].(int64)
		switch {
		case ok1 && ok2 && ok3 && code == 1:
			return true, 0, 0, nil
		case ok1 && ok2 && ok3 && code == 0 && w > 0:
			return false, w, int(k), nil
		}
	}
	return false, 0, 0, fmt.Errorf("ratelimit: gcra.lua answered %v", v)
}

// failed notes a Redis failure: Redis is left alone for downFor, and the
// failure logged unless one was in the last logEvery. A request whose own
// context ended (the client hung up) says nothing about Redis.
func (l *Limiter) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	now := time.Now().UnixNano()
	l.downUntil.Store(now + int64(downFor))
	last := l.lastLog.Load()
	if now-last < int64(logEvery) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.cfg.Logger.Warn("rate limits: Redis failed, allowing requests (each node's pre-filter still sheds floods); next warning in 10 s at the earliest",
		"err", err)
}

// refusal is the 429 of a request that must wait d.
func refusal(d time.Duration, what string) *api.Error {
	secs := max(1, int(math.Ceil(d.Seconds())))
	return &api.Error{
		Status:     http.StatusTooManyRequests,
		Code:       "rate_limited",
		Message:    fmt.Sprintf("too many requests from this %s; retry after %d s (Retry-After)", what, secs),
		RetryAfter: secs,
	}
}
