package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// soakTolerance is how much the end may exceed the warm-up sample, as a
// share of it (--goroutine-tolerance, --heap-tolerance).
type soakTolerance struct {
	goroutines, heap float64
}

// The verdict's allowances besides the shares, and why each:
const (
	// goroutineSlack: a node of a hundred goroutines has a few that come
	// and go with the moment (a writer flushing a frame burst, a webhook
	// delivery, a connection being accepted); 10% of a small count is
	// less than that noise.
	goroutineSlack = 10
	// goroutinesPerConn: a connection more at the end may hold one
	// goroutine more (an HTTP connection's server goroutine, a MySQL
	// connection's watcher, a socket read by a goroutine of its own where
	// the node cannot poll it); polled idle sockets hold none.
	goroutinesPerConn = 1
	// heapSlack: the live heap of a quiet node still moves by a few
	// hundred KiB (buffers pooled by sync.Pool survive one GC, the
	// Prometheus registry's scrape); a MiB keeps a small heap's 25% from
	// judging that noise.
	heapSlack = 1 << 20
	// heapPerClient: a client connection more at the end may hold its
	// buffers: an HTTP connection's are 8 KiB (4 KiB read, 4 KiB write),
	// a socket's about 5 KiB (docs/BENCHMARKS.md, 19,000 WebSockets).
	heapPerClient = 16 << 10
	// judgeWindow: the warm-up and the end are each the median of this
	// many samples (the first and the last of the load), so one sample
	// caught in a busy moment does not decide the verdict.
	judgeWindow = 3
)

// soakCheck is one figure's judgement.
type soakCheck struct {
	What               string
	Warm, End, Allowed int64   // medians of the first and last samples of the load
	PerMinute          float64 // least-squares slope over the load's samples
	OK                 bool
}

// soakVerdict is the run's: OK when every check is.
type soakVerdict struct {
	OK     bool
	Reason string // why there is no verdict, when there is none
	Checks []soakCheck
	// Clients and Stores are the client and store connections more at the
	// end than at the warm-up (Stores -1 when not told apart), By how they
	// were counted.
	Clients, Stores int64
	By              string
}

// judgeHeap is the heap a soak judges: the live heap less what the heap
// profile puts on store connections (see storeFrames).
func judgeHeap(s soakSample) int64 {
	if s.HeapLive < 0 || s.StoreHeap < 0 {
		return -1
	}
	return s.HeapLive - s.StoreHeap
}

// judgeSoak compares the end of the load with its warm-up (each the median
// of judgeWindow samples): goroutines within tol.goroutines + 10, plus one
// for each connection more; the live heap less the store connections'
// buffers within tol.heap + 1 MiB, plus 16 KiB for each client connection
// more. Connections are told apart by /proc (--pid); else open
// descriptors, or sockets, count as client connections.
func judgeSoak(samples []soakSample, tol soakTolerance) soakVerdict {
	var load []soakSample
	warmSeen, endSeen := false, false
	for _, s := range samples {
		switch s.Phase {
		case "warm-up":
			warmSeen = true
		case "end":
			endSeen = true
		}
		if warmSeen && (s.Phase == "warm-up" || s.Phase == "load" || s.Phase == "end") {
			load = append(load, s)
		}
	}
	if !warmSeen || !endSeen {
		return soakVerdict{Reason: "no verdict: the run stopped before it had a warm-up sample and an end sample to compare"}
	}
	n := min(judgeWindow, len(load))
	first, last := load[:n], load[len(load)-n:]
	// median of a figure over a window; -1 when a sample did not read it
	median := func(ss []soakSample, get func(soakSample) int64) int64 {
		vs := make([]int64, 0, len(ss))
		for _, s := range ss {
			if v := get(s); v >= 0 {
				vs = append(vs, v)
			}
		}
		if len(vs) < len(ss) {
			return -1
		}
		slices.Sort(vs)
		return vs[(len(vs)-1)/2]
	}
	more := func(get func(soakSample) int64) int64 {
		w, e := median(first, get), median(last, get)
		if w < 0 || e < 0 {
			return -1
		}
		return max(0, e-w)
	}
	v := soakVerdict{OK: true, Stores: -1}
	if in, out := more(func(s soakSample) int64 { return s.In }), more(func(s soakSample) int64 { return s.Out }); in >= 0 && out >= 0 {
		v.Clients, v.Stores = in, out
		v.By = fmt.Sprintf("%d client and %d store connections more at the end (/proc/PID/net/tcp)", in, out)
	} else if fds := more(func(s soakSample) int64 { return s.FDs }); fds >= 0 {
		v.Clients = fds
		v.By = fmt.Sprintf("%d open descriptors more at the end (without --pid not told apart: each counted as a client connection)", fds)
	} else if socks := more(func(s soakSample) int64 { return s.NodeSockets }); socks >= 0 {
		v.Clients = socks
		v.By = fmt.Sprintf("%d sockets more on the node at the end", socks)
	} else {
		v.Clients = more(func(s soakSample) int64 { return s.Sockets })
		v.By = fmt.Sprintf("%d sockets of the run's more at the end", v.Clients)
	}
	add := func(what string, share float64, slack, extra int64, get func(soakSample) int64) {
		w, e := median(first, get), median(last, get)
		c := soakCheck{What: what, Warm: w, End: e, Allowed: int64(float64(w)*(1+share)) + slack + extra,
			PerMinute: slopePerMinute(load, get)}
		c.OK = w >= 0 && e >= 0 && e <= c.Allowed
		v.OK = v.OK && c.OK
		v.Checks = append(v.Checks, c)
	}
	add("goroutines", tol.goroutines, goroutineSlack, goroutinesPerConn*(v.Clients+max(v.Stores, 0)),
		func(s soakSample) int64 { return s.Goroutines })
	add("live heap less store connections", tol.heap, heapSlack, heapPerClient*v.Clients, judgeHeap)
	return v
}

