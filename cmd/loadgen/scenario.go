package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"

	"github.com/flashsale/flashsale/identity"
)

// scenConfig is a scenario run: the sale (made by the tool or given), the
// shoppers sent at it and how they behave, the run's bounds and where the
// report goes.
type scenConfig struct {
	url, dataDir, secret, adminToken, runID, sale, out string

	shoppers                      int
	arrive                        time.Duration // shoppers arrive evenly (jittered) over this
	wsShare, buyShare, leaveShare float64
	leaveWithin                   time.Duration // a leaver gives up this long after joining at most
	think                         time.Duration // an admitted buyer checks out after up to this

	stock, maxActive, ticketTTL, hold int
	rate                              float64

	duration, reqTimeout time.Duration
	conns, maxSockets    int
	xff                  bool
	seed                 uint64

	// progressEvery is how often the live line is printed when stdout is
	// not a terminal (on a terminal it is redrawn each second).
	progressEvery time.Duration

	out2  io.Writer // progress and the final lines (stdout)
	tty   bool      // out2 is a terminal: redraw the line with \r
	width int       // the terminal's columns (0: unknown)
	log   io.Writer // notes (stderr)
	args  []string  // the command line, for the report
}

func scenarioFlags(fs *flag.FlagSet, c *scenConfig) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only)")
	fs.StringVar(&c.dataDir, "data-dir", "./.flashsale", "a --dev server's data dir (identity secret and admin token)")
	fs.StringVar(&c.secret, "identity-secret", "", "HS256 secret for user tokens (default: the dev one in --data-dir)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin token (default: the dev one in --data-dir)")
	fs.StringVar(&c.runID, "run", "", "run id, in the sale id and user ids (default: random)")
	fs.StringVar(&c.sale, "sale", "", "an existing sale to shop at (default: the tool creates one from --stock, --rate, --max-active, --hold, --ticket-ttl)")
	fs.StringVar(&c.out, "out", "./loadgen-report", "directory for report.md and the charts (made if missing)")
	fs.IntVar(&c.shoppers, "shoppers", 1000, "shoppers in all (1 to 1,000,000)")
	fs.DurationVar(&c.arrive, "arrive", 30*time.Second, "shoppers arrive evenly over this")
	fs.Float64Var(&c.wsShare, "ws-share", 0.8, "share of shoppers who wait on a WebSocket (the others poll status at poll_after_seconds)")
	fs.Float64Var(&c.buyShare, "buy-share", 0.7, "share of admitted shoppers who buy (the others let the ticket expire)")
	fs.Float64Var(&c.leaveShare, "leave-share", 0.05, "share of shoppers who leave the queue before they are admitted")
	fs.DurationVar(&c.leaveWithin, "leave-within", 30*time.Second, "a leaver leaves at a random time up to this after joining")
	fs.DurationVar(&c.think, "think", 2*time.Second, "a buyer checks out at a random time up to this after admission")
	fs.IntVar(&c.stock, "stock", 500, "created sale: stock")
	fs.Float64Var(&c.rate, "rate", 50, "created sale: admission_rate (per second)")
	fs.IntVar(&c.maxActive, "max-active", 200, "created sale: max_active")
	fs.IntVar(&c.ticketTTL, "ticket-ttl", 60, "created sale: ticket_ttl_seconds (at least 10)")
	fs.IntVar(&c.hold, "hold", 0, "created sale: hold_ttl_seconds (0: orders paid at once; else the tool confirms each order as the payment backend would)")
	fs.DurationVar(&c.duration, "duration", 10*time.Minute, "stop the run after this, every shopper done or not")
	fs.DurationVar(&c.reqTimeout, "timeout", 30*time.Second, "one request's timeout")
	fs.IntVar(&c.conns, "conns", 256, "HTTP connections the shoppers share")
	fs.IntVar(&c.maxSockets, "max-sockets", 0, "WebSockets open at once at most (0: as many as the file limit allows)")
	fs.BoolVar(&c.xff, "xff", true, "each shopper calls from its own address in 10.0.0.0/8 by X-Forwarded-For (the server needs --trusted-proxies 127.0.0.1/32, else all share 127.0.0.1's rate limit)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the arrival times and the shoppers' choices")
	fs.DurationVar(&c.progressEvery, "progress-every", 5*time.Second, "live line interval when stdout is not a terminal")
}

