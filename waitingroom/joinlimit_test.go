package waitingroom_test

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/waitingroom"
)

// TestJoinCarriesRateChecks: on one Redis server a join carries its rate
// checks in its own script call. Within the limits it joins and spends one
// request of each limit; over them it is refused with the limit's wait and
// changes nothing; concurrent joins of one batch see each other's spending.
func TestJoinCarriesRateChecks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, ks := testdb.Redis(t)
	k := ks.Sale("s1")
	seedSale(t, rdb, k, nil, 10)
	q := startQueue(t, rdb, ks)
	lim, err := ratelimit.New(ratelimit.Config{IPRate: 0.01, IPBurst: 3, UserRate: 0.01, UserBurst: 2}, rdb, ks.Prefix)
	require.NoError(t, err)
	require.True(t, lim.Foldable(), "a single Redis server lets the checks ride in the join")
	addr := netip.MustParsePrefix("198.51.100.7/32")

	join := func(user string, addr netip.Prefix) (waitingroom.UserState, ratelimit.Pending) {
		t.Helper()
		p, err := lim.Reserve(addr, user)
		require.NoError(t, err)
		require.False(t, p.Empty())
		st, err := q.JoinLimited(ctx, "s1", user, p)
		require.NoError(t, err)
		return st, p
	}

	// the user's burst of 2, from two addresses
	st, _ := join("ann", addr)
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
	require.True(t, st.New)
	st, _ = join("ann", netip.MustParsePrefix("203.0.113.9/32"))
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
	require.False(t, st.New, "the second join keeps the place")
	st, p := join("ann", netip.MustParsePrefix("203.0.113.10/32"))
	require.Equal(t, waitingroom.KindLimited, st.Kind)
	require.Positive(t, st.Wait)
	e := api.AsError(p.Refusal(st.Wait, st.Worst))
	require.Equal(t, http.StatusTooManyRequests, e.Status)
	require.Equal(t, "rate_limited", e.Code)
	require.Contains(t, e.Message, "user")
	require.GreaterOrEqual(t, e.RetryAfter, 1)

	// the address's burst of 3 (ann spent one): bob and cat join, dan is
	// refused by the address and is nowhere
	st, _ = join("bob", addr)
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
	st, _ = join("cat", addr)
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
	st, p = join("dan", addr)
	require.Equal(t, waitingroom.KindLimited, st.Kind)
	require.Contains(t, api.AsError(p.Refusal(st.Wait, st.Worst)).Message, "address")
	_, placed := zscore(t, rdb, k.Q, "dan")
	require.False(t, placed, "a refused join changes nothing")
	require.EqualValues(t, 3, hint(t, rdb, k.Stats, "joins_total"))
	// nor did it spend dan's own limit: his user key was never written
	n, err := rdb.Exists(ctx, lim.UserKey("dan")).Result()
	require.NoError(t, err)
	require.Zero(t, n)

	// twenty users at once from one fresh address (burst 3): whatever the
	// batches, exactly three get in
	fresh := netip.MustParsePrefix("192.0.2.44/32")
	var mu sync.Mutex
	kinds := map[string]int{}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			user := "storm" + string(rune('a'+i))
			p, err := lim.Reserve(fresh, user)
			if err != nil {
				mu.Lock()
				kinds["local"]++
				mu.Unlock()
				return
			}
			st, err := q.JoinLimited(ctx, "s1", user, p)
			require.NoError(t, err)
			mu.Lock()
			kinds[st.Kind]++
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Equal(t, 3, kinds[waitingroom.KindWaiting], "%v", kinds)
	require.Equal(t, 20, kinds[waitingroom.KindWaiting]+kinds[waitingroom.KindLimited]+kinds["local"], "%v", kinds)

	// the zero Pending carries nothing: a plain join
	st, err = q.JoinLimited(ctx, "s1", "eve", ratelimit.Pending{})
	require.NoError(t, err)
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
}