// slopePerMinute is the least-squares slope of a figure over the samples,
// per minute (NaN with fewer than 3 samples or an unread figure).
func slopePerMinute(ss []soakSample, get func(soakSample) int64) float64 {
	if len(ss) < 3 {
		return math.NaN()
	}
	var n, sx, sy, sxx, sxy float64
	for _, s := range ss {
		y := get(s)
		if y < 0 {
			return math.NaN()
		}
		x := s.T / 60
		n++
		sx += x
		sy += float64(y)
		sxx += x * x
		sxy += x * float64(y)
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return math.NaN()
	}
	return (n*sxy - sx*sy) / d
}

// soakResult is a soak run's outcome, for the report and for tests.
type soakResult struct {
	Dir, Sale                           string
	Samples                             []soakSample
	Verdict                             soakVerdict
	Arrived, Dropped, Joins, Admitted   int64
	Orders, Paid                        int64
	SocketsOpened, SocketsPeak, Churned int64
	Abrupt, Reloads, Polling            int64
	RatePatches, PositionFrames         int64
	Outcomes                            map[string]int64
	SummaryRead, Consistent, Agrees     bool
	HeapDiff                            string // go tool pprof's output ("" when it did not run)
	GoroutineGrowth                     []labelCount
	Interrupted                         bool
	Elapsed                             time.Duration
}

