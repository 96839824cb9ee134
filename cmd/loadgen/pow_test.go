package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/challenge"
)

// The solver's nonces pass the server's own check, at several difficulties.
func TestSolvePoWPassesTheServersCheck(t *testing.T) {
	p := challenge.NewPoW(challenge.KeyFrom([]byte("loadgen test")))
	now := time.Now()
	for _, d := range []int{1, 8, 12, 16} {
		c, _ := p.Issue("s1", "u1", d, now)
		nonce, tries, err := solvePoW(c, d, 1<<30)
		require.NoError(t, err)
		require.Positive(t, tries)
		_, _, err = p.Check(c, nonce, "s1", "u1", now)
		require.NoError(t, err, "difficulty %d, nonce %s", d, nonce)
	}
}

// A nonce that is one try short does not pass: the check is not trivially
// satisfied by the solver's prefix.
func TestSolvePoWGivesUp(t *testing.T) {
	p := challenge.NewPoW(challenge.KeyFrom([]byte("loadgen test")))
	c, _ := p.Issue("s1", "u1", 30, time.Now())
	_, tries, err := solvePoW(c, 30, 1000)
	require.Error(t, err)
	require.EqualValues(t, 1001, tries)
}

func BenchmarkSolvePoW18(b *testing.B) {
	p := challenge.NewPoW(challenge.KeyFrom([]byte("loadgen test")))
	var total uint64
	for b.Loop() {
		c, _ := p.Issue("s1", "u1", 18, time.Now())
		_, tries, err := solvePoW(c, 18, 1<<30)
		require.NoError(b, err)
		total += tries
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/try")
}
