package waitingroom_test

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/waitingroom"
)

// BenchmarkJoinScript is join.lua alone, as the batcher calls it: each op is
// one call joining a batch of new users (place, presence, counters), on a
// queue that grows as the benchmark runs. Reported per join; redis-us/join
// is Redis's own time in the script (INFO commandstats), meaningful on a
// Redis of its own (FLASHSALE_TEST_REDIS=redis://127.0.0.1:PORT/0), since
// other clients' scripts count too; redis-cpu-us/join is the server's
// whole CPU (the AOF, expiring keys) over the run, the same way. "limits" carries each join's rate
// checks (a new user from a new address: two fresh rate keys), as a node
// with the default limits does on one Redis server.
func BenchmarkJoinScript(b *testing.B) {
	for _, bc := range []struct {
		batch  int
		limits bool
	}{{1, false}, {32, false}, {32, true}} {
		name := fmt.Sprintf("batch=%d", bc.batch)
		if bc.limits {
			name += "/limits"
		}
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			rdb, ks := testenv.Redis(b)
			k := ks.Sale("s1")
			seedSale(b, rdb, k, nil, 10)
			lim, err := ratelimit.New(ratelimit.DefaultConfig(), rdb, ks.Prefix)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			users := make([]string, 0, bc.batch)
			limits := make([]ratelimit.Pending, 0, bc.batch)
			before, cpuBefore := evalUsec(b, rdb), redisCPU(b, rdb)
			b.ResetTimer()
			for b.Loop() {
				users, limits = users[:0], limits[:0]
				for range bc.batch {
					n++
					user := fmt.Sprintf("6f1c2a4e-8b3d-4c7f-9e2a-%012d", n)
					users = append(users, user)
					if bc.limits {
						addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)}), 32)
						p, err := lim.Reserve(addr, user)
						if err != nil {
							b.Fatal(err)
						}
						limits = append(limits, p)
					}
				}
				if _, err := waitingroom.RunJoinLimited(ctx, rdb, k, users, limits); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/join")
			b.ReportMetric(float64(evalUsec(b, rdb)-before)/float64(n), "redis-us/join")
			b.ReportMetric((redisCPU(b, rdb)-cpuBefore)*1e6/float64(n), "redis-cpu-us/join")
		})
	}
}

// redisCPU is the Redis server's CPU time so far (s), from INFO cpu: its
// scripts and everything else it does for them (the AOF, expiring keys).
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var sum float64
	for line := range strings.Lines(info) {
		for _, f := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), f); ok {
				x, _ := strconv.ParseFloat(v, 64)
				sum += x
			}
		}
	}
	return sum
}

// evalUsec is Redis's total time in EVALSHA so far (µs), from INFO
// commandstats.
func evalUsec(b *testing.B, rdb redis.UniversalClient) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(info) {
		rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(strings.TrimSpace(rest), ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
	}
	return 0
}
