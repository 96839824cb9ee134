package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("1000, 5000,19000")
	require.NoError(t, err)
	require.Equal(t, []int{1000, 5000, 19000}, got)
	for _, bad := range []string{"", "5000,1000", "0", "1k", "10,10"} {
		_, err := parseSizes(bad)
		require.ErrorContains(t, err, "-n", "input %q", bad)
	}
}

// TestBursts: receipts are split into ticks at a silence of 300 ms.
func TestBursts(t *testing.T) {
	ms := func(v ...int) []int64 {
		out := make([]int64, len(v))
		for i, x := range v {
			out[i] = int64(x) * int64(time.Millisecond)
		}
		return out
	}
	n, median, longest := bursts(ms(1000, 1010, 1200, 2000, 2050, 3000, 3400))
	require.Equal(t, 4, n) // 1000-1200, 2000-2050, 3000, 3400
	require.Equal(t, 50*time.Millisecond, median)
	require.Equal(t, 200*time.Millisecond, longest)
	n, _, _ = bursts(nil)
	require.Zero(t, n)
}

// TestGaps: a socket's longest time without a position frame counts the
// window's ends, an admitted socket's window ends at its admission, and a
// socket with no frame in a window over 2 s is counted.
func TestGaps(t *testing.T) {
	s := func(admitted int64, pos ...int64) *sock {
		return &sock{positions: pos, admitted: admitted, states: map[string]int64{}}
	}
	sec := int64(time.Second)
	p := &clientProc{socks: []*sock{
		s(0, 1*sec, 2*sec, 3*sec),                        // gaps 1, 1, 1 and 1 to the end
		s(0, 1*sec, 3500*time.Millisecond.Nanoseconds()), // a gap of 2.5 s
		s(2 * sec), // admitted 2 s in: its window is 2 s
		s(0),       // nothing in 4 s
	}}
	r := p.gaps(command{From: 0, To: 4 * sec})
	require.Equal(t, 4, r.Waiting)
	require.Equal(t, []int64{sec, 2500 * int64(time.Millisecond), 2 * sec, 4 * sec}, r.MaxGaps)
	require.Equal(t, 2, r.OverTwo)
	require.Equal(t, 1, r.NoPosition)
	require.Len(t, r.Receipts, 5)
}
