package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashsale/flashsale/identity"
)

// A soak holds a steady mix of shoppers at a node for a long time (joins by
// new users, sockets opened and closed, polls, admissions, checkouts,
// tickets left to expire, leavers) and samples the node's goroutines, heap,
// RSS and open files, to show they stay flat (issue 13): a leak that a
// minute's test cannot see grows over ten.

// soakConfig is a soak run.
type soakConfig struct {
	url, debugURL, metricsURL, dataDir, secret, adminToken, runID, out string

	pid                           int // the node's process, for /proc (0: its /metrics' process_* figures)
	duration, warmup, every       time.Duration
	joinRate                      float64 // new shoppers a second
	maxShoppers, queue            int     // shoppers in flight at most; the waiters the run holds the queue near
	wsShare, buyShare, leaveShare float64
	sockMin, sockMax              time.Duration // a socket lives a random time in [sockMin, sockMax]
	think, leaveWithin            time.Duration
	stock, maxActive, ticketTTL   int
	conns, maxSockets             int
	reqTimeout                    time.Duration
	xff                           bool
	seed                          uint64
	tol                           soakTolerance

	progressEvery time.Duration
	out2          io.Writer // progress and the final lines (stdout)
	tty           bool      // out2 is a terminal: redraw the line with \r
	width         int
	log           io.Writer // notes (stderr)
	args          []string  // the command line, for the report
}

func soakFlags(fs *flag.FlagSet, c *soakConfig) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only)")
	fs.StringVar(&c.debugURL, "debug-url", "http://127.0.0.1:6060", "the node's --debug-listen address as a URL (net/http/pprof: goroutines and heap profiles)")
	fs.StringVar(&c.metricsURL, "metrics-url", "", "the node's /metrics (default: --url's /metrics; give it when the node has --metrics-listen)")
	fs.IntVar(&c.pid, "pid", 0, "the node's process id: RSS from /proc/PID/status and open files from /proc/PID/fd (default: /metrics' process_resident_memory_bytes and process_open_fds)")
	fs.StringVar(&c.dataDir, "data-dir", "./.flashsale", "a --dev server's data dir (identity secret and admin token)")
	fs.StringVar(&c.secret, "identity-secret", "", "HS256 secret for user tokens (default: the dev one in --data-dir)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin token (default: the dev one in --data-dir)")
	fs.StringVar(&c.runID, "run", "", "run id, in the sale id and user ids (default: random)")
	fs.StringVar(&c.out, "out", "./loadgen-soak", "directory for report.md, the heap profiles and the charts (made if missing)")
	fs.DurationVar(&c.duration, "d", 10*time.Minute, "how long the load runs")
	fs.DurationVar(&c.warmup, "warmup", time.Minute, "load before the first sample the end is judged against (the start heap profile is taken then)")
	fs.DurationVar(&c.every, "sample", 30*time.Second, "how often the node's figures are read")
	fs.Float64Var(&c.joinRate, "join-rate", 50, "new shoppers arriving a second (each a new user from a new address: what fills per-user and per-address state)")
	fs.IntVar(&c.maxShoppers, "max-shoppers", 2000, "shoppers in flight at most (an arrival past it is dropped and counted)")
	fs.IntVar(&c.queue, "queue", 500, "waiters to hold the queue near: the run PATCHes the sale's admission_rate every 5 s to keep it there")
	fs.Float64Var(&c.wsShare, "ws-share", 0.7, "share of shoppers who wait on WebSockets (the others poll status)")
	fs.Float64Var(&c.buyShare, "buy-share", 0.6, "share of admitted shoppers who buy (the others let the ticket expire)")
	fs.Float64Var(&c.leaveShare, "leave-share", 0.1, "share of shoppers who leave the queue before they are admitted")
	fs.DurationVar(&c.sockMin, "socket-min", time.Second, "a socket lives at least this long, then is closed (and, still waiting, the shopper reloads: one status poll and a new socket)")
	fs.DurationVar(&c.sockMax, "socket-max", 20*time.Second, "a socket lives at most this long")
	fs.DurationVar(&c.think, "think", 2*time.Second, "a buyer checks out at a random time up to this after admission")
	fs.DurationVar(&c.leaveWithin, "leave-within", 20*time.Second, "a leaver leaves at a random time up to this after joining")
	fs.IntVar(&c.stock, "stock", 1_000_000, "the sale's stock (big, so it never sells out)")
	fs.IntVar(&c.maxActive, "max-active", 1000, "the sale's max_active")
	fs.IntVar(&c.ticketTTL, "ticket-ttl", 10, "the sale's ticket_ttl_seconds (at least 10): how long an unused ticket lives")
	fs.IntVar(&c.conns, "conns", 64, "HTTP connections the shoppers share")
	fs.IntVar(&c.maxSockets, "max-sockets", 0, "WebSockets open at once at most (0: as many as the file limit allows)")
	fs.DurationVar(&c.reqTimeout, "timeout", 30*time.Second, "one request's timeout")
	fs.BoolVar(&c.xff, "xff", true, "each shopper calls from its own address in 10.0.0.0/8 by X-Forwarded-For (the server needs --trusted-proxies 127.0.0.1/32, else all share 127.0.0.1's rate limit)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the arrivals and the shoppers' choices")
	fs.Float64Var(&c.tol.goroutines, "goroutine-tolerance", 0.10, "goroutines at the end may exceed the warm-up sample's by this share (plus 10, and one a connection more than then)")
	fs.Float64Var(&c.tol.heap, "heap-tolerance", 0.25, "the live heap at the end may exceed the warm-up sample's by this share (plus 1 MiB, and what connections more than then hold)")
	fs.DurationVar(&c.progressEvery, "progress-every", 5*time.Second, "live line interval when stdout is not a terminal")
}

