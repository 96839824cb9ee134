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
// # One round trip, shared
//
// On one Redis server (a *redis.Client) both keys of a request go to one
// call of gcra.lua: every key allows or nothing is spent, atomically. On
// Redis Cluster (or any other client) an address's key and a user's key
// live on different slots, which one script may not touch together
// (CROSSSLOT), so each key gets its own single-key call, in one pipeline;
// when one allows and the other refuses, a second call (refund.lua, on the
// refusal path only) gives the spent request back.
//
// Between Start and Stop, requests in flight at the same moment share that
// round trip: a few batchers each take every request waiting and send them
// as one script call (one pipeline on Cluster), as the queue batches joins.
// A round trip per request cost a busy node about a third of its CPU in
// system calls (docs/bench-abuse.md); a batch costs one.
//
// # Not persisted
//
// The rate keys are written with replication off (redis.set_repl): they go
// neither to the AOF nor to replicas. Their state means something for a few
// seconds (a TAT at most a burst ahead), so after a restart or a failover
// each client starts with a fresh burst, as after a node's restart; writing
// every fresh client's key to the AOF was about a third of its Redis cost.
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
// each holds at most Config.LocalKeys limiters, in shards. Between Start and
// Stop, idle limiters (refilled to their burst) are swept every 10 s, so the
// maps hold the last seconds' clients, not every client since the start. A
// full shard first
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

