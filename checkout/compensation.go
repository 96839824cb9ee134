package checkout

import "context"

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
