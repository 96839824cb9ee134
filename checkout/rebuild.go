package checkout

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed restore.lua
	restoreLua string
	//go:embed unlock.lua
	unlockLua string

	restoreScript = sale.NewScript(restoreLua)
	unlockScript  = sale.NewScript(unlockLua)
)

// Rebuild restores a sale's live state after Redis lost it (a flush, a
// restart without persistence, a failover to an empty replica): settings,
// buyers, used tickets, holds and units, from one snapshot of MySQL's row
// and orders (Orders.SaleSnapshot, which fails fast while the MySQL breaker
// is open: the next answer that finds the state missing tries again), once,
// under a lock. The units are written last and only if still missing, so a live
// sale's units are never re-seeded over state that exists. The rebuilt
// state is stamped as checked on this Redis server process, with the time
// of the restore: an order whose write lands in MySQL after the rebuild read
// it is put back by the sweepers' second check (see check.lua).
func (s *Service) Rebuild(ctx context.Context, saleID string) error {
	k := s.keys.Sale(saleID)
	tok := lockToken()
	ok, err := s.rdb.SetNX(ctx, k.Rebuild, tok, 30*time.Second).Result()
	if err != nil || !ok {
		return err // another node is rebuilding
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{k.Rebuild}, tok) //nolint:errcheck

	if n, err := s.rdb.Exists(ctx, k.Units).Result(); err != nil || n == 1 {
		return err
	}
	if err := s.sales.Republish(ctx, saleID); err != nil {
		return err
	}
	sl, err := s.sales.Load(ctx, saleID)
	if err != nil {
		return err
	}
	snap, err := s.orders.SaleSnapshot(ctx, saleID)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", saleID, err)
	}
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, k.Buyers, k.JTI, k.Holds, k.Orders, k.Pending)
	for _, o := range snap.Orders {
		if o.TicketJTI != "" {
			pipe.HSet(ctx, k.JTI, o.TicketJTI, o.ID)
		}
		if o.Status == StatusHeld || o.Status == StatusPaid {
			pipe.HSet(ctx, k.Buyers, o.UserID, o.ID)
		}
		if o.Status == StatusHeld && o.HoldExpiresAt != nil {
			pipe.ZAdd(ctx, k.Holds, redis.Z{Score: float64(o.HoldExpiresAt.UnixMilli()), Member: o.ID})
			pipe.HSet(ctx, k.Orders, o.ID, sale.HoldRecord(o.UserID, o.Quantity))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	written, err := restoreScript.Run(ctx, s.rdb, []string{k.Units, k.Tix}, sl.StockTotal, snap.Sold, snap.Held).Int()
	if err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	if written == 1 {
		if err := stampScript.Run(ctx, s.rdb, []string{k.Cfg, k.Units}, "restored").Err(); err != nil {
			return &sale.StoreError{Store: "Redis", Err: err}
		}
		s.cfg.Logger.Warn("rebuilt a sale's live state from MySQL", "sale", saleID, "sold", snap.Sold, "held", snap.Held)
	}
	return nil
}

// lockToken is a random owner token for a lock (released with unlock.lua).
func lockToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RebuildSoon runs Rebuild in the background, once at a time per sale in
// this process, logging failures: the hook every role calls when a script
// answers that a sale's live state is missing. Pass it only ids of sales
// that exist.
func (s *Service) RebuildSoon(saleID string) {
	s.jobs.Go("rebuild:"+saleID, 30*time.Second, func(ctx context.Context) {
		if err := s.Rebuild(ctx, saleID); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("rebuild from MySQL failed", "sale", saleID, "err", err)
		}
	})
}