// check returns every problem of the flags at once, each by its flag.
func (c *soakConfig) check() error {
	var errs []error
	bad := func(f string, args ...any) { errs = append(errs, fmt.Errorf(f, args...)) }
	if err := loopbackURL(c.url); err != nil {
		errs = append(errs, err)
	}
	for _, u := range []struct{ flag, v string }{{"--debug-url", c.debugURL}, {"--metrics-url", c.metricsURL}} {
		if u.v == "" && u.flag == "--metrics-url" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("%s must be an http:// URL such as http://127.0.0.1:6060 (it is %q)", u.flag, u.v)
		}
	}
	if c.pid < 0 {
		bad("--pid must be a process id (or 0: none)")
	}
	if c.duration <= 0 || c.duration > 24*time.Hour {
		bad("--d must be more than 0 and at most 24h (it is %s)", c.duration)
	}
	if c.warmup <= 0 || c.warmup >= c.duration {
		bad("--warmup must be more than 0 and less than --d (it is %s, --d %s): the end is judged against the sample taken after it", c.warmup, c.duration)
	}
	if c.every < time.Second {
		bad("--sample must be at least 1s (it is %s)", c.every)
	}
	if !(c.joinRate > 0 && c.joinRate <= 10_000) {
		bad("--join-rate must be more than 0 and at most 10,000 a second (it is %g)", c.joinRate)
	}
	if c.maxShoppers < 1 || c.maxShoppers > 1_000_000 {
		bad("--max-shoppers must be 1 to 1,000,000 (it is %d)", c.maxShoppers)
	}
	if c.queue < 0 {
		bad("--queue cannot be negative")
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"--ws-share", c.wsShare}, {"--buy-share", c.buyShare}, {"--leave-share", c.leaveShare}} {
		if !(s.v >= 0 && s.v <= 1) {
			bad("%s must be a share from 0 to 1 (it is %g)", s.name, s.v)
		}
	}
	if c.sockMin <= 0 || c.sockMax < c.sockMin {
		bad("--socket-min must be more than 0 and --socket-max at least --socket-min (they are %s and %s)", c.sockMin, c.sockMax)
	}
	if c.think < 0 || c.leaveWithin < 0 {
		bad("--think and --leave-within cannot be negative")
	}
	if c.stock < 1 {
		bad("--stock must be at least 1")
	}
	if c.maxActive < 1 {
		bad("--max-active must be at least 1")
	}
	if c.ticketTTL < 10 {
		bad("--ticket-ttl must be at least 10 (seconds)")
	}
	if c.conns < 1 || c.conns > 10_000 {
		bad("--conns must be 1 to 10,000 (it is %d)", c.conns)
	}
	if c.maxSockets < 0 {
		bad("--max-sockets cannot be negative (0: as the file limit allows)")
	}
	if c.reqTimeout <= 0 {
		bad("--timeout must be more than 0")
	}
	if !(c.tol.goroutines >= 0) || !(c.tol.heap >= 0) {
		bad("--goroutine-tolerance and --heap-tolerance must be shares of 0 or more (e.g. 0.10)")
	}
	if c.progressEvery < time.Second {
		bad("--progress-every must be at least 1s")
	}
	if c.out == "" {
		bad("--out: a directory for the report is needed")
	}
	return errors.Join(errs...)
}

