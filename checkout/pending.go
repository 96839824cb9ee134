package checkout

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flashsale/flashsale/sale"
)

// repairPending settles every pending mark now by what MySQL says.
func (s *Service) repairPending(ctx context.Context, saleID string) ([]Difference, error) {
	k := s.keys.Sale(saleID)
	pending, err := s.rdb.HGetAll(ctx, k.Pending).Result()
	if err != nil {
		return nil, &sale.StoreError{Store: "Redis", Err: err}
	}
	nowMs, err := s.redisNow(ctx)
	if err != nil {
		return nil, err
	}
	var diffs []Difference
	for _, id := range slices.Sorted(maps.Keys(pending)) {
		m, ok := sale.ParsePending(pending[id])
		if !ok {
			// Not a mark any script writes: nothing can settle it.
			diffs = append(diffs, Difference{Kind: "pending", Detail: fmt.Sprintf("%s: unreadable mark %q; left as is", id, pending[id])})
			continue
		}
		d, err := s.describePending(ctx, id, m, nowMs)
		if err != nil {
			return diffs, err
		}
		if err := s.reconcileOne(ctx, saleID, id, m); err != nil {
			return append(diffs, d), err
		}
		d.Repaired = true
		diffs = append(diffs, d)
	}
	return diffs, nil
}

// describePending says what a pending mark is and what a repair does to it.
func (s *Service) describePending(ctx context.Context, id string, m sale.Pending, nowMs int64) (Difference, error) {
	head := fmt.Sprintf("order %s of user %s (%d unit(s), %s, %.1f s old) is pending in Redis", id, m.User, m.Quantity, m.Kind,
		float64(nowMs-m.AtMs)/1000)
	if m.Compensating {
		return Difference{Kind: "pending", Detail: head + "; its request gave it up (answered 503): cancel it in MySQL " +
			"if it committed (a tombstone if not) and return its units"}, nil
	}
	ord, err := s.orders.Get(ctx, id)
	switch {
	case errors.Is(err, ErrNoOrder):
		return Difference{Kind: "pending", Detail: head + "; MySQL has no such order: compensate (tombstone) and return its units"}, nil
	case err != nil:
		return Difference{}, &sale.StoreError{Store: "MySQL", Err: err}
	case ord.Status == StatusHeld || ord.Status == StatusPaid:
		return Difference{Kind: "pending", Detail: head + "; MySQL has it " + ord.Status + ": finalize"}, nil
	}
	return Difference{Kind: "pending", Detail: head + "; MySQL has it " + ord.Status + ": return its units"}, nil
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

// redisNow is Redis's clock in milliseconds, the clock of the pending marks.
func (s *Service) redisNow(ctx context.Context) (int64, error) {
	t, err := s.rdb.Time(ctx).Result()
	if err != nil {
		return 0, &sale.StoreError{Store: "Redis", Err: err}
	}
	return t.UnixMilli(), nil
}
