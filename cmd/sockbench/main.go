// Command sockbench measures a running flashsale node's WebSockets at
// scale, from other processes than the node's:
//
//	sockbench --url http://127.0.0.1:8090 --data-dir /tmp/fsb --pid PID -n 1000,5000,19000 --procs 2
//
// It creates a sale, pauses it, joins as many users as the largest size and
// then, for each size in turn (the sockets of a size stay open for the
// next), opens sockets up to that size and measures:
//
//   - the node's RSS per idle socket: VmRSS of /proc/PID/status once the
//     sockets are open and quiet, minus VmRSS before the first socket;
//   - a state frame to every socket: the sale is resumed ("open" frames)
//     and later paused again ("paused"); timed from the state event in
//     Redis (its stream id; --redis-url) and from the PATCH to the last
//     socket's receipt;
//   - positions while admission moves (--rate per second for --move): the
//     longest gap between two position frames of any waiting socket, and
//     how long each tick's burst of position frames takes to reach every
//     socket.
//
// With --broadcasts K it then resumes and pauses the sale K more times at
// the largest size (--gap apart) and prints each state frame's time to
// every socket, the CPU the node and the client processes spent in that
// window, and the time with the clients' CPU subtracted (see subtracted).
//
// The sockets are held by --procs child processes (the same binary, mode
// "client"), each dialing from its own loopback address: one process may
// hold at most its file limit (ulimit -n) of sockets, and one source
// address about 28,000 ports. Node flags that let one address open
// thousands of sockets: --ip-rate 0 --user-rate 0. A client process reads
// its sockets with one goroutine polling one epoll set every millisecond
// (--reader poll, the default: the clients' reads cost the cores they
// share with the node as little as they can), or with a goroutine per
// socket and gorilla's reader, as a Go client would (--reader goroutine).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "client" {
		err = clientMain(ctx, os.Stdin, os.Stdout)
	} else {
		err = run(ctx, os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockbench:", err)
		os.Exit(1)
	}
}

