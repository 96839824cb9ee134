package bans

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/api"
)

// DefaultMaxLive is how many live bans the table takes before a create is
// refused: every node holds them all in memory, and an operator with more
// to ban bans a prefix.
const DefaultMaxLive = 100_000

// Store keeps bans in MySQL (tables bans and ban_changes, migration 005).
type Store struct {
	db  *sql.DB
	log *slog.Logger

	// MaxLive caps the live bans; 0 means DefaultMaxLive. Set it before use.
	MaxLive int
}

// NewStore returns a Store on db.
func NewStore(db *sql.DB, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{db: db, log: log}
}

// storeError is MySQL failing or not answering: a 503 that keeps the cause
// for the log.
type storeError struct{ err error }

func (e *storeError) Error() string { return "MySQL: " + e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// APIError maps it to the contract's 503.
func (e *storeError) APIError() *api.Error { return api.Unavailable("MySQL") }

func mysqlErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	return &storeError{err: err}
}

// ErrNotFound is a ban id that names no ban, or one already lifted.
var ErrNotFound = api.Errorf(http.StatusNotFound, "not_found", "no such ban (it may have been lifted already)")

// Create validates req and stores the ban it describes, created at now.
// Problems with the request are a 422 naming the field (a sale_id of no
// sale too); more than MaxLive live bans is a 422 that says so. A MySQL
// failure is a 503.
func (s *Store) Create(ctx context.Context, req *CreateRequest, now time.Time) (*Ban, error) {
	b, err := req.Build(now)
	if err != nil {
		return nil, err
	}
	if err := s.insert(ctx, b); err != nil {
		return nil, err
	}
	return b, nil
}

// insert writes b in one transaction with the version bump. The bump
// comes first: its row lock makes concurrent creates take turns, so the
// count of live bans is exact when it is checked.
func (s *Store) insert(ctx context.Context, b *Ban) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return mysqlErr(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := bump(ctx, tx); err != nil {
		return err
	}
	var live int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM bans
		WHERE deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`, b.CreatedAt).Scan(&live); err != nil {
		return mysqlErr(err)
	}
	if limit := s.maxLive(); live >= limit {
		return api.Invalid("there are already %d live bans, the most this server keeps; delete some, or ban a prefix instead of many addresses", limit)
	}
	var user, ip, saleID, expires any
	if b.UserID != "" {
		user = []byte(b.UserID)
	} else {
		ip = FormatPrefix(b.IP)
	}
	if b.SaleID != "" {
		saleID = b.SaleID
	}
	if !b.ExpiresAt.IsZero() {
		expires = b.ExpiresAt
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO bans (id, user_id, ip, sale_id, reason, created_at, expires_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, b.ID, user, ip, saleID, b.Reason, b.CreatedAt, expires)
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1452 { // the sale's foreign key
		return errNoSale
	}
	if err != nil {
		return mysqlErr(err)
	}
	return mysqlErr(tx.Commit())
}

func (s *Store) maxLive() int {
	if s.MaxLive > 0 {
		return s.MaxLive
	}
	return DefaultMaxLive
}

// bump moves the change counter the Watchers poll.
func bump(ctx context.Context, tx *sql.Tx) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO ban_changes (id, version) VALUES (1, 1)
		ON DUPLICATE KEY UPDATE version = version + 1`)
	return mysqlErr(err)
}

// List returns the live bans at now (not lifted, not expired), newest
// first. A row that a hand edit made unreadable is left out and logged.
func (s *Store) List(ctx context.Context, now time.Time) ([]Ban, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, user_id, ip, sale_id, reason, created_at, expires_at
		FROM bans WHERE deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
		ORDER BY seq DESC`, now.UTC())
	if err != nil {
		return nil, mysqlErr(err)
	}
	defer rows.Close()
	bans := []Ban{}
	for rows.Next() {
		var (
			b          Ban
			user       []byte
			ip, saleID sql.NullString
			expires    sql.NullTime
			created    time.Time
		)
		if err := rows.Scan(&b.ID, &user, &ip, &saleID, &b.Reason, &created, &expires); err != nil {
			return nil, mysqlErr(err)
		}
		b.UserID, b.SaleID, b.CreatedAt = string(user), saleID.String, created.UTC()
		if expires.Valid {
			b.ExpiresAt = expires.Time.UTC()
		}
		if ip.Valid {
			p, err := ParsePrefix(ip.String)
			if err != nil {
				s.log.Warn("bans: a row's ip is not a prefix; the ban is ignored until fixed", "ban", b.ID, "ip", ip.String)
				continue
			}
			b.IP = p
		}
		if (b.UserID == "") == !b.IP.IsValid() {
			s.log.Warn("bans: a row bans neither or both of a user and an address; it is ignored until fixed", "ban", b.ID)
			continue
		}
		bans = append(bans, b)
	}
	return bans, mysqlErr(rows.Err())
}

// Delete lifts the ban id: it stops acting on every node within a
// Watcher's interval. An unknown id, or one already lifted, is 404
// not_found. (A ban that expired by itself may still be lifted.)
func (s *Store) Delete(ctx context.Context, id string) error {
	if len(id) > 40 {
		return ErrNotFound
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return mysqlErr(err)
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if err := bump(ctx, tx); err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, `UPDATE bans SET deleted_at = UTC_TIMESTAMP(3)
		WHERE id = ? AND deleted_at IS NULL`, id)
	if err != nil {
		return mysqlErr(err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return mysqlErr(err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return mysqlErr(tx.Commit())
}

// Version is the change counter: it moves with every create and lift, so
// a Watcher reloads only when it did.
func (s *Store) Version(ctx context.Context) (uint64, error) {
	var v uint64
	err := s.db.QueryRowContext(ctx, "SELECT version FROM ban_changes WHERE id = 1").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil // nothing was ever banned through a Store
	}
	if err != nil {
		return 0, mysqlErr(fmt.Errorf("read the bans' version: %w", err))
	}
	return v, nil
}
