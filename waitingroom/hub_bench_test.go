package waitingroom_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/waitingroom"
)

// callCounter is a go-redis hook counting round trips (a command alone or
// a whole pipeline) and the commands in them.
type callCounter struct{ trips, cmds atomic.Int64 }

func (c *callCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *callCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (c *callCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.trips.Add(1)
		c.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// BenchmarkHubTick measures one node's tick (presence of every socket and
// positions for every waiter) against the number of sockets it holds: the
// Redis round trips per tick must stay flat (one pipeline), the commands
// grow by one script call per thousand sockets, and no call is made per
// socket. Reported per tick: trips/tick, cmds/tick.
func BenchmarkHubTick(b *testing.B) {
	for _, sockets := range []int{1_000, 5_000, 19_000} {
		b.Run(fmt.Sprintf("sockets=%d", sockets), func(b *testing.B) {
			ctx := context.Background()
			rdb, ks := testenv.Redis(b)
			k := ks.Sale("s1")
			seedSale(b, rdb, k, nil, 1000)
			zs := make([]redis.Z, sockets)
			for i := range zs {
				zs[i] = redisZ(float64(i+1), fmt.Sprintf("u%06d", i+1))
			}
			if err := rdb.ZAdd(ctx, k.Q, zs...).Err(); err != nil {
				b.Fatal(err)
			}
			if _, err := waitingroom.PublishRanks(ctx, rdb, k, time.Minute); err != nil {
				b.Fatal(err)
			}
			_, keys := testenv.KeyFile(b)
			h := waitingroom.NewHub(waitingroom.HubConfig{Logger: quiet}, rdb, sale.NewStore(nil, rdb, ks),
				ticket.NewIssuer(keys, "flashsale"))
			if err := h.Track(ctx, "s1"); err != nil {
				b.Fatal(err)
			}
			for i := range sockets {
				h.AddTestConn("s1", fmt.Sprintf("u%06d", i+1), waitingroom.KindWaiting, float64(i+1), 0)
			}
			h.Tick(ctx) // the first positions go out
			count := &callCounter{}
			rdb.AddHook(count)
			b.ResetTimer()
			for b.Loop() {
				h.Tick(ctx)
			}
			b.ReportMetric(float64(count.trips.Load())/float64(b.N), "trips/tick")
			b.ReportMetric(float64(count.cmds.Load())/float64(b.N), "cmds/tick")
		})
	}
}