// soakMain parses the soak mode's flags and runs it.
func soakMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen soak", flag.ContinueOnError)
	c := &soakConfig{out2: os.Stdout, log: os.Stderr, args: args}
	soakFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("soak takes flags only; %q is not one (see loadgen soak -h)", fs.Arg(0))
	}
	if err := c.check(); err != nil {
		return err
	}
	c.width, c.tty = termWidth(os.Stdout)
	var err error
	if c.secret == "" {
		if c.secret, err = devFile(c.dataDir, "identity-secret", "--identity-secret"); err != nil {
			return err
		}
	}
	if c.adminToken == "" {
		if c.adminToken, err = devFile(c.dataDir, "admin-token", "--admin-token"); err != nil {
			return err
		}
	}
	r, err := runSoak(ctx, c)
	if err != nil {
		return err
	}
	if !r.Verdict.OK {
		return errors.New("soak: the node's figures grew past the tolerance (see the report's verdict)")
	}
	return nil
}

// soak is a run: the scenario's shopper machinery (its calls, counters and
// sale handling) driven by a steady arrival of shoppers whose sockets
// churn, and the samples of the node.
type soak struct {
	c     *soakConfig
	sc    *scenario
	dbg   *http.Client // the debug listener and /metrics
	start time.Time

	inflight, dropped, polling atomic.Int64
	churned, reloads, abrupt   atomic.Int64
	ratePatches                atomic.Int64
	rateBits                   atomic.Uint64 // the sale's admission_rate now (float64 bits)
	queueNow                   atomic.Int64  // the summary's queue_length (-1: not read)

	mu      sync.Mutex // guards samples (the sampler appends; the live line reads the last)
	samples []soakSample
}

// soakShopper is a scenario shopper with its own random source, for its
// sockets' lifetimes.
type soakShopper struct {
	scenShopper
	rnd *rand.Rand
}