// check returns every problem of the flags at once, each by its flag.
func (c *scenConfig) check() error {
	var errs []error
	bad := func(f string, args ...any) { errs = append(errs, fmt.Errorf(f, args...)) }
	if err := loopbackURL(c.url); err != nil {
		errs = append(errs, err)
	}
	if c.shoppers < 1 || c.shoppers > 1_000_000 {
		bad("--shoppers must be 1 to 1,000,000 (it is %d)", c.shoppers)
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"--ws-share", c.wsShare}, {"--buy-share", c.buyShare}, {"--leave-share", c.leaveShare}} {
		if !(s.v >= 0 && s.v <= 1) {
			bad("%s must be a share from 0 to 1 (it is %g)", s.name, s.v)
		}
	}
	if c.arrive < 0 || c.leaveWithin < 0 || c.think < 0 {
		bad("--arrive, --leave-within and --think cannot be negative")
	}
	if c.duration <= 0 || c.duration > 24*time.Hour {
		bad("--duration must be more than 0 and at most 24h (it is %s)", c.duration)
	}
	if c.reqTimeout <= 0 {
		bad("--timeout must be more than 0")
	}
	if c.progressEvery < time.Second {
		bad("--progress-every must be at least 1s")
	}
	if c.conns < 1 || c.conns > 10_000 {
		bad("--conns must be 1 to 10,000 (it is %d)", c.conns)
	}
	if c.maxSockets < 0 {
		bad("--max-sockets cannot be negative (0: as the file limit allows)")
	}
	if c.sale == "" {
		if c.stock < 1 {
			bad("--stock must be at least 1")
		}
		if !(c.rate > 0) {
			bad("--rate must be more than 0")
		}
		if c.maxActive < 1 {
			bad("--max-active must be at least 1")
		}
		if c.ticketTTL < 10 {
			bad("--ticket-ttl must be at least 10 (seconds)")
		}
		if c.hold < 0 {
			bad("--hold cannot be negative (0: no hold)")
		}
	}
	if c.out == "" {
		bad("--out: a directory for the report is needed")
	}
	return errors.Join(errs...)
}

// loopbackURL refuses a server that is not on this machine: a scenario is
// a sale night's load, for one's own server only.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--url must be an http:// or https:// URL of the server (it is %q)", raw)
	}
	h := u.Hostname()
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--url must be on loopback (127.0.0.1, ::1 or localhost), not %q: scenario sends a sale night's load, so run it on the server's own machine", h)
}

// scenarioMain parses the scenario mode's flags and runs it.
func scenarioMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen scenario", flag.ContinueOnError)
	c := &scenConfig{out2: os.Stdout, log: os.Stderr, args: args}
	scenarioFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("scenario takes flags only; %q is not one (see loadgen scenario -h)", fs.Arg(0))
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
	_, err = runScenario(ctx, c)
	return err
}

// termWidth is the terminal's width in columns; ok is false when f is no
// terminal (a file, a pipe, /dev/null: the window-size ioctl fails on each).
func termWidth(f *os.File) (cols int, ok bool) {
	var ws struct{ row, col, x, y uint16 }
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws)))
	if errno != 0 {
		return 0, false
	}
	return int(ws.col), true
}

func devFile(dir, name, flagName string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return "", fmt.Errorf("no %s given and no dev one in --data-dir %s (%v): pass %s or the data dir of a --dev server", flagName, dir, err, flagName)
	}
	return strings.TrimSpace(string(b)), nil
}

