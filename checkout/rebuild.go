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
// buyers, used tickets, holds and units, from MySQL's orders, once, under a
// lock. The units are written last and only if still missing, so a live
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
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var sold, held int
	if err := s.orders.db.QueryRowContext(qctx, `SELECT sold, held FROM sales WHERE id = ?`, saleID).Scan(&sold, &held); err != nil {
		return fmt.Errorf("rebuild %s: %w", saleID, err)
	}
	rows, err := s.orders.db.QueryContext(qctx, `SELECT id, user_id, quantity, status, COALESCE(ticket_jti, ''),
		hold_expires_at FROM orders WHERE sale_id = ? AND (status IN ('held', 'paid') OR ticket_jti IS NOT NULL)`, saleID)
	if err != nil {
		return fmt.Errorf("rebuild %s: %w", saleID, err)
	}
	defer rows.Close()
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, k.Buyers, k.JTI, k.Holds, k.Orders, k.Pending)
	for rows.Next() {
		var id, user, status, jti string
		var qty int
		var hold *time.Time
		if err := rows.Scan(&id, &user, &qty, &status, &jti, &hold); err != nil {
			return fmt.Errorf("rebuild %s: %w", saleID, err)
		}
		if jti != "" {
			pipe.HSet(ctx, k.JTI, jti, id)
		}
		if status == StatusHeld || status == StatusPaid {
			pipe.HSet(ctx, k.Buyers, user, id)
		}
		if status == StatusHeld && hold != nil {
			pipe.ZAdd(ctx, k.Holds, redis.Z{Score: float64(hold.UnixMilli()), Member: id})
			pipe.HSet(ctx, k.Orders, id, sale.HoldRecord(user, qty))
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("rebuild %s: %w", saleID, err)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	written, err := restoreScript.Run(ctx, s.rdb, []string{k.Units, k.Tix}, sl.StockTotal, sold, held).Int()
	if err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	if written == 1 {
		if err := stampScript.Run(ctx, s.rdb, []string{k.Cfg, k.Units}, "restored").Err(); err != nil {
			return &sale.StoreError{Store: "Redis", Err: err}
		}
		s.cfg.Logger.Warn("rebuilt a sale's live state from MySQL", "sale", saleID, "sold", sold, "held", held)
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
