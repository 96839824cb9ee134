package waitingroom

import (
	"math"
	"time"

	"github.com/flashsale/flashsale/sale"
)

// advSample is the head's advance counter (admitted + skipped) as a tick
// read it from the rank table.
type advSample struct {
	at  time.Time
	adv int64
}

// addSample records the head's advance counter at now, keeping the last
// minute of samples (and at least one) for etaFunc.
func addSample(samples []advSample, now time.Time, adv int64) []advSample {
	samples = append(samples, advSample{at: now, adv: adv})
	for len(samples) > 1 && now.Sub(samples[0].at) > time.Minute {
		samples = samples[1:]
	}
	return samples
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
