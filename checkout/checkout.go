package checkout

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/startstop"
)

var (
	//go:embed reserve.lua
	reserveLua string
	//go:embed finalize.lua
	finalizeLua string
	//go:embed undo.lua
	undoLua string

	reserveScript  = sale.NewScript(reserveLua)
	finalizeScript = sale.NewScript(finalizeLua)
	undoScript     = sale.NewScript(undoLua)
)

// The checkout's answers, as the contract names them.
var (
	ErrSaleClosed    = api.Errorf(http.StatusGone, "sale_closed", "the sale is closed")
	ErrSoldOut       = api.Errorf(http.StatusGone, "sold_out", "not enough units are left for this ticket")
	ErrTicketUsed    = api.Errorf(http.StatusUnauthorized, "ticket_used", "this ticket has bought already")
	ErrTicketInvalid = api.Errorf(http.StatusUnauthorized, "ticket_invalid", "a valid ticket is required")
	ErrTicketExpired = api.Errorf(http.StatusUnauthorized, "ticket_expired", "the ticket has expired; join the queue again")
	ErrWrongSale     = api.Errorf(http.StatusForbidden, "wrong_sale", "the ticket is for another sale")
	ErrOrderNotHeld  = api.Errorf(http.StatusConflict, "order_not_held", "the order is not held (it was paid, cancelled or expired)")
)

// ErrNoState is a sale whose live state is missing from Redis.
var ErrNoState = errors.New("the sale's live state is missing from Redis")

// ErrStale is a sale whose live state was last checked against MySQL on
// another Redis server process: Redis restarted or failed over since, and
// may have lost its last writes. Checkouts wait for Revalidate.
var ErrStale = errors.New("the sale's live state is from before a Redis restart and not checked against MySQL yet")

// Config configures the checkout.
type Config struct {
	Logger *slog.Logger
	// WriteTimeout bounds the wait for MySQL to make an order durable;
	// past it the outcome is unknown and the order is compensated.
	// Default 4 s (so a 503 comes within 5 s).
	WriteTimeout time.Duration
	Metrics      *Metrics
}

// Service is the checkout.
type Service struct {
	cfg    Config
	rdb    redis.UniversalClient
	keys   sale.Keyspace
	sales  *sale.Store
	orders *Orders
	// jobs owns the work that outlives a request: compensations, a sale's
	// finish, revalidation and rebuilds, one at a time per key.
	jobs *startstop.Jobs
	// reserves and finals send the reserve and finalize steps of
	// concurrent checkouts together (combine.go).
	reserves, finals *combiner[step]
}

// NewService returns the checkout service.
func NewService(cfg Config, rdb redis.UniversalClient, sales *sale.Store, orders *Orders) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 4 * time.Second
	}
	s := &Service{cfg: cfg, rdb: rdb, keys: sales.Keys, sales: sales, orders: orders, jobs: startstop.NewJobs()}
	s.reserves = newCombiner(s.sendReserves)
	s.finals = newCombiner(s.sendFinals)
	return s
}

// Close stops the service's background jobs and waits for them (a
// compensation cut short leaves its order pending, marked given up, for
// reconciliation). Close it before the stores it uses.
func (s *Service) Close() { s.jobs.Close() }

// Purchase is one checkout: a verified ticket's user, sale and jti.
type Purchase struct {
	SaleID, User, JTI, IdempotencyKey string
	Quantity                          int
}

// Buy runs the atomic step and makes the order durable. Errors are API
// errors (the contract's codes) or store failures (503).
func (s *Service) Buy(ctx context.Context, p Purchase) (*Order, error) {
	ord, _, err := s.buy(ctx, p)
	return ord, err
}

