package checkout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"
)

// ErrBreakerOpen is a MySQL call refused without trying: the circuit
// breaker is open after repeated failures.
var ErrBreakerOpen = errors.New("MySQL circuit breaker open after repeated failures")

// BreakerConfig configures a Breaker; zero fields take the defaults.
type BreakerConfig struct {
	// Failures is how many consecutive failures open the breaker; default 5.
	Failures int
	// ProbeEvery is how often an open breaker lets one call through to try
	// MySQL; default 2 s.
	ProbeEvery time.Duration
	// Now is the clock; default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Breaker is the circuit breaker of the checkout's MySQL calls. Closed, it
// lets every call through and counts consecutive failures (errors and
// timeouts; MySQL refusing an order is an answer, not a failure). At
// Failures it opens: calls are refused at once, so a checkout fails fast
// with 503 instead of reserving units and waiting out a timeout. Every
// ProbeEvery one call goes through (half-open); a success closes the
// breaker, a failure keeps it open until the next probe. A probe that never
// reports (its caller stopped early) only delays the next one.
type Breaker struct {
	cfg BreakerConfig

	mu        sync.Mutex
	failures  int
	open      bool
	probing   bool      // a probe is out
	nextProbe time.Time // while open
}

// BreakerState is a breaker's state, as /readyz and the logs name it.
type BreakerState string

// The states.
const (
	BreakerClosed   BreakerState = "closed"
	BreakerOpen     BreakerState = "open"
	BreakerHalfOpen BreakerState = "half-open"
)

// NewBreaker returns a closed breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	if cfg.Failures <= 0 {
		cfg.Failures = 5
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Breaker{cfg: cfg}
}

// Allow asks to make a MySQL call: nil when the breaker is closed or lets
// this call through as its probe, else ErrBreakerOpen. A call allowed must
// Record its outcome.
func (b *Breaker) Allow() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return nil
	}
	now := b.cfg.Now()
	if now.Before(b.nextProbe) {
		return fmt.Errorf("%w; next probe in %s", ErrBreakerOpen, b.nextProbe.Sub(now).Round(time.Millisecond))
	}
	b.probing = true
	b.nextProbe = now.Add(b.cfg.ProbeEvery)
	return nil
}

// Blocked reports whether Allow would refuse a call now, without taking the
// probe: the checkout asks before reserving units.
func (b *Breaker) Blocked() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.open && b.cfg.Now().Before(b.nextProbe)
}

// ProbeIn is how long until an open breaker lets its next probe through:
// 0 when it is closed or a probe is due.
func (b *Breaker) ProbeIn() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return 0
	}
	return max(0, b.nextProbe.Sub(b.cfg.Now()))
}

// RetryAfter is how long a caller refused now should wait: until the next
// probe, at least one second (Retry-After counts whole seconds).
func (b *Breaker) RetryAfter() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return 1
	}
	return max(1, int(math.Ceil(b.nextProbe.Sub(b.cfg.Now()).Seconds())))
}

// State is the breaker's state now.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return BreakerClosed
	case b.probing && b.cfg.Now().Before(b.nextProbe):
		return BreakerHalfOpen
	}
	return BreakerOpen
}

// Record takes a call's outcome. nil and the store's answers (no such
// order or sale, not held, the unit guard, a duplicate) are successes:
// MySQL answered. A call the caller cancelled says nothing about MySQL.
// Anything else (an error, a timeout) is a failure.
func (b *Breaker) Record(err error) {
	switch {
	case err == nil, errors.Is(err, ErrNoOrder), errors.Is(err, ErrNoSale), errors.Is(err, ErrNotHeld),
		errors.Is(err, ErrGuard), errors.Is(err, ErrDuplicate):
		b.success()
	case errors.Is(err, context.Canceled), errors.Is(err, ErrBreakerOpen):
	default:
		b.failure(err)
	}
}

func (b *Breaker) success() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures = 0
	b.probing = false
	if b.open {
		b.open = false
		b.cfg.Logger.Info("MySQL circuit breaker closed: MySQL answers again")
	}
}

func (b *Breaker) failure(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.probing = false
	if !b.open && b.failures >= b.cfg.Failures {
		b.open = true
		b.nextProbe = b.cfg.Now().Add(b.cfg.ProbeEvery)
		b.cfg.Logger.Error("MySQL circuit breaker open: checkouts fail fast until a probe succeeds",
			"failures", b.failures, "err", err)
	}
}