// outcome is how a shopper's visit ended.
type outcome int

const (
	outUnfinished outcome = iota // still going when the run was stopped
	outBought
	outLetExpire  // admitted, did not buy
	outLeft       // left the queue
	outTurnedAway // sale sold out or closed (410 or the socket's 4410)
	outExpired    // the server said expired (a skipped waiter, or a ticket run out)
	outFailed     // an answer that ended the visit (not 410)
	nOutcomes

	// outAdmitted is no end: wait answers it with the ticket to go on.
	outAdmitted = nOutcomes
)

var outcomeNames = [nOutcomes]string{"unfinished at the stop", "bought", "admitted, let the ticket expire",
	"left the queue", "turned away (sold out or closed)", "told expired", "failed (an error ended the visit)"}

// scenShopper is one shopper of a run, as drawn at its arrival.
type scenShopper struct {
	user, tok  string
	addr       string // X-Forwarded-For, "" without --xff
	ws, buy    bool
	leaveAfter time.Duration // 0: stays
	think      time.Duration
	leaveAt    time.Time
	qt         string
}

// scenAnswer is what the shopper API and the WebSocket answer, as far as a
// shopper reads it.
type scenAnswer struct {
	Type       string `json:"type"`
	State      string `json:"state"`
	Ticket     string `json:"ticket"`
	QueueToken string `json:"queue_token"`
	PollAfter  int    `json:"poll_after_seconds"`
	ID         string `json:"id"`
	Status     string `json:"status"`
	Error      struct {
		Code string `json:"code"`
	} `json:"error"`
}

// saleSummary is the admin summary, as far as the report reads it.
type saleSummary struct {
	State               string `json:"state"`
	StockTotal          int64  `json:"stock_total"`
	Sold                int64  `json:"sold"`
	Held                int64  `json:"held"`
	Remaining           int64  `json:"remaining"`
	QueueLength         int64  `json:"queue_length"`
	Active              int64  `json:"active"`
	AdmittedTotal       int64  `json:"admitted_total"`
	SkippedTotal        int64  `json:"skipped_total"`
	TicketsExpiredTotal int64  `json:"tickets_expired_total"`
	OrdersTotal         int64  `json:"orders_total"`
	MySQL               struct {
		Paid int64 `json:"paid"`
		Held int64 `json:"held"`
	} `json:"mysql"`
	Consistent bool `json:"consistent"`
}

type scenario struct {
	c       *scenConfig
	sale    string
	created bool
	hold    int // the sale's hold_ttl_seconds: orders to confirm
	hc, adm *http.Client
	dialer  *websocket.Dialer
	wsURL   string
	start   time.Time

	sockets  chan struct{} // a slot per socket allowed open at once
	sockCap  int
	fileSoft uint64
	fileHard uint64

	arrived, joins, checkouts, admitted, paid atomic.Int64
	outcomes                                  [nOutcomes]atomic.Int64
	wsOpen, wsPeak, wsOpened                  atomic.Int64
	wsDropped, wsCapped, posFrames            atomic.Int64

	joinLat, checkoutLat latencies
	gapMu                sync.Mutex
	posGap               latHist // time between one socket's position frames
	errs                 statusTally

	samples []sample // the sampler's only
	base    saleSummary
}

