package startstop_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/startstop"
)

// TestJobsOnePerKey: a second job of a running key does not start; another
// key does; once the first ends, its key starts again.
func TestJobsOnePerKey(t *testing.T) {
	t.Parallel()
	j := startstop.NewJobs()
	defer j.Close()
	release := make(chan struct{})
	var ran atomic.Int32
	job := func(ctx context.Context) { ran.Add(1); <-release }
	require.True(t, j.Go("a", time.Minute, job))
	require.False(t, j.Go("a", time.Minute, job), "one job per key")
	require.True(t, j.Go("b", time.Minute, job))
	require.Equal(t, 2, j.Running())
	close(release)
	require.Eventually(t, func() bool { return j.Running() == 0 }, 5*time.Second, time.Millisecond)
	require.True(t, j.Go("a", time.Minute, func(context.Context) {}))
}

// TestJobsCloseCancelsAndWaits: Close cancels every job's context and
// returns only once they all returned; nothing starts after it.
func TestJobsCloseCancelsAndWaits(t *testing.T) {
	t.Parallel()
	j := startstop.NewJobs()
	var done atomic.Int32
	for _, k := range []string{"a", "b", "c"} {
		require.True(t, j.Go(k, time.Hour, func(ctx context.Context) {
			<-ctx.Done()
			done.Add(1)
		}))
	}
	j.Close()
	require.EqualValues(t, 3, done.Load(), "Close waited for every job")
	require.False(t, j.Go("d", time.Hour, func(context.Context) { t.Error("ran after Close") }))
	j.Close() // twice is fine
}

// TestJobsTimeout: a job's context ends after its timeout.
func TestJobsTimeout(t *testing.T) {
	t.Parallel()
	j := startstop.NewJobs()
	defer j.Close()
	ended := make(chan error, 1)
	j.Go("a", 10*time.Millisecond, func(ctx context.Context) { <-ctx.Done(); ended <- ctx.Err() })
	select {
	case err := <-ended:
		require.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(10 * time.Second):
		t.Fatal("the job's context did not end")
	}
}
