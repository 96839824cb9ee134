package sale

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/flashsale/flashsale/webhooks"
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
	hold_ttl_seconds, per_user_limit, queue_mode, abandon_after_seconds, return_window_seconds, version,
	join_challenge, pow_difficulty, max_users_per_ip, message_text, message_at, return_url
	FROM sales`

type scanner interface{ Scan(...any) error }

func scanSale(r scanner) (*Sale, error) {
	var s Sale
	var state string
	var ends, qopens, msgAt sql.NullTime
	var msg, returnURL sql.NullString
	err := r.Scan(&s.ID, &s.Name, &s.PriceCents, &s.Currency, &s.StockTotal, &s.StockRemaining,
		&state, &s.StartsAt, &ends, &qopens, &s.AdmissionRate, &s.MaxActive, &s.TicketTTL,
		&s.HoldTTL, &s.PerUserLimit, &s.QueueMode, &s.AbandonAfter, &s.ReturnWindow, &s.Version,
		&s.JoinChallenge, &s.PowDifficulty, &s.MaxUsersPerIP, &msg, &msgAt, &returnURL)
	if err != nil {
		return nil, err
	}
	if msg.Valid && msgAt.Valid {
		s.Message = &Message{Text: msg.String, At: msgAt.Time.UTC()}
	}
	s.ReturnURL = returnURL.String
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
	before := s.State
	write, err := fn(s)
	if err != nil || !write {
		return s, err
	}
	s.Version++
	var msg, msgAt any
	if s.Message != nil {
		msg, msgAt = s.Message.Text, s.Message.At
	}
	_, err = tx.ExecContext(qctx, `UPDATE sales SET state = ?, starts_at = ?, admission_rate = ?,
		max_active = ?, join_challenge = ?, pow_difficulty = ?, max_users_per_ip = ?, message_text = ?,
		message_at = ?, return_url = ?, version = ? WHERE id = ?`,
		string(s.State), s.StartsAt, s.AdmissionRate, s.MaxActive, s.JoinChallenge, s.PowDifficulty,
		s.MaxUsersPerIP, msg, msgAt, nullString(s.ReturnURL), s.Version, id)
	if err != nil {
		return nil, mysqlErr(err)
	}
	if s.State != before && (s.State == SoldOut || s.State == Closed) {
		typ := webhooks.SaleClosed
		if s.State == SoldOut {
			typ = webhooks.SaleSoldOut
		}
		if err := st.Events.Add(qctx, tx, webhooks.Event{Type: typ, Subject: id, Data: s.JSON(time.Now())}); err != nil {
			return nil, mysqlErr(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, mysqlErr(err)
	}
	return s, st.publish(ctx, s, false)
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
