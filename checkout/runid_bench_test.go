package checkout_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
)

// restartedCheck is reserve.lua's line that asks the prelude's run_id(),
// which reads INFO server and pattern-matches its run_id, on every checkout.
const restartedCheck = "if restarted(cfg) then return {'stale'} end\n"

// BenchmarkRunID is what the restart check costs the checkout's Redis step:
// the real reserve.lua against a copy without the check, run_id() alone,
// INFO server alone (without the match) and an empty script (the prelude
// and EVALSHA alone), each called one after another (serial: the latency a shopper sees) and
// from 32 callers (parallel: Redis busy, so ns/op is near Redis's own time
// per call). Besides ns/op it reports Redis's own time per EVALSHA (the
// difference of INFO commandstats around the run: exact only while no one
// else runs scripts on that Redis; evalsha/op above 1 says someone did) and
// the size of INFO server. Run it with
//
//	go test -run '^$' -bench RunID -benchtime 2000x ./checkout/
func BenchmarkRunID(b *testing.B) {
	rdb, ks := testenv.Redis(b)
	_, db := testenv.MySQL(b)
	st := sale.NewStore(db, rdb, ks)
	ctx := context.Background()
	id := benchSale(b, db, st, 0)
	k := ks.Sale(id)
	if rdb.HExists(ctx, k.Cfg, "rid").Val() == false {
		b.Fatal("the sale is not stamped: restarted() would not call run_id() and there is nothing to measure")
	}
	if !strings.Contains(checkout.ReserveLua, restartedCheck) {
		b.Fatalf("reserve.lua has no line %q any more: update the benchmark", restartedCheck)
	}
	without := sale.NewScript(strings.Replace(checkout.ReserveLua, restartedCheck, "", 1))
	runID := sale.NewScript("return run_id()")
	infoOnly := sale.NewScript("return #redis.call('INFO', 'server')") // without the match
	empty := sale.NewScript("return 1")                                // the prelude and EVALSHA alone
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		b.Fatal(err)
	}

	keys := []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}
	var n atomic.Int64 // every call a new user and ticket: each one sells
	reserve := func(s *redis.Script) func(context.Context) error {
		return func(ctx context.Context) error {
			u := fmt.Sprintf("u%d", n.Add(1))
			v, err := s.Run(ctx, rdb, keys, u, "j"+u, 1, "o"+u).StringSlice()
			if err == nil && (len(v) == 0 || v[0] != "ok") {
				err = fmt.Errorf("reserve answered %q, not ok", v)
			}
			return err
		}
	}
	variants := []struct {
		name string
		call func(context.Context) error
	}{
		{"with_restarted", reserve(checkout.ReserveScript)},
		{"without_restarted", reserve(without)},
		{"run_id_only", func(ctx context.Context) error {
			rid, err := runID.Run(ctx, rdb, nil).Text()
			if err == nil && len(rid) != 40 {
				err = fmt.Errorf("run_id() answered %q", rid)
			}
			return err
		}},
		{"info_only", func(ctx context.Context) error { return infoOnly.Run(ctx, rdb, nil).Err() }},
		{"empty_script", func(ctx context.Context) error { return empty.Run(ctx, rdb, nil).Err() }},
	}
	for _, mode := range []string{"serial", "parallel"} {
		for _, v := range variants {
			b.Run(mode+"/"+v.name, func(b *testing.B) {
				if err := v.call(ctx); err != nil { // loads the script: no NOSCRIPT round in the timing
					b.Fatal(err)
				}
				calls0, usec0 := evalshaStats(b, rdb)
				b.ResetTimer()
				if mode == "serial" {
					for range b.N {
						if err := v.call(ctx); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					b.SetParallelism(16)
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							if err := v.call(ctx); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				b.StopTimer()
				calls, usec := evalshaStats(b, rdb)
				if calls > calls0 {
					b.ReportMetric(float64(usec-usec0)/float64(calls-calls0), "server-µs/call")
					b.ReportMetric(float64(calls-calls0)/float64(b.N), "evalsha/op")
				}
				b.ReportMetric(float64(len(info)), "info-bytes")
			})
		}
	}
}

// evalshaStats reads Redis's count of EVALSHA calls and their total time
// (µs) from INFO commandstats.
func evalshaStats(b *testing.B, rdb *redis.Client) (calls, usec int64) {
	b.Helper()
	s, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(s, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_evalsha:")
		if !ok {
			continue
		}
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return calls, usec
}
