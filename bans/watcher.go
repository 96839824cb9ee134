package bans

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/startstop"
)

// Defaults of a Watcher.
const (
	// DefaultInterval is how often a Watcher asks MySQL whether the bans
	// changed: a ban acts on every node within about this, well inside the
	// contract's 1 s.
	DefaultInterval = 500 * time.Millisecond
	// DefaultFullReload is how often a Watcher reloads every ban even when
	// the version did not move, so a hand edit of the table is seen too.
	DefaultFullReload = 30 * time.Second
	// reloadTimeout bounds one check, so a MySQL that does not answer is
	// logged and retried instead of holding the loop.
	reloadTimeout = 2 * time.Second
	// errorLogEvery is the least time between two logs of failing reloads.
	errorLogEvery = 30 * time.Second
)

// Watcher keeps a node's Set of live bans fresh. Every Interval it reads
// the one-row version (a primary-key point read, about the cost of a ping)
// and reloads every live ban only when the version moved, when the
// earliest expiry in the Set has passed (to drop it), or every FullReload.
// A failed check keeps the last Set and is logged at most every 30 s.
// MySQL is the only source: a Redis flush changes nothing here.
type Watcher struct {
	startstop.Loop

	// OnChange, when set, is called with the bans that appeared since the
	// previous load (not for the first load, which is the baseline), after
	// Current returns the new Set: the node closes the banned sockets and
	// takes banned users out of the queues. It runs on the Watcher's
	// goroutine, one call at a time, so it should hand long work off; it
	// must not call Reload.
	OnChange func(added []Ban)
	// Interval is how often MySQL is asked; 0 means DefaultInterval.
	Interval time.Duration
	// FullReload is how often every ban is reloaded anyway; 0 means
	// DefaultFullReload.
	FullReload time.Duration

	store *Store
	log   *slog.Logger
	cur   atomic.Pointer[Set]
	poke  chan struct{}

	mu       sync.Mutex // one reload at a time; guards what follows
	loaded   bool
	version  uint64
	lastFull time.Time
	failures int
	lastLog  time.Time
}

// NewWatcher returns a Watcher of store's bans. Until its first load its
// Set is empty. Set the exported fields before Start.
func NewWatcher(store *Store, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.Default()
	}
	w := &Watcher{store: store, log: log, poke: make(chan struct{}, 1)}
	w.cur.Store(NewSet(nil))
	return w
}

// Current is the latest Set; never nil.
func (w *Watcher) Current() *Set { return w.cur.Load() }

// Start runs the loop until ctx ends or Stop; it loads at once.
func (w *Watcher) Start(ctx context.Context) {
	w.Go(ctx, w.run)
}

// Poke makes the loop check now instead of at its next tick (after a ban
// made on this node, so it acts here at once). It never blocks.
func (w *Watcher) Poke() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *Watcher) run(ctx context.Context) {
	interval := w.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		w.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.poke:
		}
	}
}

// tick is one bounded check, with the error logged (rate-limited).
func (w *Watcher) tick(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	err := w.Reload(cctx)
	cancel()
	if ctx.Err() != nil {
		return // stopping: not MySQL's fault
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	switch {
	case err != nil:
		w.failures++
		if w.lastLog.IsZero() || now.Sub(w.lastLog) >= errorLogEvery {
			w.log.Error("bans: reading the bans from MySQL failed; the last ones loaded stay in force",
				"err", err, "failures", w.failures, "bans", w.Current().Len())
			w.lastLog = now
		}
	case w.failures > 0:
		w.log.Info("bans: reading the bans from MySQL works again", "failures", w.failures)
		w.failures, w.lastLog = 0, time.Time{}
	}
}

// Reload checks the version now and reloads the bans if they changed (or
// on the first call). A node may call it once before it serves, so the
// bans act from its first request. On error the current Set stays.
func (w *Watcher) Reload(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	// The version is read before the bans: a change after this read moves
	// the version again, so the next check sees it.
	v, err := w.store.Version(ctx)
	if err != nil {
		return err
	}
	full := w.FullReload
	if full <= 0 {
		full = DefaultFullReload
	}
	cur := w.Current()
	if w.loaded && v == w.version && now.Sub(w.lastFull) < full &&
		(cur.nextExpiry.IsZero() || now.Before(cur.nextExpiry)) {
		return nil
	}
	list, err := w.store.List(ctx, now)
	if err != nil {
		return err
	}
	next := NewSet(list)
	var added []Ban
	if w.loaded {
		for _, b := range list {
			if !cur.Has(b.ID) {
				added = append(added, b)
			}
		}
	}
	w.cur.Store(next)
	w.loaded, w.version, w.lastFull = true, v, now
	if len(added) > 0 && w.OnChange != nil {
		w.OnChange(added)
	}
	return nil
}