// buy is Buy that also returns the order in the contract's JSON shape (made
// once, for the finalize step's event and for the answer).
func (s *Service) buy(ctx context.Context, p Purchase) (*Order, []byte, error) {
	// MySQL known down: fail before touching Redis.
	if s.orders.Breaker().Blocked() {
		return nil, nil, s.mysqlDown()
	}
	sl, err := s.sales.Cached(ctx, p.SaleID, time.Second)
	if err != nil {
		return nil, nil, err
	}
	if p.Quantity < 1 || p.Quantity > sl.PerUserLimit {
		return nil, nil, api.Invalid("quantity: must be between 1 and %d", sl.PerUserLimit)
	}
	ord := &Order{
		ID: NewOrderID(), SaleID: p.SaleID, UserID: p.User, Quantity: p.Quantity,
		AmountCents: sl.PriceCents * int64(p.Quantity), Currency: sl.Currency, Status: StatusPaid,
		TicketJTI: p.JTI, IdempotencyKey: p.IdempotencyKey,
		CreatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if err := s.reserve(ctx, ord); err != nil {
		if errors.Is(err, ErrStale) {
			s.revalidateSoon(p.SaleID)
			return nil, nil, api.Unavailable("the sale's live state (being checked against MySQL after a Redis restart)")
		}
		return nil, nil, err
	}
	if ord.Status == StatusHeld {
		exp := ord.CreatedAt.Add(time.Duration(sl.HoldTTL) * time.Second)
		ord.HoldExpiresAt = &exp
	}

	// The answer waits for MySQL. Its wait is bounded; the write itself
	// runs on the writers' own context, so a client hanging up changes
	// nothing.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.WriteTimeout)
	soldOut, err := s.orders.Create(wctx, ord)
	cancel()
	if errors.Is(err, errNotSent) {
		// It cannot commit: no tombstone needed, only the Redis step undone.
		if _, uerr := s.undo(context.WithoutCancel(ctx), ord.SaleID, ord.ID); uerr != nil {
			s.cfg.Logger.Error("checkout: undo in Redis failed; reconciliation will", "order", ord.ID, "err", uerr)
		}
		if errors.Is(err, ErrBreakerOpen) {
			return nil, nil, s.mysqlDown()
		}
		return nil, nil, api.Unavailable("MySQL")
	}
	if err != nil {
		s.cfg.Logger.Warn("checkout: order not durable; compensating", "sale", p.SaleID, "user", p.User,
			"order", ord.ID, "err", err)
		s.compensate(context.WithoutCancel(ctx), ord, err)
		switch {
		case errors.Is(err, ErrTombstoned):
			// Reconciliation settled this order as never written while
			// its write was on the way: the ticket is free, retry.
			return nil, nil, api.Unavailable("MySQL")
		case errors.Is(err, ErrGuard):
			return nil, nil, ErrSoldOut
		case errors.Is(err, ErrDuplicate):
			return nil, nil, s.duplicateAnswer(ctx, ord)
		}
		return nil, nil, api.Unavailable("MySQL")
	}
	body := ord.marshal()
	s.finalizeJSON(context.WithoutCancel(ctx), ord, body)
	if soldOut {
		s.finishSoon(ord.SaleID)
	}
	return ord, body, nil
}

// reserve runs the atomic step for ord. When an order of the same ticket
// or user is still being written (a double click, two tabs), it waits for
// that order's outcome, at most as long as its write may take, and tries
// again: the answer is then ticket_used or already_bought if it lived, a
// purchase if it failed, never a 5xx without a store fault.
func (s *Service) reserve(ctx context.Context, ord *Order) error {
	k := s.keys.Sale(ord.SaleID)
	deadline := time.Now().Add(s.cfg.WriteTimeout + inflightMargin)
	for {
		err := s.reserves.do(step{ctx: ctx, ord: ord})
		var inflight errInflight
		if !errors.As(err, &inflight) {
			return err
		}
		if err := s.waitSettled(ctx, k.Pending, string(inflight), deadline); err != nil {
			return err
		}
	}
}

// inflightMargin is how much longer than the write timeout a second
// checkout waits for the first one's order: its compensation answers within
// half a second of the timeout, and a busy machine's Redis steps around it
// take their time too.
const inflightMargin = 2 * time.Second

// errInflight is reserve.lua's answer while another order of the ticket or
// user (its id) is still being written.
type errInflight string

func (e errInflight) Error() string { return "order " + string(e) + " is still being written" }

// waitSettled waits until order is no longer pending in Redis (MySQL has
// it, or it was undone), polling with a growing interval. Past deadline, or
// when the caller hangs up, the answer is 503: the first order's write is
// stuck on a store that does not answer.
func (s *Service) waitSettled(ctx context.Context, pendingKey, order string, deadline time.Time) error {
	delay := 2 * time.Millisecond
	for {
		t := time.NewTimer(min(delay, max(time.Until(deadline), 0)))
		select {
		case <-ctx.Done():
			t.Stop()
			return api.Unavailable("the order of this ticket still being written")
		case <-t.C:
		}
		pending, err := s.rdb.HExists(ctx, pendingKey, order).Result()
		if err != nil {
			return &sale.StoreError{Store: "Redis", Err: err}
		}
		if !pending {
			return nil
		}
		if time.Now().After(deadline) {
			return &api.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
				Message: "an order of this ticket is still being written (MySQL is slow); retry", RetryAfter: 1}
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// mysqlDown is the answer while the MySQL breaker is open.
func (s *Service) mysqlDown() *api.Error {
	return &api.Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
		Message:    "MySQL is unavailable (failing repeatedly); retry after the Retry-After delay",
		RetryAfter: s.orders.Breaker().RetryAfter()}
}

// reserveReply maps reserve.lua's reply; on success it sets the order's status.
func reserveReply(v []any, ord *Order) error {
	if len(v) == 0 {
		return fmt.Errorf("reserve script: empty reply")
	}
	code, _ := v[0].(string)
	arg := func() string {
		if len(v) > 1 {
			s, _ := v[1].(string)
			return s
		}
		return ""
	}
	switch code {
	case "ok":
		if arg() == "held" {
			ord.Status = StatusHeld
		}
		return nil
	case "nostate":
		return ErrNoState
	case "stale":
		return ErrStale
	case "closed":
		return ErrSaleClosed
	case "used":
		return ErrTicketUsed
	case "bought":
		return alreadyBought(arg())
	case "inflight":
		return errInflight(arg())
	case "sold_out":
		return ErrSoldOut
	}
	return fmt.Errorf("reserve script: unexpected reply %v", v)
}

func alreadyBought(order string) *api.Error {
	e := api.Errorf(http.StatusConflict, "already_bought", "you already have an order in this sale")
	e.Extra = map[string]any{"order_id": order}
	return e
}

// duplicateAnswer explains a MySQL duplicate: the user's live order (Redis
// had lost it), else the ticket used.
func (s *Service) duplicateAnswer(ctx context.Context, ord *Order) error {
	if id, err := s.orders.LiveOrderOf(ctx, ord.SaleID, ord.UserID); err == nil {
		return alreadyBought(id)
	}
	return ErrTicketUsed
}

// undo runs undo.lua; it reports whether the order was pending (and is now
// undone).
func (s *Service) undo(ctx context.Context, saleID, orderID string) (bool, error) {
	k := s.keys.Sale(saleID)
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	n, err := undoScript.Run(ctx, s.rdb, []string{k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}, orderID).Int()
	return n == 1, err
}

// finalize ends the admission once the order is durable. A failure here
// leaves the order pending; reconciliation finalizes it later.
func (s *Service) finalize(ctx context.Context, ord *Order) { s.finalizeJSON(ctx, ord, ord.marshal()) }

// finalizeJSON is finalize with the order's JSON (for its event) at hand.
// Concurrent finalizes share a call: the orders of a group commit come back
// from MySQL together.
func (s *Service) finalizeJSON(ctx context.Context, ord *Order, body []byte) {
	if err := s.finals.do(step{ctx: ctx, ord: ord, body: body}); err != nil {
		s.cfg.Logger.Warn("checkout: finalize in Redis failed; reconciliation will", "order", ord.ID, "err", err)
	}
}

// step is one order's reserve or finalize step, as a combiner's call.
type step struct {
	ctx  context.Context // the caller's: a call whose caller is gone is not sent
	ord  *Order
	body []byte // finalize: the order's JSON, for its event
}

// stepTimeout bounds one batch of reserve or finalize steps.
const stepTimeout = 3 * time.Second

// bySale groups a batch's calls by sale, in their order, leaving out (and
// answering) those whose caller is gone.
func bySale(batch []*combined[step]) (ids []string, calls map[string][]*combined[step]) {
	calls = map[string][]*combined[step]{}
	for _, c := range batch {
		if err := c.call.ctx.Err(); err != nil {
			c.err = &sale.StoreError{Store: "Redis", Err: err}
			continue
		}
		id := c.call.ord.SaleID
		if _, ok := calls[id]; !ok {
			ids = append(ids, id)
		}
		calls[id] = append(calls[id], c)
	}
	return ids, calls
}

// sendReserves runs a batch of reserve steps: one reserve.lua call per
// sale, all in one pipeline.
func (s *Service) sendReserves(batch []*combined[step]) {
	ids, calls := bySale(batch)
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(ids))
	_ = sale.ExecPipeline(ctx, s.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := s.keys.Sale(id)
			args := make([]any, 0, 4*len(calls[id]))
			for _, c := range calls[id] {
				o := c.call.ord
				args = append(args, o.UserID, o.TicketJTI, o.Quantity, o.ID)
			}
			cmds[i] = reserveScript.Run(ctx, pipe, []string{k.Cfg, k.Units, k.Tix, k.Buyers, k.JTI, k.Pending}, args...)
		}
	})
	for i, id := range ids {
		reserveReplies(cmds[i], calls[id])
	}
}

