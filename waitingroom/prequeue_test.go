package waitingroom_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// chiSquare is the statistic of a 10×10 table of (join-order decile,
// position decile) for n users, where pos[i] is the 0-based position of the
// i-th joiner: independence means every cell expects n/100.
func chiSquare(pos []int) float64 {
	n := len(pos)
	var table [10][10]float64
	for i, p := range pos {
		table[i*10/n][p*10/n]++
	}
	want := float64(n) / 100
	var x float64
	for _, row := range table {
		for _, c := range row {
			x += (c - want) * (c - want) / want
		}
	}
	return x
}

// TestPrequeuePlacesAreUniform: everyone who joins a prequeue sale before
// its start gets a place independent of when they joined. 2,000 users join
// one after another with 52-bit places from a seeded source (as join.lua
// receives them from crypto/rand), and a chi-square test of join order
// against final position accepts independence; the same test rejects the
// fifo order, so it can fail. Seeded, so the test is stable.
func TestPrequeuePlacesAreUniform(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ks := testenv.Redis(t)
	k := ks.Sale("pq")
	now := redisNow(t, rdb)
	seedSale(t, rdb, k, map[string]any{"state": "upcoming", "mode": "prequeue", "starts": now + 600_000}, 10)

	const n = 2000
	src := rand.New(rand.NewPCG(2026, 11))
	users := make([]string, n)
	for i := range n {
		users[i] = fmt.Sprintf("u%04d", i)
		st, err := waitingroom.RunJoin(ctx, rdb, k, "j", users[i], strconv.FormatUint(src.Uint64()>>12, 10))
		require.NoError(t, err)
		require.Equal(t, waitingroom.KindPrequeue, st[0].Kind)
	}
	pos := make([]int, n)
	for i, u := range users {
		r, err := rdb.ZRank(ctx, k.Q, u).Result()
		require.NoError(t, err)
		pos[i] = int(r)
	}
	// 81 degrees of freedom: 124.8 is the 0.001 critical value.
	require.Less(t, chiSquare(pos), 124.8, "join order and position look dependent")

	fifo := make([]int, n)
	for i := range fifo {
		fifo[i] = i
	}
	require.Greater(t, chiSquare(fifo), 124.8, "the test must reject arrival order")
}