// finish judges the run, diffs the profiles, writes the charts and
// report.md, and prints the verdict.
func (k *soak) finish(ctx context.Context, elapsed time.Duration, interrupted bool) (*soakResult, error) {
	s, c := k.sc, k.c
	r := &soakResult{Dir: c.out, Sale: s.sale, Samples: k.samples, Verdict: judgeSoak(k.samples, c.tol),
		Arrived: s.arrived.Load(), Dropped: k.dropped.Load(), Joins: s.joins.Load(), Admitted: s.admitted.Load(),
		Orders: s.checkouts.Load(), Paid: s.paid.Load(), SocketsOpened: s.wsOpened.Load(), SocketsPeak: s.wsPeak.Load(),
		Churned: k.churned.Load(), Abrupt: k.abrupt.Load(), Reloads: k.reloads.Load(), Polling: k.polling.Load(),
		RatePatches: k.ratePatches.Load(), PositionFrames: s.posFrames.Load(), Outcomes: map[string]int64{},
		Interrupted: interrupted, Elapsed: elapsed}
	for i := range nOutcomes {
		r.Outcomes[outcomeNames[i]] = s.outcomes[i].Load()
	}
	var end saleSummary
	if err := s.admin(ctx, "GET", s.summaryPath(), nil, &end); err == nil {
		r.SummaryRead, r.Consistent = true, end.Consistent
		sold, held := end.Sold-s.base.Sold, end.Held-s.base.Held
		r.Agrees = sold+held == r.Orders && sold == r.Paid
	}
	start, stop := filepath.Join(c.out, "heap-start.pb.gz"), filepath.Join(c.out, "heap-end.pb.gz")
	diffNote := k.heapDiff(ctx, start, stop, r)
	r.GoroutineGrowth = goroutineGrowth(filepath.Join(c.out, "goroutines-start.txt"), filepath.Join(c.out, "goroutines-end.txt"))
	charts := k.charts()
	for _, ch := range charts {
		if err := os.WriteFile(filepath.Join(c.out, ch.file), ch.svg(), 0o644); err != nil {
			return r, fmt.Errorf("write the chart %s: %w", ch.file, err)
		}
	}
	path := filepath.Join(c.out, "report.md")
	if err := os.WriteFile(path, k.reportMarkdown(r, &end, diffNote, charts), 0o644); err != nil {
		return r, fmt.Errorf("write the report: %w", err)
	}
	w := c.out2
	fmt.Fprintf(w, "soak %s: %.0fs at sale %s: %d joins, %d orders, %d sockets opened (%d churned), %d dropped arrivals\n",
		c.runID, elapsed.Seconds(), s.sale, r.Joins, r.Orders, r.SocketsOpened, r.Churned, r.Dropped)
	fmt.Fprintf(w, "  verdict: %s\n", verdictWord(r.Verdict))
	for _, ch := range r.Verdict.Checks {
		fmt.Fprintf(w, "  %s: warm-up %d, end %d, allowed %d (%s)\n", ch.What, ch.Warm, ch.End, ch.Allowed, okWord(ch.OK))
	}
	fmt.Fprintf(w, "  report: %s\n", path)
	return r, nil
}

func verdictWord(v soakVerdict) string {
	switch {
	case v.Reason != "":
		return v.Reason
	case v.OK:
		return "flat (within the tolerance)"
	}
	return "GREW past the tolerance"
}

func okWord(ok bool) string {
	if ok {
		return "within"
	}
	return "PAST the allowance"
}

// heapDiff runs `go tool pprof -top -diff_base start end` (in-use bytes)
// when go is on PATH and both profiles were saved; its output goes to
// heap-diff.txt and into the result. It answers a note for the report.
func (k *soak) heapDiff(ctx context.Context, start, end string, r *soakResult) string {
	for _, f := range []string{start, end} {
		if _, err := os.Stat(f); err != nil {
			return "No heap diff: " + filepath.Base(f) + " was not saved (the run stopped before it, or the debug listener did not answer)."
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "No heap diff: `go` is not on PATH. Run `go tool pprof -top -sample_index=inuse_space -diff_base heap-start.pb.gz heap-end.pb.gz` where it is."
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(dctx, goBin, "tool", "pprof", "-top", "-sample_index=inuse_space", "-diff_base", start, end)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return fmt.Sprintf("No heap diff: go tool pprof failed: %v %s", err, strings.TrimSpace(errb.String()))
	}
	r.HeapDiff = out.String()
	if err := os.WriteFile(filepath.Join(k.c.out, "heap-diff.txt"), out.Bytes(), 0o644); err != nil {
		return "The heap diff could not be saved: " + err.Error()
	}
	return ""
}

// goroutineGrowth compares two goroutine profiles (debug=1: a count per
// stack) and answers the stacks whose count grew most, each named by its
// first two functions outside the runtime, at most 10. Nil when either
// file is missing.
func goroutineGrowth(startFile, endFile string) []labelCount {
	a, errA := goroutineGroups(startFile)
	b, errB := goroutineGroups(endFile)
	if errA != nil || errB != nil {
		return nil
	}
	var out []labelCount
	for k, n := range b {
		if d := n - a[k]; d > 0 {
			out = append(out, labelCount{k, d})
		}
	}
	slices.SortFunc(out, func(x, y labelCount) int {
		if x.n != y.n {
			return int(y.n - x.n)
		}
		return strings.Compare(x.label, y.label)
	})
	return out[:min(len(out), 10)]
}

// goroutineGroups reads a debug=1 goroutine profile: "N @ 0x..." opens a
// stack of N goroutines, "#\t0x...\tfunc+0x..\tfile:line" are its frames.
func goroutineGroups(file string) (map[string]int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	groups := map[string]int64{}
	var n int64
	var names []string
	flush := func() {
		if n > 0 {
			key := strings.Join(names, " ← ")
			if key == "" {
				key = "(runtime only)"
			}
			groups[key] += n
		}
		n, names = 0, nil
	}
	sc := bufio.NewScanner(io.LimitReader(f, 1<<30))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if cnt, _, ok := strings.Cut(line, " @ "); ok && !strings.HasPrefix(line, "#") {
			flush()
			fmt.Sscan(cnt, &n)
			continue
		}
		fields := strings.Fields(line)
		if len(fields) >= 3 && fields[0] == "#" && len(names) < 2 {
			fn := fields[2]
			if i := strings.LastIndex(fn, "+0x"); i > 0 {
				fn = fn[:i]
			}
			if !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "internal/") {
				names = append(names, fn)
			}
		}
	}
	flush()
	return groups, sc.Err()
}

