package checkout

import (
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed reconcile.lua
	reconcileLua string

	reconcileScript = sale.NewScript(reconcileLua)
)

// Report is what Reconcile found in one sale.
type Report struct {
	SaleID string
	// Differences are what the check found; after a repair each says
	// whether it was repaired.
	Differences []Difference
	// Remaining are the differences a check after the repair still found
	// (without repair, the differences themselves).
	Remaining []Difference
}

// Consistent reports whether Redis and MySQL agree (after any repair).
func (r *Report) Consistent() bool { return len(r.Remaining) == 0 }

// Difference is one disagreement between Redis and MySQL.
type Difference struct {
	// Kind is pending, state, stale, sale_row, units, buyer, ticket or hold.
	Kind string
	// Detail says, in a plain line, what Redis has, what MySQL has and what
	// a repair does.
	Detail   string
	Repaired bool
}

func (d Difference) String() string {
	s := d.Kind + ": " + d.Detail
	if d.Repaired {
		s += " (repaired)"
	}
	return s
}

// reconcileAttempts bounds the reads of a sale whose units keep moving
// (live checkouts) before Reconcile reports what it saw.
const reconcileAttempts = 20

// Reconcile compares a sale's live state in Redis (units, buyers, used
// tickets, holds, pending marks) with MySQL (its orders and the sales row's
// guarded counts) and, with repair, makes Redis agree with MySQL, then
// checks again:
//
//   - pending marks first, whatever their age: finalized when MySQL has the
//     order, else compensated (a tombstone) and undone;
//   - a sale stamped by another Redis server process (Redis restarted or
//     failed over since: see Revalidate) is stale: the repair below stamps
//     it again, which lets checkouts in;
//   - a sale whose units are gone is rebuilt (Rebuild);
//   - a sales row whose sold/held disagree with its orders is recounted;
//   - then, in one guarded step (reconcile.lua), buyers, used tickets and
//     holds MySQL has are restored, Redis buyers, tickets and holds without
//     a MySQL order are removed, and the units are recomputed (remaining =
//     stock - sold - held, reserved from the live admission records). The
//     step runs only if no checkout moved the units since Redis was read,
//     and orders still pending (in flight) are counted from their marks,
//     never from MySQL: units are never re-seeded under an order in flight.
func (s *Service) Reconcile(ctx context.Context, saleID string, repair bool) (*Report, error) {
	sl, err := s.sales.Load(ctx, saleID)
	if err != nil {
		return nil, err
	}
	rep := &Report{SaleID: saleID}
	if !repair {
		rep.Differences, err = s.compare(ctx, sl, false, "")
		rep.Remaining = rep.Differences
		return rep, err
	}
	if rep.Differences, err = s.repairPending(ctx, saleID); err != nil {
		return rep, err
	}
	more, err := s.compare(ctx, sl, true, "")
	rep.Differences = append(rep.Differences, more...)
	if err != nil {
		return rep, err
	}
	rep.Remaining, err = s.compare(ctx, sl, false, "")
	return rep, err
}

// redisView is one atomic read of a sale's live state.
type redisView struct {
	units         map[string]string // empty when the state is gone
	pending       map[string]sale.Pending
	badPending    map[string]string
	buyers, jti   map[string]string
	holds         map[string]int64 // order → hold expiry ms
	orders        map[string]string
	tixReserved   int
	pendingUsers  map[string]bool
	pendingTicket map[string]bool
}

// staleDifference is a sale stamped by another Redis server process.
var staleDifference = Difference{Kind: "stale", Detail: "the sale's live state was last checked against MySQL on " +
	"another Redis server process (Redis restarted or failed over since, and may have lost its last writes): " +
	"checkouts answer 503 until a repair checks it again"}

