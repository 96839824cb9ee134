package checkout

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base32"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/api"
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

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewOrderID makes an order id: "ord_" and 26 random base32 characters.
func NewOrderID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
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
)

// queryTimeout bounds every MySQL statement of the checkout.
const queryTimeout = 3 * time.Second

// Orders is the MySQL order store. Creates are group-committed: concurrent
// orders of one sale share a transaction (one guarded UPDATE of the sale's
// counts and one multi-row INSERT), because the sale row is a hot lock that
// would otherwise serialise one commit per order. Each sale has one writer
// (its shard's): writers sharing a sale would only queue on that row's lock
// with smaller batches, and under load those lock waits ran past the
// checkout's write timeout (503s in a storm).
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
}

type createReq struct {
	o    *Order
	done chan createRes
}

type createRes struct {
	soldOut bool // this commit made paid units reach the stock
	err     error
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
		breaker: NewBreaker(BreakerConfig{Logger: log})}
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

// errNotSent is a Create that never reached a writer: the order cannot
// commit, so undoing the Redis step is all there is to do.
var errNotSent = errors.New("the order was never sent to MySQL")

// shard is the queue of the writer of a sale.
func (o *Orders) shard(saleID string) chan *createReq {
	h := fnv.New32a()
	h.Write([]byte(saleID))
	return o.shards[h.Sum32()%uint32(len(o.shards))]
}

// Close stops the writers after the orders already queued are written.
func (o *Orders) Close() {
	o.once.Do(func() {
		close(o.closed)
		o.wg.Wait()
	})
}

// Create writes an order durably, guarded by the sale's unit counts. It
// reports whether this order sold the last unit. On ctx's end the outcome
// is unknown: the write may still commit (the caller compensates by id).
func (o *Orders) Create(ctx context.Context, ord *Order) (soldOut bool, err error) {
	if err := o.breaker.Allow(); err != nil {
		return false, fmt.Errorf("%w: %w", errNotSent, err)
	}
	r := &createReq{o: ord, done: make(chan createRes, 1)}
	select {
	case o.shard(ord.SaleID) <- r:
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", errNotSent, ctx.Err()) // never queued: it will not commit
	case <-o.closed:
		return false, fmt.Errorf("%w: order store closed", errNotSent)
	}
	select {
	case res := <-r.done:
		return res.soldOut, res.err
	case <-ctx.Done():
		return false, fmt.Errorf("order %s: outcome unknown: %w", ord.ID, ctx.Err())
	}
}

