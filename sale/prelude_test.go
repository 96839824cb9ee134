package sale_test

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

var runIDScript = sale.NewScript(`return run_id()`)

// TestRunID: the prelude's run_id is the server's run id, all 40 digits.
func TestRunID(t *testing.T) {
	t.Parallel()
	rdb, _ := testenv.Redis(t)
	ctx := context.Background()
	got, err := runIDScript.Run(ctx, rdb, nil).Text()
	require.NoError(t, err)
	info, err := rdb.Info(ctx, "server").Result()
	require.NoError(t, err)
	m := regexp.MustCompile(`run_id:([0-9a-f]+)`).FindStringSubmatch(info)
	require.Len(t, m, 2)
	require.Len(t, m[1], 40)
	require.Equal(t, m[1], got)
}
