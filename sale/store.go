package sale

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
)

//go:embed publish.lua
var publishLua string

var publishScript = NewScript(publishLua)

//go:embed regen.lua
var regenLua string

var regenScript = NewScript(regenLua)

// QueryTimeout bounds every MySQL statement of the sale store.
const QueryTimeout = 5 * time.Second

// Store keeps sales: MySQL is the durable record and the arbiter of state
// changes; Redis holds the live copy the scripts read, written with the
// row's version so an older write never overwrites a newer one.
type Store struct {
	DB    *sql.DB
	Redis redis.UniversalClient
	Keys  Keyspace
	// CacheLimit bounds the per-node sale cache; default MaxCached.
	CacheLimit int

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	s   *Sale
	at  time.Time
	err error
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
		hold_ttl_seconds, per_user_limit, queue_mode, abandon_after_seconds, return_window_seconds, version)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
		s.ID, itemID, s.Name, s.PriceCents, s.Currency, s.StockTotal, string(s.State), s.StartsAt,
		nullTime(s.EndsAt), nullTime(s.QueueOpensAt), s.AdmissionRate, s.MaxActive, s.TicketTTL,
		s.HoldTTL, s.PerUserLimit, s.QueueMode, s.AbandonAfter, s.ReturnWindow)
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

// publish writes the sale's live copy to Redis if its version is newer than
// the one there, announcing a state change on the sale's event stream in the
// same step. initUnits also creates the units hash of a new sale; a live
// sale's units are never re-seeded here (only rebuilt from orders).
func (st *Store) publish(ctx context.Context, s *Sale, initUnits bool) error {
	k := st.Keys.Sale(s.ID)
	init := "0"
	if initUnits {
		init = "1"
	}
	err := publishScript.Run(ctx, st.Redis, []string{k.Cfg, k.Units, st.Keys.Sales(), k.Ev},
		s.ID, s.Version, init, s.StockTotal, EventStreamLen, string(s.State), newGen(), RequeueWindow.Milliseconds(),
		"name", s.Name, "price", s.PriceCents, "currency", s.Currency,
		"stock", s.StockTotal, "starts", s.StartsAt.UnixMilli(), "ends", msOrZero(s.EndsAt),
		"qopens", msOrZero(s.QueueOpensAt), "rate", strconv.FormatFloat(s.AdmissionRate, 'g', -1, 64),
		"max_active", s.MaxActive, "ttl", s.TicketTTL, "hold_ttl", s.HoldTTL, "per_user", s.PerUserLimit,
		"mode", s.QueueMode, "abandon", s.AbandonAfter, "return_window", s.ReturnWindow,
	).Err()
	if err != nil {
		return redisErr(err)
	}
	st.forget(s.ID)
	return nil
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

// Cached is Get through a per-node cache of at most maxAge, for hot paths
// and the public endpoints. "Not found" is cached too (an unknown id asked
// again and again would cost a MySQL query each time), but the cache is
// keyed by what clients send, so it is bounded: an id that is not a sale
// id is never cached, and past MaxCached entries the stale ones go, then,
// if still full, new ones are not kept.
func (st *Store) Cached(ctx context.Context, id string, maxAge time.Duration) (*Sale, error) {
	if !idPattern.MatchString(id) {
		return nil, ErrNotFound
	}
	now := time.Now()
	st.mu.Lock()
	c, ok := st.cache[id]
	st.mu.Unlock()
	if ok && now.Sub(c.at) < maxAge {
		return c.s, c.err
	}
	s, err := st.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err // outages are not cached
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	limit := cmp.Or(st.CacheLimit, MaxCached)
	if _, ok := st.cache[id]; !ok && len(st.cache) >= limit {
		for k, c := range st.cache {
			if now.Sub(c.at) >= cacheStale {
				delete(st.cache, k)
			}
		}
		if len(st.cache) >= limit {
			return s, err
		}
	}
	st.cache[id] = cached{s: s, at: now, err: err}
	return s, err
}

// MaxCached bounds the per-node sale cache (Cached) unless
// Store.CacheLimit says otherwise.
const MaxCached = 10_000

// cacheStale is the age past which a cached entry serves no caller (every
// caller asks for at most a second) and may be dropped.
const cacheStale = 2 * time.Second

// CachedLen is the number of entries in the per-node sale cache.
func (st *Store) CachedLen() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.cache)
}

func (st *Store) forget(id string) {
	st.mu.Lock()
	delete(st.cache, id)
	st.mu.Unlock()
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

// Republish copies the MySQL row to Redis again (after a transaction that
// changed the row elsewhere, e.g. the checkout marking a sale sold out).
func (st *Store) Republish(ctx context.Context, id string) error {
	s, err := st.Load(ctx, id)
	if err != nil {
		return err
	}
	return st.publish(ctx, s, false)
}

// EventStreamLen bounds a sale's event stream (approximately).
const EventStreamLen = 100_000

// RequeueWindow is how long joins of newcomers wait (503) after a sale's
// live copy is written again into a Redis that lost it: long enough for
// the units to be rebuilt and every node to see the new generation at its
// next tick and put back the waiters it holds, so that nobody new lands
// ahead of them.
const RequeueWindow = 5 * time.Second

// Regenerate gives the sale's live copy in Redis a new generation, as if
// written anew, after Redis came back behind MySQL (a restart from an old
// snapshot, a failover to a lagging replica): its queue may lack waiters
// who joined since, so every node puts back the waiters it holds, shoppers
// who poll are put back by their token, and newcomers wait meanwhile.
func (st *Store) Regenerate(ctx context.Context, id string) error {
	err := regenScript.Run(ctx, st.Redis, []string{st.Keys.Sale(id).Cfg}, newGen(), RequeueWindow.Milliseconds()).Err()
	return redisErr(err)
}

// newGen is a random id for one life of a sale's keys in Redis.
func newGen() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
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

func msOrZero(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return t.UnixMilli()
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