type options struct {
	url, dataDir, redisURL, keyPrefix, sizes, saleID string
	reader                                           string
	pid, procs, joinConc, dialConc, broadcasts       int
	rate                                             float64
	move, settle, hold, gap                          time.Duration
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("sockbench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8090", "the node's base URL (a --dev node on loopback)")
	fs.StringVar(&o.dataDir, "data-dir", "./.flashsale", "the --dev node's data dir (admin token and user-token secret)")
	fs.StringVar(&o.redisURL, "redis-url", "", "the node's Redis URL, to time state frames from their event (default: from the PATCH only)")
	fs.StringVar(&o.keyPrefix, "redis-key-prefix", "fs", "the node's --redis-key-prefix")
	fs.StringVar(&o.sizes, "n", "1000,5000,19000", "socket counts to measure at, ascending, comma separated")
	fs.StringVar(&o.saleID, "sale", "", "sale id to create (default: sockbench-<time>)")
	fs.IntVar(&o.pid, "pid", 0, "the node's process id, to read its VmRSS (required)")
	fs.IntVar(&o.procs, "procs", 2, "client processes holding the sockets (each at most its ulimit -n)")
	fs.StringVar(&o.reader, "reader", "poll", "how a client process reads its sockets: poll (one epoll set, every 1 ms) or goroutine (one each)")
	fs.IntVar(&o.joinConc, "join-c", 32, "concurrent joins")
	fs.IntVar(&o.dialConc, "dial-c", 64, "concurrent dials per client process")
	fs.Float64Var(&o.rate, "rate", 20, "admissions per second while the queue moves")
	fs.DurationVar(&o.move, "move", 8*time.Second, "how long the queue moves at each size")
	fs.DurationVar(&o.settle, "settle", 5*time.Second, "quiet time before reading RSS")
	fs.DurationVar(&o.hold, "hold", 0, "keep the sockets open this long after the last size (e.g. to profile the node)")
	fs.IntVar(&o.broadcasts, "broadcasts", 0, "after the last size, resume and pause the sale this many more times and time each state frame")
	fs.DurationVar(&o.gap, "gap", 2*time.Second, "the time between two of the --broadcasts state changes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	sizes, err := parseSizes(o.sizes)
	if err != nil {
		return err
	}
	if o.pid <= 0 {
		return errors.New("--pid is required: the node's process id (e.g. $(pgrep -n flashsale))")
	}
	if o.procs < 1 {
		return errors.New("--procs must be at least 1")
	}
	if o.reader != "poll" && o.reader != "goroutine" {
		return fmt.Errorf("--reader %q: want poll or goroutine", o.reader)
	}
	if o.broadcasts < 0 || o.gap <= 0 {
		return errors.New("--broadcasts must be 0 or more and --gap positive")
	}
	if _, err := rssKiB(o.pid); err != nil {
		return fmt.Errorf("--pid %d: %w", o.pid, err)
	}
	b := &bench{o: o, http: &http.Client{Timeout: 30 * time.Second}}
	if b.admin, err = readTrim(filepath.Join(o.dataDir, "admin-token")); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if o.redisURL != "" {
		opt, err := redis.ParseURL(o.redisURL)
		if err != nil {
			return fmt.Errorf("--redis-url: %w", err)
		}
		b.rdb = redis.NewClient(opt)
		defer b.rdb.Close()
	}
	if o.saleID == "" {
		o.saleID = fmt.Sprintf("sockbench-%d", time.Now().Unix())
		b.o.saleID = o.saleID
	}
	return b.run(ctx, sizes)
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("-n %q: want ascending positive counts, e.g. 1000,5000,19000", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

type bench struct {
	o       options
	http    *http.Client
	admin   string
	rdb     *redis.Client
	clients []*child
	prefix  string
}

// result is one size's row.
type result struct {
	n, opened, failed           int
	rssBase, rss                int64 // KiB
	goroutines, heapInuse       float64
	stackInuse                  float64
	openFrame, pausedFrame      broadcast
	maxGap, p99Gap              time.Duration
	overTwo, noPosition, waited int
	tickSpread, tickMax         time.Duration
	bursts                      int
	// admitted frames: time from the admission's event to the receipt
	admMedian, admMax time.Duration
	admitted          int
}

type broadcast struct {
	fromEvent, fromPatch time.Duration
	got, of              int
	// CPU time the node and the client processes spent from the PATCH to
	// the last receipt: what the clients cost the shared cores
	nodeCPU, clientCPU time.Duration
	state, load        string // (--broadcasts rows)
}

// subtracted is the time from the event to the last socket's receipt less
// what the client processes cost it: their CPU time in the window, spread
// over the machine's cores (the node's broadcast is spread over every core,
// so each core lost to a client's read is time the node's writers waited
// for). An estimate of the time with the sockets read on other machines;
// never below the node's own CPU time spread the same way.
func (r broadcast) subtracted(cores int) time.Duration {
	return max(r.fromEvent-r.clientCPU/time.Duration(cores), r.nodeCPU/time.Duration(cores))
}

func (r broadcast) row() string {
	cores := runtime.NumCPU()
	return fmt.Sprintf("| %s | %s | %s | %s | %s | %s | %d/%d | %s |", r.state, ms(r.fromEvent), ms(r.fromPatch),
		ms(r.nodeCPU), ms(r.clientCPU), ms(r.subtracted(cores)), r.got, r.of, r.load)
}

// printBroadcasts prints the --broadcasts rows and their medians.
func printBroadcasts(w io.Writer, rs []broadcast) {
	fmt.Fprintf(w, "state frames to all sockets (%d cores; subtracted: from the event, less the clients' CPU / cores)\n\n", runtime.NumCPU())
	fmt.Fprintln(w, "| state | from the event | from the PATCH | node CPU | clients' CPU | subtracted | sockets | load average |")
	fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rs {
		fmt.Fprintln(w, r.row())
	}
	med := func(f func(broadcast) time.Duration) string {
		v := make([]time.Duration, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return fmt.Sprintf("%s (%s-%s)", ms(v[len(v)/2]), ms(v[0]), ms(v[len(v)-1]))
	}
	cores := runtime.NumCPU()
	fmt.Fprintf(w, "| median (min-max) | %s | %s | %s | %s | %s | | |\n",
		med(func(r broadcast) time.Duration { return r.fromEvent }), med(func(r broadcast) time.Duration { return r.fromPatch }),
		med(func(r broadcast) time.Duration { return r.nodeCPU }), med(func(r broadcast) time.Duration { return r.clientCPU }),
		med(func(r broadcast) time.Duration { return r.subtracted(cores) }))
}

// loadAvg is the machine's 1-minute load average ("" if unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func (b *bench) run(ctx context.Context, sizes []int) error {
	maxN := sizes[len(sizes)-1]
	b.prefix = fmt.Sprintf("sb%d-", time.Now().UnixNano()%1e9)
	if err := b.createSale(ctx); err != nil {
		return err
	}
	log("sale %s created and paused; joining %d users", b.o.saleID, maxN)
	start := time.Now()
	if err := b.joinAll(ctx, maxN); err != nil {
		return err
	}
	log("joined %d users in %v", maxN, time.Since(start).Round(time.Millisecond))
	if err := b.startClients(ctx); err != nil {
		return err
	}
	defer b.stopClients()
	sleep(ctx, b.o.settle)
	base, err := rssKiB(b.o.pid)
	if err != nil {
		return err
	}
	log("node RSS before any socket: %d KiB", base)
	var rows []result
	prev := 0
	for _, n := range sizes {
		r, err := b.measure(ctx, prev, n, base)
		if err != nil {
			return err
		}
		rows = append(rows, r)
		printRows(os.Stdout, b.o, rows[len(rows)-1:], false)
		prev = n
	}
	fmt.Println()
	printRows(os.Stdout, b.o, rows, true)
	if b.o.broadcasts > 0 {
		var all []broadcast
		for i := range b.o.broadcasts {
			for _, state := range []string{"open", "paused"} {
				sleep(ctx, b.o.gap)
				r, err := b.broadcast(ctx, state)
				if err != nil {
					return err
				}
				r.state, r.load = state, loadAvg()
				all = append(all, r)
				log("broadcast %d/%d %s: %s", i+1, b.o.broadcasts, state, r.row())
			}
		}
		fmt.Println()
		printBroadcasts(os.Stdout, all)
	}
	if b.o.hold > 0 {
		log("holding the sockets open for %v", b.o.hold)
		sleep(ctx, b.o.hold)
	}
	return nil
}

func log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (b *bench) do(ctx context.Context, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		j, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.o.url+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := b.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

func (b *bench) createSale(ctx context.Context) error {
	st, body, err := b.do(ctx, "POST", "/api/v1/admin/sales", b.admin, map[string]any{
		"id": b.o.saleID, "name": "sockbench", "price_cents": 100, "currency": "EUR",
		"stock": 10_000_000, "admission_rate": b.o.rate, "max_active": 1_000_000,
		"ticket_ttl_seconds": 3600, "abandon_after_seconds": 300})
	if err != nil {
		return fmt.Errorf("create the sale at --url: %w", err)
	}
	if st != http.StatusCreated {
		return fmt.Errorf("create the sale: %d %s", st, body)
	}
	return b.setState(ctx, "paused")
}

func (b *bench) setState(ctx context.Context, state string) error {
	st, body, err := b.do(ctx, "PATCH", "/api/v1/admin/sales/"+b.o.saleID, b.admin, map[string]any{"state": state})
	if err != nil {
		return err
	}
	if st != http.StatusOK {
		return fmt.Errorf("set the sale %s: %d %s", state, st, body)
	}
	return nil
}

// joinAll joins users 0..n-1, so the sockets find them waiting.
func (b *bench) joinAll(ctx context.Context, n int) error {
	secret, err := readTrim(filepath.Join(b.o.dataDir, "identity-secret"))
	if err != nil {
		return fmt.Errorf("--data-dir: the dev user-token secret: %w", err)
	}
	toks, err := mintRange([]byte(secret), b.prefix, 0, n)
	if err != nil {
		return err
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan int)
	)
	for range b.o.joinConc {
		wg.Go(func() {
			for i := range next {
				st, body, err := b.do(ctx, "POST", "/api/v1/sales/"+b.o.saleID+"/join", toks[i], nil)
				if err == nil && st != http.StatusOK {
					err = fmt.Errorf("join %d: %d %s (start the node with --ip-rate 0 --user-rate 0)", i, st, body)
				}
				if err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return cmpOr(first, ctx.Err())
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (b *bench) startClients(ctx context.Context) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	run := rand.IntN(200)
	for i := range b.o.procs {
		// each its own source address: a fresh port range, free of the
		// TIME_WAIT of an earlier run
		src := fmt.Sprintf("127.0.%d.%d", 20+run, 1+i)
		cmd := exec.CommandContext(ctx, exe, "client")
		cmd.Env = append(os.Environ(),
			"SOCKBENCH_URL="+b.o.url, "SOCKBENCH_SALE="+b.o.saleID, "SOCKBENCH_PREFIX="+b.prefix,
			"SOCKBENCH_DATA_DIR="+b.o.dataDir, "SOCKBENCH_SOURCE="+src,
			"SOCKBENCH_DIAL_C="+strconv.Itoa(b.o.dialConc), "SOCKBENCH_READER="+b.o.reader)
		cmd.Stderr = os.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		b.clients = append(b.clients, &child{cmd: cmd, in: in, out: bufio.NewReader(out)})
	}
	return nil
}

func (b *bench) stopClients() {
	for _, c := range b.clients {
		_ = c.in.Close() // the client closes its sockets and exits on EOF
	}
	for _, c := range b.clients {
		_ = c.cmd.Wait()
	}
}

type child struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// call sends every client one command and collects their replies.
func (b *bench) call(cmds []command) ([]reply, error) {
	for i, c := range b.clients {
		if err := json.NewEncoder(c.in).Encode(cmds[i]); err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
	}
	out := make([]reply, len(b.clients))
	for i, c := range b.clients {
		line, err := c.out.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("client %d ended: %w", i, err)
		}
		if err := json.Unmarshal(line, &out[i]); err != nil {
			return nil, fmt.Errorf("client %d: %w", i, err)
		}
		if out[i].Err != "" {
			return nil, fmt.Errorf("client %d: %s", i, out[i].Err)
		}
	}
	return out, nil
}

func (b *bench) all(c command) []command {
	cmds := make([]command, len(b.clients))
	for i := range cmds {
		cmds[i] = c
	}
	return cmds
}

func (b *bench) measure(ctx context.Context, from, to int, base int64) (result, error) {
	r := result{n: to, rssBase: base}
	// users from..to-1, dealt round robin to the clients
	cmds := make([]command, len(b.clients))
	for i := from; i < to; i++ {
		k := i % len(b.clients)
		cmds[k].Op = "open"
		cmds[k].Users = append(cmds[k].Users, i)
	}
	log("opening sockets %d..%d", from, to-1)
	start := time.Now()
	reps, err := b.call(cmds)
	if err != nil {
		return r, err
	}
	for _, rp := range reps {
		r.opened += rp.Open
		r.failed += rp.Failed
		if rp.FirstErr != "" {
			log("a dial failed: %s", rp.FirstErr)
		}
	}
	log("%d sockets open (%d failed) in %v", r.opened, r.failed, time.Since(start).Round(time.Millisecond))
	sleep(ctx, b.o.settle)
	if r.rss, err = rssKiB(b.o.pid); err != nil {
		return r, err
	}
	m := b.nodeMetrics(ctx)
	r.goroutines, r.heapInuse = m["go_goroutines"], m["go_memstats_heap_inuse_bytes"]
	r.stackInuse = m["go_memstats_stack_inuse_bytes"]

	// resume: "open" to every socket, then the queue moves
	if r.openFrame, err = b.broadcast(ctx, "open"); err != nil {
		return r, err
	}
	moveFrom := time.Now()
	sleep(ctx, b.o.move)
	moveTo := time.Now()
	if r.pausedFrame, err = b.broadcast(ctx, "paused"); err != nil {
		return r, err
	}
	// positions: from a tick after the resume (the first frames after it
	// carry paused false) to the pause
	reps, err = b.call(b.all(command{Op: "gaps", From: moveFrom.Add(1500 * time.Millisecond).UnixNano(), To: moveTo.UnixNano()}))
	if err != nil {
		return r, err
	}
	var gaps []time.Duration
	var recv []int64
	admitted := map[int]int64{}
	for _, rp := range reps {
		maps.Copy(admitted, rp.Admitted)
		r.overTwo += rp.OverTwo
		r.noPosition += rp.NoPosition
		r.waited += rp.Waiting
		for _, g := range rp.MaxGaps {
			gaps = append(gaps, time.Duration(g))
		}
		recv = append(recv, rp.Receipts...)
	}
	if len(gaps) > 0 {
		slices.Sort(gaps)
		r.maxGap = gaps[len(gaps)-1]
		r.p99Gap = gaps[len(gaps)*99/100]
	}
	r.bursts, r.tickSpread, r.tickMax = bursts(recv)
	r.admitted, r.admMedian, r.admMax = b.admissionLatency(ctx, admitted, moveFrom, moveTo)
	sleep(ctx, time.Second) // the pause's positions, before the next size
	return r, nil
}

// bursts splits the receipt times of position frames (every socket's) into
// ticks, a tick ending at a silence of 300 ms, and returns the ticks'
// count, their median and their longest first-to-last span.
func bursts(ts []int64) (n int, median, longest time.Duration) {
	if len(ts) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ts)
	var spans []time.Duration
	start := ts[0]
	for i := 1; i <= len(ts); i++ {
		if i == len(ts) || ts[i]-ts[i-1] > int64(300*time.Millisecond) {
			spans = append(spans, time.Duration(ts[i-1]-start))
			if i < len(ts) {
				start = ts[i]
			}
		}
	}
	slices.Sort(spans)
	return len(spans), spans[len(spans)/2], spans[len(spans)-1]
}

// broadcast sets the sale's state and times its frame's arrival at every
// socket: from the PATCH and from the state event's stream id.
func (b *bench) broadcast(ctx context.Context, state string) (broadcast, error) {
	var out broadcast
	node0, clients0 := cpuTime(b.o.pid), b.clientsCPU()
	t0 := time.Now()
	if err := b.setState(ctx, state); err != nil {
		return out, err
	}
	reps, err := b.call(b.all(command{Op: "wait", Type: state, Since: t0.UnixNano(), Timeout: int64(10 * time.Second)}))
	if err != nil {
		return out, err
	}
	// (read once every socket had it: includes up to 5 ms of polling past it)
	out.nodeCPU, out.clientCPU = cpuTime(b.o.pid)-node0, b.clientsCPU()-clients0
	var last int64
	for _, rp := range reps {
		out.got += rp.Got
		out.of += rp.Open
		last = max(last, rp.Last)
	}
	out.fromPatch = time.Duration(last - t0.UnixNano())
	if ev, ok := b.stateEvent(ctx, state, t0); ok {
		out.fromEvent = time.Duration(last - ev.UnixNano())
	}
	log("%q to %d/%d sockets: last %v after the PATCH, %v after the event; CPU: node %v, clients %v", state, out.got, out.of,
		out.fromPatch.Round(time.Millisecond), out.fromEvent.Round(time.Millisecond),
		out.nodeCPU.Round(time.Millisecond), out.clientCPU.Round(time.Millisecond))
	return out, nil
}

// admissionLatency matches the admitted frames received (user number →
// receipt) with their admission events in the sale's stream (the event's
// id is Redis's clock in ms) and returns how many matched and the median
// and longest time from the event to the receipt: what an admitted
// shopper waits for their ticket while the positions of everyone else go
// out.
func (b *bench) admissionLatency(ctx context.Context, got map[int]int64, from, to time.Time) (int, time.Duration, time.Duration) {
	if b.rdb == nil || len(got) == 0 {
		return 0, 0, 0
	}
	k := sale.Keyspace{Prefix: b.o.keyPrefix}.Sale(b.o.saleID)
	msgs, err := b.rdb.XRange(ctx, k.Ev, strconv.FormatInt(from.Add(-time.Second).UnixMilli(), 10),
		strconv.FormatInt(to.Add(time.Second).UnixMilli(), 10)).Result()
	if err != nil {
		log("read the event stream: %v", err)
		return 0, 0, 0
	}
	var lat []time.Duration
	for _, m := range msgs {
		u, _ := m.Values["u"].(string)
		if m.Values["t"] != "adm" || !strings.HasPrefix(u, b.prefix) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(u, b.prefix))
		at, ok := got[n]
		if err != nil || !ok {
			continue
		}
		ms, err := strconv.ParseInt(m.ID[:max(strings.IndexByte(m.ID, '-'), 0)], 10, 64)
		if err != nil {
			continue
		}
		lat = append(lat, time.Duration(at-ms*int64(time.Millisecond)))
	}
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	return len(lat), lat[len(lat)/2], lat[len(lat)-1]
}

// stateEvent finds the time of the sale's newest state event (its stream
// id, Redis's clock in ms) at or after since.
func (b *bench) stateEvent(ctx context.Context, state string, since time.Time) (time.Time, bool) {
	if b.rdb == nil {
		return time.Time{}, false
	}
	k := sale.Keyspace{Prefix: b.o.keyPrefix}.Sale(b.o.saleID)
	msgs, err := b.rdb.XRevRangeN(ctx, k.Ev, "+", strconv.FormatInt(since.Add(-time.Second).UnixMilli(), 10), 200).Result()
	if err != nil {
		log("read the event stream: %v", err)
		return time.Time{}, false
	}
	for _, m := range msgs {
		if m.Values["t"] == "state" && m.Values["d"] == state {
			ms, err := strconv.ParseInt(m.ID[:strings.IndexByte(m.ID, '-')], 10, 64)
			if err != nil {
				return time.Time{}, false
			}
			return time.UnixMilli(ms), true
		}
	}
	log("no %q event in the stream (check --redis-url and --redis-key-prefix)", state)
	return time.Time{}, false
}

// nodeMetrics scrapes the node's /metrics for its Go runtime figures.
func (b *bench) nodeMetrics(ctx context.Context) map[string]float64 {
	out := map[string]float64{}
	st, body, err := b.do(ctx, "GET", "/metrics", "", nil)
	if err != nil || st != http.StatusOK {
		return out
	}
	for line := range strings.SplitSeq(string(body), "\n") {
		name, v, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
			out[name] = f
		}
	}
	return out
}

// clientsCPU is the CPU time of the client processes so far.
func (b *bench) clientsCPU() time.Duration {
	var d time.Duration
	for _, c := range b.clients {
		d += cpuTime(c.cmd.Process.Pid)
	}
	return d
}

// cpuTime is a process's CPU time so far (0 if unreadable): the sum of its
// threads' run time in /proc/PID/task/*/schedstat, in nanoseconds (a
// broadcast's CPU is tens of milliseconds: /proc/PID/stat counts in 10 ms
// ticks), else user + system time from /proc/PID/stat.
func cpuTime(pid int) time.Duration {
	if d, ok := schedTime(pid); ok {
		return d
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// fields after the command's closing parenthesis: state is the 3rd
	// field of the line, utime and stime the 14th and 15th
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// schedTime sums the run time of a process's threads (a thread that ended
// takes its time with it: Go's runtime keeps its threads).
func schedTime(pid int) (time.Duration, bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue // (the thread ended)
		}
		f, _, _ := strings.Cut(string(b), " ")
		ns, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return time.Duration(sum), true
}

// clockTicks is USER_HZ, the unit of /proc's CPU times (100 on Linux).
const clockTicks = 100

// rssKiB reads VmRSS of a process.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in its /proc status")
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func printRows(w io.Writer, o options, rows []result, header bool) {
	if header {
		fmt.Fprintf(w, "sockbench: sale %s, %d client processes (reader %s), rate %g/s, move %v\n\n", o.saleID, o.procs, o.reader, o.rate, o.move)
		fmt.Fprintln(w, "| sockets (open/failed) | RSS per socket | goroutines | heap / stacks in use | \"open\" to all: from event / PATCH | \"paused\" to all: from event / PATCH | longest position gap (p99) | sockets with a gap > 2 s / no position | tick's frames to all sockets: median / longest (ticks) | admitted frame from its event: median / longest (frames) |")
		fmt.Fprintln(w, "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	}
	for _, r := range rows {
		per := float64(r.rss-r.rssBase) / float64(max(r.opened, 1))
		fmt.Fprintf(w, "| %d (%d/%d) | %.1f KiB | %.0f | %.1f / %.1f MiB | %s / %s (%d/%d) | %s / %s (%d/%d; %s / %s) | %s (%s) | %d / %d of %d | %s / %s (%d) | %s / %s (%d) |\n",
			r.n, r.opened, r.failed, per, r.goroutines, r.heapInuse/(1<<20), r.stackInuse/(1<<20),
			ms(r.openFrame.fromEvent), ms(r.openFrame.fromPatch), r.openFrame.got, r.openFrame.of,
			ms(r.pausedFrame.fromEvent), ms(r.pausedFrame.fromPatch), r.pausedFrame.got, r.pausedFrame.of,
			ms(r.pausedFrame.nodeCPU), ms(r.pausedFrame.clientCPU),
			ms(r.maxGap), ms(r.p99Gap), r.overTwo, r.noPosition, r.waited,
			ms(r.tickSpread), ms(r.tickMax), r.bursts, ms(r.admMedian), ms(r.admMax), r.admitted)
	}
}
