package checkout

import (
	"context"
	"time"

	"github.com/flashsale/flashsale/startstop"
)

// SweeperConfig configures the background work of the checkout role.
type SweeperConfig struct {
	// Every is how often due holds are expired and the sales' stamps
	// checked (see Sweeper); default 1 s.
	Every time.Duration
	// ReconcileEvery is how often pending orders are looked for; default
	// 10 s, at most PendingAge. A pass also runs when the oldest pending
	// order it left becomes PendingAge old.
	ReconcileEvery time.Duration
	// PendingAge is how old a pending order must be before reconciliation
	// settles it, and how long after a restore from MySQL a sale is checked
	// once more. A checkout's request decides its order within its MySQL
	// write timeout (4 s) and compensates right after; settling a pending
	// order earlier is still safe (a 201 is only answered once the order
	// is durable, and a tombstone makes a write still on its way fail, so
	// its shopper gets 503 and keeps the ticket), but turns slow checkouts
	// into 503s. Default 15 s.
	PendingAge time.Duration
	// FinalGrace is how long a final sale (sold out or closed) stays in the
	// working set after its row last changed; then no loop works for it.
	// Default 10 min.
	FinalGrace time.Duration
}

// Sweeper is the background work of a checkout node, one pass a tick, each
// part in the file of its concept:
//
//   - expireHolds (holds.go) expires holds whose time is up (every node may
//     run one: MySQL's conditional update lets exactly one expire each hold);
//   - reconcilePending (pending.go) settles orders left pending by a process
//     that died between the Redis step and MySQL;
//   - checkStamps (revalidate.go) keeps the sales' stamps (see stamp.lua):
//     it stamps new sales, revalidates sales whose Redis restarted or failed
//     over, and checks a sale restored from MySQL once more PendingAge later;
//   - lifecycle (lifecycle.go) finishes sales that are over, republishes live
//     copies behind MySQL and retires final sales from the working set.
type Sweeper struct {
	cfg SweeperConfig
	svc *Service
	startstop.Loop
}

// NewSweeper returns a sweeper.
func NewSweeper(cfg SweeperConfig, svc *Service) *Sweeper {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.ReconcileEvery <= 0 {
		cfg.ReconcileEvery = 10 * time.Second
	}
	if cfg.PendingAge <= 0 {
		cfg.PendingAge = DefaultPendingAge
	}
	cfg.ReconcileEvery = min(cfg.ReconcileEvery, cfg.PendingAge)
	if cfg.FinalGrace <= 0 {
		cfg.FinalGrace = 10 * time.Minute
	}
	return &Sweeper{cfg: cfg, svc: svc}
}

// DefaultPendingAge is SweeperConfig.PendingAge's default.
const DefaultPendingAge = 15 * time.Second

// Start runs the sweeper until ctx ends or Stop.
func (w *Sweeper) Start(ctx context.Context) {
	w.Go(ctx, func(ctx context.Context) {
		t := time.NewTicker(w.cfg.Every)
		defer t.Stop()
		var nextReconcile time.Time // at once, then every ReconcileEvery or when a mark is due
		for {
			w.expireHolds(ctx)
			w.checkStamps(ctx)
			w.lifecycle(ctx)
			if now := time.Now(); !now.Before(nextReconcile) {
				nextReconcile = now.Add(w.cfg.ReconcileEvery)
				_, due, err := w.svc.reconcilePending(ctx, w.cfg.PendingAge)
				if err != nil && ctx.Err() == nil {
					w.svc.cfg.Logger.Warn("checkout: reconcile pending orders", "err", err)
				}
				if due > 0 && now.Add(due).Before(nextReconcile) {
					nextReconcile = now.Add(due)
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}