// runScenario makes or checks the sale, lets the shoppers arrive, samples
// and prints progress each second, and writes the report.
func runScenario(ctx context.Context, c *scenConfig) (*scenResult, error) {
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
		c.runID = fmt.Sprintf("sc%d", time.Now().UnixNano()%1e9)
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return nil, fmt.Errorf("--out %s: %w", c.out, err)
	}
	s := &scenario{c: c,
		hc:     &http.Client{Timeout: c.reqTimeout, Transport: transport(c.conns)},
		adm:    &http.Client{Timeout: c.reqTimeout},
		dialer: &websocket.Dialer{HandshakeTimeout: c.reqTimeout, ReadBufferSize: 1024, WriteBufferSize: 512},
	}
	defer s.hc.CloseIdleConnections()
	defer s.adm.CloseIdleConnections()
	s.capSockets()

	if err := s.prepareSale(ctx); err != nil {
		return nil, err
	}
	if s.created {
		defer s.closeSale()
	}
	base := strings.TrimSuffix(c.url, "/")
	s.wsURL = "ws" + strings.TrimPrefix(base, "http") + "/api/v1/sales/" + url.PathEscape(s.sale) + "/ws"

	runCtx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	s.start = time.Now()
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); s.sampler(stopSampler) }()

	rnd := rand.New(rand.NewPCG(c.seed, 0x5ce7a210))
	var wg sync.WaitGroup
	for i := range c.shoppers {
		// Evenly spread, each arrival jittered within its own slot: the
		// arrival rate is flat over --arrive, with no lockstep.
		at := time.Duration(float64(c.arrive) * (float64(i) + rnd.Float64()) / float64(c.shoppers))
		if !sleepCtx(runCtx, time.Until(s.start.Add(at))) {
			break
		}
		sh := &scenShopper{user: fmt.Sprintf("%s-%d", c.runID, i),
			ws: rnd.Float64() < c.wsShare, buy: rnd.Float64() < c.buyShare,
			think: time.Duration(rnd.Float64() * float64(c.think))}
		if rnd.Float64() < c.leaveShare {
			sh.leaveAfter = time.Duration(rnd.Float64()*float64(c.leaveWithin)) + 100*time.Millisecond
		}
		if c.xff {
			sh.addr = xffAddr(int64(i) + 1).String()
		}
		s.arrived.Add(1)
		wg.Go(func() { s.outcomes[s.visit(runCtx, sh)].Add(1) })
	}
	wg.Wait()
	elapsed := time.Since(s.start)
	cancel()
	close(stopSampler)
	<-samplerDone
	return s.finish(ctx, elapsed)
}

// capSockets bounds the sockets open at once by the file limit (each is a
// descriptor here, besides the HTTP connections), or by --max-sockets.
func (s *scenario) capSockets() {
	c := s.c
	var rl syscall.Rlimit
	limit := 1 << 20
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		s.fileSoft, s.fileHard = rl.Cur, rl.Max
		limit = int(min(rl.Cur, 1<<30))
	}
	// Reserve the HTTP connections, the admin client, stdio and the report.
	byFiles := max(limit-c.conns-64, 0)
	s.sockCap = byFiles
	if c.maxSockets > 0 && c.maxSockets < s.sockCap {
		s.sockCap = c.maxSockets
	}
	want := int(float64(c.shoppers)*c.wsShare + 0.5)
	if want > s.sockCap {
		why := fmt.Sprintf("the file limit (RLIMIT_NOFILE %d, less %d HTTP connections and 64 spare)", s.fileSoft, c.conns)
		if s.sockCap < byFiles {
			why = "--max-sockets"
		}
		fmt.Fprintf(c.log, "loadgen: at most %d WebSockets open at once, by %s; WebSocket shoppers past that poll instead (about %d would want one)\n",
			s.sockCap, why, want)
	}
	s.sockets = make(chan struct{}, max(s.sockCap, 0))
}

