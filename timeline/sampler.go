package timeline

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

// SamplerConfig configures a Sampler. Zero values mean the defaults.
type SamplerConfig struct {
	// Tick is how often the sampler tries to claim the current second of
	// each sale; default 250 ms, so that no second is missed for a tick
	// that drifted across it (each second is written once whatever the tick).
	Tick time.Duration
	// SampleTimeout bounds one sale's sample (the summary reads Redis and
	// MySQL); default 2 s.
	SampleTimeout time.Duration
	Logger        *slog.Logger
	// Registerer gets flashsale_sale_samples_total{consistent}: the
	// samples this node wrote, by whether Redis and MySQL agreed (the
	// alert on a lasting disagreement reads it); nil: none.
	Registerer prometheus.Registerer
}

func (c SamplerConfig) withDefaults() SamplerConfig {
	if c.Tick <= 0 || c.Tick > time.Second {
		c.Tick = 250 * time.Millisecond
	}
	if c.SampleTimeout <= 0 {
		c.SampleTimeout = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Sampler writes one sample per second of every sale in the working set
// (sale.Keyspace.Sales: live sales, and final ones until the sweeper
// retires them). Every admitter-role node runs one; a Lua claim on Redis's
// clock makes each second's sample written by one of them only.
type Sampler struct {
	cfg   SamplerConfig
	store *Store
	sales *sale.Store
	rdb   redis.UniversalClient

	warnMu   sync.Mutex
	lastWarn time.Time

	consistent, inconsistent prometheus.Counter // nil without a Registerer

	startstop.Loop
}

// NewSampler returns a sampler; Start runs it.
func NewSampler(cfg SamplerConfig, store *Store, sales *sale.Store) *Sampler {
	s := &Sampler{cfg: cfg.withDefaults(), store: store, sales: sales, rdb: store.rdb}
	if cfg.Registerer != nil {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_sale_samples_total",
			Help: "Per-second sale samples this node wrote, by whether Redis's units agreed with MySQL (consistent)."},
			[]string{"consistent"})
		s.consistent, s.inconsistent = v.WithLabelValues("true"), v.WithLabelValues("false")
		cfg.Registerer.MustRegister(v)
	}
	return s
}

// Start runs the sampler until ctx ends or Stop (startstop.Loop's Stop,
// which waits for it and is safe twice).
func (s *Sampler) Start(ctx context.Context) {
	s.Go(ctx, func(ctx context.Context) {
		tick := time.NewTicker(s.cfg.Tick)
		defer tick.Stop()
		var sales []string
		var listed time.Time
		for {
			if time.Since(listed) >= time.Second {
				if ids, err := s.rdb.SMembers(ctx, s.sales.Keys.Sales()).Result(); err == nil {
					sales, listed = ids, time.Now()
				} else {
					s.warn(ctx, "timeline: list sales", err)
				}
			}
			s.SampleOnce(ctx, sales)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// SampleOnce claims the current second of each sale in one pipeline, and
// writes the samples of the seconds it got. It answers how many it wrote.
func (s *Sampler) SampleOnce(ctx context.Context, sales []string) int {
	if len(sales) == 0 {
		return 0
	}
	cmds := make([]*redis.Cmd, len(sales))
	err := sale.ExecPipeline(ctx, s.rdb, func(pipe redis.Pipeliner) {
		for i, id := range sales {
			cmds[i] = claimScript.Run(ctx, pipe, []string{s.store.Keys(id).Meta}, s.store.cfg.Retention.Milliseconds())
		}
	})
	if err != nil {
		s.warn(ctx, "timeline: claim seconds", err)
	}
	wrote := 0
	for i, id := range sales {
		sec, err := cmds[i].Int64()
		if err != nil || sec == 0 {
			continue
		}
		if err := s.sample(ctx, id, sec); err != nil {
			s.warn(ctx, "timeline: sample sale "+id, err)
			continue
		}
		wrote++
	}
	return wrote
}

// sample reads what the operator's summary shows, and the rate, and writes
// them as second sec. A failed read leaves a gap: a sample is never made up.
func (s *Sampler) sample(ctx context.Context, id string, sec int64) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.SampleTimeout)
	defer cancel()
	sl, err := s.sales.Get(ctx, id)
	if err != nil {
		return err
	}
	// the row's counts, not a sum over the sale's orders: once a second
	// per sale, this must stay cheap however many orders the sale has
	sum, err := s.sales.SummaryFromRow(ctx, id)
	if err != nil {
		return err
	}
	if err := s.store.Write(ctx, id, FromSummary(sec, sum, sl.AdmissionRate)); err != nil {
		return err
	}
	if s.consistent != nil {
		if sum.Consistent {
			s.consistent.Inc()
		} else {
			s.inconsistent.Inc()
		}
	}
	return nil
}

// warn logs a failure at most every 30 s: a store that is down would
// otherwise log every sale every second.
func (s *Sampler) warn(ctx context.Context, msg string, err error) {
	if ctx.Err() != nil {
		return
	}
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	if time.Since(s.lastWarn) < 30*time.Second {
		return
	}
	s.lastWarn = time.Now()
	s.cfg.Logger.Warn(msg, "err", err)
}
