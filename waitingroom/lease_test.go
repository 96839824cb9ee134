package waitingroom_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

func TestLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		take := func(holder string) (bool, string) {
			t.Helper()
			held, value, err := waitingroom.TakeLease(ctx, rdb, k, holder, 5*time.Second)
			require.NoError(t, err)
			return held, value
		}

		held, value := take("a")
		require.True(t, held)
		require.Equal(t, "a|1", value, "the first holder gets fence 1")
		require.Equal(t, "a|1", rdb.Get(ctx, k.Lease).Val())
		pttl := rdb.PTTL(ctx, k.Lease).Val()
		require.Greater(t, pttl, 4*time.Second)
		require.LessOrEqual(t, pttl, 5*time.Second)

		// renewing keeps the token and extends the TTL
		require.NoError(t, rdb.PExpire(ctx, k.Lease, time.Second).Err())
		held, value = take("a")
		require.True(t, held)
		require.Equal(t, "a|1", value)
		require.Greater(t, rdb.PTTL(ctx, k.Lease).Val(), 4*time.Second)
		fence, err := rdb.Get(ctx, k.Fence).Int64()
		require.NoError(t, err)
		require.EqualValues(t, 1, fence, "no new token on renewal")

		// another holder is refused and told who holds it; a holder id that is
		// a prefix of the holder's is someone else
		for _, other := range []string{"b", "", "a|1"} {
			held, value = take(other)
			require.False(t, held, "holder %q", other)
			require.Equal(t, "a|1", value)
		}
		require.Equal(t, "a|1", rdb.Get(ctx, k.Lease).Val())

		// after the lease runs out, another holder gets a new, larger fence
		require.NoError(t, rdb.PExpire(ctx, k.Lease, time.Millisecond).Err())
		testenv.Eventually(t, 2*time.Second, func() bool { return rdb.Exists(ctx, k.Lease).Val() == 0 }, "the lease expires")
		held, value = take("b")
		require.True(t, held)
		require.Equal(t, "b|2", value)
		held, value = take("a")
		require.False(t, held, "the old holder is deposed")
		require.Equal(t, "b|2", value)

		// resign only by the holder, with its current value
		for _, v := range []string{"a|1", "b|1", "b"} {
			n, err := waitingroom.Resign(ctx, rdb, k, v)
			require.NoError(t, err)
			require.Zero(t, n, "resign with %q", v)
			require.Equal(t, "b|2", rdb.Get(ctx, k.Lease).Val())
		}
		n, err := waitingroom.Resign(ctx, rdb, k, "b|2")
		require.NoError(t, err)
		require.EqualValues(t, 1, n)
		require.Zero(t, rdb.Exists(ctx, k.Lease).Val())
		n, err = waitingroom.Resign(ctx, rdb, k, "b|2")
		require.NoError(t, err)
		require.Zero(t, n, "twice is a no-op")

		held, value = take("a")
		require.True(t, held)
		require.Equal(t, "a|3", value, "a returning holder gets a new token too")
	})
}

// TestLeaseHolderWithSeparator: a holder id may contain the separator (a
// host name is a fine id, and nothing forbids "|"); it must still renew its
// own lease and only its own.
func TestLeaseHolderWithSeparator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		k := ks.Sale("s1")
		held, value, err := waitingroom.TakeLease(ctx, rdb, k, "node|7", 5*time.Second)
		require.NoError(t, err)
		require.True(t, held)
		require.Equal(t, "node|7|1", value)
		held, value, err = waitingroom.TakeLease(ctx, rdb, k, "node|7", 5*time.Second)
		require.NoError(t, err)
		require.True(t, held, "the holder renews its own lease")
		require.Equal(t, "node|7|1", value)
		for _, other := range []string{"node", "node|7|1", "7"} {
			held, _, err = waitingroom.TakeLease(ctx, rdb, k, other, 5*time.Second)
			require.NoError(t, err)
			require.False(t, held, "holder %q", other)
		}
	})
}
