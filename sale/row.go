package sale

import (
	"context"
	"database/sql"
	"errors"
)

// Load reads a sale's durable row from MySQL (with MySQL's unit counts in
// StockRemaining).
func (st *Store) Load(ctx context.Context, id string) (*Sale, error) {
	qctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	s, err := scanSale(st.DB.QueryRowContext(qctx, selectSale+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, mysqlErr(err)
	}
	return s, nil
}

const selectSale = `SELECT id, name, price_cents, currency, stock_total, stock_total - sold - held,
	state, starts_at, ends_at, queue_opens_at, admission_rate, max_active, ticket_ttl_seconds,
	hold_ttl_seconds, per_user_limit, queue_mode, abandon_after_seconds, return_window_seconds, version
	FROM sales`

type scanner interface{ Scan(...any) error }

func scanSale(r scanner) (*Sale, error) {
	var s Sale
	var state string
	var ends, qopens sql.NullTime
	err := r.Scan(&s.ID, &s.Name, &s.PriceCents, &s.Currency, &s.StockTotal, &s.StockRemaining,
		&state, &s.StartsAt, &ends, &qopens, &s.AdmissionRate, &s.MaxActive, &s.TicketTTL,
		&s.HoldTTL, &s.PerUserLimit, &s.QueueMode, &s.AbandonAfter, &s.ReturnWindow, &s.Version)
	if err != nil {
		return nil, err
	}
	s.State = State(state)
	s.StartsAt = s.StartsAt.UTC()
	if ends.Valid {
		t := ends.Time.UTC()
		s.EndsAt = &t
	}
	if qopens.Valid {
		t := qopens.Time.UTC()
		s.QueueOpensAt = &t
	}
	return &s, nil
}

// update locks the row, lets fn change the sale, and writes it back with a
// new version, then publishes the live copy.
func (st *Store) update(ctx context.Context, id string, fn func(*Sale) (bool, error)) (*Sale, error) {
	qctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	tx, err := st.DB.BeginTx(qctx, nil)
	if err != nil {
		return nil, mysqlErr(err)
	}
	defer tx.Rollback() //nolint:errcheck
	s, err := scanSale(tx.QueryRowContext(qctx, selectSale+` WHERE id = ? FOR UPDATE`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, mysqlErr(err)
	}
	write, err := fn(s)
	if err != nil || !write {
		return s, err
	}
	s.Version++
	_, err = tx.ExecContext(qctx, `UPDATE sales SET state = ?, starts_at = ?, admission_rate = ?,
		max_active = ?, version = ? WHERE id = ?`,
		string(s.State), s.StartsAt, s.AdmissionRate, s.MaxActive, s.Version, id)
	if err != nil {
		return nil, mysqlErr(err)
	}
	if err := tx.Commit(); err != nil {
		return nil, mysqlErr(err)
	}
	return s, st.publish(ctx, s, false)
}
