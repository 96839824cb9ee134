package webhooks

import (
	"context"
	"database/sql"
	"errors"
	"net/http"
	"time"

	"github.com/flashsale/flashsale/api"
)

// PendingStats is the outbox's backlog.
type PendingStats struct {
	Count  int64
	Oldest time.Time // of the oldest pending event; zero when none
}

// Pending counts the events not yet delivered nor given up.
func Pending(ctx context.Context, db *sql.DB) (PendingStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var p PendingStats
	var oldest sql.NullTime
	err := db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM webhook_events WHERE state = 0`).Scan(&p.Count, &oldest)
	p.Oldest = oldest.Time
	return p, err
}

// Failing is an event whose last delivery failed: pending with a retry
// due, or given up.
type Failing struct {
	ID            string  `json:"id"`
	Type          string  `json:"type"`
	Subject       string  `json:"subject"`
	CreatedAt     string  `json:"created_at"`
	Attempts      int     `json:"attempts"`
	NextAttemptAt *string `json:"next_attempt_at"` // null once given up
	GivenUp       bool    `json:"given_up"`
	LastStatus    *int    `json:"last_status"` // null: no HTTP answer
	LastError     string  `json:"last_error"`
}

// maxFailing bounds the admin view's list.
const maxFailing = 100

// Handler answers GET /api/v1/admin/webhooks:
// {"pending":N,"oldest_pending_at":"..."|null,"failing":[Failing...]}, the
// failing events newest first, at most 100.
func Handler(db *sql.DB) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		p, err := Pending(ctx, db)
		if err != nil {
			api.WriteError(w, unavailable(err))
			return
		}
		failing, err := listFailing(ctx, db)
		if err != nil {
			api.WriteError(w, unavailable(err))
			return
		}
		var oldest any
		if p.Count > 0 {
			oldest = api.Time(p.Oldest)
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"pending": p.Count, "oldest_pending_at": oldest, "failing": failing})
	}
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return api.Unavailable("the webhook outbox (MySQL)")
}

func listFailing(ctx context.Context, db *sql.DB) ([]Failing, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT id, type, subject, created_at, attempts, next_at, state, last_status, COALESCE(last_error, '')
		FROM webhook_events WHERE (state = 0 AND last_error IS NOT NULL) OR state = 2 ORDER BY seq DESC LIMIT ?`, maxFailing)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []Failing{}
	for rows.Next() {
		var f Failing
		var created, next time.Time
		var state int
		var status sql.NullInt64
		if err := rows.Scan(&f.ID, &f.Type, &f.Subject, &created, &f.Attempts, &next, &state, &status, &f.LastError); err != nil {
			return nil, err
		}
		f.CreatedAt = api.Time(created)
		f.GivenUp = state == 2
		if !f.GivenUp {
			n := api.Time(next)
			f.NextAttemptAt = &n
		}
		if status.Valid {
			s := int(status.Int64)
			f.LastStatus = &s
		}
		out = append(out, f)
	}
	return out, rows.Err()
}

// Replay makes every event written since `since` due again (delivered,
// pending or given up), for a shop that lost its own data; it returns how
// many. Their ids stay the same: a receiver that still has them may drop
// them as seen. Events older than the retention (7 days) are gone.
func Replay(ctx context.Context, db *sql.DB, since time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `UPDATE webhook_events SET state = 0, next_at = ?, attempts = 0,
		delivered_at = NULL, last_status = NULL, last_error = NULL WHERE created_at >= ?`, time.Now().UTC(), since.UTC())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
