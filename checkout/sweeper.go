package checkout

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

// SweeperConfig configures the background work of the checkout role.
type SweeperConfig struct {
	// Every is how often due holds are expired; default 1 s.
	Every time.Duration
	// ReconcileEvery is how often pending orders are reconciled; default 10 s.
	ReconcileEvery time.Duration
	// PendingAge is how old a pending order must be before reconciliation
	// touches it: past the request's own write and compensation. Default 150 s.
	PendingAge time.Duration
}

// Sweeper expires holds whose time is up (every node may run one: MySQL's
// conditional update lets exactly one expire each hold) and reconciles
// orders left pending by a process that died between the Redis step and
// MySQL.
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
		cfg.PendingAge = 150 * time.Second
	}
	return &Sweeper{cfg: cfg, svc: svc}
}

// Start runs the sweeper until ctx ends or Stop.
func (w *Sweeper) Start(ctx context.Context) {
	w.Go(ctx, func(ctx context.Context) {
		t := time.NewTicker(w.cfg.Every)
		defer t.Stop()
		var lastReconcile time.Time
		for {
			w.expireHolds(ctx)
			if time.Since(lastReconcile) >= w.cfg.ReconcileEvery {
				if _, err := w.svc.ReconcilePending(ctx, w.cfg.PendingAge); err != nil && ctx.Err() == nil {
					w.svc.cfg.Logger.Warn("checkout: reconcile pending orders", "err", err)
				}
				lastReconcile = time.Now()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

func (w *Sweeper) expireHolds(ctx context.Context) {
	ids, err := w.svc.orders.DueHolds(ctx, time.Now(), 500)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, ErrBreakerOpen) {
			w.svc.cfg.Logger.Warn("checkout: list due holds", "err", err)
		}
		return
	}
	for _, id := range ids {
		_, err := w.svc.Settle(ctx, id, StatusExpired)
		switch {
		case err == nil:
			w.svc.cfg.Logger.Info("hold expired", "order", id)
			if m := w.svc.cfg.Metrics; m != nil {
				m.Settles.WithLabelValues(StatusExpired).Inc()
			}
		case errors.Is(err, ErrOrderNotHeld):
			// confirmed or cancelled meanwhile: it lost the race, as it should
		default:
			if ctx.Err() == nil {
				w.svc.cfg.Logger.Warn("checkout: expire hold", "order", id, "err", err)
			}
		}
	}
}

// ReconcilePending settles orders left pending in Redis for longer than
// age: one MySQL has is finalized; one it lacks is compensated (a tombstone,
// so a late write cannot land) and undone. It returns how many it settled.
func (s *Service) ReconcilePending(ctx context.Context, age time.Duration) (int, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.Sales()).Result()
	if err != nil {
		return 0, &sale.StoreError{Store: "Redis", Err: err}
	}
	n := 0
	for _, saleID := range ids {
		k := s.keys.Sale(saleID)
		pending, err := s.rdb.HGetAll(ctx, k.Pending).Result()
		if err != nil {
			return n, &sale.StoreError{Store: "Redis", Err: err}
		}
		nowMs, err := s.redisNow(ctx)
		if err != nil {
			return n, err
		}
		for orderID, rec := range pending {
			f := strings.Split(rec, "|")
			if len(f) != 6 {
				continue
			}
			at, _ := strconv.ParseInt(f[5], 10, 64)
			if nowMs-at < age.Milliseconds() {
				continue
			}
			if err := s.reconcileOne(ctx, saleID, orderID, f); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

func (s *Service) reconcileOne(ctx context.Context, saleID, orderID string, f []string) error {
	ord, err := s.orders.Get(ctx, orderID)
	if errors.Is(err, ErrNoOrder) {
		// Not in MySQL now: a tombstone makes sure it never will be. Its
		// write may still land first (its request is alive): then the
		// tombstone finds the order, which is finalized, not cancelled,
		// since its request may answer 201.
		qty, _ := strconv.Atoi(f[1])
		sl, err := s.sales.Load(ctx, saleID)
		if err != nil {
			return err
		}
		tomb := &Order{ID: orderID, SaleID: saleID, UserID: f[0], Quantity: max(qty, 1),
			AmountCents: sl.PriceCents * int64(max(qty, 1)), Currency: sl.Currency, CreatedAt: time.Now().UTC()}
		if ord, err = s.orders.Tombstone(ctx, tomb); err != nil {
			return &sale.StoreError{Store: "MySQL", Err: err}
		}
	}
	if err != nil && !errors.Is(err, ErrNoOrder) {
		return &sale.StoreError{Store: "MySQL", Err: err}
	}
	if ord.Status == StatusHeld || ord.Status == StatusPaid {
		s.finalize(ctx, ord)
		// A hold confirmed in MySQL before Redis knew of it (finalize had
		// failed, so the confirm's settle.lua found no hold): finalize just
		// made it a hold in Redis; move its units on to sold, or they stay
		// held in Redis for ever (no MySQL hold is left to expire).
		if ord.Status == StatusPaid && f[4] == StatusHeld {
			s.settleRedis(ctx, ord, StatusPaid)
		}
		s.cfg.Logger.Warn("reconcile: finalized an order MySQL had", "sale", saleID, "order", orderID)
		return nil
	}
	// MySQL has it cancelled or expired (a tombstone, a compensation, or a
	// hold settled before Redis heard of it): its units return.
	if err := s.undo(ctx, saleID, orderID); err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	s.cfg.Logger.Warn("reconcile: undid an order MySQL does not keep", "sale", saleID, "order", orderID)
	return nil
}

func (s *Service) redisNow(ctx context.Context) (int64, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return 0, &sale.StoreError{Store: "Redis", Err: err}
	}
	return t.UnixMilli(), nil
}