func (s *Service) readRedis(ctx context.Context, k sale.Keys) (*redisView, error) {
	pipe := s.rdb.TxPipeline()
	units := pipe.HGetAll(ctx, k.Units)
	pending := pipe.HGetAll(ctx, k.Pending)
	buyers := pipe.HGetAll(ctx, k.Buyers)
	jti := pipe.HGetAll(ctx, k.JTI)
	holds := pipe.ZRangeWithScores(ctx, k.Holds, 0, -1)
	orders := pipe.HGetAll(ctx, k.Orders)
	tix := pipe.HVals(ctx, k.Tix)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, &sale.StoreError{Store: "Redis", Err: err}
	}
	v := &redisView{units: units.Val(), pending: map[string]sale.Pending{}, badPending: map[string]string{},
		buyers: buyers.Val(), jti: jti.Val(), holds: map[string]int64{}, orders: orders.Val(),
		pendingUsers: map[string]bool{}, pendingTicket: map[string]bool{}}
	for id, rec := range pending.Val() {
		m, ok := sale.ParsePending(rec)
		if !ok {
			v.badPending[id] = rec
			continue
		}
		v.pending[id] = m
		v.pendingUsers[m.User] = true
		v.pendingTicket[m.JTI] = true
	}
	for _, z := range holds.Val() {
		id, _ := z.Member.(string)
		v.holds[id] = int64(z.Score)
	}
	for _, rec := range tix.Val() {
		if a, ok := sale.ParseAdmission(rec); ok {
			v.tixReserved += a.Reserved
		}
	}
	return v, nil
}

// mysqlView is one consistent read of a sale in MySQL.
type mysqlView struct {
	rowSold, rowHeld int
	paid, held       int // units of the paid and held orders
	orders           []SnapshotOrder
}

// readMySQL is one consistent read of a sale in MySQL (Orders.SaleSnapshot)
// with its orders' units summed.
func (s *Service) readMySQL(ctx context.Context, saleID string) (*mysqlView, error) {
	snap, err := s.orders.SaleSnapshot(ctx, saleID)
	if err != nil {
		return nil, &sale.StoreError{Store: "MySQL", Err: err}
	}
	v := &mysqlView{rowSold: snap.Sold, rowHeld: snap.Held, orders: snap.Orders}
	for _, o := range snap.Orders {
		switch o.Status {
		case StatusPaid:
			v.paid += o.Quantity
		case StatusHeld:
			v.held += o.Quantity
		}
	}
	return v, nil
}

// compare checks a sale once Redis holds still long enough to compare, and
// with fix repairs what it finds: the sales row first (inside MySQL), then
// Redis in one guarded step, which also stamps the sale as checked on this
// Redis server process (it runs for that alone when the sale is stale, or
// to note or clear restored: reconcile.lua's ARGV[7]). With fix, pending
// marks are not differences: repairPending settled those it found, and any
// left are orders in flight.
func (s *Service) compare(ctx context.Context, sl *sale.Sale, fix bool, restored string) ([]Difference, error) {
	k := s.keys.Sale(sl.ID)
	var out []Difference
	if fix {
		n, err := s.rdb.Exists(ctx, k.Units).Result()
		if err != nil {
			return nil, &sale.StoreError{Store: "Redis", Err: err}
		}
		if n == 0 {
			d := Difference{Kind: "state", Detail: "the sale's units are missing in Redis (its live state is gone): rebuild from MySQL"}
			if err := s.Rebuild(ctx, sl.ID); err != nil {
				return []Difference{d}, err
			}
			if n, err = s.rdb.Exists(ctx, k.Units).Result(); err != nil || n == 0 {
				return []Difference{d}, cmp.Or(err, fmt.Errorf("sale %s: another node is rebuilding its live state; run again", sl.ID))
			}
			d.Repaired = true
			out = append(out, d)
		}
		mv, err := s.readMySQL(ctx, sl.ID)
		if err != nil {
			return out, err
		}
		if mv.rowDiffers() {
			d := rowDifference(mv)
			if err := s.recountRow(ctx, sl.ID); err != nil {
				return append(out, d), err
			}
			d.Repaired = true
			out = append(out, d)
		}
	}
	for attempt := 1; ; attempt++ {
		rv, err := s.readRedis(ctx, k)
		if err != nil {
			return out, err
		}
		if len(rv.units) == 0 {
			return append(out, Difference{Kind: "state",
				Detail: "the sale's units are missing in Redis (its live state is gone): rebuild from MySQL"}), nil
		}
		state, _, err := s.check(ctx, sl.ID, 0)
		if err != nil {
			return out, err
		}
		mv, err := s.readMySQL(ctx, sl.ID)
		if err != nil {
			return out, err
		}
		diffs, ops, sold, held := diff(sl, rv, mv, !fix)
		if state == "stale" {
			diffs = append([]Difference{staleDifference}, diffs...)
		}
		if !fix {
			// Report only what a still moment saw: units unchanged since
			// the Redis read.
			now, err := s.rdb.HMGet(ctx, k.Units, "remaining", "held", "sold").Result()
			if err != nil {
				return out, &sale.StoreError{Store: "Redis", Err: err}
			}
			if unitsAsRead(rv.units, now) || attempt == reconcileAttempts {
				return append(out, diffs...), nil
			}
			continue
		}
		if len(diffs) == 0 && restored == "" {
			return out, nil
		}
		args := []any{rv.units["remaining"], rv.units["held"], rv.units["sold"], sl.StockTotal, sold, held, restored}
		args = append(args, ops...)
		res, err := reconcileScript.Run(ctx, s.rdb, []string{k.Units, k.Tix, k.Buyers, k.JTI, k.Holds, k.Orders, k.Cfg},
			args...).Text()
		if err != nil {
			return append(out, diffs...), &sale.StoreError{Store: "Redis", Err: err}
		}
		switch res {
		case "ok":
			for i := range diffs {
				diffs[i].Repaired = true
			}
			if len(diffs) > 0 {
				s.cfg.Logger.Warn("reconcile: repaired a sale's live state from MySQL", "sale", sl.ID, "differences", len(diffs))
			}
			return append(out, diffs...), nil
		case "changed":
		default:
			return append(out, diffs...), fmt.Errorf("reconcile script: unexpected reply %q", res)
		}
		if attempt == reconcileAttempts {
			return append(out, diffs...), fmt.Errorf("sale %s: its units kept moving (live checkouts) through %d attempts; run again", sl.ID, attempt)
		}
	}
}

