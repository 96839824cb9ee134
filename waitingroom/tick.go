package waitingroom

import (
	"context"
	_ "embed"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

//go:embed presence.lua
var presenceLua string

var presenceScript = sale.NewScript(presenceLua)

// tickLoop writes presence and pushes positions once a tick.
func (h *Hub) tickLoop(ctx context.Context) {
	t := time.NewTicker(h.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.tick(ctx)
		}
	}
}

// presenceChunk bounds the users of one presence call (Lua's stack).
const presenceChunk = 1000

func (h *Hub) tick(ctx context.Context) {
	ids := h.trackedIDs()
	if len(ids) == 0 {
		return
	}
	rankCmds := make([]*redis.StringCmd, len(ids))
	connsBySale := make([][]*Conn, len(ids))
	for i, id := range ids {
		connsBySale[i] = h.saleConns(id)
	}
	err := sale.ExecPipeline(ctx, h.rdb, func(pipe redis.Pipeliner) {
		for i, id := range ids {
			k := h.keys.Sale(id)
			users := make([]any, 0, len(connsBySale[i]))
			for _, c := range connsBySale[i] {
				if _, ok := c.waiting(); ok {
					users = append(users, c.user)
				}
			}
			for len(users) > 0 {
				n := min(len(users), presenceChunk)
				presenceScript.Run(ctx, pipe, []string{k.Seen}, users[:n]...)
				users = users[n:]
			}
			rankCmds[i] = pipe.Get(ctx, k.Ranks)
		}
	})
	if err != nil && err != redis.Nil && ctx.Err() == nil {
		h.cfg.Logger.Warn("hub: tick", "err", err)
	}
	now := time.Now()
	for i, id := range ids {
		tab, err := parseRankTable(rankCmds[i].Val())
		if err != nil {
			if errors.Is(rankCmds[i].Err(), redis.Nil) && len(connsBySale[i]) > 0 {
				// No table: no leader, or Redis lost the sale (even from the
				// set the admitters walk). Reading the sale writes its live
				// copy back if it is missing, so a leader comes and the
				// waiters here are put back, even if no request comes.
				_, _ = h.store.Get(ctx, id)
			}
			continue
		}
		h.mu.Lock()
		tr := h.sales[id]
		var eta func(pos int64) *int64
		lost := ""
		if tr != nil {
			if tr.gen == "" {
				tr.gen = tab.gen
			} else if tab.gen != tr.gen {
				lost = tr.gen
				tr.advance = nil // the head's counters started again with the keys
			}
			keepEventState(tr, tab, now)
			tr.table = tab
			tr.advance = addSample(tr.advance, now, tab.advance)
			eta = etaFunc(tr.advance, tab.state)
		}
		h.mu.Unlock()
		if lost != "" {
			h.requeue(ctx, id, lost, tab.gen, connsBySale[i])
		}
		// A table made before every node put its waiters back would show
		// them positions too low, and a position never goes back up.
		if eta == nil || len(connsBySale[i]) == 0 || lost != "" || tab.restoring {
			continue
		}
		s, err := h.store.Cached(ctx, id, time.Second)
		if err != nil {
			continue
		}
		h.pushPositions(s, tab, eta, connsBySale[i], now)
	}
}

// staleTable bounds how long a state event outranks the tables read after
// it: the leader publishes one every 250 ms, so by then they show it.
const staleTable = 2 * time.Second

// keepEventState keeps a state event's state over a table published before
// the event: the hub set the state of the table it held on the event (and
// sent the sockets the state frame), and a tick reading the table the
// leader published just before it would push positions that contradict
// that frame (a "paused" position after "open"). The caller holds h.mu.
func keepEventState(tr *saleTrack, tab *rankTable, now time.Time) {
	old := tr.table
	if old == nil || old.state == old.hdrState || tab.state != old.hdrState {
		tr.eventAhead = time.Time{} // no event ahead of the tables, or they caught up
		return
	}
	if tr.eventAhead.IsZero() {
		tr.eventAhead = now
	}
	if now.Sub(tr.eventAhead) < staleTable {
		tab.state = old.state // hdrState stays the table's: still ahead
	}
}
