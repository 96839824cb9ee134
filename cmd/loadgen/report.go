package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// scenResult is a scenario run's outcome, for the report and for tests.
type scenResult struct {
	Sale, Dir          string
	Shoppers, Arrived  int64
	Outcomes           map[string]int64 // by outcomeNames
	Joins, Admitted    int64            // joins answered 200; shoppers told they were admitted
	Orders, Paid       int64            // checkouts answered 201; of them paid (at once or confirmed)
	SocketsOpened      int64
	SocketsPeak        int64
	SocketsCapped      int64 // WebSocket shoppers who polled because the cap was reached
	PositionFrames     int64
	SummaryRead        bool
	Sold, Held         int64 // what the sale's summary gained over the run
	Consistent, Agrees bool  // the summary's own check; the run's orders = the units the summary gained
	Elapsed            time.Duration
}

// finish reads the sale's summary, writes the charts and report.md, and
// prints where they are.
func (s *scenario) finish(ctx context.Context, elapsed time.Duration) (*scenResult, error) {
	r := &scenResult{Sale: s.sale, Dir: s.c.out, Shoppers: int64(s.c.shoppers), Arrived: s.arrived.Load(),
		Outcomes: map[string]int64{}, Joins: s.joins.Load(), Admitted: s.admitted.Load(),
		Orders: s.checkouts.Load(), Paid: s.paid.Load(), SocketsOpened: s.wsOpened.Load(),
		SocketsPeak: s.wsPeak.Load(), SocketsCapped: s.wsCapped.Load(), PositionFrames: s.posFrames.Load(), Elapsed: elapsed}
	for i := range nOutcomes {
		r.Outcomes[outcomeNames[i]] = s.outcomes[i].Load()
	}
	// Shoppers who never arrived before a stop count as unfinished.
	r.Outcomes[outcomeNames[outUnfinished]] += r.Shoppers - r.Arrived
	var end saleSummary
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	sumErr := s.admin(sctx, "GET", s.summaryPath(), nil, &end)
	if sumErr == nil {
		r.SummaryRead, r.Consistent = true, end.Consistent
		r.Sold, r.Held = end.Sold-s.base.Sold, end.Held-s.base.Held
		r.Agrees = r.Sold+r.Held == r.Orders && r.Sold == r.Paid
	}
	charts := s.charts()
	for _, ch := range charts {
		if err := os.WriteFile(filepath.Join(s.c.out, ch.file), ch.svg(), 0o644); err != nil {
			return r, fmt.Errorf("write the chart %s: %w", ch.file, err)
		}
	}
	md := s.reportMarkdown(r, &end, sumErr, charts)
	path := filepath.Join(s.c.out, "report.md")
	if err := os.WriteFile(path, md, 0o644); err != nil {
		return r, fmt.Errorf("write the report: %w", err)
	}
	w := s.c.out2
	fmt.Fprintf(w, "scenario %s: %d shoppers in %.1fs at sale %s: %d bought, %d left, %d turned away, %d failed, %d unfinished\n",
		s.c.runID, r.Shoppers, elapsed.Seconds(), s.sale, r.Outcomes[outcomeNames[outBought]],
		r.Outcomes[outcomeNames[outLeft]], r.Outcomes[outcomeNames[outTurnedAway]],
		r.Outcomes[outcomeNames[outFailed]], r.Outcomes[outcomeNames[outUnfinished]])
	if sumErr != nil {
		fmt.Fprintf(w, "  the sale's summary did not answer: %v\n", sumErr)
	} else {
		fmt.Fprintf(w, "  orders %d (paid %d); the summary gained sold %d, held %d; agree: %v; summary consistent: %v\n",
			r.Orders, r.Paid, r.Sold, r.Held, r.Agrees, r.Consistent)
	}
	fmt.Fprintf(w, "  report: %s\n", path)
	return r, nil
}

// namedChart is a chart and its file in the report's directory.
type namedChart struct {
	chart
	file string
}

// maxChartPoints bounds a chart's points: a day-long run is averaged into
// this many, so the files stay small.
const maxChartPoints = 600

