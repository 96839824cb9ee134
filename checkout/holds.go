package checkout

import (
	"context"
	"database/sql"
	_ "embed"
	"encoding/json"
	"errors"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed settle.lua
	settleLua    string
	settleScript = sale.NewScript(settleLua)
)

// Settle moves a held order to paid, cancelled or expired, moving its units
// in the sale's counts, in one transaction: of racing settles exactly one
// wins, the others get ErrNotHeld. It reports whether paid units now reach
// the stock.
func (o *Orders) Settle(ctx context.Context, id, to string) (ord *Order, soldOut bool, err error) {
	err = o.call(func() error {
		ord, soldOut, err = o.settle(ctx, id, to)
		return err
	})
	return ord, soldOut, err
}

func (o *Orders) settle(ctx context.Context, id, to string) (ord *Order, soldOut bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback() //nolint:errcheck
	var saleID string
	if err := tx.QueryRowContext(ctx, `SELECT sale_id FROM orders WHERE id = ?`, id).Scan(&saleID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, ErrNoOrder
		}
		return nil, false, err
	}
	if err := lockSale(ctx, tx, saleID); err != nil {
		return nil, false, err
	}
	ord, err = scanOrder(tx.QueryRowContext(ctx, selectOrder+` WHERE id = ? FOR UPDATE`, id))
	if err != nil {
		return nil, false, err
	}
	if ord.Status != StatusHeld {
		return ord, false, ErrNotHeld
	}
	if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ? WHERE id = ?`, to, id); err != nil {
		return nil, false, err
	}
	ord.Status = to
	if err := o.Events.Add(ctx, tx, orderEvent(ord)); err != nil {
		return nil, false, err
	}
	q := `UPDATE sales SET held = held - ? WHERE id = ?`
	if to == StatusPaid {
		q = `UPDATE sales SET held = held - ?, sold = sold + ? WHERE id = ?`
	}
	args := []any{ord.Quantity, ord.SaleID}
	if to == StatusPaid {
		args = []any{ord.Quantity, ord.Quantity, ord.SaleID}
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return nil, false, err
	}
	if to == StatusPaid {
		var left int
		if err := tx.QueryRowContext(ctx, `SELECT stock_total - sold FROM sales WHERE id = ?`, ord.SaleID).Scan(&left); err != nil {
			return nil, false, err
		}
		soldOut = left == 0
	}
	if err := tx.Commit(); err != nil {
		return nil, false, err
	}
	return ord, soldOut, nil
}

// DueHolds lists held orders whose hold has run out by now.
func (o *Orders) DueHolds(ctx context.Context, now time.Time, limit int) (ids []string, err error) {
	err = o.call(func() error {
		ids, err = o.dueHolds(ctx, now, limit)
		return err
	})
	return ids, err
}

func (o *Orders) dueHolds(ctx context.Context, now time.Time, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := o.db.QueryContext(ctx, `SELECT id FROM orders WHERE status = 'held' AND hold_expires_at <= ?
		ORDER BY hold_expires_at LIMIT ?`, now, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// Settle confirms, cancels or expires a held order: MySQL decides who wins,
// then Redis follows.
func (s *Service) Settle(ctx context.Context, orderID, to string) (*Order, error) {
	ord, soldOut, err := s.orders.Settle(ctx, orderID, to)
	switch {
	case errors.Is(err, ErrNoOrder):
		return nil, api.ErrNotFound
	case errors.Is(err, ErrNotHeld):
		return nil, ErrOrderNotHeld
	case err != nil:
		return nil, &sale.StoreError{Store: "MySQL", Err: err}
	}
	s.settleRedis(ctx, ord, to)
	if soldOut {
		s.finishSoon(ord.SaleID)
	}
	return ord, nil
}

// settleRedis moves a settled hold's units in Redis (settle.lua).
func (s *Service) settleRedis(ctx context.Context, ord *Order, to string) {
	k := s.keys.Sale(ord.SaleID)
	b, _ := json.Marshal(ord.JSON())
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := settleScript.Run(rctx, s.rdb, []string{k.Units, k.Holds, k.Orders, k.Buyers, k.Ev},
		ord.ID, to, string(b), sale.EventStreamLen).Err(); err != nil {
		s.cfg.Logger.Warn("checkout: settle in Redis failed; reconciliation will", "order", ord.ID, "err", err)
	}
}

// expireHolds settles as expired the held orders whose hold has run out:
// every node's sweeper may try, MySQL's settle lets exactly one win each.
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
