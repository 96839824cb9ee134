package waitingroom

import (
	"math"
	"time"

	"github.com/flashsale/flashsale/sale"
)

type advSample struct {
	at  time.Time
	adv int64
}

// ETA returns the node's estimate for a position in a sale it follows.
func (h *Hub) ETA(saleID string, pos int64) *int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	t := h.sales[saleID]
	if t == nil || t.table == nil {
		return nil
	}
	return etaFunc(t.advance, t.table.state)(pos)
}

// etaFunc estimates seconds to the head: position ÷ the head's advance
// (admitted + skipped per second) over the last minute; nil while paused or
// not yet measurable.
func etaFunc(samples []advSample, state string) func(int64) *int64 {
	none := func(int64) *int64 { return nil }
	if state == string(sale.Paused) || len(samples) < 2 {
		return none
	}
	first, last := samples[0], samples[len(samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 2 || last.adv <= first.adv {
		return none
	}
	rate := float64(last.adv-first.adv) / dt
	return func(pos int64) *int64 {
		v := int64(math.Ceil(float64(pos) / rate))
		return &v
	}
}
