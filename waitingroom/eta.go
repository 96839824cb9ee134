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
// (admitted + skipped per second); nil while paused or not yet measurable.
// The advance is measured over the last minute, from where the head last
// started moving (an idle stretch before admission started or resumed is
// not its rate), or over the last recentWindow when that differs from the
// minute's by more than half (the operator changed the rate: the minute
// would lag for a minute).
func etaFunc(samples []advSample, state string) func(int64) *int64 {
	none := func(int64) *int64 { return nil }
	if state == string(sale.Paused) || len(samples) < 2 {
		return none
	}
	for len(samples) > 2 && samples[1].adv == samples[0].adv {
		samples = samples[1:]
	}
	rate, ok := advanceRate(samples)
	if !ok {
		return none
	}
	last := samples[len(samples)-1]
	i := len(samples) - 1
	for i > 0 && last.at.Sub(samples[i-1].at) <= recentWindow {
		i--
	}
	if recent, ok := advanceRate(samples[i:]); ok && (recent > 1.5*rate || recent < rate/1.5) {
		rate = recent
	}
	return func(pos int64) *int64 {
		v := int64(math.Ceil(float64(pos) / rate))
		return &v
	}
}

// recentWindow is the span etaFunc compares the minute's advance with.
const recentWindow = 10 * time.Second

// advanceRate is the head's advance per second between the first and the
// last sample, when they are at least 2 s apart and the head moved.
func advanceRate(samples []advSample) (float64, bool) {
	if len(samples) < 2 {
		return 0, false
	}
	first, last := samples[0], samples[len(samples)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt < 2 || last.adv <= first.adv {
		return 0, false
	}
	return float64(last.adv-first.adv) / dt, true
}
