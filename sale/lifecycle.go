package sale

import (
	"context"
	"strings"
	"time"
)

// Standing is what the sweeper's lifecycle pass needs of a sale's durable
// row (see Store.Standings).
type Standing struct {
	ID      string
	Version int64
	State   State
	// PaidOut: MySQL counts every unit paid (the sale is sold out).
	PaidOut bool
	// Ended: the sale's ends_at has passed (by MySQL's clock).
	Ended bool
	// Retired: the sale is final and its row has not changed for the
	// grace period asked for: it may leave the working set.
	Retired bool
}

// Standings reads the standing of every sale that is not final, and of the
// sales ids names (the working set in Redis), in one query.
func (st *Store) Standings(ctx context.Context, ids []string, grace time.Duration) ([]Standing, error) {
	qctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	q := `SELECT id, version, state, sold >= stock_total,
		ends_at IS NOT NULL AND ends_at <= NOW(3),
		updated_at < NOW(3) - INTERVAL ? MICROSECOND
		FROM sales WHERE state IN ('upcoming', 'open', 'paused')`
	args := []any{grace.Microseconds()}
	if len(ids) > 0 {
		q += ` OR id IN (?` + strings.Repeat(`, ?`, len(ids)-1) + `)`
		for _, id := range ids {
			args = append(args, id)
		}
	}
	rows, err := st.DB.QueryContext(qctx, q, args...)
	if err != nil {
		return nil, mysqlErr(err)
	}
	defer rows.Close()
	var out []Standing
	for rows.Next() {
		var s Standing
		var state string
		var old bool
		if err := rows.Scan(&s.ID, &s.Version, &state, &s.PaidOut, &s.Ended, &old); err != nil {
			return nil, mysqlErr(err)
		}
		s.State = State(state)
		s.Retired = s.State.Final() && old
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, mysqlErr(err)
	}
	return out, nil
}