// runSoak reads the node once idle, makes the sale, runs the load for
// c.duration while sampling, stops it, reads the node idle again and
// writes the report.
func runSoak(ctx context.Context, c *soakConfig) (*soakResult, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.out2 == nil {
		c.out2 = io.Discard
	}
	if c.log == nil {
		c.log = io.Discard
	}
	if c.runID == "" {
		c.runID = fmt.Sprintf("soak%d", time.Now().UnixNano()%1e9)
	}
	if c.metricsURL == "" {
		c.metricsURL = strings.TrimSuffix(c.url, "/") + "/metrics"
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return nil, fmt.Errorf("--out %s: %w", c.out, err)
	}
	k := &soak{c: c, dbg: &http.Client{Timeout: time.Minute}}
	defer k.dbg.CloseIdleConnections()
	k.queueNow.Store(-1)
	sc := &scenario{
		c: &scenConfig{url: c.url, secret: c.secret, adminToken: c.adminToken, runID: c.runID, out: c.out,
			shoppers: c.maxShoppers, wsShare: c.wsShare, stock: c.stock, maxActive: c.maxActive, ticketTTL: c.ticketTTL,
			rate: k.baseRate(c.joinRate), duration: c.duration, reqTimeout: c.reqTimeout, conns: c.conns,
			maxSockets: c.maxSockets, xff: c.xff, log: c.log, out2: io.Discard},
		hc:     &http.Client{Timeout: c.reqTimeout, Transport: transport(c.conns)},
		adm:    &http.Client{Timeout: c.reqTimeout},
		dialer: &websocket.Dialer{HandshakeTimeout: c.reqTimeout, ReadBufferSize: 1024, WriteBufferSize: 512},
	}
	k.sc = sc
	defer sc.hc.CloseIdleConnections()
	defer sc.adm.CloseIdleConnections()
	sc.capSockets()
	k.rateBits.Store(math.Float64bits(sc.c.rate))

	before, err := k.readNode(ctx, "before", -1)
	if err != nil {
		return nil, fmt.Errorf("read the node's figures before the run: %w (start the node with --debug-listen 127.0.0.1:6060 and pass that address as --debug-url)", err)
	}
	k.samples = append(k.samples, before)
	if err := sc.prepareSale(ctx); err != nil {
		return nil, err
	}
	closed := false
	closeSale := func() {
		if !closed {
			closed = true
			sc.closeSale()
		}
	}
	defer closeSale()
	sc.wsURL = "ws" + strings.TrimPrefix(strings.TrimSuffix(c.url, "/"), "http") + "/api/v1/sales/" + url.PathEscape(sc.sale) + "/ws"

	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	k.start = time.Now()
	sc.start = k.start
	var shoppers, bg sync.WaitGroup
	bg.Go(func() { k.arrivals(loadCtx, &shoppers) })
	bg.Go(func() { k.monitor(loadCtx) })

	interrupted := k.sampleLoad(ctx)
	stopLoad()
	bg.Wait() // the arrivals are over: no shopper starts after this
	shoppers.Wait()
	elapsed := time.Since(k.start)
	k.printLine(true)

	// Idle again: the sale closed (its admitter stops), the shoppers'
	// connections closed; the node's sockets are given a few seconds to go.
	closeSale()
	sc.hc.CloseIdleConnections()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	k.waitIdle(actx)
	if after, err := k.readNode(actx, "after", time.Since(k.start).Seconds()); err == nil {
		k.samples = append(k.samples, after)
	} else {
		fmt.Fprintln(c.log, "loadgen: read the node's figures after the run:", err)
	}
	return k.finish(actx, elapsed, interrupted)
}

// baseRate is the admission rate that takes the shoppers who stay: the
// arrivals less the leavers.
func (k *soak) baseRate(joins float64) float64 {
	return math.Max(0.1, joins*(1-k.c.leaveShare))
}

