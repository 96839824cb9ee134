package checkout

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/webhooks"
)

// createReq is one order on its way to its sale's writer, and where the
// writer answers.
type createReq struct {
	o    *Order
	done chan createRes
}

// createRes is a writer's answer to one createReq.
type createRes struct {
	soldOut bool // this commit made paid units reach the stock
	err     error
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
		res, err := o.stmts.exec(ctx, tx, stmtGuard, sold, held, saleID, sold+held)
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
	if o.Events != nil {
		// An order paid at once sends order.created (status paid), then
		// order.paid.
		evs := make([]webhooks.Event, 0, 2*len(fit))
		for _, r := range fit {
			evs = append(evs, webhooks.Event{Type: webhooks.OrderCreated, Subject: r.o.ID, Data: r.o.JSON()})
			if r.o.Status == StatusPaid {
				evs = append(evs, orderEvent(r.o))
			}
		}
		if err := o.Events.Add(ctx, tx, evs...); err != nil {
			return nil, false, err
		}
	}
	if sold, _ := units(fit); sold > 0 {
		var left int
		if err := o.stmts.queryRow(ctx, tx, stmtPaidLeft, saleID).Scan(&left); err != nil {
			return nil, false, err
		}
		soldOut = left == 0
	}
	return fit, soldOut, tx.Commit()
}

// The statements every group commit runs, prepared once (on each
// connection they run on) instead of for each commit: a statement with
// arguments is otherwise prepared, run and closed, three messages where
// one does.
const (
	stmtGuard = iota
	stmtPaidLeft
	nStmts
)

var stmtText = [nStmts]string{
	stmtGuard: `UPDATE sales SET sold = sold + ?, held = held + ?
		WHERE id = ? AND sold + held + ? <= stock_total`,
	stmtPaidLeft: `SELECT stock_total - sold FROM sales WHERE id = ?`,
}

// preparedStmts are the group commit's statements, prepared on first use
// (one that fails to prepare is tried again on the next commit).
type preparedStmts struct {
	db    *sql.DB
	mu    sync.Mutex
	stmts [nStmts]*sql.Stmt
}

// get is statement i, prepared.
func (p *preparedStmts) get(ctx context.Context, i int) (*sql.Stmt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stmts[i] == nil {
		st, err := p.db.PrepareContext(ctx, stmtText[i])
		if err != nil {
			return nil, err
		}
		p.stmts[i] = st
	}
	return p.stmts[i], nil
}

func (p *preparedStmts) exec(ctx context.Context, tx *sql.Tx, i int, args ...any) (sql.Result, error) {
	st, err := p.get(ctx, i)
	if err != nil {
		return nil, err
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

func (p *preparedStmts) queryRow(ctx context.Context, tx *sql.Tx, i int, args ...any) *sql.Row {
	st, err := p.get(ctx, i)
	if err != nil {
		// a Row that carries the error to its Scan, as QueryRowContext's do
		return tx.QueryRowContext(ctx, stmtText[i], args...)
	}
	return tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
}

// close closes the prepared statements.
func (p *preparedStmts) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, st := range p.stmts {
		if st != nil {
			_ = st.Close()
			p.stmts[i] = nil
		}
	}
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