// charts are the node's figures over the run: goroutines (with its
// sockets and descriptors) and memory.
func (k *soak) charts() []namedChart {
	xs := make([]float64, len(k.samples))
	col := func(f func(soakSample) float64) []float64 {
		ys := make([]float64, len(k.samples))
		for i, s := range k.samples {
			ys[i] = f(s)
		}
		return ys
	}
	for i, s := range k.samples {
		xs[i] = s.T
	}
	orNaN := func(v int64, scale float64) float64 {
		if v < 0 {
			return math.NaN()
		}
		return float64(v) / scale
	}
	return []namedChart{
		{chart{title: "Node goroutines, sockets and open files", yLabel: "count", xs: xs, series: []chartSeries{
			{"goroutines", "#1f77b4", col(func(s soakSample) float64 { return float64(s.Goroutines) })},
			{"WebSockets (node)", "#17becf", col(func(s soakSample) float64 { return orNaN(s.NodeSockets, 1) })},
			{"open files", "#7f7f7f", col(func(s soakSample) float64 { return orNaN(s.FDs, 1) })},
		}}, "soak-goroutines.svg"},
		{chart{title: "Node memory", yLabel: "MiB", unit: " MiB", xs: xs, series: []chartSeries{
			{"live heap after GC", "#d62728", col(func(s soakSample) float64 { return orNaN(s.HeapLive, mib) })},
			{"of it, not store connections' (judged)", "#2ca02c", col(func(s soakSample) float64 { return orNaN(judgeHeap(s), mib) })},
			{"heap in use", "#ff7f0e", col(func(s soakSample) float64 { return orNaN(s.HeapInuse, mib) })},
			{"RSS", "#9467bd", col(func(s soakSample) float64 { return orNaN(s.RSS, mib) })},
		}}, "soak-memory.svg"},
	}
}

