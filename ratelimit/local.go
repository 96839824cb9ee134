package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// local is the pre-filter of one limit: a golang.org/x/time/rate limiter
// per key, in shards so parallel requests seldom share a lock, at most max
// keys in all.
type local[K comparable] struct {
	rate     rate.Limit
	burst    int
	perShard int
	seed     maphash.Seed
	shards   []shard[K]
}

type shard[K comparable] struct {
	mu sync.Mutex
	m  map[K]*rate.Limiter
	_  [40]byte // a cache line of its own: the shards' locks are hot
}

func newLocal[K comparable](r float64, burst, max int) *local[K] {
	n := 1
	if max >= 64*16 {
		n = 16 // enough shards for any core count this runs on, each still large
	}
	lc := &local[K]{rate: rate.Limit(r), burst: burst, perShard: max / n, seed: maphash.MakeSeed(), shards: make([]shard[K], n)}
	for i := range lc.shards {
		lc.shards[i].m = make(map[K]*rate.Limiter)
	}
	return lc
}

// reserve takes one request of k's limiter at now.
func (lc *local[K]) reserve(k K, now time.Time) reservation {
	s := &lc.shards[0]
	if len(lc.shards) > 1 {
		s = &lc.shards[maphash.Comparable(lc.seed, k)%uint64(len(lc.shards))]
	}
	s.mu.Lock()
	lim := s.m[k]
	if lim == nil {
		if len(s.m) >= lc.perShard {
			lc.evict(s, now)
		}
		lim = rate.NewLimiter(lc.rate, lc.burst)
		s.m[k] = lim
	}
	s.mu.Unlock()
	return reservation{r: lim.ReserveN(now, 1)}
}

// evict makes room in a full shard (its lock held): idle limiters go first,
// those refilled to their burst, which a new limiter would equal; when that
// frees less than a quarter of the shard, the shard starts over empty. Either
// way each eviction frees at least a quarter, so its scan costs O(1) per
// request amortised. A busy key forgotten gets a fresh local burst, no more:
// Redis still holds its limit.
func (lc *local[K]) evict(s *shard[K], now time.Time) {
	full := float64(lc.burst)
	for k, lim := range s.m {
		if lim.TokensAt(now) >= full {
			delete(s.m, k)
		}
	}
	if len(s.m) > lc.perShard*3/4 {
		clear(s.m)
	}
}

// sweep drops the idle limiters of every shard (those refilled to their
// burst, which a new limiter would equal), so a quiet node's maps shrink
// back instead of holding every client it ever saw until they fill up.
func (lc *local[K]) sweep(now time.Time) {
	full := float64(lc.burst)
	for i := range lc.shards {
		s := &lc.shards[i]
		s.mu.Lock()
		for k, lim := range s.m {
			if lim.TokensAt(now) >= full {
				delete(s.m, k)
			}
		}
		s.mu.Unlock()
	}
}

// len is how many limiters the pre-filter keeps.
func (lc *local[K]) len() int {
	n := 0
	for i := range lc.shards {
		s := &lc.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

// reservation is a pre-filter's answer; the zero reservation is a limit
// that is off or not asked.
type reservation struct {
	r *rate.Reservation
}

// delay is how long the request would have to wait: 0 when allowed now.
func (r reservation) delay(now time.Time) time.Duration {
	if r.r == nil {
		return 0
	}
	if !r.r.OK() {
		return math.MaxInt64 // more than the burst: not possible at a burst ≥ 2
	}
	return r.r.DelayFrom(now)
}

// cancel gives the request back.
func (r reservation) cancel(now time.Time) {
	if r.r != nil {
		r.r.CancelAt(now)
	}
}
