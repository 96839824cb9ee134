package sale

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
)

// Summary is the operator's live view of a sale: Redis's counts beside
// MySQL's, and whether they agree.
type Summary struct {
	SaleID              string     `json:"sale_id"`
	State               State      `json:"state"`
	StockTotal          int64      `json:"stock_total"`
	Sold                int64      `json:"sold"`
	Held                int64      `json:"held"`
	Remaining           int64      `json:"remaining"`
	QueueLength         int64      `json:"queue_length"`
	Active              int64      `json:"active"`
	AdmittedTotal       int64      `json:"admitted_total"`
	SkippedTotal        int64      `json:"skipped_total"`
	TicketsExpiredTotal int64      `json:"tickets_expired_total"`
	OrdersTotal         int64      `json:"orders_total"`
	MySQL               MySQLUnits `json:"mysql"`
	Consistent          bool       `json:"consistent"`
	AsOf                string     `json:"as_of"`
}

// MySQLUnits are the units MySQL's orders hold.
type MySQLUnits struct {
	Paid int64 `json:"paid"`
	Held int64 `json:"held"`
}

// Summary reads the summary. Consistent means Redis's units add up to the
// stock, and Redis and MySQL (the orders and the sale row's guarded
// counts) agree on sold and held.
func (st *Store) Summary(ctx context.Context, id string) (*Summary, error) {
	return st.summary(ctx, id, true)
}

// SummaryFromRow is Summary with MySQL's side read from the sale row's
// guarded counts alone (one primary-key read) instead of summing the
// sale's orders: what a once-a-second sampler can afford on a sale with
// many orders. Its MySQL.Paid and MySQL.Held are the row's sold and held,
// and Consistent compares Redis with them.
func (st *Store) SummaryFromRow(ctx context.Context, id string) (*Summary, error) {
	return st.summary(ctx, id, false)
}

func (st *Store) summary(ctx context.Context, id string, orders bool) (*Summary, error) {
	s, err := st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	k := st.Keys.Sale(id)
	rnow, err := st.Redis.Time(ctx).Result() // live tickets expire on Redis's clock
	if err != nil {
		return nil, redisErr(err)
	}
	pipe := st.Redis.Pipeline()
	units := pipe.HMGet(ctx, k.Units, "remaining", "held", "sold")
	stats := pipe.HMGet(ctx, k.Stats, "admitted_total", "skipped_total", "tickets_expired_total", "orders_total")
	q := pipe.ZCard(ctx, k.Q)
	lane := pipe.ZCard(ctx, k.Lane)
	now := time.Now()
	active := pipe.ZCount(ctx, k.Adm, "("+strconv.FormatInt(rnow.UnixMilli(), 10), "+inf")
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, redisErr(err)
	}
	n := func(vals []any, i int) int64 {
		if i >= len(vals) || vals[i] == nil {
			return 0
		}
		v, _ := strconv.ParseInt(vals[i].(string), 10, 64)
		return v
	}
	u, sv := units.Val(), stats.Val()
	sum := &Summary{
		SaleID: id, State: s.Effective(now), StockTotal: int64(s.StockTotal),
		Remaining: n(u, 0), Held: n(u, 1), Sold: n(u, 2),
		QueueLength: q.Val() + lane.Val(), Active: active.Val(),
		AdmittedTotal: n(sv, 0), SkippedTotal: n(sv, 1), TicketsExpiredTotal: n(sv, 2), OrdersTotal: n(sv, 3),
		AsOf: api.Time(now),
	}
	qctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	var rowSold, rowHeld int64
	if !orders {
		err = st.DB.QueryRowContext(qctx, `SELECT sold, held FROM sales WHERE id = ?`, id).Scan(&rowSold, &rowHeld)
		sum.MySQL.Paid, sum.MySQL.Held = rowSold, rowHeld
	} else {
		err = st.DB.QueryRowContext(qctx, `SELECT
		COALESCE((SELECT SUM(quantity) FROM orders WHERE sale_id = ? AND status = 'paid'), 0),
		COALESCE((SELECT SUM(quantity) FROM orders WHERE sale_id = ? AND status = 'held'), 0),
		sold, held FROM sales WHERE id = ?`, id, id, id).Scan(&sum.MySQL.Paid, &sum.MySQL.Held, &rowSold, &rowHeld)
	}
	if err != nil {
		return nil, mysqlErr(err)
	}
	unitsPresent := len(u) == 3 && u[0] != nil
	sum.Consistent = unitsPresent &&
		sum.Remaining+sum.Held+sum.Sold == sum.StockTotal &&
		sum.Sold == sum.MySQL.Paid && sum.Held == sum.MySQL.Held &&
		rowSold == sum.MySQL.Paid && rowHeld == sum.MySQL.Held
	return sum, nil
}
