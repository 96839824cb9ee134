package checkout

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/webhooks"
)

// Order statuses.
const (
	StatusHeld      = "held"
	StatusPaid      = "paid"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
)

// Order is one order, as MySQL keeps it.
type Order struct {
	ID             string
	SaleID         string
	UserID         string
	Quantity       int
	AmountCents    int64
	Currency       string
	Status         string
	TicketJTI      string
	IdempotencyKey string
	HoldExpiresAt  *time.Time
	CreatedAt      time.Time
}

// JSON is the contract's shape of an order.
func (o *Order) JSON() map[string]any {
	return map[string]any{
		"id": o.ID, "sale_id": o.SaleID, "user_id": o.UserID, "quantity": o.Quantity,
		"amount_cents": o.AmountCents, "currency": o.Currency, "status": o.Status,
		"created_at": api.Time(o.CreatedAt), "hold_expires_at": api.TimePtr(o.HoldExpiresAt),
	}
}

// orderJSON is JSON's shape of an order as a struct, its fields in the
// order json.Marshal writes JSON's map (by name): the same bytes, made
// without the map and its sort.
type orderJSON struct {
	AmountCents   int64   `json:"amount_cents"`
	CreatedAt     string  `json:"created_at"`
	Currency      string  `json:"currency"`
	HoldExpiresAt *string `json:"hold_expires_at"`
	ID            string  `json:"id"`
	Quantity      int     `json:"quantity"`
	SaleID        string  `json:"sale_id"`
	Status        string  `json:"status"`
	UserID        string  `json:"user_id"`
}

// marshal is json.Marshal(o.JSON()), made faster: the checkout's answer
// and its event's payload.
func (o *Order) marshal() []byte {
	b, _ := json.Marshal(orderJSON{AmountCents: o.AmountCents, CreatedAt: api.Time(o.CreatedAt), Currency: o.Currency,
		HoldExpiresAt: api.TimePtr(o.HoldExpiresAt), ID: o.ID, Quantity: o.Quantity, SaleID: o.SaleID,
		Status: o.Status, UserID: o.UserID})
	return b
}

// idEncoding is base32 in the characters' byte order, so that ids sort as
// their bytes do.
var idEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)

// NewOrderID makes an order id: "ord_" and 26 base32 characters of 16
// bytes, the creation time in ms (6 bytes) and 80 random bits. Ids made
// later sort later, so the orders table's primary key (and its index by
// sale and status, which ends with it) grows at its end: with random ids
// every insert landed on a random page, and once the table outgrew
// InnoDB's buffer pool MySQL's CPU per checkout went from 60 to 170 µs
// (490,000 orders, 128 MiB pool) where time-ordered ids stayed at 45-66
// up to 680,000.
// The random bits keep ids unguessable and unique.
func NewOrderID() string {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(time.Now().UnixMilli())<<16)
	_, _ = rand.Read(b[6:])
	return "ord_" + idEncoding.EncodeToString(b)
}

// Errors of the MySQL order store.
var (
	// ErrGuard is MySQL refusing an order that would make sold + held
	// exceed the stock: MySQL has the last word on the last unit.
	ErrGuard = errors.New("MySQL unit guard: not enough units")
	// ErrDuplicate is an order MySQL refuses as a second live order of the
	// user, a reused ticket or a reused idempotency key.
	ErrDuplicate = errors.New("MySQL refused a duplicate order")
	// ErrTombstoned is an order whose id a compensation (or reconciliation)
	// took first: it never commits, and its ticket is free again. It is
	// also an ErrDuplicate.
	ErrTombstoned = errors.New("the order was compensated before its write landed")
	// ErrNotHeld is a settle of an order that is not held (any more).
	ErrNotHeld = errors.New("order not held")
	// ErrNoOrder is an unknown order.
	ErrNoOrder = errors.New("no such order")
	// ErrNoSale is a sale MySQL has no row of.
	ErrNoSale = errors.New("no such sale in MySQL")
)

// queryTimeout bounds every MySQL statement of the checkout.
const queryTimeout = 3 * time.Second

// saleTimeout bounds a read or recount of every order of a sale (recovery
// after a Redis loss, reconciliation): far more rows than one order's.
const saleTimeout = 10 * time.Second

