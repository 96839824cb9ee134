package sale

import (
	"cmp"
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/webhooks"
)

// QueryTimeout bounds every MySQL statement of the sale store.
const QueryTimeout = 5 * time.Second

// Store keeps sales: MySQL is the durable record and the arbiter of state
// changes; Redis holds the live copy the scripts read, written with the
// row's version so an older write never overwrites a newer one. The row
// is read and written in row.go, the live copy in publish.go, and the
// per-node cache of it in cache.go.
type Store struct {
	DB    *sql.DB
	Redis redis.UniversalClient
	Keys  Keyspace
	// CacheLimit bounds the per-node sale cache; default MaxCached.
	CacheLimit int
	// Events gets sale.sold_out and sale.closed in the transaction of the
	// state change; nil: webhooks are off. Set before the first change.
	Events *webhooks.Outbox

	mu    sync.Mutex
	cache map[string]cached
}

// NewStore returns a Store.
func NewStore(db *sql.DB, rdb redis.UniversalClient, ks Keyspace) *Store {
	return &Store{DB: db, Redis: rdb, Keys: ks, cache: map[string]cached{}}
}

// ErrExists is a taken sale id.
var ErrExists = api.Errorf(http.StatusConflict, "sale_exists", "a sale with this id exists")

// ErrNotFound is an unknown sale.
var ErrNotFound = api.Errorf(http.StatusNotFound, "not_found", "no such sale")

// Create stores a new sale: its item and row in MySQL, then its live copy
// and units in Redis.
func (st *Store) Create(ctx context.Context, s *Sale) error {
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	tx, err := st.DB.BeginTx(ctx, nil)
	if err != nil {
		return mysqlErr(err)
	}
	defer tx.Rollback() //nolint:errcheck
	res, err := tx.ExecContext(ctx, `INSERT INTO items (sku, name, price_cents, currency) VALUES (?, ?, ?, ?)`,
		s.ID, s.Name, s.PriceCents, s.Currency)
	if isDuplicate(err) {
		return ErrExists
	}
	if err != nil {
		return mysqlErr(err)
	}
	itemID, _ := res.LastInsertId()
	_, err = tx.ExecContext(ctx, `INSERT INTO sales (id, item_id, name, price_cents, currency, stock_total,
		state, starts_at, ends_at, queue_opens_at, admission_rate, max_active, ticket_ttl_seconds,
		hold_ttl_seconds, per_user_limit, queue_mode, abandon_after_seconds, return_window_seconds, version,
		join_challenge, pow_difficulty, max_users_per_ip, return_url)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)`,
		s.ID, itemID, s.Name, s.PriceCents, s.Currency, s.StockTotal, string(s.State), s.StartsAt,
		nullTime(s.EndsAt), nullTime(s.QueueOpensAt), s.AdmissionRate, s.MaxActive, s.TicketTTL,
		s.HoldTTL, s.PerUserLimit, s.QueueMode, s.AbandonAfter, s.ReturnWindow,
		s.JoinChallenge, s.PowDifficulty, s.MaxUsersPerIP, nullString(s.ReturnURL))
	if isDuplicate(err) {
		return ErrExists
	}
	if err != nil {
		return mysqlErr(err)
	}
	if err := tx.Commit(); err != nil {
		return mysqlErr(err)
	}
	s.Version = 1
	return st.publish(ctx, s, true)
}

// Get reads a sale from Redis's live copy, restoring the copy from MySQL
// when it is missing.
func (st *Store) Get(ctx context.Context, id string) (*Sale, error) {
	if !idPattern.MatchString(id) {
		return nil, ErrNotFound
	}
	k := st.Keys.Sale(id)
	pipe := st.Redis.Pipeline()
	cfgCmd := pipe.HGetAll(ctx, k.Cfg)
	unitsCmd := pipe.HMGet(ctx, k.Units, "remaining", "reserved")
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr(err)
	}
	cfg := cfgCmd.Val()
	if len(cfg) == 0 {
		s, err := st.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := st.publish(ctx, s, false); err != nil {
			return nil, err
		}
		return st.Get(ctx, id)
	}
	s, err := fromCfg(id, cfg)
	if err != nil {
		return nil, err
	}
	applyUnits(s, unitsCmd.Val())
	return s, nil
}