func (o *Orders) write(reqs chan *createReq) {
	for {
		var first *createReq
		select {
		case first = <-reqs:
		case <-o.closed:
			// drain what is queued, then stop
			select {
			case first = <-reqs:
			default:
				return
			}
		}
		batch := []*createReq{first}
	drain:
		for len(batch) < o.maxBatch {
			select {
			case r := <-reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		bySale := map[string][]*createReq{}
		for _, r := range batch {
			bySale[r.o.SaleID] = append(bySale[r.o.SaleID], r)
		}
		for _, group := range bySale {
			o.writeGroup(group)
		}
	}
}

// writeGroup commits a sale's orders in one transaction. When the guard
// refuses the group as a whole, the same transaction takes the orders that
// fit and refuses the rest (one transaction, not one per order: when Redis
// lost writes and lets a storm through, every order reaches MySQL, and
// retrying each alone took longer than the checkout waits, so shoppers got
// 503s instead of sold_out). When a duplicate sinks the group, each order is
// tried alone so one bad order does not sink the others.
func (o *Orders) writeGroup(group []*createReq) {
	fit, soldOut, err := o.insert(group)
	o.breaker.Record(err)
	if errors.Is(err, ErrDuplicate) && len(group) > 1 {
		for _, r := range group {
			fit, soldOut, err := o.insert([]*createReq{r})
			o.breaker.Record(err)
			r.done <- createResult(r, fit, soldOut, err)
		}
		return
	}
	for _, r := range group {
		r.done <- createResult(r, fit, soldOut, err)
	}
}

// createResult is one order's outcome of an insert: its error, or the
// guard's refusal when it was not among the orders that fit.
func createResult(r *createReq, fit []*createReq, soldOut bool, err error) createRes {
	switch {
	case err != nil:
		return createRes{err: err}
	case !slices.Contains(fit, r):
		return createRes{err: ErrGuard}
	}
	return createRes{soldOut: soldOut}
}

// units sums the orders' units by the column they count in.
func units(group []*createReq) (sold, held int) {
	for _, r := range group {
		if r.o.Status == StatusHeld {
			held += r.o.Quantity
		} else {
			sold += r.o.Quantity
		}
	}
	return sold, held
}

// insert writes the orders of one sale in one transaction, guarded by the
// sale's unit counts. It returns the orders written: all of them, or, when
// the guard refuses them all together, those that fit in arrival order (none
// when not even the first does).
func (o *Orders) insert(group []*createReq) (fit []*createReq, soldOut bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, false, err
	}
	defer tx.Rollback() //nolint:errcheck
	saleID := group[0].o.SaleID
	guard := func(group []*createReq) (bool, error) {
		sold, held := units(group)
		res, err := tx.ExecContext(ctx, `UPDATE sales SET sold = sold + ?, held = held + ?
			WHERE id = ? AND sold + held + ? <= stock_total`, sold, held, saleID, sold+held)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	fit = group
	ok, err := guard(fit)
	if err != nil {
		return nil, false, err
	}
	if !ok {
		// The row is locked by the refused UPDATE (or is now): what is left
		// cannot change before this transaction ends.
		var left int
		err := tx.QueryRowContext(ctx, `SELECT stock_total - sold - held FROM sales WHERE id = ? FOR UPDATE`, saleID).Scan(&left)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, false, fmt.Errorf("sale %s: no such sale", saleID)
		}
		if err != nil {
			return nil, false, err
		}
		fit = nil
		for _, r := range group {
			if r.o.Quantity <= left {
				fit = append(fit, r)
				left -= r.o.Quantity
			}
		}
		if len(fit) == 0 {
			return nil, false, nil
		}
		if ok, err := guard(fit); err != nil || !ok {
			return nil, false, cmp.Or(err, ErrGuard)
		}
	}
	var sb strings.Builder
	args := make([]any, 0, 11*len(fit))
	sb.WriteString(`INSERT INTO orders (id, sale_id, user_id, quantity, amount_cents, currency, status,
		ticket_jti, idempotency_key, hold_expires_at, created_at) VALUES `)
	for i, r := range fit {
		ord := r.o
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("(?,?,?,?,?,?,?,?,?,?,?)")
		args = append(args, ord.ID, ord.SaleID, ord.UserID, ord.Quantity, ord.AmountCents, ord.Currency,
			ord.Status, nullStr(ord.TicketJTI), nullStr(ord.IdempotencyKey), nullTimePtr(ord.HoldExpiresAt), ord.CreatedAt)
	}
	if _, err := tx.ExecContext(ctx, sb.String(), args...); err != nil {
		if isDuplicate(err) {
			if strings.Contains(err.Error(), "PRIMARY") {
				// Only a tombstone shares an order's id (ids are random).
				return nil, false, fmt.Errorf("%w: %w: %v", ErrDuplicate, ErrTombstoned, err)
			}
			return nil, false, fmt.Errorf("%w: %v", ErrDuplicate, err)
		}
		return nil, false, err
	}
	if sold, _ := units(fit); sold > 0 {
		var left int
		if err := tx.QueryRowContext(ctx, `SELECT stock_total - sold FROM sales WHERE id = ?`, saleID).Scan(&left); err != nil {
			return nil, false, err
		}
		soldOut = left == 0
	}
	return fit, soldOut, tx.Commit()
}

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
	ord.Status = to
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

func isDuplicate(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTimePtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}