func (k *soak) reportMarkdown(r *soakResult, end *saleSummary, diffNote string, charts []namedChart) []byte {
	c := k.c
	var b bytes.Buffer
	p := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	p("# Soak %s\n\n", c.runID)
	p("Run of `loadgen soak` on %s against %s (debug listener %s), sale `%s` (created by the run, closed after it). The load ran %.0f s",
		k.start.UTC().Format(time.RFC3339), c.url, c.debugURL, r.Sale, r.Elapsed.Seconds())
	if r.Interrupted {
		p(" (**interrupted** before --d: the end sample is of a load being stopped)")
	}
	p(".\n\n## Command\n\n```\nloadgen soak %s\n```\n\n", strings.Join(redactArgs(c.args), " "))
	p("| setting | value |\n|---|---|\n")
	for _, kv := range [][2]string{
		{"arrivals", fmt.Sprintf("%g new shoppers a second (new users), at most %d in flight (an arrival past it is dropped)", c.joinRate, c.maxShoppers)},
		{"queue", fmt.Sprintf("held near %d waiters by the sale's admission_rate (PATCHed every 5 s when it must change by more than 5%%)", c.queue)},
		{"waiting", fmt.Sprintf("%.0f%% on WebSockets, each living %s to %s, then closed (half with 1001, half dropped); a shopper still waiting reloads (one status poll) and opens another; the others poll", 100*c.wsShare, c.sockMin, c.sockMax)},
		{"admitted", fmt.Sprintf("%.0f%% buy within %s, the others let the ticket expire (ticket_ttl_seconds %d)", 100*c.buyShare, c.think, c.ticketTTL)},
		{"leaving", fmt.Sprintf("%.0f%% leave within %s of joining", 100*c.leaveShare, c.leaveWithin)},
		{"sale", fmt.Sprintf("stock %d, max_active %d, per_user_limit 1, hold_ttl_seconds 0", c.stock, c.maxActive)},
		{"sampling", fmt.Sprintf("warm-up %s, then every %s to %s", c.warmup, c.every, c.duration)},
		{"HTTP connections", fmt.Sprint(c.conns)}, {"own address per shopper (X-Forwarded-For)", fmt.Sprint(c.xff)},
	} {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	p("\n## Machine\n\n| | |\n|---|---|\n")
	for _, kv := range machineFacts() {
		p("| %s | %s |\n", kv[0], kv[1])
	}
	lo, hi := loadRange(r.Samples)
	p("| Load average (1 min) | %s to %s over the samples; at the end (1, 5, 15 min): %s |\n", lo, hi, loadAvg())
	p("| loadgen's peak RSS | %s |\n\n", peakRSS())
	p("The node, Redis and MariaDB ran on this machine too, sharing its CPUs with loadgen.\n\n")

	p("## Verdict: %s\n\n", verdictWord(r.Verdict))
	if r.Verdict.Reason == "" {
		p("The end of the load against its warm-up, each the median of %d samples (the first from %s of load on, when pools, "+
			"caches and buffers have grown to the load; the last up to the end), so one sample caught in a busy moment does not decide:\n\n",
			judgeWindow, c.warmup)
		p("- **Goroutines** within %.0f%% + %d, plus one for each connection more at the end (an HTTP connection's goroutine, "+
			"a MySQL connection's watcher).\n", 100*c.tol.goroutines, goroutineSlack)
		p("- **The live heap** (bytes live after a forced GC, what a leak grows) **less what the heap profile puts on Redis and "+
			"MySQL connections** within %.0f%% + 1 MiB, plus 16 KiB for each client connection (HTTP or WebSocket) more at the end. "+
			"The store connections' buffers are left out because their pools dial more when calls queue on a busy machine and keep "+
			"them idle for up to 30 minutes (go-redis: 32 KiB each way in the main pool, 128 KiB in the pipeline pool): the load, "+
			"not a leak. Both are in the samples below.\n\n", 100*c.tol.heap)
		p("Here: %s. RSS and open files are shown, not judged: the Go runtime keeps freed pages a while, so RSS lags the heap.\n\n", r.Verdict.By)
		p("| figure | warm-up | end | allowed | trend over the load | |\n|---|---:|---:|---:|---:|---|\n")
		for _, ch := range r.Verdict.Checks {
			unit := func(v int64) string { return fmt.Sprint(v) }
			trend := fmt.Sprintf("%+.1f/min", ch.PerMinute)
			if strings.Contains(ch.What, "heap") {
				unit = fmtBytes
				trend = fmt.Sprintf("%+.0f KiB/min", ch.PerMinute/1024)
			}
			if math.IsNaN(ch.PerMinute) {
				trend = "-"
			}
			p("| %s | %s | %s | %s | %s | %s |\n", ch.What, unit(ch.Warm), unit(ch.End), unit(ch.Allowed), trend, okWord(ch.OK))
		}
		p("\n")
	}

	p("## Samples\n\n`before` is the idle node before the sale was made; `after` the idle node after the load stopped, the sale closed and its sockets went. " +
		"Conns in / out: the node's established TCP connections on its port (HTTP and WebSocket clients) and the others (its Redis and MySQL pools), from /proc with --pid.\n\n")
	p("| t (s) | phase | goroutines | live heap | of it, store connections | heap in use | RSS | open files | conns in / out | sockets (node) | sockets (run) | shoppers in flight | queue | joins | orders | load 1m |\n")
	p("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	num := func(v int64) string {
		if v < 0 {
			return "?"
		}
		return fmt.Sprint(v)
	}
	for _, s := range r.Samples {
		p("| %.0f | %s | %d | %s | %s | %s | %s | %s | %s / %s | %s | %d | %d | %s | %d | %d | %s |\n", s.T, s.Phase, s.Goroutines,
			fmtBytes(s.HeapLive), fmtBytes(s.StoreHeap), fmtBytes(s.HeapInuse), fmtBytes(s.RSS), num(s.FDs), num(s.In), num(s.Out), num(s.NodeSockets),
			s.Sockets, s.InFlight, num(s.Queue), s.Joins, s.Orders, s.Load1)
	}

	p("\n## The load\n\n| | |\n|---|---:|\n")
	for _, kv := range []struct {
		k string
		v int64
	}{{"shoppers arrived", r.Arrived}, {"arrivals dropped (--max-shoppers in flight)", r.Dropped}, {"joins answered 200", r.Joins},
		{"admitted", r.Admitted}, {"orders (201)", r.Orders}, {"of them paid", r.Paid}, {"sockets opened", r.SocketsOpened},
		{"sockets open at the peak", r.SocketsPeak}, {"sockets closed at the end of their life", r.Churned},
		{"of them dropped without a close frame", r.Abrupt}, {"reloads (status poll, then a new socket)", r.Reloads},
		{"shoppers who polled throughout", r.Polling}, {"position frames", r.PositionFrames}, {"admission_rate changes", r.RatePatches}} {
		p("| %s | %d |\n", kv.k, kv.v)
	}
	for i := range nOutcomes {
		p("| ended: %s | %d |\n", outcomeNames[i], r.Outcomes[outcomeNames[i]])
	}
	p("\n")
	if errs := k.sc.errs.counts(false); len(errs) > 0 {
		p("Non-2xx answers and failed calls (`conn`: no HTTP answer), by call, status and error code:\n\n| answer | count |\n|---|---:|\n")
		for _, e := range errs {
			p("| %s | %d |\n", e.label, e.n)
		}
		p("\n")
	} else {
		p("No errors: every answer was a success.\n\n")
	}
	if r.SummaryRead {
		p("The sale's summary at the end: `%s`, %d sold, %d held, %d waiting, %d live tickets, %d tickets expired; "+
			"the run's orders agree with the units it gained: **%v**; its own check (Redis against MySQL) says consistent: **%v**.\n\n",
			end.State, end.Sold, end.Held, end.QueueLength, end.Active, end.TicketsExpiredTotal, r.Agrees, r.Consistent)
	}

	p("## What grew\n\nHeap: in-use bytes at the end less at the warm-up, by function (`go tool pprof -top -sample_index=inuse_space -diff_base heap-start.pb.gz heap-end.pb.gz`; the whole output is heap-diff.txt).\n\n")
	if diffNote != "" {
		p("%s\n\n", diffNote)
	} else {
		lines := strings.Split(strings.TrimRight(r.HeapDiff, "\n"), "\n")
		p("```\n%s\n```\n\n", strings.Join(lines[:min(len(lines), 30)], "\n"))
	}
	p("Goroutines: the stacks more numerous at the end than at the warm-up (goroutines-start.txt, goroutines-end.txt), by their first functions outside the runtime:\n\n")
	if len(r.GoroutineGrowth) == 0 {
		p("None grew.\n\n")
	} else {
		p("| stack | more at the end |\n|---|---:|\n")
		for _, g := range r.GoroutineGrowth {
			p("| `%s` | %d |\n", g.label, g.n)
		}
		p("\n")
	}
	p("## Charts\n\n")
	for _, ch := range charts {
		p("![%s](%s)\n\n%s.\n\n", ch.title, ch.file, ch.summary())
	}
	return b.Bytes()
}

// loadRange is the lowest and highest 1-minute load average the samples
// saw.
func loadRange(ss []soakSample) (lo, hi string) {
	l, h := math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		var v float64
		if _, err := fmt.Sscan(s.Load1, &v); err == nil {
			l, h = math.Min(l, v), math.Max(h, v)
		}
	}
	if math.IsInf(l, 1) {
		return "?", "?"
	}
	return fmt.Sprintf("%.2f", l), fmt.Sprintf("%.2f", h)
}