func (s *scenario) prepareSale(ctx context.Context) error {
	c := s.c
	if c.sale != "" {
		var sl struct {
			State string `json:"state"`
			Hold  int    `json:"hold_ttl_seconds"`
		}
		if err := s.admin(ctx, "GET", "/api/v1/admin/sales/"+url.PathEscape(c.sale), nil, &sl); err != nil {
			return fmt.Errorf("--sale %s: %w", c.sale, err)
		}
		if sl.State == "sold_out" || sl.State == "closed" {
			return fmt.Errorf("--sale %s is %s: give a sale that is open or upcoming, or none to have one created", c.sale, sl.State)
		}
		s.sale, s.hold = c.sale, sl.Hold
	} else {
		s.sale, s.created, s.hold = "scen-"+strings.ToLower(c.runID), true, c.hold
		body := map[string]any{"id": s.sale, "name": "Load test " + c.runID, "price_cents": 100, "currency": "EUR",
			"stock": c.stock, "admission_rate": c.rate, "max_active": c.maxActive,
			"ticket_ttl_seconds": c.ticketTTL, "hold_ttl_seconds": c.hold, "per_user_limit": 1}
		if err := s.admin(ctx, "POST", "/api/v1/admin/sales", body, nil); err != nil {
			return fmt.Errorf("create the sale: %w", err)
		}
	}
	// The report compares the run's orders with what the summary gained.
	if err := s.admin(ctx, "GET", s.summaryPath(), nil, &s.base); err != nil {
		return fmt.Errorf("read the sale's summary: %w", err)
	}
	return nil
}

func (s *scenario) summaryPath() string {
	return "/api/v1/admin/sales/" + url.PathEscape(s.sale) + "/summary"
}

// closeSale closes the sale the run created, so its admitter stops.
func (s *scenario) closeSale() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sl struct {
		State string `json:"state"`
	}
	path := "/api/v1/admin/sales/" + url.PathEscape(s.sale)
	err := s.admin(ctx, "GET", path, nil, &sl)
	if err == nil && sl.State != "sold_out" && sl.State != "closed" {
		err = s.admin(ctx, "PATCH", path, map[string]any{"state": "closed"}, nil)
	}
	if err != nil {
		fmt.Fprintln(s.c.log, "loadgen: close the sale:", err)
	}
}

// admin makes an operator call; a non-2xx answer is an error.
func (s *scenario) admin(ctx context.Context, method, path string, body, into any) error {
	return adminCall(ctx, s.adm, s.c.url, s.c.adminToken, method, path, body, into)
}

// call makes a shopper's request; hdr are extra header name, value pairs.
// It answers the status (0 on a transport error), the decoded answer and
// Retry-After in seconds.
func (s *scenario) call(ctx context.Context, sh *scenShopper, method, path, token string, body []byte, hdr ...string) (int, *scenAnswer, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(s.c.url, "/")+path, rd)
	if err != nil {
		return 0, &scenAnswer{}, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if sh.addr != "" {
		req.Header.Set("X-Forwarded-For", sh.addr)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, &scenAnswer{}, 0, err
	}
	return readAnswer[scenAnswer](resp)
}

func (s *scenario) path(what string) string {
	return "/api/v1/sales/" + url.PathEscape(s.sale) + "/" + what
}

// maxRetries bounds how often one call is tried again after a rate limit,
// a 503 or a transport error, so a failing server ends the run.
const maxRetries = 20

// visit is one shopper: join, wait on a socket or by polling (leaving
// early if a leaver), then buy or walk away.
func (s *scenario) visit(ctx context.Context, sh *scenShopper) outcome {
	var err error
	if sh.tok, _, err = identity.Mint([]byte(s.c.secret), sh.user, 2*time.Hour); err != nil {
		s.errs.add("mint", 0, "", err)
		return outFailed
	}
	var a *scenAnswer
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		code, ans, ra, err := s.call(ctx, sh, "POST", s.path("join"), sh.tok, nil)
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
	ticket, out := s.wait(ctx, sh, a)
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
	return s.buy(ctx, sh, ticket)
}