// reserveReplies maps one reserve.lua call's reply onto its orders.
func reserveReplies(cmd *redis.Cmd, calls []*combined[step]) {
	v, err := cmd.Slice()
	if err != nil {
		for _, c := range calls {
			c.err = &sale.StoreError{Store: "Redis", Err: err}
		}
		return
	}
	if len(calls) == 1 {
		calls[0].err = reserveReply(v, calls[0].call.ord)
		return
	}
	// Several orders: a reply for the whole call, or a list of one reply
	// per order.
	if len(v) > 0 {
		if code, ok := v[0].(string); ok && (code == "nostate" || code == "stale" || code == "closed") {
			for _, c := range calls {
				c.err = reserveReply(v, c.call.ord)
			}
			return
		}
	}
	if len(v) != len(calls) {
		for _, c := range calls {
			c.err = fmt.Errorf("reserve script: %d replies for %d orders: %v", len(v), len(calls), v)
		}
		return
	}
	for j, c := range calls {
		r, ok := v[j].([]any)
		if !ok {
			c.err = fmt.Errorf("reserve script: unexpected reply %v for an order", v[j])
			continue
		}
		c.err = reserveReply(r, c.call.ord)
	}
}

// sendFinals runs a batch of finalize steps: one finalize.lua call per
// sale, all in one pipeline.
func (s *Service) sendFinals(batch []*combined[step]) {
	ids, calls := bySale(batch)
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	cmds := make([]*redis.Cmd, len(ids))
	_ = sale.ExecPipeline(ctx, s.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := s.keys.Sale(id)
			args := make([]any, 0, 3*len(calls[id])+1)
			for _, c := range calls[id] {
				o := c.call.ord
				var holdMs int64
				if o.HoldExpiresAt != nil {
					holdMs = o.HoldExpiresAt.UnixMilli()
				}
				args = append(args, o.ID, holdMs, c.call.body)
			}
			args = append(args, sale.EventStreamLen)
			cmds[i] = finalizeScript.Run(ctx, pipe, []string{k.Units, k.Tix, k.Adm, k.Pending, k.Holds, k.Orders, k.Ev, k.Stats}, args...)
		}
	})
	for i, id := range ids {
		err := cmds[i].Err()
		for _, c := range calls[id] {
			c.err = err
		}
	}
}

// finishSoon marks a sale sold out once MySQL counts every unit paid, in
// the background. Should it fail (or the process die first), the sweeper
// finishes the sale at its next pass.
func (s *Service) finishSoon(saleID string) {
	s.jobs.Go("finish:"+saleID, 10*time.Second, func(ctx context.Context) {
		if err := s.sales.Finish(ctx, saleID, sale.SoldOut); err != nil {
			s.cfg.Logger.Warn("checkout: mark sold out; the sweeper will", "sale", saleID, "err", err)
			return
		}
		s.cfg.Logger.Info("sale sold out", "sale", saleID)
	})
}

// Order reads an order.
func (s *Service) Order(ctx context.Context, id string) (*Order, error) {
	o, err := s.orders.Get(ctx, id)
	if errors.Is(err, ErrNoOrder) {
		return nil, api.ErrNotFound
	}
	if err != nil {
		return nil, &sale.StoreError{Store: "MySQL", Err: err}
	}
	return o, nil
}

// OrderJSON reads an order in the contract's JSON shape.
func (s *Service) OrderJSON(ctx context.Context, id string) ([]byte, error) {
	o, err := s.Order(ctx, id)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o.JSON())
}
