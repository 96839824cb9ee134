package sale_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// TestCachedIsBounded: the sale cache is keyed by what clients send; ids
// that are no sale id are never kept, and unknown ids fill it only up to
// its limit, so asking for a million ids costs no memory.
func TestCachedIsBounded(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	dsn, db := testenv.MySQL(t)
	_, err := migrations.Apply(context.Background(), dsn)
	require.NoError(t, err)
	st := sale.NewStore(db, rdb, ks)
	st.CacheLimit = 50
	ctx := context.Background()
	for _, id := range []string{"", "UPPER", "a/b", "x|y", strings.Repeat("a", 65), "ü"} {
		_, err := st.Cached(ctx, id, time.Second)
		require.True(t, errors.Is(err, sale.ErrNotFound), "%q: %v", id, err)
	}
	require.Zero(t, st.CachedLen(), "no invalid id is cached")
	for i := range 200 {
		_, err := st.Cached(ctx, fmt.Sprintf("nope-%d", i), time.Second)
		require.True(t, errors.Is(err, sale.ErrNotFound), "%v", err)
		require.LessOrEqual(t, st.CachedLen(), 50)
	}
	require.Equal(t, 50, st.CachedLen(), "unknown ids are cached up to the limit")
}
