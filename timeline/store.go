package timeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

// Store reads and writes the sales' timelines in Redis.
type Store struct {
	cfg  Config
	rdb  redis.UniversalClient
	keys sale.Keyspace
}

// NewStore returns a Store on the sales' keyspace.
func NewStore(cfg Config, rdb redis.UniversalClient, ks sale.Keyspace) *Store {
	return &Store{cfg: cfg.withDefaults(), rdb: rdb, keys: ks}
}

// Keys are the timeline keys of a sale.
func (st *Store) Keys(saleID string) Keys { return KeysOf(st.keys.Sale(saleID)) }

// Claim takes the current second (Redis's clock) of the sale's timeline for
// the caller: it answers that second, or 0 when another sampler has it.
func (st *Store) Claim(ctx context.Context, saleID string) (int64, error) {
	k := st.Keys(saleID)
	sec, err := claimScript.Run(ctx, st.rdb, []string{k.Meta}, st.cfg.Retention.Milliseconds()).Int64()
	if err != nil {
		return 0, fmt.Errorf("timeline: claim a second of sale %s: %w", saleID, err)
	}
	return sec, nil
}

// Write adds the sample of a claimed second.
func (st *Store) Write(ctx context.Context, saleID string, s Sample) error {
	k := st.Keys(saleID)
	err := writeScript.Run(ctx, st.rdb, []string{k.Meta, k.Fine, k.Coarse, k.Marks},
		s.T, s.encode(), formatRate(s.AdmissionRate), string(s.State),
		int64(st.cfg.FineWindow/time.Second), st.cfg.CoarseCap, st.cfg.MarksCap,
		st.cfg.Retention.Milliseconds(), int64(st.cfg.CoarseStep/time.Second)).Err()
	if err != nil {
		return fmt.Errorf("timeline: write a sample of sale %s: %w", saleID, err)
	}
	return nil
}

// Remove deletes a sale's timeline.
func (st *Store) Remove(ctx context.Context, saleID string) error {
	return st.rdb.Del(ctx, st.Keys(saleID).All()...).Err()
}

// Series is a sale's timeline from some second on.
type Series struct {
	SaleID string `json:"sale_id"`
	// FineSeconds and CoarseSeconds are the two resolutions; samples older
	// than FineWindowSeconds are CoarseSeconds apart.
	FineSeconds       int64    `json:"fine_seconds"`
	FineWindowSeconds int64    `json:"fine_window_seconds"`
	CoarseSeconds     int64    `json:"coarse_seconds"`
	Samples           []Sample `json:"samples"`
	Marks             []Mark   `json:"marks"`
	// Now is Redis's clock (Unix seconds): the next read's since is the
	// last sample's t + 1.
	Now int64 `json:"now"`
}

// Read answers the samples and marks at or after since (Unix seconds),
// oldest first: per-minute samples where the per-second ones are gone, then
// per-second ones; with step > 1 at most one sample per step seconds.
func (st *Store) Read(ctx context.Context, saleID string, since, step int64) (*Series, error) {
	k := st.Keys(saleID)
	by := &redis.ZRangeBy{Min: fmt.Sprint(since), Max: "+inf"}
	pipe := st.rdb.Pipeline()
	fine := pipe.ZRangeByScore(ctx, k.Fine, by)
	coarse := pipe.ZRangeByScore(ctx, k.Coarse, by)
	marks := pipe.ZRangeByScore(ctx, k.Marks, by)
	now := pipe.Time(ctx)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("timeline: read sale %s: %w", saleID, err)
	}
	out := &Series{SaleID: saleID, FineSeconds: 1, FineWindowSeconds: int64(st.cfg.FineWindow / time.Second),
		CoarseSeconds: int64(st.cfg.CoarseStep / time.Second), Samples: []Sample{}, Marks: []Mark{},
		Now: now.Val().Unix()}
	var fs []Sample
	for _, rec := range fine.Val() {
		if s, ok := decodeSample(rec); ok {
			fs = append(fs, s)
		}
	}
	firstFine := int64(1<<63 - 1)
	if len(fs) > 0 {
		firstFine = fs[0].T
	}
	var last int64 = -1 << 62
	add := func(s Sample) {
		if step > 1 && s.T < last+step {
			return
		}
		out.Samples = append(out.Samples, s)
		last = s.T
	}
	for _, rec := range coarse.Val() {
		if s, ok := decodeSample(rec); ok && s.T < firstFine {
			add(s)
		}
	}
	for _, s := range fs {
		add(s)
	}
	// the newest sample always, so a thinned series still ends where the sale is
	if n := len(fs); n > 0 && out.Samples[len(out.Samples)-1].T != fs[n-1].T {
		out.Samples = append(out.Samples, fs[n-1])
	}
	for _, rec := range marks.Val() {
		if m, ok := decodeMark(rec); ok {
			out.Marks = append(out.Marks, m)
		}
	}
	return out, nil
}