// wait answers the ticket once the shopper is admitted (with outAdmitted),
// or how the visit ended.
func (s *scenario) wait(ctx context.Context, sh *scenShopper, a *scenAnswer) (string, outcome) {
	if tk, out, done := s.settled(a.State, a.Ticket); done {
		return tk, out
	}
	if sh.ws {
		select {
		case s.sockets <- struct{}{}:
			tk, out, fallback := s.waitWS(ctx, sh)
			<-s.sockets
			if !fallback {
				return tk, out
			}
			s.wsDropped.Add(1)
		default:
			s.wsCapped.Add(1)
		}
	}
	return s.waitPoll(ctx, sh, a.PollAfter)
}

// settled maps a state (or a frame type) that ends the wait.
func (s *scenario) settled(state, ticket string) (string, outcome, bool) {
	switch state {
	case "admitted":
		return ticket, outAdmitted, true
	case "purchased":
		return "", outBought, true // bought before: nothing to do
	case "expired":
		return "", outExpired, true
	case "sold_out", "closed":
		return "", outTurnedAway, true
	}
	return "", 0, false
}

// leave gives the place up, as a shopper closing the tab with "leave".
// One admitted a moment before is no longer in the queue (404
// not_in_queue): status says what became of them, and an admitted one
// walks away, leaving the ticket to expire.
func (s *scenario) leave(ctx context.Context, sh *scenShopper) (string, outcome) {
	ctx = context.WithoutCancel(ctx)
	code, a, _, err := s.call(ctx, sh, "DELETE", s.path("join"), sh.qt, nil)
	if err == nil && code == http.StatusNoContent {
		return "", outLeft
	}
	if err == nil && code == http.StatusNotFound && a.Error.Code == "not_in_queue" {
		code, a, _, err = s.call(ctx, sh, "GET", s.path("status"), sh.qt, nil)
		if err == nil && code == http.StatusOK {
			if tk, out, done := s.settled(a.State, a.Ticket); done {
				sh.buy = false
				return tk, out
			}
		}
		if code == http.StatusGone {
			return "", outTurnedAway
		}
		s.errs.add("status", code, a.Error.Code, err)
		return "", outFailed
	}
	s.errs.add("leave", code, a.Error.Code, err)
	return "", outFailed
}

func (sh *scenShopper) leaveDue(now time.Time) bool {
	return !sh.leaveAt.IsZero() && !now.Before(sh.leaveAt)
}

// waitPoll polls status at poll_after_seconds.
func (s *scenario) waitPoll(ctx context.Context, sh *scenShopper, pollAfter int) (string, outcome) {
	wait := time.Duration(max(pollAfter, 1)) * time.Second
	for retries := 0; ; {
		if !sh.leaveAt.IsZero() {
			wait = min(wait, max(time.Until(sh.leaveAt), 0))
		}
		if !sleepCtx(ctx, wait) {
			return "", outUnfinished
		}
		if sh.leaveDue(time.Now()) {
			return s.leave(ctx, sh)
		}
		code, a, ra, err := s.call(ctx, sh, "GET", s.path("status"), sh.qt, nil)
		if ctx.Err() != nil {
			return "", outUnfinished
		}
		if err == nil && code == http.StatusOK {
			if tk, out, done := s.settled(a.State, a.Ticket); done {
				return tk, out
			}
			wait, retries = time.Duration(max(a.PollAfter, 1))*time.Second, 0
			continue
		}
		s.errs.add("status", code, a.Error.Code, err)
		if code == http.StatusGone {
			return "", outTurnedAway
		}
		if retries++; !retryable(code, err) || retries > maxRetries {
			return "", outFailed
		}
		wait = time.Duration(max(ra, 1)) * time.Second
	}
}

// wsIdle is how long a socket may stay silent (no frame, no ping: the
// server pings every 25 s) before the shopper gives up on it and polls.
const wsIdle = 60 * time.Second

