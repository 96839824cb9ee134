// Package timeline keeps each live sale's history as a time series in Redis:
// one sample per second of what the operator's summary shows (queue length,
// admitted, active tickets, sold, held, remaining, skipped, consistency) and
// the admission rate, written by the admitter-role nodes (Sampler) and read
// by the console's charts and the sale's report (Handler).
//
// Bounds, per sale: one sample a second for the last FineWindow (default 2
// h), one a minute (the first sample of each) for up to CoarseCap samples
// (default 7 days' worth), and up to MarksCap marks (changes of the
// admission rate or the state). The keys expire Retention (default 7 days)
// after the last sample, so a sale's history outlives its end for the
// report and then goes by itself.
package timeline

import (
	_ "embed"
	"strconv"
	"strings"
	"time"

	"github.com/flashsale/flashsale/sale"
)

var (
	//go:embed claim.lua
	claimLua string
	//go:embed write.lua
	writeLua string

	claimScript = sale.NewScript(claimLua)
	writeScript = sale.NewScript(writeLua)
)

// Defaults of Config.
const (
	DefaultFineWindow = 2 * time.Hour
	DefaultCoarseStep = time.Minute
	DefaultCoarseCap  = 7 * 24 * 60
	DefaultMarksCap   = 1000
	DefaultRetention  = 7 * 24 * time.Hour
)

// Config bounds the series. Zero values mean the defaults.
type Config struct {
	// FineWindow is how long per-second samples are kept; default 2 h.
	FineWindow time.Duration
	// CoarseStep is the coarse series' resolution; default 1 min.
	CoarseStep time.Duration
	// CoarseCap bounds the coarse series' samples; default 10080 (7 days of minutes).
	CoarseCap int
	// MarksCap bounds the marks (rate and state changes) kept; default 1000.
	MarksCap int
	// Retention is how long a timeline outlives its last sample; default 7 days.
	Retention time.Duration
}

func (c Config) withDefaults() Config {
	if c.FineWindow < time.Second {
		c.FineWindow = DefaultFineWindow
	}
	if c.CoarseStep < time.Second {
		c.CoarseStep = DefaultCoarseStep
	}
	if c.CoarseCap <= 0 {
		c.CoarseCap = DefaultCoarseCap
	}
	if c.MarksCap <= 0 {
		c.MarksCap = DefaultMarksCap
	}
	if c.Retention < time.Second {
		c.Retention = DefaultRetention
	}
	return c
}

// Keys are one sale's timeline keys. They share the sale's hash tag, so
// one script may touch them all (Redis Cluster keeps them on the sale's slot).
type Keys struct {
	Meta   string // hash: last claimed second, last written second, rate, state, coarse slot
	Fine   string // zset: per-second sample records by second
	Coarse string // zset: per-minute sample records by second
	Marks  string // zset: "second|field|from|to" by second
}

// All lists the keys.
func (k Keys) All() []string { return []string{k.Meta, k.Fine, k.Coarse, k.Marks} }

// KeysOf returns the timeline keys of a sale: beside its other keys
// ("fs:{sale}:tl:..."), derived from the sale's own key builder so the
// prefix and hash tag are the same.
func KeysOf(k sale.Keys) Keys {
	base := strings.TrimSuffix(k.Cfg, "cfg") + "tl:"
	return Keys{Meta: base + "meta", Fine: base + "s", Coarse: base + "m", Marks: base + "marks"}
}

// Sample is one second of a sale: the summary's numbers (sale.Summary) and
// the admission rate then.
type Sample struct {
	T                   int64      `json:"t"` // Unix seconds, Redis's clock
	State               sale.State `json:"state"`
	QueueLength         int64      `json:"queue_length"`
	AdmittedTotal       int64      `json:"admitted_total"`
	Active              int64      `json:"active"`
	Sold                int64      `json:"sold"`
	Held                int64      `json:"held"`
	Remaining           int64      `json:"remaining"`
	SkippedTotal        int64      `json:"skipped_total"`
	TicketsExpiredTotal int64      `json:"tickets_expired_total"`
	OrdersTotal         int64      `json:"orders_total"`
	Consistent          bool       `json:"consistent"`
	AdmissionRate       float64    `json:"admission_rate"`
}

