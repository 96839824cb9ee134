package checkout

import (
	"context"
	_ "embed"
	"errors"
	"time"

	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed compensating.lua
	compensatingLua    string
	compensatingScript = sale.NewScript(compensatingLua)
)

// Compensate makes sure an order whose write failed or whose outcome is
// unknown never lives: a tombstone row with its id (so a write still in
// flight fails on the primary key), or, if the order did commit, cancelled
// with its units returned to the sale's counts and its ticket and key freed.
// It reports whether a committed order was cancelled.
func (o *Orders) Compensate(ctx context.Context, ord *Order) (cancelled bool, err error) {
	// Never refused by the breaker (an order must not be left unsettled),
	// but its outcome counts.
	defer func() { o.breaker.Record(err) }()
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer tx.Rollback() //nolint:errcheck
	if err := lockSale(ctx, tx, ord.SaleID); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, sale_id, user_id, quantity, amount_cents,
		currency, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'cancelled', ?) ON DUPLICATE KEY UPDATE id = id`,
		ord.ID, ord.SaleID, ord.UserID, ord.Quantity, ord.AmountCents, ord.Currency, ord.CreatedAt); err != nil {
		return false, err
	}
	var status string
	var qty int
	if err := tx.QueryRowContext(ctx, `SELECT status, quantity FROM orders WHERE id = ? FOR UPDATE`, ord.ID).Scan(&status, &qty); err != nil {
		return false, err
	}
	if status == StatusHeld || status == StatusPaid {
		col := "sold"
		if status == StatusHeld {
			col = "held"
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = 'cancelled', ticket_jti = NULL,
			idempotency_key = NULL WHERE id = ?`, ord.ID); err != nil {
			return false, err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sales SET `+col+` = `+col+` - ? WHERE id = ?`, qty, ord.SaleID); err != nil {
			return false, err
		}
		// the shop heard order.created in the order's transaction
		gone := *ord
		gone.Status, gone.Quantity = StatusCancelled, qty
		if err := o.Events.Add(ctx, tx, orderEvent(&gone)); err != nil {
			return false, err
		}
		cancelled = true
	}
	return cancelled, tx.Commit()
}

// Tombstone makes sure an order that is not in MySQL never commits (a
// cancelled row with its id, so a write still in flight fails on the
// primary key), and returns the order as MySQL then has it: the tombstone,
// or the order itself when its write got there first. Unlike Compensate it
// never cancels a committed order: reconciliation uses it for orders whose
// request may still answer 201.
func (o *Orders) Tombstone(ctx context.Context, ord *Order) (got *Order, err error) {
	defer func() { o.breaker.Record(err) }()
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck
	if err := lockSale(ctx, tx, ord.SaleID); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id, sale_id, user_id, quantity, amount_cents,
		currency, status, created_at) VALUES (?, ?, ?, ?, ?, ?, 'cancelled', ?) ON DUPLICATE KEY UPDATE id = id`,
		ord.ID, ord.SaleID, ord.UserID, ord.Quantity, ord.AmountCents, ord.Currency, ord.CreatedAt); err != nil {
		return nil, err
	}
	got, err = scanOrder(tx.QueryRowContext(ctx, selectOrder+` WHERE id = ?`, ord.ID))
	if err != nil {
		return nil, err
	}
	return got, tx.Commit()
}

// compensate makes sure the order never lives, then undoes the Redis step.
// It runs on a detached context and retries until MySQL answers (bounded);
// until it finishes the order stays pending in Redis, so the ticket is not
// used up (a retry answers 503) and reconciliation finishes the job if this
// process dies. The pending mark first notes that the order was given up
// (compensating.lua), so that reconciliation, which may meet the mark
// meanwhile (a MySQL outage outlasting the sweepers' PendingAge) or after
// this loop gave up, cancels the order as this loop would, and never
// finalizes an order whose shopper got 503.
func (s *Service) compensate(ctx context.Context, ord *Order, cause error) {
	refused := errors.Is(cause, ErrGuard) || errors.Is(cause, ErrDuplicate)
	if !refused {
		s.noteCompensating(ctx, ord)
	}
	done := make(chan struct{})
	started := s.jobs.Go("compensate:"+ord.ID, compensateFor, func(ctx context.Context) {
		defer close(done)
		delay := 100 * time.Millisecond
		for {
			var err error
			var cancelled bool
			if !refused { // a refused transaction rolled back: nothing to undo in MySQL
				cancelled, err = s.orders.Compensate(ctx, ord)
			}
			if err == nil {
				undone, err := s.undo(ctx, ord.SaleID, ord.ID)
				if err != nil {
					s.cfg.Logger.Error("checkout: undo in Redis failed; reconciliation will", "order", ord.ID, "err", err)
				}
				if err == nil && cancelled && !undone {
					// The order had committed and reconciliation finalized it
					// (it read the mark before the note): Redis counts an
					// order MySQL just cancelled.
					s.repairAfterCompensation(ctx, ord)
				}
				return
			}
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				s.cfg.Logger.Error("checkout: compensation gave up (timed out or shutting down); reconciliation will finish it",
					"order", ord.ID, "err", err)
				return
			case <-t.C:
			}
			delay = min(2*delay, 2*time.Second)
		}
	})
	if !started {
		return // shutting down: the order stays pending for reconciliation
	}
	// Wait a little, so that in the common case the 503 comes after the
	// ticket is free again; never past the contract's 5 s.
	select {
	case <-done:
	case <-time.After(500 * time.Millisecond):
	}
}

// compensateFor bounds a compensation's retries while MySQL does not
// answer; reconciliation finishes what it leaves.
const compensateFor = 2 * time.Minute

// noteCompensating marks the order's pending mark as given up (best
// effort: with Redis down, reconciliation may finalize an order that this
// compensation then cancels, and repairAfterCompensation mends Redis).
func (s *Service) noteCompensating(ctx context.Context, ord *Order) {
	k := s.keys.Sale(ord.SaleID)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := compensatingScript.Run(ctx, s.rdb, []string{k.Pending}, ord.ID).Err(); err != nil {
		s.cfg.Logger.Warn("checkout: note a compensation on the pending mark", "order", ord.ID, "err", err)
	}
}

// repairAfterCompensation makes Redis agree with MySQL for the sale of an
// order a compensation cancelled after reconciliation had finalized it.
func (s *Service) repairAfterCompensation(ctx context.Context, ord *Order) {
	s.cfg.Logger.Warn("checkout: a compensated order had been finalized by reconciliation; repairing the sale",
		"sale", ord.SaleID, "order", ord.ID)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sl, err := s.sales.Load(rctx, ord.SaleID)
	if err == nil {
		_, err = s.compare(rctx, sl, true, "")
	}
	if err != nil {
		s.cfg.Logger.Error("checkout: repair after a compensation; run flashsale reconcile --repair", "sale", ord.SaleID, "err", err)
	}
}
