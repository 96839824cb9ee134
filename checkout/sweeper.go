package checkout

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
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

// Sweeper is the background work of a checkout node: it expires holds whose
// time is up (every node may run one: MySQL's conditional update lets
// exactly one expire each hold), reconciles orders left pending by a
// process that died between the Redis step and MySQL, keeps the sales'
// stamps (see stamp.lua): it stamps new sales, revalidates sales whose
// Redis restarted or failed over, and checks a sale restored from MySQL
// once more PendingAge later; and keeps the sales' lifecycle (see
// lifecycle): finishes sales that are over, republishes live copies behind
// MySQL and retires final sales from the working set.
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

// checkStamps keeps the sales' stamps (check.lua, stamp.lua): a new sale is
// stamped, a stale one (Redis restarted or failed over) revalidated, and
// one restored from MySQL PendingAge ago checked once more.
func (w *Sweeper) checkStamps(ctx context.Context) {
	s := w.svc
	ids, err := s.rdb.SMembers(ctx, s.keys.Sales()).Result()
	if err != nil || len(ids) == 0 {
		return // Redis down: the reserve step answers 503 meanwhile
	}
	cmds := make([]*redis.Cmd, len(ids))
	err = sale.ExecPipeline(ctx, s.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := s.keys.Sale(id)
			cmds[i] = checkScript.Run(ctx, pipe, []string{k.Cfg, k.Units}, w.cfg.PendingAge.Milliseconds())
		}
	})
	if err != nil {
		return
	}
	for i, id := range ids {
		v, err := cmds[i].StringSlice()
		if err != nil {
			continue
		}
		state, restored, err := checkReply(v)
		switch {
		case err != nil:
			s.cfg.Logger.Error("checkout: check a sale's stamp", "sale", id, "err", err)
		case state == "new":
			k := s.keys.Sale(id)
			err = stampScript.Run(ctx, s.rdb, []string{k.Cfg, k.Units}, "new").Err()
		case state == "stale":
			err = s.Revalidate(ctx, id)
		case state == "recheck":
			err = s.recheck(ctx, id, restored)
		}
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("checkout: keep a sale's stamp", "sale", id, "state", state, "err", err)
		}
	}
}

// ReconcilePending settles orders left pending in Redis for longer than
// age: one MySQL has is finalized; one it lacks is compensated (a tombstone,
// so a late write cannot land) and undone. It returns how many it settled.
func (s *Service) ReconcilePending(ctx context.Context, age time.Duration) (int, error) {
	n, _, err := s.reconcilePending(ctx, age)
	return n, err
}

// reconcilePending is ReconcilePending that also says how long until the
// first mark it left becomes age old (0 when it left none).
func (s *Service) reconcilePending(ctx context.Context, age time.Duration) (n int, due time.Duration, err error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.Sales()).Result()
	if err != nil {
		return 0, 0, &sale.StoreError{Store: "Redis", Err: err}
	}
	for _, saleID := range ids {
		k := s.keys.Sale(saleID)
		pending, err := s.rdb.HGetAll(ctx, k.Pending).Result()
		if err != nil {
			return n, due, &sale.StoreError{Store: "Redis", Err: err}
		}
		if len(pending) == 0 {
			continue
		}
		nowMs, err := s.redisNow(ctx)
		if err != nil {
			return n, due, err
		}
		for orderID, rec := range pending {
			m, ok := sale.ParsePending(rec)
			if !ok {
				continue
			}
			if left := time.Duration(m.AtMs+age.Milliseconds()-nowMs) * time.Millisecond; left > 0 {
				if due == 0 || left < due {
					due = left
				}
				continue
			}
			if err := s.reconcileOne(ctx, saleID, orderID, m); err != nil {
				return n, due, err
			}
			n++
		}
	}
	return n, due, nil
}

// reconcileOne settles one pending order by what MySQL has.
func (s *Service) reconcileOne(ctx context.Context, saleID, orderID string, m sale.Pending) error {
	markOrder := func() (*Order, error) {
		sl, err := s.sales.Load(ctx, saleID)
		if err != nil {
			return nil, err
		}
		qty := max(m.Quantity, 1)
		return &Order{ID: orderID, SaleID: saleID, UserID: m.User, Quantity: qty,
			AmountCents: sl.PriceCents * int64(qty), Currency: sl.Currency, CreatedAt: time.Now().UTC()}, nil
	}
	if m.Compensating {
		// Its request gave it up and answered 503: it must not live, even
		// if its write committed (as the request's own compensation would).
		ord, err := markOrder()
		if err != nil {
			return err
		}
		if _, err := s.orders.Compensate(ctx, ord); err != nil {
			return &sale.StoreError{Store: "MySQL", Err: err}
		}
		if _, err := s.undo(ctx, saleID, orderID); err != nil {
			return &sale.StoreError{Store: "Redis", Err: err}
		}
		s.cfg.Logger.Warn("reconcile: compensated an order its request gave up", "sale", saleID, "order", orderID)
		return nil
	}
	ord, err := s.orders.Get(ctx, orderID)
	if errors.Is(err, ErrNoOrder) {
		// Not in MySQL now: a tombstone makes sure it never will be. Its
		// write may still land first (its request is alive): then the
		// tombstone finds the order, which is finalized, not cancelled,
		// since its request may answer 201.
		tomb, err := markOrder()
		if err != nil {
			return err
		}
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
		if ord.Status == StatusPaid && m.Kind == StatusHeld {
			s.settleRedis(ctx, ord, StatusPaid)
		}
		s.cfg.Logger.Warn("reconcile: finalized an order MySQL had", "sale", saleID, "order", orderID)
		return nil
	}
	// MySQL has it cancelled or expired (a tombstone, a compensation, or a
	// hold settled before Redis heard of it): its units return.
	if _, err := s.undo(ctx, saleID, orderID); err != nil {
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
