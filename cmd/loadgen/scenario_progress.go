package main

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// sample is the run's state at one second: counters since the start, the
// second's latency percentiles, and the sale's summary as the server saw it.
type sample struct {
	t                                           float64 // seconds since the start
	done, joins, checkouts, admittedSeen, socks int64
	queue, active, admittedTotal                float64 // NaN: the summary did not answer
	joinP50, joinP99, coP50, coP99              time.Duration
}

// progressWindow is how many seconds the live line's rates and
// percentiles cover: one second is too jumpy to read.
const progressWindow = 5

// sampler takes a sample each second, until stop, and prints the live
// line: redrawn in place on a terminal, else one line each progressEvery.
func (s *scenario) sampler(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var ring [progressWindow][2]latHist
	lastPrint := 0.0
	for n := 0; ; n++ {
		final := false
		select {
		case <-stop:
			final = true
		case <-tick.C:
		}
		j, c := s.joinLat.takeWindow(), s.checkoutLat.takeWindow()
		ring[n%progressWindow] = [2]latHist{j, c}
		s.samples = append(s.samples, s.takeSample(j, c))
		var jw, cw latHist
		for _, h := range ring {
			jw.merge(&h[0])
			cw.merge(&h[1])
		}
		line := s.progressLine(&jw, &cw)
		t := s.samples[len(s.samples)-1].t
		switch {
		case s.c.tty:
			fmt.Fprintf(s.c.out2, "\r%s\x1b[K", line)
			if final {
				fmt.Fprintln(s.c.out2)
			}
		case final || t-lastPrint >= s.c.progressEvery.Seconds()-0.5:
			fmt.Fprintln(s.c.out2, line)
			lastPrint = t
		}
		if final {
			return
		}
	}
}

func (s *scenario) takeSample(j, c latHist) sample {
	sm := sample{t: time.Since(s.start).Seconds(), joins: s.joins.Load(), checkouts: s.checkouts.Load(),
		admittedSeen: s.admitted.Load(), socks: s.wsOpen.Load(),
		joinP50: j.quantile(.5), joinP99: j.quantile(.99), coP50: c.quantile(.5), coP99: c.quantile(.99),
		queue: math.NaN(), active: math.NaN(), admittedTotal: math.NaN()}
	for i := range s.outcomes {
		sm.done += s.outcomes[i].Load()
	}
	// The summary's own reads take a few ms; a slow one costs this sample
	// its queue figures, never the next second's sample.
	ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
	defer cancel()
	var sum saleSummary
	if err := s.admin(ctx, "GET", s.summaryPath(), nil, &sum); err == nil {
		sm.queue, sm.active, sm.admittedTotal = float64(sum.QueueLength), float64(sum.Active), float64(sum.AdmittedTotal)
	}
	return sm
}

// progressLine is the live line: done/total, rates and latency
// percentiles over the last few seconds, errors by status so far, open
// sockets and the queue.
func (s *scenario) progressLine(jw, cw *latHist) string {
	last := s.samples[len(s.samples)-1]
	prev := sample{}
	if k := len(s.samples) - 1 - progressWindow; k >= 0 {
		prev = s.samples[k]
	}
	dt := math.Max(last.t-prev.t, 0.001)
	queue := "?"
	if !math.IsNaN(last.queue) {
		queue = strconv.FormatFloat(last.queue, 'f', 0, 64)
	}
	line := fmt.Sprintf("%5.0fs  %d/%d done · joins %.0f/s p50 %s p99 %s · checkouts %.0f/s p50 %s p99 %s · sockets %d · queue %s · errors %s",
		last.t, last.done, s.c.shoppers,
		float64(last.joins-prev.joins)/dt, fmtDur(jw.quantile(.5)), fmtDur(jw.quantile(.99)),
		float64(last.checkouts-prev.checkouts)/dt, fmtDur(cw.quantile(.5)), fmtDur(cw.quantile(.99)),
		last.socks, queue, fmtStatuses(s.errs.counts(true)))
	// A line wider than the terminal wraps, and \r would then redraw only
	// its last row: cut it to the width.
	if s.c.width > 1 {
		if r := []rune(line); len(r) >= s.c.width {
			line = string(r[:s.c.width-1])
		}
	}
	return line
}
