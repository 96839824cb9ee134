package sale

import (
	"cmp"
	"context"
	"errors"
	"time"
)

// cached is one entry of the per-node sale cache: the sale, or the error
// "not found", as read at at.
type cached struct {
	s   *Sale
	at  time.Time
	err error
}

// Cached is Get through a per-node cache of at most maxAge, for hot paths
// and the public endpoints. "Not found" is cached too (an unknown id asked
// again and again would cost a MySQL query each time), but the cache is
// keyed by what clients send, so it is bounded: an id that is not a sale
// id is never cached, and past MaxCached entries the stale ones go, then,
// if still full, new ones are not kept.
func (st *Store) Cached(ctx context.Context, id string, maxAge time.Duration) (*Sale, error) {
	if !idPattern.MatchString(id) {
		return nil, ErrNotFound
	}
	now := time.Now()
	st.mu.Lock()
	c, ok := st.cache[id]
	st.mu.Unlock()
	if ok && now.Sub(c.at) < maxAge {
		return c.s, c.err
	}
	s, err := st.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err // outages are not cached
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	limit := cmp.Or(st.CacheLimit, MaxCached)
	if _, ok := st.cache[id]; !ok && len(st.cache) >= limit {
		for k, c := range st.cache {
			if now.Sub(c.at) >= cacheStale {
				delete(st.cache, k)
			}
		}
		if len(st.cache) >= limit {
			return s, err
		}
	}
	st.cache[id] = cached{s: s, at: now, err: err}
	return s, err
}

// MaxCached bounds the per-node sale cache (Cached) unless
// Store.CacheLimit says otherwise.
const MaxCached = 10_000

// cacheStale is the age past which a cached entry serves no caller (every
// caller asks for at most a second) and may be dropped.
const cacheStale = 2 * time.Second

// CachedLen is the number of entries in the per-node sale cache.
func (st *Store) CachedLen() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.cache)
}

func (st *Store) forget(id string) {
	st.mu.Lock()
	delete(st.cache, id)
	st.mu.Unlock()
}