// Orders is the MySQL order store, and the only holder of its *sql.DB:
// every read and write of the orders and of the sales row's unit counts is
// one of its methods, through its circuit breaker. Creates are group-committed (writer.go):
// concurrent orders of one sale share a transaction (one guarded UPDATE of
// the sale's counts and one multi-row INSERT), because the sale row is a hot
// lock that would otherwise serialise one commit per order. Each sale has
// one writer (its shard's): writers sharing a sale would only queue on that
// row's lock with smaller batches, and under load those lock waits ran past
// the checkout's write timeout (503s in a storm). Holds are settled in
// holds.go; orders that must never live are cancelled or tombstoned in
// compensation.go.
type Orders struct {
	db      *sql.DB
	log     *slog.Logger
	breaker *Breaker
	shards  []chan *createReq // a writer each; a sale's orders go to one
	closed  chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
	// MaxBatch bounds the orders of one transaction.
	maxBatch int
	// stmts are the group commit's prepared statements (writer.go).
	stmts *preparedStmts
	// Events gets the webhook events of every order change, in the
	// change's transaction; nil: webhooks are off. Set before the first
	// order.
	Events *webhooks.Outbox
}

// orderEvent is the webhook event of an order now in status.
func orderEvent(ord *Order) webhooks.Event {
	typ := map[string]string{StatusPaid: webhooks.OrderPaid, StatusCancelled: webhooks.OrderCancelled,
		StatusExpired: webhooks.OrderExpired}[ord.Status]
	return webhooks.Event{Type: typ, Subject: ord.ID, Data: ord.JSON()}
}

// NewOrders starts the store's writers.
func NewOrders(db *sql.DB, log *slog.Logger, writers int) *Orders {
	if writers <= 0 {
		writers = 4
	}
	if log == nil {
		log = slog.Default()
	}
	o := &Orders{db: db, log: log, closed: make(chan struct{}), maxBatch: 64,
		breaker: NewBreaker(BreakerConfig{Logger: log}), stmts: &preparedStmts{db: db}}
	for range writers {
		reqs := make(chan *createReq, 1024)
		o.shards = append(o.shards, reqs)
		o.wg.Go(func() { o.write(reqs) })
	}
	return o
}

// Breaker is the circuit breaker of the store's MySQL calls.
func (o *Orders) Breaker() *Breaker { return o.breaker }

// call runs one MySQL call through the breaker: refused at once while it is
// open, its outcome recorded.
func (o *Orders) call(fn func() error) error {
	if err := o.breaker.Allow(); err != nil {
		return err
	}
	err := fn()
	o.breaker.Record(err)
	return err
}

// Ping checks that MySQL answers, through the breaker (so /readyz reports
// an open breaker, and its probes can close it).
func (o *Orders) Ping(ctx context.Context) error {
	return o.call(func() error { return o.db.PingContext(ctx) })
}

// Close stops the writers after the orders already queued are written.
func (o *Orders) Close() {
	o.once.Do(func() {
		close(o.closed)
		o.wg.Wait()
		o.stmts.close()
	})
}

