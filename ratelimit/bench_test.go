package ratelimit_test

import (
	"context"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/testdb"
)

// benchClient is the i-th of many distinct clients: an address and a user
// of its own, so every call is allowed and reaches Redis (joins of distinct
// shoppers, the case the limits must not slow down).
func benchClient(i int64) (netip.Prefix, string) {
	a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return netip.PrefixFrom(a, 32), "bench-user-" + strconv.FormatInt(i, 10)
}

// BenchmarkAllow is Allow with the default limits against the real Redis,
// every call allowed (one round trip each), one caller and many.
func BenchmarkAllow(b *testing.B) {
	rdb, ks := testdb.Redis(b)
	ctx := context.Background()
	for _, m := range modes {
		l := m.limiter(b, ratelimit.DefaultConfig(), rdb, ks.Prefix+":"+m.name)
		b.Run(m.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			var i int64
			for b.Loop() {
				addr, user := benchClient(i)
				i++
				if err := l.Allow(ctx, addr, user); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(m.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			var next atomic.Int64
			next.Store(1 << 22) // clear of the serial run's clients
			b.SetParallelism(8) // requests in flight at once, as a busy node has
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					addr, user := benchClient(next.Add(1))
					if err := l.Allow(ctx, addr, user); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkPreFilter is the local step alone: a new client each call
// (the map grows to its bound and evicts), and a flood from one client that
// the pre-filter sheds before Redis (through Allow).
func BenchmarkPreFilter(b *testing.B) {
	rdb, ks := testdb.Redis(b)
	ctx := context.Background()
	b.Run("distinct clients", func(b *testing.B) {
		l, err := ratelimit.New(ratelimit.DefaultConfig(), rdb, ks.Prefix)
		require.NoError(b, err)
		b.ReportAllocs()
		var i int64
		for b.Loop() {
			addr, user := benchClient(i)
			i++
			if err := l.PreFilter(addr, user); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, parallel := range []bool{false, true} {
		name := "flood shed/serial"
		if parallel {
			name = "flood shed/parallel"
		}
		b.Run(name, func(b *testing.B) {
			l, err := ratelimit.New(ratelimit.DefaultConfig(), rdb, ks.Prefix+":"+name)
			require.NoError(b, err)
			addr, user := benchClient(7)
			b.ReportAllocs()
			if !parallel {
				for b.Loop() {
					_ = l.Allow(ctx, addr, user)
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					_ = l.Allow(ctx, addr, user)
				}
			})
		})
	}
}

// BenchmarkRedisPing is one bare round trip to the same Redis: what Allow's
// figures compare with.
func BenchmarkRedisPing(b *testing.B) {
	rdb, _ := testdb.Redis(b)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := rdb.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rdb.Ping(ctx).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
