package waitingroom

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// series is a sample every 250 ms from t0: adv(i) gives the counter.
func series(t0 time.Time, n int, adv func(i int) int64) []advSample {
	var out []advSample
	for i := range n {
		out = addSample(out, t0.Add(time.Duration(i)*250*time.Millisecond), adv(i))
	}
	return out
}

func etaOf(t *testing.T, samples []advSample, pos int64) int64 {
	t.Helper()
	v := etaFunc(samples, "open")(pos)
	require.NotNil(t, v)
	return *v
}

// TestETASteadyRate: 100/s for a minute: position 1,000 is 10 s away.
func TestETASteadyRate(t *testing.T) {
	s := series(time.Unix(1000, 0), 241, func(i int) int64 { return int64(i) * 25 })
	require.Equal(t, int64(10), etaOf(t, s, 1000))
}

// TestETAAfterAnIdleStretch: a minute with no admission, then 1,000/s for
// 8 s: the idle stretch is not the rate (it made the estimate 8× too long).
func TestETAAfterAnIdleStretch(t *testing.T) {
	s := series(time.Unix(1000, 0), 272, func(i int) int64 {
		if i < 240 {
			return 0
		}
		return int64(i-240) * 250
	})
	require.Equal(t, int64(12), etaOf(t, s, 12_000), "12,000 ahead at 1,000/s")
}

// TestETAAfterARateChange: 10/s for 50 s, then 200/s for 10 s: the
// recent rate wins over the minute's.
func TestETAAfterARateChange(t *testing.T) {
	s := series(time.Unix(1000, 0), 241, func(i int) int64 {
		if i < 200 {
			return int64(i) * 10 / 4
		}
		return 500 + int64(i-200)*50
	})
	got := etaOf(t, s, 2000)
	require.InDelta(t, 10, got, 1, "2,000 ahead at 200/s")
}

// TestETANotYet: paused, one sample, or no movement: no estimate.
func TestETANotYet(t *testing.T) {
	s := series(time.Unix(1000, 0), 40, func(int) int64 { return 5 })
	require.Nil(t, etaFunc(s, "open")(10))
	require.Nil(t, etaFunc(s[:1], "open")(10))
	moving := series(time.Unix(1000, 0), 40, func(i int) int64 { return int64(i) })
	require.Nil(t, etaFunc(moving, "paused")(10))
}