// lockSale takes the sale's row exclusively. Every transaction that writes
// orders takes it before touching them (insert does, with its guarded
// UPDATE): InnoDB takes a shared lock on the sale's row for the orders row's
// foreign key, and two transactions that each hold that shared lock and then
// UPDATE the sale's counts deadlock (concurrent settles did, 1213).
func lockSale(ctx context.Context, tx *sql.Tx, saleID string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM sales WHERE id = ? FOR UPDATE`, saleID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sale %s: no such sale", saleID)
	}
	return err
}

const selectOrder = `SELECT id, sale_id, user_id, quantity, amount_cents, currency, status,
	COALESCE(ticket_jti, ''), COALESCE(idempotency_key, ''), hold_expires_at, created_at FROM orders`

func scanOrder(row interface{ Scan(...any) error }) (*Order, error) {
	var o Order
	var hold sql.NullTime
	if err := row.Scan(&o.ID, &o.SaleID, &o.UserID, &o.Quantity, &o.AmountCents, &o.Currency, &o.Status,
		&o.TicketJTI, &o.IdempotencyKey, &hold, &o.CreatedAt); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, ErrNoOrder
		}
		return nil, err
	}
	o.CreatedAt = o.CreatedAt.UTC()
	if hold.Valid {
		t := hold.Time.UTC()
		o.HoldExpiresAt = &t
	}
	return &o, nil
}

// Get reads an order.
func (o *Orders) Get(ctx context.Context, id string) (ord *Order, err error) {
	err = o.call(func() error {
		ctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		ord, err = scanOrder(o.db.QueryRowContext(ctx, selectOrder+` WHERE id = ?`, id))
		return err
	})
	return ord, err
}

// ByIdempotencyKey finds the order a user's key made in a sale.
func (o *Orders) ByIdempotencyKey(ctx context.Context, saleID, user, key string) (ord *Order, err error) {
	err = o.call(func() error {
		ctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		ord, err = scanOrder(o.db.QueryRowContext(ctx, selectOrder+` WHERE sale_id = ? AND user_id = ? AND idempotency_key = ?`,
			saleID, user, key))
		return err
	})
	return ord, err
}

// LiveOrderOf finds the user's live (held or paid) order in a sale: its
// id, or ErrNoOrder.
func (o *Orders) LiveOrderOf(ctx context.Context, saleID, user string) (id string, err error) {
	err = o.call(func() error {
		ctx, cancel := context.WithTimeout(ctx, queryTimeout)
		defer cancel()
		err := o.db.QueryRowContext(ctx, `SELECT id FROM orders WHERE sale_id = ? AND live_user = ?`,
			saleID, user).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNoOrder
		}
		return err
	})
	return id, err
}

// SaleSnapshot is one consistent read of a sale in MySQL: the sales row's
// guarded counts and the orders that count in them or keep a ticket used,
// as of the same instant. Recovery after a Redis loss rebuilds from it and
// reconciliation compares with it.
type SaleSnapshot struct {
	// Sold and Held are the sales row's counts.
	Sold, Held int
	// Orders are the held and paid orders, and the others that still hold
	// a ticket (an expired hold keeps its ticket used).
	Orders []SnapshotOrder
}

// SnapshotOrder is what recovery needs of an order.
type SnapshotOrder struct {
	ID, UserID, Status string
	TicketJTI          string // "" when the order holds no ticket
	Quantity           int
	HoldExpiresAt      *time.Time
}

// SaleSnapshot reads a sale's row and orders in one read-only transaction,
// or ErrNoSale.
func (o *Orders) SaleSnapshot(ctx context.Context, saleID string) (snap *SaleSnapshot, err error) {
	err = o.call(func() error {
		snap, err = o.saleSnapshot(ctx, saleID)
		return err
	})
	return snap, err
}

func (o *Orders) saleSnapshot(ctx context.Context, saleID string) (*SaleSnapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, saleTimeout)
	defer cancel()
	// One snapshot: the row and the orders as of the same instant.
	tx, err := o.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck
	snap := &SaleSnapshot{}
	err = tx.QueryRowContext(ctx, `SELECT sold, held FROM sales WHERE id = ?`, saleID).Scan(&snap.Sold, &snap.Held)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sale %s: %w", saleID, ErrNoSale)
	}
	if err != nil {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, user_id, quantity, status, COALESCE(ticket_jti, ''), hold_expires_at
		FROM orders WHERE sale_id = ? AND (status IN ('held', 'paid') OR ticket_jti IS NOT NULL)`, saleID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var so SnapshotOrder
		var hold sql.NullTime
		if err := rows.Scan(&so.ID, &so.UserID, &so.Quantity, &so.Status, &so.TicketJTI, &hold); err != nil {
			return nil, err
		}
		if hold.Valid {
			t := hold.Time.UTC()
			so.HoldExpiresAt = &t
		}
		snap.Orders = append(snap.Orders, so)
	}
	return snap, rows.Err()
}

// SaleRecount sets the sales row's sold and held to its orders' units,
// under the row's lock (every order transaction takes it first): the repair
// of a row whose counts disagree with its orders.
func (o *Orders) SaleRecount(ctx context.Context, saleID string) error {
	return o.call(func() error {
		ctx, cancel := context.WithTimeout(ctx, saleTimeout)
		defer cancel()
		tx, err := o.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback() //nolint:errcheck
		if err := lockSale(ctx, tx, saleID); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sales SET
			sold = (SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE sale_id = ? AND status = 'paid'),
			held = (SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE sale_id = ? AND status = 'held')
			WHERE id = ?`, saleID, saleID, saleID); err != nil {
			return fmt.Errorf("recount sale %s: %w", saleID, err)
		}
		return tx.Commit()
	})
}
