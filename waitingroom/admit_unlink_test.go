package waitingroom_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/waitingroom"
)

// lazyFreed is Redis's count of values freed in its background thread.
func lazyFreed(t *testing.T, rdb redis.UniversalClient) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	_, after, ok := strings.Cut(info, "lazyfreed_objects:")
	require.True(t, ok, "INFO memory has no lazyfreed_objects (Redis 7 or later needed)")
	n, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(after, "\n", 2)[0]), 10, 64)
	require.NoError(t, err)
	return n
}

// A final sale's queue is unlinked, not deleted: freeing a million-waiter
// queue in the script blocked Redis for about 200 ms (measured in
// docs/BENCHMARKS.md, "A million waiters"); UNLINK hands it to Redis's
// background thread, so the count of values freed there goes up.
func TestAdmitFinalSaleFreesQueueInBackground(t *testing.T) {
	ctx := context.Background()
	e := newAdmitEnv(t, nil, 10)
	users := make([]string, 2000) // well over Redis's 64-element lazy-free threshold
	zs := make([]redis.Z, len(users))
	for i := range users {
		users[i] = fmt.Sprintf("waiter-%05d", i)
		zs[i] = redisZ(float64(i+1), users[i])
	}
	require.NoError(t, e.rdb.ZAdd(ctx, e.k.Q, zs...).Err())
	markSeen(t, e.rdb, e.k, redisNow(t, e.rdb), users[:10]...)
	require.NoError(t, e.rdb.HSet(ctx, e.k.Cfg, "state", "closed").Err())
	before := lazyFreed(t, e.rdb)
	res := e.admit(t)
	require.Equal(t, waitingroom.AdmitResult{State: sale.Closed}, res)
	require.Zero(t, e.rdb.Exists(ctx, e.k.Q, e.k.Lane).Val(), "the queue is gone")
	require.Empty(t, seenAll(t, e.rdb, e.k), "and its presence")
	require.Eventually(t, func() bool { return lazyFreed(t, e.rdb) > before }, 5*time.Second, 10*time.Millisecond,
		"the queue was freed in the script, not by Redis's background thread")
}
