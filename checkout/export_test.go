package checkout

import (
	"context"
	"database/sql"
	"log/slog"
)

// The scripts, for the Lua tests in package checkout_test (which cannot be
// package checkout: they use testenv, which imports this package).
var (
	ReserveScript  = reserveScript
	ReserveLua     = reserveLua // the body, for a benchmark of a variant
	FinalizeScript = finalizeScript
	UndoScript     = undoScript
	SettleScript   = settleScript
	RestoreScript  = restoreScript
	UnlockScript   = unlockScript
)

// CheckIdemKey is the Idempotency-Key check, for its fuzz target.
var CheckIdemKey = checkIdemKey

// Shard is the index of the writer a sale's orders go to.
func (o *Orders) Shard(saleID string) chan *createReq { return o.shard(saleID) }

// ExpireHolds runs one pass of the sweeper's hold expiry (as its loop does
// each tick), so tests can start several at once.
func (w *Sweeper) ExpireHolds(ctx context.Context) { w.expireHolds(ctx) }

// NewOrdersWithBreaker is NewOrders with the given breaker (one on a fake
// clock, whose probes come due only when the test says).
func NewOrdersWithBreaker(db *sql.DB, log *slog.Logger, writers int, b *Breaker) *Orders {
	o := NewOrders(db, log, writers)
	o.breaker = b
	return o
}
