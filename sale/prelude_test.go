package sale_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testdb"
	"github.com/flashsale/flashsale/testenv"
)

var runIDScript = sale.NewScript(`return run_id()`)

// TestRunID: the prelude's run_id is the run id (all 40 digits) of the
// server that holds the script's keys: on a cluster, each sale's stamp is
// its own master's, and sales on two masters see two run ids.
func TestRunID(t *testing.T) {
	t.Parallel()
	testdb.EachRedis(t, func(t *testing.T, rdb redis.UniversalClient, ks sale.Keyspace) {
		ctx := context.Background()
		seen := map[string]bool{}
		for i := range 12 {
			key := ks.Sale(fmt.Sprintf("s%d", i)).Cfg
			got, err := runIDScript.Run(ctx, rdb, []string{key}).Text()
			require.NoError(t, err)
			require.Len(t, got, 40)
			require.Equal(t, testenv.RunID(t, rdb, key), got, "the run id of %s's server", key)
			seen[got] = true
		}
		if _, cluster := rdb.(*redis.ClusterClient); cluster {
			require.GreaterOrEqual(t, len(seen), 2, "12 sales over the masters: more than one run id")
		} else {
			require.Len(t, seen, 1)
		}
	})
}