var (
	// GCRALua defines the Lua functions gcra_limits(s), the limits of a
	// call (Pending.Params), and gcra_spend(keys, k, spec, limits, now),
	// the rate checks of one request (Pending.AppendChecks). A script that
	// carries requests' checks along with its own work (join.lua) starts
	// with it; see Limiter.Foldable.
	//
	//go:embed gcra_fn.lua
	GCRALua string
	//go:embed gcra.lua
	gcraLua string
	//go:embed refund.lua
	refundLua string

	gcraScript   = sale.NewScript(GCRALua + "\n" + gcraLua)
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

// Limiter checks requests against the limits. It is safe for concurrent use;
// its batchers run between Start and Stop.
type Limiter struct {
	cfg    Config
	rdb    redis.UniversalClient
	prefix string
	// split: the two keys of a request may live on different servers (Redis
	// Cluster): one call per key, in one pipeline.
	split  bool
	ip     limit[netip.Prefix]
	user   limit[[16]byte]
	script *redis.Script // gcraScript (tests: its pre-7.0 path)
	// params is gcra_limits's argument: each limit's interval and burst
	// ("0:0" when off), the address limit first (its checks say "1"), then
	// the user limit ("2")
	params string

	downUntil atomic.Int64 // unix ns: Redis is left alone until then
	lastLog   atomic.Int64 // unix ns of the last outage warning

	// Start's batchers take requests from reqs while batched is true.
	reqs    chan *request
	batched atomic.Bool
	startstop.Loop
}

// limit is one of the two limits: its GCRA parameters and its pre-filter.
type limit[K comparable] struct {
	on       bool
	what     string // "address" or "user", for the refusal's message
	id       byte   // the digit that names it in a request's checks (gcra_spend's spec)
	interval int64  // the emission interval in µs
	burst    int
	local    *local[K]
}

func newLimit[K comparable](what string, id byte, rate float64, burst, localKeys int) limit[K] {
	if rate == 0 {
		return limit[K]{what: what, id: id}
	}
	return limit[K]{
		on: true, what: what, id: id,
		interval: max(1, int64(math.Round(1e6/rate))), burst: burst,
		local: newLocal[K](2*rate, 2*burst, localKeys),
	}
}

// params is the limit in gcra_limits's argument: "interval:burst".
func (lm *limit[K]) params() string {
	return strconv.FormatInt(lm.interval, 10) + ":" + strconv.Itoa(lm.burst)
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
	l := &Limiter{
		cfg: cfg, rdb: rdb, prefix: prefix, split: !single, script: gcraScript,
		reqs: make(chan *request, 4096),
		ip:   newLimit[netip.Prefix]("address", '1', cfg.IPRate, cfg.IPBurst, cfg.LocalKeys),
		user: newLimit[[16]byte]("user", '2', cfg.UserRate, cfg.UserBurst, cfg.LocalKeys),
	}
	l.params = l.ip.params() + ":" + l.user.params()
	return l, nil
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

// check is one key of a request on its way to Redis: the key, the limit it
// belongs to (its digit in gcra_spend's spec, its interval in µs for a
// refund) and the limit's name for the refusal.
type check struct {
	key      string
	id       byte
	interval int64
	what     string
}

// Allow spends one request of the client at addr (clientaddr.Key of its
// address; the invalid Prefix skips the address limit) and, when user is
// not "", of the user. It answers nil when every limit that is on allows,
// else the 429 rate_limited *api.Error with RetryAfter, the whole seconds
// (at least 1) until the request would be allowed; a refused request spends
// nothing in Redis. It costs at most one Redis round trip, shared with the
// requests in flight at the same moment once Start runs the batchers (two
// on Redis Cluster when one limit allows and the other refuses), and allows
// when Redis fails or is slow. Allow is Reserve, then Spend.
func (l *Limiter) Allow(ctx context.Context, addr netip.Prefix, user string) error {
	p, err := l.Reserve(addr, user)
	if err != nil {
		return err
	}
	return l.Spend(ctx, p)
}

// Pending is a request the local pre-filter let through, whose Redis checks
// are still to make: by Spend, or carried in another script of the same
// Redis server (AppendChecks, then Refusal with what gcra_spend answered).
// The zero Pending has no checks.
type Pending struct {
	checks [2]check
	n      int
	params string
}

// Empty reports whether p has no Redis checks to make (every limit off for
// it, or Redis failed a moment ago and the pre-filter alone limits).
func (p Pending) Empty() bool { return p.n == 0 }

// Reserve is the local half of Allow: the pre-filter spends one request of
// addr and user (the 429 when it sheds it) and returns the Redis checks
// still to make.
func (l *Limiter) Reserve(addr netip.Prefix, user string) (Pending, error) {
	now := time.Now()
	var p Pending
	var err error
	p.checks, p.n, err = l.preFilter(now, addr, user)
	if err != nil || p.n == 0 {
		return Pending{}, err
	}
	if now.UnixNano() < l.downUntil.Load() {
		return Pending{}, nil // Redis failed a moment ago: the pre-filter alone limits
	}
	p.params = l.params
	return p, nil
}

// Spend makes p's Redis checks: Allow's answer for the request Reserve let
// through.
func (l *Limiter) Spend(ctx context.Context, p Pending) error {
	if p.n == 0 {
		return nil
	}
	r := &request{checks: p.checks, n: p.n, params: p.params}
	if l.batched.Load() {
		r.done = make(chan result, 1)
		select {
		case l.reqs <- r:
			return l.await(ctx, r)
		default: // the batchers are behind: this one goes on its own
		}
	}
	rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	batch := [1]*request{r}
	l.spend(rctx, batch[:])
	return l.answer(ctx, r.res)
}

// Foldable reports whether a request's checks may ride in another script
// (AppendChecks): only on one Redis server, where a script may touch any
// key. On Redis Cluster an address's key, a user's key and a sale's keys
// live on different slots.
func (l *Limiter) Foldable() bool { return !l.split }

// AppendChecks appends p's keys to a script call's keys and returns its
// spec, as gcra_spend (GCRALua) reads them: which limit each key is, a
// digit per key. The call gives the limits once, before the first request
// whose checks it carries (gcra_limits of Params).
func (p Pending) AppendChecks(keys []string) ([]string, string) {
	var spec [2]byte
	for i, c := range p.checks[:p.n] {
		keys = append(keys, c.key)
		spec[i] = c.id
	}
	return keys, string(spec[:p.n])
}

// Params is the limits p's checks name, as gcra_limits reads them: the
// same for every Pending of one Limiter.
func (p Pending) Params() string { return p.params }

// Refusal is the answer to p from what gcra_spend answered in the script
// that carried its checks: nil when allowed (wait 0), else the 429 of
// Allow, or an error when worst names no check of p.
func (p Pending) Refusal(wait int64, worst int) error {
	switch {
	case wait <= 0:
		return nil
	case worst < 1 || worst > p.n:
		return fmt.Errorf("ratelimit: gcra_spend named key %d of %d", worst, p.n)
	}
	return refusal(time.Duration(wait)*time.Microsecond, p.checks[worst-1].what)
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
		checks[n] = check{key: l.IPKey(addr), id: l.ip.id, interval: l.ip.interval, what: l.ip.what}
		n++
	}
	if userOn {
		checks[n] = check{key: l.prefix + ":rl:u:" + hex.EncodeToString(h[:]), id: l.user.id, interval: l.user.interval, what: l.user.what}
		n++
	}
	return checks, n, nil
}

// await waits for a batched request's answer, at most Config.Timeout.
func (l *Limiter) await(ctx context.Context, r *request) error {
	t := time.NewTimer(l.cfg.Timeout)
	defer t.Stop()
	select {
	case res := <-r.done:
		return l.answer(ctx, res)
	case <-t.C:
		l.failed(ctx, errSlow)
		return nil
	case <-ctx.Done():
		return nil // the client hung up: nothing to limit
	}
}

var errSlow = errors.New("no answer within the rate limits' timeout")

// answer turns a request's result into Allow's.
func (l *Limiter) answer(ctx context.Context, res result) error {
	if res.err != nil {
		l.failed(ctx, res.err)
		return nil
	}
	if res.refundErr != nil {
		// The request is still refused, the safe side; one interval of
		// the other limit stays spent.
		l.failed(ctx, res.refundErr)
	}
	if res.wait > 0 {
		return refusal(time.Duration(res.wait)*time.Microsecond, res.what)
	}
	return nil
}

// request is one Allow on its way to Redis: its checks (n of them) and,
// batched, the channel its result comes back on.
type request struct {
	checks [2]check
	n      int
	params string
	res    result
	done   chan result // nil when Allow calls spend itself
}

// result is a request's answer: the µs to wait and which limit asks it, or
// 0 when every check allowed (and spent). refundErr is a failure to give
// back what one limit spent when the other refused (Redis Cluster).
type result struct {
	wait      int64
	what      string
	refundErr error
	err       error
}

// maxBatch bounds the requests of one script call (or one pipeline), and
// batchers is how many batches may be in flight at once, so one slow round
// trip does not hold up the next batch.
const (
	maxBatch = 256
	batchers = 4
)

// Start runs the batchers until ctx ends or Stop: from then on concurrent
// Allow calls share round trips, one script call (one pipeline on Redis
// Cluster) answering every request waiting at that moment. Without Start
// every Allow makes its own round trip.
func (l *Limiter) Start(ctx context.Context) {
	l.Go(ctx, func(ctx context.Context) {
		l.batched.Store(true)
		var wg sync.WaitGroup
		for range batchers {
			wg.Go(func() { l.batch(ctx) })
		}
		// idle pre-filter limiters go every sweepEvery (see sweep)
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
	loop:
		for {
			select {
			case now := <-t.C:
				l.sweep(now)
			case <-ctx.Done():
				break loop
			}
		}
		l.batched.Store(false)
		wg.Wait()
		// Whatever came in while stopping is allowed at once (a request
		// that saw batched just before it turned off and came in after
		// this drain waits out Config.Timeout, and is allowed then).
		for {
			select {
			case r := <-l.reqs:
				r.done <- result{} // allowed: the node is stopping, Redis is not at fault
			default:
				return
			}
		}
	})
}

// sweepEvery spaces the pre-filter's sweeps of idle limiters: a client
// idle that long (and refilled) is forgotten, at no cost (a new limiter is
// the same as a full one), so the maps hold the last seconds' clients, not
// every client since the node started.
const sweepEvery = 10 * time.Second

// sweep drops the pre-filter's idle limiters.
func (l *Limiter) sweep(now time.Time) {
	if l.ip.on {
		l.ip.local.sweep(now)
	}
	if l.user.on {
		l.user.local.sweep(now)
	}
}

func (l *Limiter) batch(ctx context.Context) {
	batch := make([]*request, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case r := <-l.reqs:
			batch = append(batch, r)
		case <-ctx.Done():
			return
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-l.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		rctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
		l.spend(rctx, batch)
		cancel()
		for _, r := range batch {
			r.done <- r.res
		}
	}
}

// spend runs the GCRA of the requests and sets each one's res.
func (l *Limiter) spend(ctx context.Context, reqs []*request) {
	if !l.split {
		l.spendOne(ctx, reqs)
		return
	}
	l.spendSplit(ctx, reqs)
}

// spendOne: one call of gcra.lua for the whole batch (one Redis server).
func (l *Limiter) spendOne(ctx context.Context, reqs []*request) {
	keys := make([]string, 0, 2*len(reqs))
	args := make([]any, 1, 1+len(reqs))
	args[0] = reqs[0].params // (every request is this Limiter's)
	for _, r := range reqs {
		var spec string
		keys, spec = Pending{checks: r.checks, n: r.n}.AppendChecks(keys)
		args = append(args, spec)
	}
	replies, err := gcraReply(l.script.Run(ctx, l.rdb, keys, args...), len(reqs))
	for i, r := range reqs {
		switch {
		case err != nil:
			r.res = result{err: err}
		case replies[i].wait == 0:
			r.res = result{}
		case replies[i].worst < 1 || replies[i].worst > r.n:
			r.res = result{err: fmt.Errorf("ratelimit: gcra.lua named key %d of %d", replies[i].worst, r.n)}
		default:
			r.res = result{wait: replies[i].wait, what: r.checks[replies[i].worst-1].what}
		}
	}
}

// spendSplit: Redis Cluster, where a request's two keys live on different
// slots: one single-key call per check, all in one pipeline; a request that
// one limit refused and the other allowed gets the spent one back (a second
// pipeline, on the refusal path only).
func (l *Limiter) spendSplit(ctx context.Context, reqs []*request) {
	cmds := make([][2]*redis.Cmd, len(reqs))
	err := sale.ExecPipeline(ctx, l.rdb, func(pipe redis.Pipeliner) {
		for i, r := range reqs {
			for j, c := range r.checks[:r.n] {
				cmds[i][j] = l.script.EvalSha(ctx, pipe, []string{c.key}, r.params, string(rune(c.id)))
			}
		}
	})
	type refund struct {
		r *request
		c check
	}
	var refunds []refund
	for i, r := range reqs {
		if err != nil {
			r.res = result{err: err}
			continue
		}
		r.res = result{}
		var spent []check
		for j, c := range r.checks[:r.n] {
			replies, err := gcraReply(cmds[i][j], 1)
			if err != nil {
				r.res = result{err: err}
				break
			}
			if replies[0].wait == 0 {
				spent = append(spent, c)
			} else if replies[0].wait > r.res.wait {
				r.res.wait, r.res.what = replies[0].wait, c.what
			}
		}
		if r.res.err == nil && r.res.wait > 0 {
			// Refused by one limit: the other gives its request back, so
			// a refused request costs nothing.
			for _, c := range spent {
				refunds = append(refunds, refund{r, c})
			}
		}
	}
	if len(refunds) == 0 {
		return
	}
	rcmds := make([]*redis.Cmd, len(refunds))
	_ = sale.ExecPipeline(ctx, l.rdb, func(pipe redis.Pipeliner) {
		for i, f := range refunds {
			rcmds[i] = refundScript.EvalSha(ctx, pipe, []string{f.c.key}, f.c.interval)
		}
	})
	for i, f := range refunds {
		if err := rcmds[i].Err(); err != nil {
			f.r.res.refundErr = fmt.Errorf("ratelimit: refund of the %s limit: %w", f.c.what, err)
		}
	}
}

// gcraReply reads gcra.lua's reply for n requests, {wait, worst} each,
// and rejects any other shape.
func gcraReply(cmd *redis.Cmd, n int) ([]gcraAnswer, error) {
	v, err := cmd.Slice()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: gcra.lua: %w", err)
	}
	if len(v) != 2*n {
		return nil, fmt.Errorf("ratelimit: gcra.lua answered %d values for %d requests", len(v), n)
	}
	out := make([]gcraAnswer, n)
	for i := range out {
		w, ok1 := v[2*i].(int64)
		k, ok2 := v[2*i+1].(int64)
		if !ok1 || !ok2 || w < 0 || (w > 0) != (k > 0) {
			return nil, fmt.Errorf("ratelimit: gcra.lua answered %v", v[2*i:2*i+2])
		}
		out[i] = gcraAnswer{wait: w, worst: int(k)}
	}
	return out, nil
}

type gcraAnswer struct {
	wait  int64 // µs; 0 = allowed
	worst int   // 1-based key of the request that asks the wait
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
