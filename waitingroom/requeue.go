package waitingroom

import (
	"context"
	"fmt"
	"strconv"
)

// requeue puts back the waiters this node holds in a sale whose keys Redis
// lost (the generation changed from lost to gen), at the places it knows,
// in one script call per thousand sockets. Until it succeeds the node keeps
// the old generation, so the next tick tries again. This is step 3 of the
// recovery after a Redis loss that doc.go tells in order.
func (h *Hub) requeue(ctx context.Context, saleID, lost, gen string, conns []*Conn) {
	var waiting []*Conn
	var args []any
	for _, c := range conns {
		if place, ok := c.waiting(); ok && place > 0 {
			waiting = append(waiting, c)
			args = append(args, opRequeue, c.user, strconv.FormatFloat(place, 'f', 0, 64)+"|"+lost)
		}
	}
	keys := queueKeys(h.keys.Sale(saleID))
	back := 0
	for len(waiting) > 0 {
		n := min(len(waiting), presenceChunk)
		states, err := parseJoinReply(joinScript.Run(ctx, h.rdb, keys, args[:3*n]...))
		if err == nil && len(states) != n {
			err = fmt.Errorf("join script: %d replies for %d users", len(states), n)
		}
		if err != nil {
			if ctx.Err() == nil {
				h.cfg.Logger.Warn("hub: put back waiters after a Redis loss", "sale", saleID, "err", err)
			}
			return
		}
		for j, st := range states {
			if st.Kind == KindWaiting || st.Kind == KindLane || st.Kind == KindPrequeue {
				back++
			}
			waiting[j].setState(st.Kind, st.Place)
		}
		waiting, args = waiting[n:], args[3*n:]
	}
	h.mu.Lock()
	if tr := h.sales[saleID]; tr != nil {
		tr.gen = gen
	}
	h.mu.Unlock()
	h.cfg.Logger.Warn("hub: Redis lost the sale's keys; put back the waiters this node holds",
		"sale", saleID, "waiters", back)
}