// List returns every sale, newest first, with live units from Redis.
func (st *Store) List(ctx context.Context) ([]*Sale, error) {
	qctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	rows, err := st.DB.QueryContext(qctx, selectSale+` ORDER BY created_at DESC, id`)
	if err != nil {
		return nil, mysqlErr(err)
	}
	defer rows.Close()
	var out []*Sale
	for rows.Next() {
		s, err := scanSale(rows)
		if err != nil {
			return nil, mysqlErr(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, mysqlErr(err)
	}
	if len(out) == 0 {
		return out, nil
	}
	pipe := st.Redis.Pipeline()
	cmds := make([]*redis.SliceCmd, len(out))
	for i, s := range out {
		cmds[i] = pipe.HMGet(ctx, st.Keys.Sale(s.ID).Units, "remaining", "reserved")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, redisErr(err)
	}
	for i, s := range out {
		applyUnits(s, cmds[i].Val())
	}
	return out, nil
}

// Patch applies an operator's change: rate, max_active, state. MySQL decides
// (the row is locked while the transition is checked against the state at
// now), then the live copy and, for a state change, an event follow.
func (st *Store) Patch(ctx context.Context, id string, p *PatchRequest, now time.Time) (*Sale, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	_, err := st.update(ctx, id, func(s *Sale) (bool, error) {
		if p.State != nil {
			from, to := s.Effective(now), State(*p.State)
			if err := Transition(from, to); err != nil {
				return false, err
			}
			if from != to {
				s.State = to
				if from == Upcoming && to == Open {
					s.StartsAt = now.UTC().Truncate(time.Millisecond)
				}
			}
		}
		if p.AdmissionRate != nil {
			s.AdmissionRate = *p.AdmissionRate
		}
		if p.MaxActive != nil {
			s.MaxActive = *p.MaxActive
		}
		if p.JoinChallenge != nil {
			s.JoinChallenge = *p.JoinChallenge
		}
		if p.PowDifficulty != nil {
			s.PowDifficulty = *p.PowDifficulty
		}
		if p.MaxUsersPerIP != nil {
			s.MaxUsersPerIP = *p.MaxUsersPerIP
		}
		if set, u, _ := p.returnURL(); set {
			s.ReturnURL = u
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, id)
}

// MaxMessage is the longest operator message, in characters.
const MaxMessage = 280

// SetMessage sets the operator's message to the sale's shoppers ("" clears
// it); publishing it tells every socket of the sale.
func (st *Store) SetMessage(ctx context.Context, id, text string, now time.Time) (*Sale, error) {
	if !utf8.ValidString(text) || utf8.RuneCountInString(text) > MaxMessage {
		return nil, api.Invalid("text: at most %d characters of text (\"\" clears the message)", MaxMessage)
	}
	_, err := st.update(ctx, id, func(s *Sale) (bool, error) {
		if text == "" {
			if s.Message == nil {
				return false, nil
			}
			s.Message = nil
		} else {
			s.Message = &Message{Text: text, At: now.UTC().Truncate(time.Millisecond)}
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return st.Get(ctx, id)
}

// Finish moves a sale that is not final to closed or sold_out (when its end
// passes, or when MySQL counted the last unit paid); publishing it tells the
// queue. It is a no-op on a sale that is final already.
func (st *Store) Finish(ctx context.Context, id string, to State) error {
	_, err := st.update(ctx, id, func(s *Sale) (bool, error) {
		if s.State.Final() {
			return false, nil
		}
		s.State = to
		return true, nil
	})
	return err
}

// fromCfg reads the live copy.
func fromCfg(id string, m map[string]string) (*Sale, error) {
	var firstErr error
	i := func(f string) int64 {
		v, err := strconv.ParseInt(m[f], 10, 64)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("sale %s: live copy field %s: %w", id, f, err)
		}
		return v
	}
	ms := func(f string) *time.Time {
		if v := i(f); v > 0 {
			t := time.UnixMilli(v).UTC()
			return &t
		}
		return nil
	}
	rate, err := strconv.ParseFloat(m["rate"], 64)
	if err != nil {
		return nil, fmt.Errorf("sale %s: live copy field rate: %w", id, err)
	}
	s := &Sale{
		ID: id, Name: m["name"], PriceCents: i("price"), Currency: m["currency"],
		StockTotal: int(i("stock")), State: State(m["state"]), StartsAt: time.UnixMilli(i("starts")).UTC(),
		EndsAt: ms("ends"), QueueOpensAt: ms("qopens"), AdmissionRate: rate,
		MaxActive: int(i("max_active")), TicketTTL: int(i("ttl")), HoldTTL: int(i("hold_ttl")),
		PerUserLimit: int(i("per_user")), QueueMode: m["mode"], AbandonAfter: int(i("abandon")),
		ReturnWindow: int(i("return_window")), Version: i("ver"),
		JoinChallenge: cmp.Or(m["challenge"], ChallengeNone), ReturnURL: m["return_url"],
	}
	// fields a copy written before they existed lacks: their defaults
	s.PowDifficulty, s.MaxUsersPerIP = DefaultPowDifficulty, 0
	if m["pow"] != "" {
		s.PowDifficulty = int(i("pow"))
	}
	if m["ip_users"] != "" {
		s.MaxUsersPerIP = int(i("ip_users"))
	}
	if m["msg_at"] != "" && m["msg"] != "" {
		at := i("msg_at")
		s.Message = &Message{Text: m["msg"], At: time.UnixMilli(at).UTC()}
	}
	return s, firstErr
}

// applyUnits sets the live stock fields from HMGET remaining, reserved. A
// sale whose units are missing (Redis lost them) shows MySQL's view until
// they are rebuilt.
func applyUnits(s *Sale, vals []any) {
	if len(vals) != 2 || vals[0] == nil {
		return
	}
	rem, _ := strconv.Atoi(fmt.Sprint(vals[0]))
	res, _ := strconv.Atoi(fmt.Sprint(vals[1]))
	s.StockRemaining = rem
	s.AllReserved = !s.State.Final() && rem-res <= 0
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

func isDuplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// mysqlErr turns a MySQL failure into a 503 that keeps the cause for logs.
func mysqlErr(err error) error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	return &StoreError{Store: "MySQL", Err: err}
}

func redisErr(err error) error {
	if err == nil || errors.Is(err, redis.Nil) {
		return nil
	}
	return &StoreError{Store: "Redis", Err: err}
}

// StoreError is a store that failed or did not answer: a 503.
type StoreError struct {
	Store string
	Err   error
}

func (e *StoreError) Error() string { return e.Store + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// APIError maps it to the contract's 503.
func (e *StoreError) APIError() *api.Error { return api.Unavailable(e.Store) }