// rowDiffers is whether the sales row's guarded counts disagree with its
// orders (a difference inside MySQL).
func (mv *mysqlView) rowDiffers() bool {
	return mv.rowSold != mv.paid || mv.rowHeld != mv.held
}

func rowDifference(mv *mysqlView) Difference {
	return Difference{Kind: "sale_row", Detail: fmt.Sprintf(
		"MySQL's sales row counts sold %d, held %d; its orders hold paid %d, held %d: recount the row",
		mv.rowSold, mv.rowHeld, mv.paid, mv.held)}
}

func unitsAsRead(units map[string]string, now []any) bool {
	for i, f := range []string{"remaining", "held", "sold"} {
		v, _ := now[i].(string)
		if v != units[f] {
			return false
		}
	}
	return true
}

// recountRow sets the sales row's sold and held to its orders' units
// (Orders.SaleRecount).
func (s *Service) recountRow(ctx context.Context, saleID string) error {
	if err := s.orders.SaleRecount(ctx, saleID); err != nil {
		return &sale.StoreError{Store: "MySQL", Err: err}
	}
	s.cfg.Logger.Warn("reconcile: recounted the sales row from its orders", "sale", saleID)
	return nil
}

// diff compares one Redis read with one MySQL read. Orders pending in Redis
// are in flight: they are left out of the MySQL side and counted from their
// marks, and their buyers and tickets are not touched. It returns the
// differences, the reconcile.lua ops that repair them, and the sold and
// held units Redis should count.
func diff(sl *sale.Sale, rv *redisView, mv *mysqlView, reportPending bool) (diffs []Difference, ops []any, sold, held int) {
	add := func(kind, format string, args ...any) {
		diffs = append(diffs, Difference{Kind: kind, Detail: fmt.Sprintf(format, args...)})
	}
	for _, id := range slices.Sorted(maps.Keys(rv.pending)) {
		m := rv.pending[id]
		if reportPending {
			add("pending", "order %s of user %s (%d unit(s), %s) is pending in Redis (in flight, or left by a failure): a repair settles it by what MySQL has",
				id, m.User, m.Quantity, m.Kind)
		}
		if m.Kind == StatusHeld {
			held += m.Quantity
		} else {
			sold += m.Quantity
		}
	}
	if reportPending {
		for _, id := range slices.Sorted(maps.Keys(rv.badPending)) {
			add("pending", "%s: unreadable mark %q; left as is", id, rv.badPending[id])
		}
	}
	if mv.rowDiffers() {
		diffs = append(diffs, rowDifference(mv))
	}

	wantBuyers := map[string]SnapshotOrder{}
	wantJTI := map[string]string{}
	wantHolds := map[string]SnapshotOrder{}
	for _, o := range mv.orders {
		if _, inFlight := rv.pending[o.ID]; inFlight {
			continue
		}
		live := o.Status == StatusHeld || o.Status == StatusPaid
		switch o.Status {
		case StatusPaid:
			sold += o.Quantity
		case StatusHeld:
			held += o.Quantity
			wantHolds[o.ID] = o
		}
		if live && !rv.pendingUsers[o.UserID] {
			wantBuyers[o.UserID] = o
		}
		if o.TicketJTI != "" && !rv.pendingTicket[o.TicketJTI] {
			wantJTI[o.TicketJTI] = o.ID
		}
	}
	pendingOrder := func(id string) bool { _, ok := rv.pending[id]; return ok }

	for _, user := range slices.Sorted(maps.Keys(wantBuyers)) {
		o := wantBuyers[user]
		if got, ok := rv.buyers[user]; !ok || got != o.ID {
			add("buyer", "user %s: Redis has %s, MySQL has live order %s (%s): restore", user, orNone(got), o.ID, o.Status)
			ops = append(ops, "bset", user, o.ID, "")
		}
	}
	for _, user := range slices.Sorted(maps.Keys(rv.buyers)) {
		id := rv.buyers[user]
		if _, ok := wantBuyers[user]; ok || rv.pendingUsers[user] || pendingOrder(id) {
			continue
		}
		add("buyer", "user %s: Redis has order %s, MySQL has no live order of the user: remove", user, id)
		ops = append(ops, "bdel", user, id, "")
	}
	for _, jti := range slices.Sorted(maps.Keys(wantJTI)) {
		id := wantJTI[jti]
		if got, ok := rv.jti[jti]; !ok || got != id {
			add("ticket", "ticket %s: Redis has %s, MySQL's order %s used it: restore", jti, orNone(got), id)
			ops = append(ops, "jset", jti, id, "")
		}
	}
	for _, jti := range slices.Sorted(maps.Keys(rv.jti)) {
		id := rv.jti[jti]
		if _, ok := wantJTI[jti]; ok || rv.pendingTicket[jti] || pendingOrder(id) {
			continue
		}
		add("ticket", "ticket %s: Redis has it used by order %s, MySQL has no order that used it: free it", jti, id)
		ops = append(ops, "jdel", jti, id, "")
	}
	for _, id := range slices.Sorted(maps.Keys(wantHolds)) {
		o := wantHolds[id]
		ms := int64(0)
		if o.HoldExpiresAt != nil {
			ms = o.HoldExpiresAt.UnixMilli()
		}
		rec := sale.HoldRecord(o.UserID, o.Quantity)
		got, inSet := rv.holds[id]
		if !inSet || got != ms || rv.orders[id] != rec {
			add("hold", "order %s: Redis has %s, MySQL holds %d unit(s) of user %s until %s: restore", id,
				holdDesc(inSet, got, rv.orders[id]), o.Quantity, o.UserID, time.UnixMilli(ms).UTC().Format(time.RFC3339Nano))
			ops = append(ops, "hset", id, ms, rec)
		}
	}
	extra := map[string]bool{}
	for id := range rv.holds {
		extra[id] = true
	}
	for id := range rv.orders {
		extra[id] = true
	}
	for _, id := range slices.Sorted(maps.Keys(extra)) {
		if _, ok := wantHolds[id]; ok || pendingOrder(id) {
			continue
		}
		got, inSet := rv.holds[id]
		add("hold", "order %s: Redis has %s, MySQL does not hold it: remove", id, holdDesc(inSet, got, rv.orders[id]))
		ops = append(ops, "hdel", id, "", "")
	}

	num := func(f string) int { n, _ := strconv.Atoi(rv.units[f]); return n }
	remaining := sl.StockTotal - sold - held
	reserved := min(max(rv.tixReserved, 0), max(remaining, 0))
	if num("remaining") != remaining || num("held") != held || num("sold") != sold || num("stock") != sl.StockTotal ||
		rv.units["remaining"] == "" || num("reserved") != reserved {
		add("units", "Redis has remaining %s, reserved %s, held %s, sold %s, stock %s; MySQL (with the orders in flight) says remaining %d, reserved %d, held %d, sold %d, stock %d: recompute",
			rv.units["remaining"], rv.units["reserved"], rv.units["held"], rv.units["sold"], rv.units["stock"],
			remaining, reserved, held, sold, sl.StockTotal)
	}
	return diffs, ops, sold, held
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func holdDesc(inSet bool, ms int64, rec string) string {
	switch {
	case !inSet && rec == "":
		return "no hold"
	case !inSet:
		return fmt.Sprintf("no hold expiry (record %q)", rec)
	case rec == "":
		return fmt.Sprintf("a hold expiring %s but no record", time.UnixMilli(ms).UTC().Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("a hold expiring %s (record %q)", time.UnixMilli(ms).UTC().Format(time.RFC3339Nano), rec)
}
