package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/checkout"
)

// fakeClock is the breaker's injected clock: probes are due by time, and
// the state machine is checked step by step without waiting.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func newTestBreaker() (*checkout.Breaker, *fakeClock) {
	c := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	return checkout.NewBreaker(checkout.BreakerConfig{Now: c.Now,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}), c
}

var errDown = errors.New("dial tcp: connection refused")

func TestBreaker(t *testing.T) {
	t.Parallel()

	t.Run("opens after 5 consecutive failures, a success in between resets the count", func(t *testing.T) {
		b, _ := newTestBreaker()
		for range 4 {
			require.NoError(t, b.Allow())
			b.Record(errDown)
		}
		require.Equal(t, checkout.BreakerClosed, b.State())
		b.Record(nil)
		for range 4 {
			b.Record(fmt.Errorf("query: %w", context.DeadlineExceeded))
		}
		require.Equal(t, checkout.BreakerClosed, b.State(), "4 since the success")
		require.False(t, b.Blocked())
		b.Record(errDown)
		require.Equal(t, checkout.BreakerOpen, b.State())
		require.True(t, b.Blocked())
		require.ErrorIs(t, b.Allow(), checkout.ErrBreakerOpen)
		require.Equal(t, 2, b.RetryAfter())
	})

	t.Run("MySQL's answers are successes; cancelled calls count for nothing", func(t *testing.T) {
		b, _ := newTestBreaker()
		for _, answer := range []error{checkout.ErrNoOrder, checkout.ErrNotHeld, checkout.ErrGuard,
			fmt.Errorf("%w: dup", checkout.ErrDuplicate), fmt.Errorf("sale x: %w", checkout.ErrNoSale)} {
			for range 4 {
				b.Record(errDown)
			}
			b.Record(answer)
			require.Equal(t, checkout.BreakerClosed, b.State(), "%v reset the count", answer)
		}
		for range 4 {
			b.Record(errDown)
		}
		b.Record(context.Canceled)
		require.Equal(t, checkout.BreakerClosed, b.State())
		b.Record(errDown)
		require.Equal(t, checkout.BreakerOpen, b.State(), "the cancelled call did not reset the count")
	})

	t.Run("one probe every 2 s; a failed probe keeps it open, a good one closes it", func(t *testing.T) {
		b, c := newTestBreaker()
		for range 5 {
			b.Record(errDown)
		}
		require.Equal(t, 2*time.Second, b.ProbeIn())
		c.Advance(1999 * time.Millisecond)
		require.Equal(t, time.Millisecond, b.ProbeIn())
		require.True(t, b.Blocked())
		require.ErrorIs(t, b.Allow(), checkout.ErrBreakerOpen)
		require.Equal(t, 1, b.RetryAfter())

		c.Advance(time.Millisecond)
		require.Zero(t, b.ProbeIn())
		require.False(t, b.Blocked(), "a probe is due")
		require.NoError(t, b.Allow(), "the probe goes through")
		require.Equal(t, checkout.BreakerHalfOpen, b.State())
		require.ErrorIs(t, b.Allow(), checkout.ErrBreakerOpen, "one probe at a time")
		require.True(t, b.Blocked())
		b.Record(errDown)
		require.Equal(t, checkout.BreakerOpen, b.State())

		c.Advance(time.Second)
		require.ErrorIs(t, b.Allow(), checkout.ErrBreakerOpen, "the next probe is 2 s after the last")
		c.Advance(time.Second)
		require.NoError(t, b.Allow())
		b.Record(nil)
		require.Equal(t, checkout.BreakerClosed, b.State())
		require.False(t, b.Blocked())
		for range 10 {
			require.NoError(t, b.Allow())
		}
		for range 4 {
			b.Record(errDown)
		}
		require.Equal(t, checkout.BreakerClosed, b.State(), "the count started again")
	})

	t.Run("a probe that never reports only delays the next one", func(t *testing.T) {
		b, c := newTestBreaker()
		for range 5 {
			b.Record(errDown)
		}
		c.Advance(2 * time.Second)
		require.NoError(t, b.Allow())
		c.Advance(time.Second)
		require.Equal(t, checkout.BreakerHalfOpen, b.State())
		c.Advance(time.Second)
		require.Equal(t, checkout.BreakerOpen, b.State())
		require.NoError(t, b.Allow(), "another probe 2 s later")
	})
}