// arrivals lets a new shopper arrive every 1/join-rate (each arrival
// jittered within its slot) until the load stops; past --max-shoppers in
// flight an arrival is dropped, so the load stays bounded however slow the
// node gets.
func (k *soak) arrivals(ctx context.Context, shoppers *sync.WaitGroup) {
	c := k.c
	rnd := rand.New(rand.NewPCG(c.seed, 0x50a4))
	for i := int64(0); ; i++ {
		at := time.Duration((float64(i) + rnd.Float64()) / c.joinRate * float64(time.Second))
		if !sleepCtx(ctx, time.Until(k.start.Add(at))) {
			return
		}
		if k.inflight.Load() >= int64(c.maxShoppers) {
			k.dropped.Add(1)
			continue
		}
		sh := &soakShopper{scenShopper: scenShopper{user: fmt.Sprintf("%s-%d", c.runID, i),
			ws: rnd.Float64() < c.wsShare, buy: rnd.Float64() < c.buyShare,
			think: time.Duration(rnd.Float64() * float64(c.think))},
			rnd: rand.New(rand.NewPCG(c.seed, uint64(i)))}
		if rnd.Float64() < c.leaveShare {
			sh.leaveAfter = time.Duration(rnd.Float64()*float64(c.leaveWithin)) + 100*time.Millisecond
		}
		if c.xff {
			sh.addr = xffAddr(i + 1).String()
		}
		k.sc.arrived.Add(1)
		k.inflight.Add(1)
		shoppers.Go(func() {
			defer k.inflight.Add(-1)
			k.sc.outcomes[k.visit(ctx, sh)].Add(1)
		})
	}
}

// visit is one shopper: join, wait (a socket that lives its random life,
// then a reload and another; or polls), then buy, let the ticket expire,
// or leave.
func (k *soak) visit(ctx context.Context, sh *soakShopper) outcome {
	s := k.sc
	var err error
	if sh.tok, _, err = identity.Mint([]byte(s.c.secret), sh.user, 2*time.Hour); err != nil {
		s.errs.add("mint", 0, "", err)
		return outFailed
	}
	var a *scenAnswer
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		code, ans, ra, err := s.call(ctx, &sh.scenShopper, "POST", s.path("join"), sh.tok, nil)
		if ctx.Err() != nil {
			return outUnfinished
		}
		s.joinLat.add(time.Since(t0))
		if err == nil && code == http.StatusOK {
			a = ans
			break
		}
		s.errs.add("join", code, ans.Error.Code, err)
		if code == http.StatusGone {
			return outTurnedAway
		}
		if !retryable(code, err) || attempt >= maxRetries {
			return outFailed
		}
		if !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return outUnfinished
		}
	}
	s.joins.Add(1)
	sh.qt = a.QueueToken
	if sh.leaveAfter > 0 {
		sh.leaveAt = time.Now().Add(sh.leaveAfter)
	}
	ticket, out := k.wait(ctx, sh, a)
	if out != outAdmitted {
		return out
	}
	s.admitted.Add(1)
	if !sh.buy {
		return outLetExpire
	}
	if !sleepCtx(ctx, sh.think) {
		return outUnfinished
	}
	return s.buy(ctx, &sh.scenShopper, ticket)
}

// How a socket's life ended.
type sockEnd int

const (
	sockSettled sockEnd = iota // the wait is over (admitted, left, turned away, stopped)
	sockLived                  // it lived its life; the shopper still waits
	sockFailed                 // it failed: the shopper polls instead, as the waiting page does
)

// wait answers the ticket once the shopper is admitted (with outAdmitted),
// or how the visit ended.
func (k *soak) wait(ctx context.Context, sh *soakShopper, a *scenAnswer) (string, outcome) {
	s := k.sc
	if tk, out, done := s.settled(a.State, a.Ticket); done {
		return tk, out
	}
	if !sh.ws {
		k.polling.Add(1)
		return s.waitPoll(ctx, &sh.scenShopper, a.PollAfter)
	}
	for retries := 0; ; {
		select {
		case s.sockets <- struct{}{}:
		default:
			s.wsCapped.Add(1)
			return s.waitPoll(ctx, &sh.scenShopper, a.PollAfter)
		}
		life := k.c.sockMin + time.Duration(sh.rnd.Float64()*float64(k.c.sockMax-k.c.sockMin))
		tk, out, end := k.socket(ctx, sh, life)
		<-s.sockets
		switch end {
		case sockSettled:
			return tk, out
		case sockFailed:
			s.wsDropped.Add(1)
			return s.waitPoll(ctx, &sh.scenShopper, 1)
		}
		if sh.leaveDue(time.Now()) {
			return s.leave(ctx, &sh.scenShopper)
		}
		// The tab was reloaded: the page reads its status once, then opens
		// a new socket.
		k.reloads.Add(1)
		code, st, ra, err := s.call(ctx, &sh.scenShopper, "GET", s.path("status"), sh.qt, nil)
		if ctx.Err() != nil {
			return "", outUnfinished
		}
		if err == nil && code == http.StatusOK {
			if tk, out, done := s.settled(st.State, st.Ticket); done {
				return tk, out
			}
			retries = 0
			continue
		}
		s.errs.add("status", code, st.Error.Code, err)
		if code == http.StatusGone {
			return "", outTurnedAway
		}
		if retries++; !retryable(code, err) || retries > maxRetries {
			return "", outFailed
		}
		if !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return "", outUnfinished
		}
	}
}

