package checkout

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

// lifecycle is the sweeper's safety net under the state changes that fire
// once: a sale MySQL counts paid out is finished sold_out (the finish after
// the last unit may have failed, or died with its process), a sale past its
// end is closed, a live copy in Redis behind MySQL's row is written again (a
// publish after a commit may have failed), and a final sale leaves the
// working set (Keyspace.Sales) once FinalGrace has passed since its row
// last changed, so that no loop of any node works for it any more, while a
// live sale with a live copy that the set lost goes back into it. One
// MySQL query and one Redis pipeline a pass, whatever the number of sales.
func (w *Sweeper) lifecycle(ctx context.Context) {
	s := w.svc
	ids, err := s.rdb.SMembers(ctx, s.keys.Sales()).Result()
	if err != nil {
		return // Redis down: nothing to compare with
	}
	rows, err := s.sales.Standings(ctx, ids, w.cfg.FinalGrace)
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("checkout: read the sales' standing", "err", err)
		}
		return
	}
	for i, r := range rows {
		var to sale.State
		switch {
		case r.State.Final():
			continue
		case r.PaidOut:
			to = sale.SoldOut
		case r.Ended:
			to = sale.Closed
		default:
			continue
		}
		if err := s.sales.Finish(ctx, r.ID, to); err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Warn("checkout: finish a sale", "sale", r.ID, "to", to, "err", err)
			}
			continue
		}
		s.cfg.Logger.Info("sale finished by the sweeper", "sale", r.ID, "state", to)
		rows[i].State = to // Finish published it
		rows[i].Version = 0
	}

	vers := make([]*redis.StringCmd, len(rows))
	pipe := s.rdb.Pipeline()
	for i, r := range rows {
		vers[i] = pipe.HGet(ctx, s.keys.Sale(r.ID).Cfg, "ver")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return
	}
	inSet := make(map[string]bool, len(ids))
	for _, id := range ids {
		inSet[id] = true
	}
	var retire, back []any
	for i, r := range rows {
		v, err := vers[i].Int64()
		if err == nil && !inSet[r.ID] && !r.State.Final() {
			// A live sale with a live copy that the working set lacks. On
			// Redis Cluster the set is on one master and the sale's keys
			// on another: when the set's master restarts empty or fails
			// over behind, the sale's keys are intact, so no rebuild puts
			// it back (a sale without a live copy goes back when it is
			// rebuilt), and admission and every sweep would pass it by.
			back = append(back, r.ID)
		}
		switch {
		case errors.Is(err, redis.Nil):
			// no live copy: it is rebuilt from MySQL on first use
		case err != nil:
			s.cfg.Logger.Warn("checkout: read a sale's live version", "sale", r.ID, "err", err)
		case v < r.Version:
			if err := s.sales.Republish(ctx, r.ID); err != nil {
				if ctx.Err() == nil {
					s.cfg.Logger.Warn("checkout: republish a sale behind MySQL", "sale", r.ID, "err", err)
				}
				continue
			}
			s.cfg.Logger.Info("republished a sale whose live copy was behind MySQL", "sale", r.ID,
				"redis_version", v, "mysql_version", r.Version)
		}
		if r.Retired {
			retire = append(retire, r.ID)
		}
	}
	if len(back) > 0 {
		if err := s.rdb.SAdd(ctx, s.keys.Sales(), back...).Err(); err != nil {
			s.cfg.Logger.Warn("checkout: put live sales back in the working set", "err", err)
		} else {
			s.cfg.Logger.Warn("live sales were missing from the working set (its Redis master restarted or failed over?): put back",
				"sales", back)
		}
	}
	if len(retire) > 0 {
		if err := s.rdb.SRem(ctx, s.keys.Sales(), retire...).Err(); err != nil {
			s.cfg.Logger.Warn("checkout: retire final sales from the working set", "err", err)
			return
		}
		s.cfg.Logger.Info("final sales left the working set", "sales", retire)
	}
}
