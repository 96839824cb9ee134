package checkout

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed check.lua
	checkLua string
	//go:embed stamp.lua
	stampLua string

	checkScript = sale.NewScript(checkLua)
	stampScript = sale.NewScript(stampLua)
)

// Revalidate makes a sale's live state agree with MySQL after Redis came
// back from a restart or a failover that may have lost its last writes (the
// sale is stamped with another server process's run id: reserve.lua sells
// nothing meanwhile), and stamps it, which lets checkouts in again. It runs
// under the sale's rebuild lock (another node holding it is doing the same
// work): every pending mark is settled first, whatever its age, since none
// is newer than the restart, then Redis is repaired from MySQL in the
// guarded step, which notes the time of the restore so that the sweepers
// check the sale once more after the orders in flight meanwhile have landed
// in MySQL. A sale whose keys are gone is rebuilt instead.
func (s *Service) Revalidate(ctx context.Context, saleID string) error {
	k := s.keys.Sale(saleID)
	tok := lockToken()
	ok, err := s.rdb.SetNX(ctx, k.Rebuild, tok, 30*time.Second).Result()
	if err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	if !ok {
		return nil
	}
	missing, err := func() (missing bool, err error) {
		defer unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{k.Rebuild}, tok) //nolint:errcheck
		state, _, err := s.check(ctx, saleID, 0)
		if err != nil || state != "stale" {
			return state == "missing", err
		}
		diffs, err := s.repairPending(ctx, saleID)
		if err != nil {
			return false, err
		}
		sl, err := s.sales.Load(ctx, saleID)
		if err != nil {
			return false, err
		}
		more, err := s.compare(ctx, sl, true, "restored")
		if err != nil {
			return false, err
		}
		s.cfg.Logger.Warn("revalidated a sale's live state from MySQL after a Redis restart", "sale", saleID,
			"differences", len(diffs)+len(more))
		// the queue came back behind too: nodes put back the waiters it lacks
		return false, s.sales.Regenerate(ctx, saleID)
	}()
	if missing {
		return s.Rebuild(ctx, saleID)
	}
	return err
}

// recheck is the second check of a sale whose state was restored from
// MySQL (rebuilt or revalidated) at restored: an order whose Redis step
// Redis lost and whose write landed in MySQL after the restore read it is
// put back. It clears the note if it is still restored.
func (s *Service) recheck(ctx context.Context, saleID, restored string) error {
	sl, err := s.sales.Load(ctx, saleID)
	if err != nil {
		return err
	}
	diffs, err := s.compare(ctx, sl, true, restored)
	if err != nil {
		return err
	}
	if len(diffs) > 0 {
		s.cfg.Logger.Warn("reconcile: the second check after a restore from MySQL repaired the sale", "sale", saleID,
			"differences", len(diffs))
	}
	return nil
}

// check runs check.lua: where the sale's state stands on the Redis server
// that holds it (missing, new, stale, recheck or ok), and the time of its
// last restore from MySQL ("" when none). recheckAfter is check.lua's
// ARGV[1].
func (s *Service) check(ctx context.Context, saleID string, recheckAfter time.Duration) (state, restored string, err error) {
	k := s.keys.Sale(saleID)
	v, err := checkScript.Run(ctx, s.rdb, []string{k.Cfg, k.Units}, recheckAfter.Milliseconds()).StringSlice()
	if err != nil {
		return "", "", &sale.StoreError{Store: "Redis", Err: err}
	}
	return checkReply(v)
}

// checkReply maps check.lua's reply.
func checkReply(v []string) (state, restored string, err error) {
	if len(v) != 2 {
		return "", "", fmt.Errorf("check script: unexpected reply %q", v)
	}
	switch v[0] {
	case "missing", "new", "stale", "recheck", "ok":
		return v[0], v[1], nil
	}
	return "", "", fmt.Errorf("check script: unexpected reply %q", v)
}

// revalidateSoon runs Revalidate for a sale in the background, once at a
// time per sale in this process.
func (s *Service) revalidateSoon(saleID string) {
	s.jobs.Go("revalidate:"+saleID, time.Minute, func(ctx context.Context) {
		if err := s.Revalidate(ctx, saleID); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("checkout: revalidate a sale after a Redis restart", "sale", saleID, "err", err)
		}
	})
}

// checkStamps keeps the sales' stamps (check.lua, stamp.lua): a new sale is
// stamped, a stale one (Redis restarted or failed over) revalidated, and
// one restored from MySQL PendingAge ago checked once more.
func (w *Sweeper) checkStamps(ctx context.Context) {
	s := w.svc
	ids, err := s.rdb.SMembers(ctx, s.keys.Sales()).Result()
	if err != nil || len(ids) == 0 {
		return // Redis down: the reserve step answers 503 meanwhile
	}
	cmds := make([]*redis.Cmd, len(ids))
	err = sale.ExecPipeline(ctx, s.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := s.keys.Sale(id)
			cmds[i] = checkScript.Run(ctx, pipe, []string{k.Cfg, k.Units}, w.cfg.PendingAge.Milliseconds())
		}
	})
	if err != nil {
		return
	}
	for i, id := range ids {
		v, err := cmds[i].StringSlice()
		if err != nil {
			continue
		}
		state, restored, err := checkReply(v)
		switch {
		case err != nil:
			s.cfg.Logger.Error("checkout: check a sale's stamp", "sale", id, "err", err)
		case state == "new":
			k := s.keys.Sale(id)
			err = stampScript.Run(ctx, s.rdb, []string{k.Cfg, k.Units}, "new").Err()
		case state == "stale":
			err = s.Revalidate(ctx, id)
		case state == "recheck":
			err = s.recheck(ctx, id, restored)
		}
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("checkout: keep a sale's stamp", "sale", id, "state", state, "err", err)
		}
	}
}