// socket holds one WebSocket for life (or until a frame ends the wait, the
// shopper leaves, or the run stops), then closes it: half the time with a
// close frame (1001, as a browser leaving the page), half the time by
// dropping the connection (as a phone losing its network), so the node's
// clean-up runs both ways.
func (k *soak) socket(ctx context.Context, sh *soakShopper, life time.Duration) (string, outcome, sockEnd) {
	s := k.sc
	hdr := http.Header{}
	if sh.addr != "" {
		hdr.Set("X-Forwarded-For", sh.addr)
	}
	conn, resp, err := s.dialer.DialContext(ctx, s.wsURL+"?qt="+url.QueryEscape(sh.qt), hdr)
	if err != nil {
		if ctx.Err() != nil {
			return "", outUnfinished, sockSettled
		}
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		s.errs.add("ws", code, "", err)
		return "", 0, sockFailed
	}
	defer conn.Close()
	// The run's stop closes the socket, which ends the read below.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	s.wsOpened.Add(1)
	n := s.wsOpen.Add(1)
	defer s.wsOpen.Add(-1)
	for p := s.wsPeak.Load(); n > p && !s.wsPeak.CompareAndSwap(p, n); p = s.wsPeak.Load() {
	}
	conn.SetReadLimit(64 << 10)
	lifeEnd := time.Now().Add(life)
	deadline := func() time.Time {
		d := time.Now().Add(wsIdle)
		if lifeEnd.Before(d) {
			d = lifeEnd
		}
		if !sh.leaveAt.IsZero() && sh.leaveAt.Before(d) {
			d = sh.leaveAt
		}
		return d
	}
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(deadline())
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	for {
		_ = conn.SetReadDeadline(deadline())
		_, msg, err := conn.ReadMessage()
		if err != nil {
			now := time.Now()
			switch {
			case ctx.Err() != nil:
				return "", outUnfinished, sockSettled
			case sh.leaveDue(now):
				tk, out := s.leave(ctx, &sh.scenShopper)
				return tk, out, sockSettled
			case !now.Before(lifeEnd):
				k.churned.Add(1)
				if sh.rnd.IntN(2) == 0 {
					_ = conn.WriteControl(websocket.CloseMessage,
						websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), now.Add(time.Second))
				} else {
					k.abrupt.Add(1)
				}
				return "", 0, sockLived
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				switch ce.Code {
				case 4410: // sold out or closed: final
					return "", outTurnedAway, sockSettled
				case 4404, 4401, 4403:
					s.errs.add("ws", ce.Code, "", nil)
					return "", outFailed, sockSettled
				}
				s.errs.add("ws", ce.Code, "", nil)
				return "", 0, sockFailed
			}
			s.errs.add("ws", 0, "", err)
			return "", 0, sockFailed
		}
		var f scenAnswer
		if json.Unmarshal(msg, &f) != nil {
			s.errs.add("ws", 0, "bad_frame", nil)
			continue
		}
		if f.Type == "position" {
			s.posFrames.Add(1)
			continue
		}
		if tk, out, done := s.settled(f.Type, f.Ticket); done {
			return tk, out, sockSettled
		}
	}
}

