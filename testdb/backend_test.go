package testdb_test

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
)

// TestPrefixKeys: on one Redis and on the cluster, the helpers that stand
// for KEYS and FLUSHALL see the prefix's keys on every master (a cluster
// client's own SCAN or KEYS reaches one), delete them all, and leave a
// neighbouring prefix alone; ServerOf finds the server that holds a key.
func TestPrefixKeys(t *testing.T) {
	t.Parallel()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		ctx := context.Background()
		var want []string
		for i := range 12 {
			k := ks.Sale(fmt.Sprintf("s%d", i))
			for _, key := range []string{k.Cfg, k.Units, k.SeenKey("u")} {
				require.NoError(t, rdb.Set(ctx, key, "x", 0).Err())
				want = append(want, key)
			}
		}
		require.NoError(t, rdb.SAdd(ctx, ks.Sales(), "s0").Err())
		want = append(want, ks.Sales())
		// a prefix that starts with ours is another test's
		neighbour := sale.Keyspace{Prefix: ks.Prefix + "x"}.Sale("s0").Cfg
		require.NoError(t, rdb.Set(ctx, neighbour, "x", 0).Err())
		t.Cleanup(func() { rdb.Del(context.Background(), neighbour) })

		servers := map[string]bool{}
		for _, key := range want {
			c, err := testdb.ServerOf(ctx, rdb, key)
			require.NoError(t, err)
			require.EqualValues(t, 1, c.Exists(ctx, key).Val(), "%s is on the server ServerOf names", key)
			servers[c.Options().Addr] = true
		}
		if _, cluster := rdb.(*redis.ClusterClient); cluster {
			require.GreaterOrEqual(t, len(servers), 2, "12 sales on one master: the test proves nothing")
		}

		got, err := testdb.PrefixKeys(ctx, rdb, ks.Prefix)
		require.NoError(t, err)
		sort.Strings(got)
		sort.Strings(want)
		require.Equal(t, want, got)

		n, err := testdb.DeletePrefix(ctx, rdb, ks.Prefix)
		require.NoError(t, err)
		require.Equal(t, len(want), n)
		got, err = testdb.PrefixKeys(ctx, rdb, ks.Prefix)
		require.NoError(t, err)
		require.Empty(t, got)
		require.EqualValues(t, 1, rdb.Exists(ctx, neighbour).Val(), "the neighbouring prefix keeps its key")
		n, err = testdb.DeletePrefix(ctx, rdb, ks.Prefix)
		require.NoError(t, err)
		require.Zero(t, n, "nothing left to delete")
	})
}

// TestPrefixKeysPattern: a prefix holding SCAN's pattern characters matches
// only itself.
func TestPrefixKeysPattern(t *testing.T) {
	t.Parallel()
	rdb, ks := testdb.Redis(t)
	ctx := context.Background()
	odd := ks.Prefix + "[*?]"
	require.NoError(t, rdb.Set(ctx, odd+":k", "x", 0).Err())
	require.NoError(t, rdb.Set(ctx, ks.Prefix+"a:k", "x", 0).Err())
	t.Cleanup(func() { rdb.Del(context.Background(), odd+":k", ks.Prefix+"a:k") })
	got, err := testdb.PrefixKeys(ctx, rdb, odd)
	require.NoError(t, err)
	require.Equal(t, []string{odd + ":k"}, got)
}
