package waitingroom

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

var (
	//go:embed admit.lua
	admitLua string
	//go:embed lease.lua
	leaseLua string
	//go:embed resign.lua
	resignLua string
	//go:embed ranks.lua
	ranksLua string

	admitScript  = sale.NewScript(admitLua)
	leaseScript  = sale.NewScript(leaseLua)
	resignScript = sale.NewScript(resignLua)
	ranksScript  = sale.NewScript(ranksLua)
)

// AdmitterConfig configures the admitter. Zero values mean the defaults.
type AdmitterConfig struct {
	// Holder names this node in leases; default a random id.
	Holder string
	// Tick is how often a leader admits; default 100 ms; at most 1 s (a
	// longer one is taken as the default).
	Tick time.Duration
	// LeaseTTL is the leader lease; default 2 s. A leader trusts its lease
	// until its attempt started + TTL - TTL/4, and renews every TTL/4.
	LeaseTTL time.Duration
	// RankEvery is how often the leader publishes the rank table; default 250 ms.
	RankEvery time.Duration
	// BigQueue and RankEveryBig: a sale whose queue held at least BigQueue
	// waiters at its last tick gets its rank table every RankEveryBig
	// instead (defaults 100,000 and 1 s): ranks.lua's cost grows with the
	// queue (about 10 ms at a million), and positions a second old are off
	// by at most a second of admissions.
	BigQueue     int64
	RankEveryBig time.Duration
	// MaxPerTick bounds admissions in one tick of one sale; default 2000.
	MaxPerTick int
	// MaxSkipsPerTick bounds skips in one tick of one sale; default 2000.
	MaxSkipsPerTick int
	Logger          *slog.Logger
	Metrics         *Metrics
	// OnNoState starts a rebuild of a sale's live state in the background
	// when it is missing from Redis (checkout's Service.RebuildSoon, which
	// owns the rebuild). It must not block.
	OnNoState func(saleID string)
}