// monitor reads the sale's summary each second, holds the queue near
// --queue by the sale's admission_rate (every 5 s), and prints the live
// line, until the load stops.
func (k *soak) monitor(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var joinsAt [6]int64 // joins at each of the last seconds, for the measured join rate
	lastPrint := time.Time{}
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		joinsAt[n%len(joinsAt)] = k.sc.joins.Load()
		rctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		var sum saleSummary
		err := k.sc.admin(rctx, "GET", k.sc.summaryPath(), nil, &sum)
		cancel()
		if err == nil {
			k.queueNow.Store(sum.QueueLength)
		} else {
			k.queueNow.Store(-1)
		}
		if err == nil && n >= len(joinsAt) && n%5 == 0 {
			measured := float64(joinsAt[n%len(joinsAt)]-joinsAt[(n+1)%len(joinsAt)]) / float64(len(joinsAt)-1)
			k.steer(ctx, measured, sum.QueueLength)
		}
		if k.c.tty || time.Since(lastPrint) >= k.c.progressEvery-500*time.Millisecond {
			k.printLine(false)
			lastPrint = time.Now()
		}
	}
}

// steer sets the sale's admission_rate so the queue drifts back to
// --queue within about 20 s: the rate that takes the shoppers who stay,
// plus (or less) the excess over 20 s. It PATCHes only a change of more
// than 5%, so a steady queue costs no admin calls.
func (k *soak) steer(ctx context.Context, joinsPerSec float64, queue int64) {
	want := k.baseRate(joinsPerSec) + float64(queue-int64(k.c.queue))/20
	want = math.Min(math.Max(want, 0.1), math.Max(10*k.c.joinRate, 1))
	want = math.Round(want*10) / 10
	cur := math.Float64frombits(k.rateBits.Load())
	if math.Abs(want-cur) <= 0.05*cur {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err := k.sc.admin(rctx, "PATCH", "/api/v1/admin/sales/"+url.PathEscape(k.sc.sale), map[string]any{"admission_rate": want}, nil)
	if err != nil {
		if ctx.Err() == nil {
			k.sc.errs.add("admission_rate", 0, "", err)
		}
		return
	}
	k.rateBits.Store(math.Float64bits(want))
	k.ratePatches.Add(1)
}

// printLine prints the live line: on a terminal redrawn in place.
func (k *soak) printLine(final bool) {
	s := k.sc
	var done int64
	for i := range s.outcomes {
		done += s.outcomes[i].Load()
	}
	queue := "?"
	if q := k.queueNow.Load(); q >= 0 {
		queue = fmt.Sprint(q)
	}
	node := "node: not sampled yet"
	k.mu.Lock()
	if n := len(k.samples); n > 0 {
		node = "node " + k.samples[n-1].brief()
	}
	k.mu.Unlock()
	el := math.Max(time.Since(k.start).Seconds(), 0.001)
	line := fmt.Sprintf("%5.0fs/%s  soak · %d in flight, %d done · joins %.1f/s · orders %d · sockets %d open, %d opened, %d churned · queue %s · admission %.1f/s · %s · errors %s",
		el, k.c.duration, k.inflight.Load(), done, float64(s.joins.Load())/el, s.checkouts.Load(),
		s.wsOpen.Load(), s.wsOpened.Load(), k.churned.Load(), queue, math.Float64frombits(k.rateBits.Load()),
		node, fmtStatuses(s.errs.counts(true)))
	if k.c.width > 1 {
		if r := []rune(line); len(r) >= k.c.width {
			line = string(r[:k.c.width-1])
		}
	}
	switch {
	case k.c.tty && final:
		fmt.Fprintf(k.c.out2, "\r%s\x1b[K\n", line)
	case k.c.tty:
		fmt.Fprintf(k.c.out2, "\r%s\x1b[K", line)
	default:
		fmt.Fprintln(k.c.out2, line)
	}
}