func (s *scenario) charts() []namedChart {
	n := len(s.samples)
	xs := make([]float64, n)
	col := func(f func(i int, sm sample) float64) []float64 {
		ys := make([]float64, n)
		for i, sm := range s.samples {
			ys[i] = f(i, sm)
		}
		return ys
	}
	for i, sm := range s.samples {
		xs[i] = sm.t
	}
	// rate is a counter's increase per second; at the first sample, from
	// its value at the start.
	rate := func(get func(sample) float64, initial float64) []float64 {
		return col(func(i int, sm sample) float64 {
			prev, pt := initial, 0.0
			if i > 0 {
				prev, pt = get(s.samples[i-1]), s.samples[i-1].t
			}
			if dt := sm.t - pt; dt > 0 {
				return (get(sm) - prev) / dt // NaN when either summary is missing
			}
			return math.NaN()
		})
	}
	ms := func(d time.Duration) float64 {
		if d == 0 {
			return math.NaN() // none that second
		}
		return float64(d) / 1e6
	}
	base := float64(s.base.AdmittedTotal)
	out := []namedChart{
		{chart{title: "Queue length", yLabel: "shoppers", xs: xs, series: []chartSeries{
			{"waiting", "#1f77b4", col(func(_ int, sm sample) float64 { return sm.queue })},
			{"live tickets", "#ff7f0e", col(func(_ int, sm sample) float64 { return sm.active })},
		}}, "queue.svg"},
		{chart{title: "Admissions and orders per second", yLabel: "per second", unit: "/s", xs: xs, series: []chartSeries{
			{"admitted (summary)", "#2ca02c", rate(func(sm sample) float64 { return sm.admittedTotal }, base)},
			{"orders (shoppers)", "#9467bd", rate(func(sm sample) float64 { return float64(sm.checkouts) }, 0)},
		}}, "admissions.svg"},
		{chart{title: "Join latency", yLabel: "milliseconds", unit: " ms", xs: xs, series: []chartSeries{
			{"p50", "#1f77b4", col(func(_ int, sm sample) float64 { return ms(sm.joinP50) })},
			{"p99", "#d62728", col(func(_ int, sm sample) float64 { return ms(sm.joinP99) })},
		}}, "join-latency.svg"},
		{chart{title: "Checkout latency", yLabel: "milliseconds", unit: " ms", xs: xs, series: []chartSeries{
			{"p50", "#1f77b4", col(func(_ int, sm sample) float64 { return ms(sm.coP50) })},
			{"p99", "#d62728", col(func(_ int, sm sample) float64 { return ms(sm.coP99) })},
		}}, "checkout-latency.svg"},
		{chart{title: "Open WebSockets", yLabel: "sockets", xs: xs, series: []chartSeries{
			{"open sockets", "#17becf", col(func(_ int, sm sample) float64 { return float64(sm.socks) })},
		}}, "sockets.svg"},
	}
	for i := range out {
		out[i].chart = downsample(out[i].chart, maxChartPoints)
	}
	return out
}

// downsample averages runs of samples so a chart has at most max points
// (a NaN-only run stays a gap).
func downsample(c chart, maxPts int) chart {
	n := len(c.xs)
	if n <= maxPts {
		return c
	}
	k := (n + maxPts - 1) / maxPts
	avg := func(v []float64) float64 {
		sum, cnt := 0.0, 0
		for _, y := range v {
			if !math.IsNaN(y) {
				sum += y
				cnt++
			}
		}
		if cnt == 0 {
			return math.NaN()
		}
		return sum / float64(cnt)
	}
	out := c
	out.xs = nil
	out.series = make([]chartSeries, len(c.series))
	for i := 0; i < n; i += k {
		j := min(i+k, n)
		out.xs = append(out.xs, c.xs[j-1])
		for si, s := range c.series {
			out.series[si].name, out.series[si].color = s.name, s.color
			out.series[si].ys = append(out.series[si].ys, avg(s.ys[i:j]))
		}
	}
	return out
}

// secretFlags are left out of the report's command line.
var secretFlags = []string{"identity-secret", "admin-token"}