// FromSummary is the sample of second t from a summary and the rate.
func FromSummary(t int64, s *sale.Summary, rate float64) Sample {
	return Sample{T: t, State: s.State, QueueLength: s.QueueLength, AdmittedTotal: s.AdmittedTotal,
		Active: s.Active, Sold: s.Sold, Held: s.Held, Remaining: s.Remaining, SkippedTotal: s.SkippedTotal,
		TicketsExpiredTotal: s.TicketsExpiredTotal, OrdersTotal: s.OrdersTotal, Consistent: s.Consistent,
		AdmissionRate: rate}
}

// encode is the record kept in Redis: the fields in order, "|"-separated
// (about 60 bytes; every part is a number or a state name of ours).
func (s Sample) encode() string {
	b := make([]byte, 0, 80)
	b = strconv.AppendInt(b, s.T, 10)
	b = append(b, '|')
	b = append(b, s.State...)
	for _, n := range []int64{s.QueueLength, s.AdmittedTotal, s.Active, s.Sold, s.Held, s.Remaining,
		s.SkippedTotal, s.TicketsExpiredTotal, s.OrdersTotal} {
		b = append(b, '|')
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, '|')
	if s.Consistent {
		b = append(b, '1')
	} else {
		b = append(b, '0')
	}
	b = append(b, '|')
	b = append(b, formatRate(s.AdmissionRate)...)
	return string(b)
}

const sampleParts = 13

// decodeSample reads a record encode wrote; ok is false for anything else.
func decodeSample(rec string) (Sample, bool) {
	p := strings.Split(rec, "|")
	if len(p) != sampleParts {
		return Sample{}, false
	}
	var n [10]int64
	for i, j := range []int{0, 2, 3, 4, 5, 6, 7, 8, 9, 10} {
		v, err := strconv.ParseInt(p[j], 10, 64)
		if err != nil {
			return Sample{}, false
		}
		n[i] = v
	}
	rate, err := strconv.ParseFloat(p[12], 64)
	if err != nil || (p[11] != "0" && p[11] != "1") {
		return Sample{}, false
	}
	return Sample{T: n[0], State: sale.State(p[1]), QueueLength: n[1], AdmittedTotal: n[2], Active: n[3],
		Sold: n[4], Held: n[5], Remaining: n[6], SkippedTotal: n[7], TicketsExpiredTotal: n[8],
		OrdersTotal: n[9], Consistent: p[11] == "1", AdmissionRate: rate}, true
}

// formatRate writes a rate the same way every time, so that the script's
// string comparison sees a change only when the number changed.
func formatRate(r float64) string { return strconv.FormatFloat(r, 'g', -1, 64) }

// Mark is a change of the admission rate or the state, at the first
// sample that saw it.
type Mark struct {
	T     int64  `json:"t"`
	Field string `json:"field"` // "admission_rate" or "state"
	From  any    `json:"from"`  // a number for the rate, a state name for the state
	To    any    `json:"to"`
}

func decodeMark(rec string) (Mark, bool) {
	p := strings.Split(rec, "|")
	if len(p) != 4 {
		return Mark{}, false
	}
	t, err := strconv.ParseInt(p[0], 10, 64)
	if err != nil {
		return Mark{}, false
	}
	m := Mark{T: t, Field: p[1], From: p[2], To: p[3]}
	switch p[1] {
	case "admission_rate":
		from, err1 := strconv.ParseFloat(p[2], 64)
		to, err2 := strconv.ParseFloat(p[3], 64)
		if err1 != nil || err2 != nil {
			return Mark{}, false
		}
		m.From, m.To = from, to
	case "state":
	default:
		return Mark{}, false
	}
	return m, true
}
