package waitingroom

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

// Sources counts a sale's joins by client prefix (IPv4 /24, IPv6 /48), so
// that an operator can see a bot farm and ban its prefix. Counts gather in
// memory and go to Redis once a second in one pipeline (ZINCRBY on the
// sale's src:joins and src:users), never on a join's path. "users" counts
// the joins that placed their user in the queue (a user who leaves and
// joins again counts twice; rejoining in place does not).
type Sources struct {
	rdb  redis.UniversalClient
	keys sale.Keyspace
	log  *slog.Logger

	mu      sync.Mutex
	pending map[srcKey]*srcCount
	dropped int // counts lost to the bound since the last flush

	startstop.Loop
}

type srcKey struct {
	sale   string
	prefix netip.Prefix
}

type srcCount struct{ joins, users int64 }

// maxSourcesPending bounds the (sale, prefix) pairs waiting for a flush:
// the map is keyed by what clients send.
const maxSourcesPending = 50_000

// NewSources returns a Sources; Start runs its flush loop.
func NewSources(rdb redis.UniversalClient, keys sale.Keyspace, log *slog.Logger) *Sources {
	if log == nil {
		log = slog.Default()
	}
	return &Sources{rdb: rdb, keys: keys, log: log, pending: map[srcKey]*srcCount{}}
}

// SourcePrefix is the prefix a client address is counted under: its /24
// (IPv4) or /48 (IPv6).
func SourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 48
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}
	}
	return p
}

// Record counts one join of the sale from addr; placed says it put its user
// in the queue.
func (s *Sources) Record(saleID string, addr netip.Addr, placed bool) {
	p := SourcePrefix(addr)
	if !p.IsValid() {
		return
	}
	k := srcKey{sale: saleID, prefix: p}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.pending[k]
	if c == nil {
		if len(s.pending) >= maxSourcesPending {
			s.dropped++
			return
		}
		c = &srcCount{}
		s.pending[k] = c
	}
	c.joins++
	if placed {
		c.users++
	}
}

// Start flushes the counts every second until ctx ends or Stop (and once
// more on the way out).
func (s *Sources) Start(ctx context.Context) {
	s.Go(ctx, func(ctx context.Context) {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				s.Flush(fctx)
				cancel()
				return
			case <-t.C:
				s.Flush(ctx)
			}
		}
	})
}

// Flush writes the counts gathered so far to Redis.
func (s *Sources) Flush(ctx context.Context) {
	s.mu.Lock()
	batch, dropped := s.pending, s.dropped
	s.pending, s.dropped = map[srcKey]*srcCount{}, 0
	s.mu.Unlock()
	if dropped > 0 {
		s.log.Warn("sources: more client prefixes in a second than counted; some joins were not counted", "dropped", dropped)
	}
	if len(batch) == 0 {
		return
	}
	pipe := s.rdb.Pipeline()
	for k, c := range batch {
		ks := s.keys.Sale(k.sale)
		pipe.ZIncrBy(ctx, ks.SrcJoins, float64(c.joins), k.prefix.String())
		if c.users > 0 {
			pipe.ZIncrBy(ctx, ks.SrcUsers, float64(c.users), k.prefix.String())
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("sources: write the counts", "err", err)
	}
}

// Source is one client prefix of a sale's joins.
type Source struct {
	Prefix string `json:"prefix"`
	Users  int64  `json:"users"`
	Joins  int64  `json:"joins"`
}

// Top lists the sale's n prefixes with the most users, most first.
func (s *Sources) Top(ctx context.Context, saleID string, n int) ([]Source, error) {
	k := s.keys.Sale(saleID)
	zs, err := s.rdb.ZRevRangeWithScores(ctx, k.SrcUsers, 0, int64(n-1)).Result()
	if err != nil {
		return nil, &sale.StoreError{Store: "Redis", Err: err}
	}
	out := make([]Source, 0, len(zs))
	if len(zs) == 0 {
		return out, nil
	}
	members := make([]string, len(zs))
	for i, z := range zs {
		members[i], _ = z.Member.(string)
	}
	joins, err := s.rdb.ZMScore(ctx, k.SrcJoins, members...).Result()
	if err != nil {
		return nil, &sale.StoreError{Store: "Redis", Err: err}
	}
	for i, z := range zs {
		out = append(out, Source{Prefix: members[i], Users: int64(z.Score), Joins: int64(joins[i])})
	}
	return out, nil
}