// redactArgs hides the values of secretFlags in a command line.
func redactArgs(args []string) []string {
	out := make([]string, 0, len(args))
	hideNext := false
	for _, a := range args {
		if hideNext {
			out = append(out, "REDACTED")
			hideNext = false
			continue
		}
		name, _, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		secret := strings.HasPrefix(a, "-")
		if secret {
			secret = false
			for _, f := range secretFlags {
				secret = secret || name == f
			}
		}
		switch {
		case secret && hasVal:
			out = append(out, a[:strings.Index(a, "=")+1]+"REDACTED")
		case secret:
			out = append(out, a)
			hideNext = true
		default:
			out = append(out, a)
		}
	}
	return out
}

// machineFacts reads what the report says about this machine from /proc.
func machineFacts() [][2]string {
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			return ""
		}
		return string(b)
	}
	field := func(text, key string) string {
		sc := bufio.NewScanner(strings.NewReader(text))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == key {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	cpu := read("/proc/cpuinfo")
	threads := strings.Count(cpu, "\nprocessor") + map[bool]int{true: 1}[strings.HasPrefix(cpu, "processor")]
	facts := [][2]string{
		{"CPU", fmt.Sprintf("%s, %d logical CPUs (/proc/cpuinfo); GOMAXPROCS %d", field(cpu, "model name"), threads, runtime.GOMAXPROCS(0))},
		{"Memory", field(read("/proc/meminfo"), "MemTotal") + " (/proc/meminfo MemTotal)"},
		{"Kernel", strings.TrimSpace(read("/proc/sys/kernel/osrelease"))},
		{"Go", runtime.Version()},
	}
	return facts
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// peakRSS is this process's peak resident set (VmHWM).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func (s *scenario) reportMarkdown(r *scenResult, end *saleSummary, sumErr error, charts []namedChart) []byte {
	c := s.c
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("# Load test %s\n\n", c.runID)
	how := "created by the run, closed after it"
	if !s.created {
		how = "given with --sale (other traffic at it would show in its summary too)"
	}
	p("Run of `loadgen scenario` on %s against %s, sale `%s` (%s). It took %.1f s.\n\n",
		s.start.UTC().Format(time.RFC3339), c.url, s.sale, how, r.Elapsed.Seconds())
	p("## Command\n\n```\nloadgen scenario %s\n```\n\n", strings.Join(redactArgs(c.args), " "))
	p("| setting | value |\n|---|---|\n")
	settings := [][2]string{
		{"shoppers", fmt.Sprint(c.shoppers)}, {"arriving over", c.arrive.String()},
		{"on a WebSocket", fmt.Sprintf("%.0f%% (the others poll at poll_after_seconds)", 100*c.wsShare)},
		{"buying when admitted", fmt.Sprintf("%.0f%% (the others let the ticket expire), within %s", 100*c.buyShare, c.think)},
		{"leaving early", fmt.Sprintf("%.0f%%, within %s of joining", 100*c.leaveShare, c.leaveWithin)},
		{"duration cap", c.duration.String()}, {"HTTP connections", fmt.Sprint(c.conns)},
		{"own address per shopper (X-Forwarded-For)", fmt.Sprint(c.xff)}, {"seed", fmt.Sprint(c.seed)},
	}
	if s.created {
		settings = append(settings,
			[2]string{"sale", fmt.Sprintf("stock %d, admission_rate %g/s, max_active %d, ticket_ttl_seconds %d, hold_ttl_seconds %d, per_user_limit 1",
				c.stock, c.rate, c.maxActive, c.ticketTTL, c.hold)})
	} else {
		settings = append(settings, [2]string{"sale", fmt.Sprintf("given: %s, hold_ttl_seconds %d", s.sale, s.hold)})
	}
	if s.hold > 0 {
		settings = append(settings, [2]string{"held orders", "confirmed by the run at once, with the admin token, as the payment backend would"})
	}
	for _, kv := range settings {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("\n## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range machineFacts() {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("| Load average (1, 5, 15 min) | at the end: %s |\n", loadAvg())
	p("| File limit (RLIMIT_NOFILE) | soft %d, hard %d: at most %d WebSockets open at once here |\n", s.fileSoft, s.fileHard, s.sockCap)
	p("| loadgen's peak RSS | %s |\n\n", peakRSS())
	p("The server, Redis and MariaDB ran on this machine too, sharing its CPUs with loadgen.\n\n")

	p("## Shoppers\n\n| | shoppers |\n|---|---:|\n| arrived | %d of %d |\n| joined | %d |\n| admitted | %d |\n",
		r.Arrived, r.Shoppers, r.Joins, r.Admitted)
	for i := range nOutcomes {
		p("| %s | %d |\n", outcomeNames[i], r.Outcomes[outcomeNames[i]])
	}
	p("\nWebSockets: %d opened, %d open at the peak; %d dropped (those shoppers polled on); %d shoppers polled because the cap was reached. "+
		"%d position frames", r.SocketsOpened, r.SocketsPeak, s.wsDropped.Load(), r.SocketsCapped, r.PositionFrames)
	s.gapMu.Lock()
	gap := s.posGap
	s.gapMu.Unlock()
	if gap.n > 0 {
		p(", one socket's next one after p50 %s, p99 %s, at most %s", fmtDur(gap.quantile(.5)), fmtDur(gap.quantile(.99)), fmtDur(gap.max))
	}
	p(".\n\n")
	el := math.Max(r.Elapsed.Seconds(), 0.001)
	p("Rates over the run: %.1f joins/s, %.1f orders/s.\n\n", float64(r.Joins)/el, float64(r.Orders)/el)

	p("## Latency\n\nEvery answer counts, refusals too (within 2%%).\n\n| call | answers | p50 | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n")
	for _, l := range []struct {
		name string
		h    latHist
	}{{"join", s.joinLat.snapshot()}, {"checkout", s.checkoutLat.snapshot()}} {
		p("| %s | %d | %s | %s | %s | %s |\n", l.name, l.h.n, fmtDur(l.h.quantile(.5)), fmtDur(l.h.quantile(.9)),
			fmtDur(l.h.quantile(.99)), fmtDur(l.h.max))
	}
	p("\n## Errors\n\n")
	errs := s.errs.counts(false)
	if len(errs) == 0 {
		p("None: every answer was a success.\n\n")
	} else {
		p("Non-2xx answers and failed calls (`conn`: no HTTP answer), by call, status and error code:\n\n| answer | count |\n|---|---:|\n")
		for _, e := range errs {
			p("| %s | %d |\n", e.label, e.n)
		}
		p("\n")
	}

	p("## The sale's summary\n\n")
	if sumErr != nil {
		p("The summary did not answer at the end: %s\n\n", sumErr)
	} else {
		verdict := "**yes**"
		if !r.Agrees {
			verdict = "**no**"
		}
		p("| | run | summary |\n|---|---:|---:|\n")
		p("| orders (checkouts answered 201) | %d | sold + held gained: %d |\n", r.Orders, r.Sold+r.Held)
		p("| paid | %d | sold gained: %d |\n", r.Paid, r.Sold)
		p("| admitted | %d told | admitted_total gained: %d |\n", r.Admitted, end.AdmittedTotal-s.base.AdmittedTotal)
		p("\nThe run's orders agree with the units the summary gained: %s. ", verdict)
		p("The summary's own check (Redis against MySQL: paid %d, held %d) says consistent: **%v**. ", end.MySQL.Paid, end.MySQL.Held, end.Consistent)
		p("At the end the sale was `%s`, %d of %d units sold, %d held, %d remaining, %d waiting, %d live tickets, %d tickets expired so far.\n\n",
			end.State, end.Sold, end.StockTotal, end.Held, end.Remaining, end.QueueLength, end.Active, end.TicketsExpiredTotal)
	}

	p("## Charts\n\nOne sample a second; latency percentiles are of that second's answers.\n\n")
	for _, ch := range charts {
		p("![%s](%s)\n\n%s.\n\n", ch.title, ch.file, ch.summary())
	}
	return b.Bytes()
}