// waitWS holds a WebSocket until a frame ends the wait. fallback says the
// socket failed and the shopper should poll instead, as the waiting page
// does.
func (s *scenario) waitWS(ctx context.Context, sh *scenShopper) (ticket string, out outcome, fallback bool) {
	hdr := http.Header{}
	if sh.addr != "" {
		hdr.Set("X-Forwarded-For", sh.addr)
	}
	conn, resp, err := s.dialer.DialContext(ctx, s.wsURL+"?qt="+url.QueryEscape(sh.qt), hdr)
	if err != nil {
		if ctx.Err() != nil {
			return "", outUnfinished, false
		}
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		s.errs.add("ws", code, "", err)
		return "", 0, true
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
	deadline := func() time.Time {
		d := time.Now().Add(wsIdle)
		if !sh.leaveAt.IsZero() && sh.leaveAt.Before(d) {
			d = sh.leaveAt
		}
		return d
	}
	conn.SetPingHandler(func(data string) error {
		_ = conn.SetReadDeadline(deadline())
		return conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	var lastPos time.Time
	for {
		_ = conn.SetReadDeadline(deadline())
		_, msg, err := conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return "", outUnfinished, false
			}
			if sh.leaveDue(time.Now()) {
				tk, out := s.leave(ctx, sh)
				return tk, out, false
			}
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				switch ce.Code {
				case 4410: // sold out or closed: final
					return "", outTurnedAway, false
				case 4404, 4401, 4403:
					s.errs.add("ws", ce.Code, "", nil)
					return "", outFailed, false
				}
				s.errs.add("ws", ce.Code, "", nil)
				return "", 0, true
			}
			s.errs.add("ws", 0, "", err)
			return "", 0, true
		}
		var f scenAnswer
		if json.Unmarshal(msg, &f) != nil {
			s.errs.add("ws", 0, "bad_frame", nil)
			continue
		}
		if f.Type == "position" {
			now := time.Now()
			s.posFrames.Add(1)
			if !lastPos.IsZero() {
				s.gapMu.Lock()
				s.posGap.add(now.Sub(lastPos))
				s.gapMu.Unlock()
			}
			lastPos = now
			continue
		}
		if tk, out, done := s.settled(f.Type, f.Ticket); done {
			return tk, out, false
		}
	}
}

// buy checks out once, with an Idempotency-Key so that a retry after a
// lost answer cannot buy twice, and confirms a held order as the payment
// backend would. Calls already made finish after the run's stop (their own
// timeout bounds them), so every order the server took is counted.
func (s *scenario) buy(ctx context.Context, sh *scenShopper, ticket string) outcome {
	cctx := context.WithoutCancel(ctx)
	key := "loadgen-" + sh.user
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		code, a, ra, err := s.call(cctx, sh, "POST", s.path("checkout"), ticket, []byte(`{"quantity":1}`), "Idempotency-Key", key)
		s.checkoutLat.add(time.Since(t0))
		if err == nil && code == http.StatusCreated {
			s.checkouts.Add(1)
			if a.Status == "paid" || s.confirm(cctx, sh, a.ID) {
				s.paid.Add(1)
			}
			return outBought
		}
		s.errs.add("checkout", code, a.Error.Code, err)
		if code == http.StatusGone {
			return outTurnedAway
		}
		if !retryable(code, err) || attempt >= maxRetries || ctx.Err() != nil {
			return outFailed
		}
		if !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return outUnfinished
		}
	}
}

// confirm marks a held order paid with the admin token (the shop's payment
// backend's call).
func (s *scenario) confirm(ctx context.Context, sh *scenShopper, order string) bool {
	if order == "" {
		s.errs.add("checkout", http.StatusCreated, "no_order_id", nil)
		return false
	}
	for attempt := 0; ; attempt++ {
		code, a, ra, err := s.call(ctx, sh, "POST", "/api/v1/orders/"+url.PathEscape(order)+"/confirm", s.c.adminToken, nil)
		if err == nil && code == http.StatusOK {
			return a.Status == "paid"
		}
		s.errs.add("confirm", code, a.Error.Code, err)
		if !retryable(code, err) || attempt >= maxRetries || !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return false
		}
	}
}
