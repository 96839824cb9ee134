package waitingroom_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// BenchmarkJoinScript is join.lua alone, as the batcher calls it: each op is
// one call joining a batch of new users (place, presence, counters), on a
// queue that grows as the benchmark runs. Reported per join.
func BenchmarkJoinScript(b *testing.B) {
	for _, batch := range []int{1, 32} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			ctx := context.Background()
			rdb, ks := testenv.Redis(b)
			k := ks.Sale("s1")
			seedSale(b, rdb, k, nil, 10)
			n := 0
			args := make([]any, 0, 3*batch)
			b.ResetTimer()
			for b.Loop() {
				args = args[:0]
				for range batch {
					n++
					args = append(args, "j", fmt.Sprintf("6f1c2a4e-8b3d-4c7f-9e2a-%012d", n), "")
				}
				if _, err := waitingroom.RunJoin(ctx, rdb, k, args...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/join")
		})
	}
}
