package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// latHist is a latency histogram in log-spaced buckets (each 2% wider than
// the one before, from 10 µs to about two minutes), so its memory is fixed
// however many requests a run makes and a percentile is within 2%.
type latHist struct {
	counts [histBuckets]int64
	n      int64
	max    time.Duration
}

const (
	histBuckets = 830
	histMin     = 10 * time.Microsecond
	histGrowth  = 1.02
)

var logGrowth = math.Log(histGrowth)

func histBucket(d time.Duration) int {
	if d <= histMin {
		return 0
	}
	b := int(math.Log(float64(d)/float64(histMin))/logGrowth) + 1
	return min(b, histBuckets-1)
}

// histUpper is the largest duration bucket b holds.
func histUpper(b int) time.Duration {
	return time.Duration(float64(histMin) * math.Pow(histGrowth, float64(b)))
}

func (h *latHist) add(d time.Duration) {
	h.counts[histBucket(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latHist) merge(o *latHist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the q-quantile (0..1), as its bucket's upper bound but never
// above the largest value seen; 0 when empty.
func (h *latHist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = max(rank, 1)
	var seen int64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			if b == histBuckets-1 {
				return h.max // the overflow bucket has no upper bound
			}
			return min(histUpper(b), h.max)
		}
	}
	return h.max
}

// latencies are a run's join or checkout latencies: the whole run's and
// the current second's (the sampler takes that one each second).
type latencies struct {
	mu         sync.Mutex
	total, win latHist
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total.add(d)
	l.win.add(d)
}

// takeWindow answers the second's histogram and starts the next.
func (l *latencies) takeWindow() latHist {
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win
	l.win = latHist{}
	return w
}

func (l *latencies) snapshot() latHist {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// statusTally counts refusals and failures by a label such as
// "join 429 rate_limited" and, for the live line, by status alone. Labels
// come from the server's answers, so the map is capped: past maxLabels new
// labels count as "other".
type statusTally struct {
	mu       sync.Mutex
	byLabel  map[string]int64
	byStatus map[string]int64
}

const maxLabels = 200

func (t *statusTally) add(call string, status int, code string, err error) {
	st := fmt.Sprint(status)
	if err != nil {
		st = "conn"
	}
	lbl := call + " " + st
	if code != "" {
		lbl += " " + code
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byLabel == nil {
		t.byLabel, t.byStatus = map[string]int64{}, map[string]int64{}
	}
	if _, ok := t.byLabel[lbl]; !ok && len(t.byLabel) >= maxLabels {
		lbl = "other"
	}
	t.byLabel[lbl]++
	if _, ok := t.byStatus[st]; ok || len(t.byStatus) < maxLabels {
		t.byStatus[st]++
	}
}

// counts answers a sorted copy of the labels or statuses and their counts.
func (t *statusTally) counts(byStatus bool) []labelCount {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.byLabel
	if byStatus {
		m = t.byStatus
	}
	out := make([]labelCount, 0, len(m))
	for k, v := range m {
		out = append(out, labelCount{k, v})
	}
	slices.SortFunc(out, func(a, b labelCount) int { return strings.Compare(a.label, b.label) })
	return out
}

type labelCount struct {
	label string
	n     int64
}

// fmtStatuses is "429:12 503:1", or "none".
func fmtStatuses(cs []labelCount) string {
	if len(cs) == 0 {
		return "none"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s:%d", c.label, c.n)
	}
	return strings.Join(parts, " ")
}

// fmtDur rounds a latency for a human: 3 significant figures at most.
func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}