func (c AdmitterConfig) withDefaults() AdmitterConfig {
	if c.Holder == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		c.Holder = hex.EncodeToString(b)
	}
	if c.Tick <= 0 || c.Tick > time.Second {
		c.Tick = 100 * time.Millisecond
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = 2 * time.Second
	}
	if c.RankEvery <= 0 {
		c.RankEvery = 250 * time.Millisecond
	}
	if c.BigQueue <= 0 {
		c.BigQueue = 100_000
	}
	if c.RankEveryBig <= 0 {
		c.RankEveryBig = time.Second
	}
	if c.MaxPerTick <= 0 {
		c.MaxPerTick = 2000
	}
	if c.MaxSkipsPerTick <= 0 {
		c.MaxSkipsPerTick = 2000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Admitter admits shoppers. Every node with the admitter role runs one; per
// sale, the one holding the sale's lease admits, fenced by its token.
type Admitter struct {
	cfg   AdmitterConfig
	rdb   redis.UniversalClient
	keys  sale.Keyspace
	store *sale.Store

	mu     sync.Mutex
	leases map[string]lease     // sale → lease this node holds
	final  map[string]bool      // sales known final in MySQL (of the working set)
	ranks  map[string]rankState // sales this node leads: for publishRanks
	jobs   *startstop.Jobs      // a sale's close at its end, once at a time

	startstop.Loop
}

// rankState is what publishRanks needs of a sale it leads.
type rankState struct {
	queueLen int64     // at the last tick
	at       time.Time // last published
}

type lease struct {
	value string
	until time.Time // trusted until: attempt start + TTL - margin
}

// AdmitResult is one tick's outcome for one sale.
type AdmitResult struct {
	State                        sale.State
	Admitted, Skipped, Expired   int64
	QueueLen, Active, Unreserved int64
}

// NewAdmitter returns an admitter; Start runs it.
func NewAdmitter(cfg AdmitterConfig, rdb redis.UniversalClient, store *sale.Store) *Admitter {
	return &Admitter{cfg: cfg.withDefaults(), rdb: rdb, keys: store.Keys, store: store,
		leases: map[string]lease{}, final: map[string]bool{}, ranks: map[string]rankState{}, jobs: startstop.NewJobs()}
}

// Holder is this admitter's lease holder id.
func (a *Admitter) Holder() string { return a.cfg.Holder }

// Stop stops the admitter (resigning its leases) and waits for the jobs it
// started; safe twice.
func (a *Admitter) Stop() {
	a.Loop.Stop()
	a.jobs.Close()
}

// Start runs the admitter until ctx ends or Stop; on the way out it resigns
// its leases on a detached context so another node takes over at once.
func (a *Admitter) Start(ctx context.Context) {
	a.Go(ctx, func(ctx context.Context) {
		defer a.resignAll(context.WithoutCancel(ctx))
		tick := time.NewTicker(a.cfg.Tick)
		defer tick.Stop()
		var sales []string
		var lastSales, lastLease, lastRanks time.Time
		for {
			now := time.Now()
			if now.Sub(lastSales) >= time.Second {
				if ids, err := a.rdb.SMembers(ctx, a.keys.Sales()).Result(); err == nil {
					sales, lastSales = ids, now
					a.forgetOthers(ids)
				} else if ctx.Err() == nil {
					a.cfg.Logger.Warn("admitter: list sales", "err", err)
				}
			}
			if now.Sub(lastLease) >= a.cfg.LeaseTTL/4 {
				a.renew(ctx, sales)
				lastLease = now
			}
			a.admitAll(ctx)
			if now.Sub(lastRanks) >= a.cfg.RankEvery {
				a.publishRanks(ctx)
				lastRanks = now
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// renew takes or renews the lease of every sale, in one pipeline.
func (a *Admitter) renew(ctx context.Context, sales []string) {
	if len(sales) == 0 {
		return
	}
	start := time.Now()
	cmds := make([]*redis.Cmd, len(sales))
	_ = sale.ExecPipeline(ctx, a.rdb, func(pipe redis.Pipeliner) {
		for i, id := range sales {
			k := a.keys.Sale(id)
			cmds[i] = leaseScript.Run(ctx, pipe, []string{k.Lease, k.Fence}, a.cfg.Holder, a.cfg.LeaseTTL.Milliseconds())
		}
	})
	until := start.Add(a.cfg.LeaseTTL - a.cfg.LeaseTTL/4)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, id := range sales {
		held, value, err := parseLease(cmds[i])
		switch {
		case err != nil:
			// keep a lease we hold until it runs out; never extend it blindly
		case held:
			if old, ok := a.leases[id]; !ok || old.value != value {
				a.cfg.Logger.Info("admitter: leading", "sale", id, "lease", value)
			}
			a.leases[id] = lease{value: value, until: until}
		default:
			a.dropLocked(id)
		}
	}
}

func parseLease(cmd *redis.Cmd) (bool, string, error) {
	v, err := cmd.Slice()
	if err != nil {
		return false, "", err
	}
	if len(v) != 2 {
		return false, "", fmt.Errorf("lease script: unexpected reply %v", v)
	}
	flag, ok1 := v[0].(int64)
	val, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return false, "", fmt.Errorf("lease script: unexpected reply %v", v)
	}
	return flag == 1, val, nil
}

// Leading lists the sales this node leads now.
func (a *Admitter) Leading() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	out := map[string]string{}
	for id, l := range a.leases {
		if now.Before(l.until) {
			out[id] = l.value
		}
	}
	return out
}

func (a *Admitter) admitAll(ctx context.Context) {
	leading := a.Leading()
	if len(leading) == 0 {
		return
	}
	ids := make([]string, 0, len(leading))
	for id := range leading {
		ids = append(ids, id)
	}
	cmds := make([]*redis.Cmd, len(ids))
	_ = sale.ExecPipeline(ctx, a.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			cmds[i] = a.admitCmd(ctx, pipe, id, leading[id])
		}
	})
	for i, id := range ids {
		res, err := parseAdmit(cmds[i])
		a.handle(ctx, id, res, err)
	}
}

func (a *Admitter) admitCmd(ctx context.Context, c redis.Scripter, id, leaseValue string) *redis.Cmd {
	k := a.keys.Sale(id)
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	return admitScript.Run(ctx, c,
		[]string{k.Cfg, k.Q, k.Lane, k.Seen, k.Skipped, k.Expired, k.Adm, k.Tix, k.Units, k.Bucket, k.Lease, k.Stats, k.Ev, k.Passes},
		leaseValue, a.cfg.MaxPerTick, hex.EncodeToString(prefix)+"-", a.cfg.MaxSkipsPerTick, sale.EventStreamLen)
}

// Admit runs one admit step for a sale with the given lease value (tests
// use it to plant a deposed leader).
func (a *Admitter) Admit(ctx context.Context, saleID, leaseValue string) (AdmitResult, error) {
	return parseAdmit(a.admitCmd(ctx, a.rdb, saleID, leaseValue))
}

// ErrFenced is an admit step refused because the caller's lease is not the
// current one.
var ErrFenced = fmt.Errorf("admitter: lease lost (fenced)")

// ErrStale is an admit step refused because the sale's live state is from
// before a Redis restart and not checked against MySQL yet (the checkout's
// sweeper does that within a second).
var ErrStale = errors.New("admitter: the sale's live state is from before a Redis restart")

func parseAdmit(cmd *redis.Cmd) (AdmitResult, error) {
	v, err := cmd.Slice()
	if err != nil {
		return AdmitResult{}, storeErr(err)
	}
	if len(v) == 1 {
		switch v[0] {
		case "fenced":
			return AdmitResult{}, ErrFenced
		case "nostate":
			return AdmitResult{}, ErrNoState
		case "stale":
			return AdmitResult{}, ErrStale
		}
	}
	if len(v) != 8 || v[0] != "ok" {
		return AdmitResult{}, fmt.Errorf("admit script: unexpected reply %v", v)
	}
	st, _ := v[1].(string)
	n := make([]int64, 6)
	for i := range n {
		x, ok := v[i+2].(int64)
		if !ok {
			return AdmitResult{}, fmt.Errorf("admit script: unexpected reply %v", v)
		}
		n[i] = x
	}
	return AdmitResult{State: sale.State(st), Admitted: n[0], Skipped: n[1], Expired: n[2],
		QueueLen: n[3], Active: n[4], Unreserved: n[5]}, nil
}

func (a *Admitter) handle(ctx context.Context, id string, res AdmitResult, err error) {
	switch {
	case err == ErrFenced:
		a.mu.Lock()
		a.dropLocked(id)
		a.mu.Unlock()
		a.cfg.Logger.Info("admitter: lease lost", "sale", id)
		return
	case err == ErrStale:
		return // the checkout's sweeper revalidates the sale; admit at a later tick
	case err == ErrNoState:
		if a.cfg.OnNoState != nil {
			a.cfg.OnNoState(id)
		}
		return
	case err != nil:
		if ctx.Err() == nil {
			a.cfg.Logger.Warn("admitter: admit", "sale", id, "err", err)
		}
		return
	}
	if m := a.cfg.Metrics; m != nil {
		m.Admitted.Add(float64(res.Admitted))
		m.Skipped.Add(float64(res.Skipped))
		m.TicketsExpired.Add(float64(res.Expired))
		m.QueueLength.WithLabelValues(id).Set(float64(res.QueueLen))
		m.ActiveTickets.WithLabelValues(id).Set(float64(res.Active))
		m.Leader.WithLabelValues(id).Set(1)
	}
	a.mu.Lock()
	final := a.final[id]
	if _, leads := a.leases[id]; leads {
		r := a.ranks[id]
		r.queueLen = res.QueueLen
		a.ranks[id] = r
	}
	a.mu.Unlock()
	if res.State == sale.Closed && !final {
		// the sale's end passed: record it, once, so every node and MySQL
		// agree (the checkout's sweeper does too, as a safety net)
		a.jobs.Go("close:"+id, 30*time.Second, func(ctx context.Context) {
			s, err := a.store.Get(ctx, id)
			if err != nil {
				return
			}
			if !s.State.Final() {
				if err := a.store.Finish(ctx, id, sale.Closed); err != nil {
					a.cfg.Logger.Warn("admitter: close ended sale", "sale", id, "err", err)
					return
				}
				a.cfg.Logger.Info("admitter: sale ended", "sale", id)
			}
			a.mu.Lock()
			a.final[id] = true
			a.mu.Unlock()
		})
	}
}

// dropLocked forgets the lease of a sale this node no longer leads, and
// its per-sale gauges: only the leader exports them, so that a sum across
// nodes counts each sale once. Hold a.mu.
func (a *Admitter) dropLocked(id string) {
	delete(a.leases, id)
	delete(a.ranks, id)
	if m := a.cfg.Metrics; m != nil {
		m.QueueLength.DeleteLabelValues(id)
		m.ActiveTickets.DeleteLabelValues(id)
		m.Leader.DeleteLabelValues(id)
	}
}

// forgetOthers drops what the admitter keeps for sales that left the
// working set (final sales past their grace): leases, gauges, finality.
func (a *Admitter) forgetOthers(ids []string) {
	in := make(map[string]bool, len(ids))
	for _, id := range ids {
		in[id] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.leases {
		if !in[id] {
			a.dropLocked(id)
		}
	}
	for id := range a.final {
		if !in[id] {
			delete(a.final, id)
		}
	}
}

func (a *Admitter) publishRanks(ctx context.Context) {
	leading := a.Leading()
	now := time.Now()
	due := make([]string, 0, len(leading))
	a.mu.Lock()
	for id := range leading {
		r := a.ranks[id]
		if r.queueLen >= a.cfg.BigQueue && now.Sub(r.at) < a.cfg.RankEveryBig {
			continue
		}
		r.at = now
		a.ranks[id] = r
		due = append(due, id)
	}
	a.mu.Unlock()
	if len(due) == 0 {
		return
	}
	err := sale.ExecPipeline(ctx, a.rdb, func(pipe redis.Pipeliner) {
		for _, id := range due {
			k := a.keys.Sale(id)
			ranksScript.Run(ctx, pipe, []string{k.Q, k.Lane, k.Stats, k.Ranks, k.Cfg, k.Units},
				rankDivisor, (5 * time.Second).Milliseconds())
		}
	})
	if err != nil && ctx.Err() == nil {
		a.cfg.Logger.Warn("admitter: publish ranks", "err", err)
	}
}

// rankDivisor sets the rank table's spacing beyond the first 100 ranks:
// samples at most rank/150 apart, so an interpolated position is within 1%.
const rankDivisor = 150

func (a *Admitter) resignAll(ctx context.Context) {
	a.mu.Lock()
	leases := maps.Clone(a.leases)
	for id := range leases {
		a.dropLocked(id)
	}
	a.mu.Unlock()
	if len(leases) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_ = sale.ExecPipeline(ctx, a.rdb, func(pipe redis.Pipeliner) {
		for id, l := range leases {
			resignScript.Run(ctx, pipe, []string{a.keys.Sale(id).Lease}, l.value)
		}
	})
}
