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
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/identity"
)

// farmConfig is what a botfarm run does: the sale it creates, the bots and
// honest shoppers it sends at it, and the operator's ban.
type farmConfig struct {
	url, dataDir, secret, adminToken, runID string

	prefixes, bots, botAddrs int           // bots: K prefixes (/24), N accounts in all, addresses used per prefix
	botPoll                  time.Duration // bots poll this often, whatever poll_after_seconds says
	botConns                 int           // connections the bots share (the honest shoppers have their own)
	honest                   int           // M honest shoppers, each from an address in a /24 of its own
	spread                   time.Duration // honest shoppers arrive uniformly over this

	units, maxActive, ticketTTL, abandon int
	rate                                 float64
	queueMode                            string
	prequeue                             time.Duration // prequeue: the sale starts this long after the joins do
	challenge                            string        // join_challenge: none or pow
	difficulty, maxUsersPerIP            int

	// botTry and honestTry price one proof-of-work try: on a bot farm's core
	// (0: measured here, this Go solver on one core) and in an honest
	// shopper's browser.
	botTry, honestTry time.Duration

	banAfter            time.Duration // 0: no ban
	openAfter           time.Duration // fifo: admission starts this long after the queue opens
	banTop, banMinUsers int
	maxTime, reqTimeout time.Duration
	seed                uint64

	out, log io.Writer
}

func botfarmFlags(fs *flag.FlagSet, c *farmConfig) {
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (started with --trusted-proxies 127.0.0.1/32)")
	fs.StringVar(&c.dataDir, "data-dir", "./.flashsale", "a --dev server's data dir (identity secret and admin token)")
	fs.StringVar(&c.secret, "identity-secret", "", "HS256 secret for user tokens (default: the dev one)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin token (default: the dev one in --data-dir)")
	fs.StringVar(&c.runID, "run", "", "run id, in the sale id and user ids (default: random)")
	fs.IntVar(&c.prefixes, "prefixes", 3, "bot farm: address prefixes (/24 each)")
	fs.IntVar(&c.bots, "bots", 3000, "bot farm: accounts in all, spread evenly over the prefixes")
	fs.IntVar(&c.botAddrs, "bot-addrs", 254, "bot farm: addresses used in each /24 (1-254)")
	fs.DurationVar(&c.botPoll, "bot-poll", 200*time.Millisecond, "bot farm: status poll interval (bots ignore poll_after_seconds)")
	fs.IntVar(&c.botConns, "bot-conns", 512, "bot farm: HTTP connections shared by all bots")
	fs.IntVar(&c.honest, "honest", 2000, "honest shoppers, each from its own address and /24")
	fs.DurationVar(&c.spread, "spread", 5*time.Second, "honest shoppers arrive uniformly over this")
	fs.IntVar(&c.units, "units", 500, "sale: stock")
	fs.Float64Var(&c.rate, "rate", 50, "sale: admission_rate")
	fs.IntVar(&c.maxActive, "max-active", 100, "sale: max_active")
	fs.IntVar(&c.ticketTTL, "ticket-ttl", 30, "sale: ticket_ttl_seconds")
	fs.IntVar(&c.abandon, "abandon", 10, "sale: abandon_after_seconds")
	fs.StringVar(&c.queueMode, "queue-mode", "fifo", "sale: queue_mode (fifo or prequeue)")
	fs.DurationVar(&c.prequeue, "prequeue", 10*time.Second, "queue-mode prequeue: the sale starts this long after the first joins")
	fs.DurationVar(&c.openAfter, "open-after", 0, "queue-mode fifo: the queue opens at the start and admission this long after (0: at once), "+
		"as an operator holds a drop to look at /sources and ban before anyone is admitted")
	fs.StringVar(&c.challenge, "challenge", "none", "sale: join_challenge (none or pow)")
	fs.IntVar(&c.difficulty, "difficulty", 18, "sale: pow_difficulty")
	fs.IntVar(&c.maxUsersPerIP, "max-users-per-ip", 0, "sale: max_users_per_ip (0: off)")
	fs.DurationVar(&c.botTry, "bot-try", 0, "one proof-of-work try on a bot's core (0: measure this Go solver on one core)")
	fs.DurationVar(&c.honestTry, "honest-try", 2*time.Microsecond, "one proof-of-work try in an honest shopper's browser")
	fs.DurationVar(&c.banAfter, "ban-after", 0, "ban the top sources of /sources this long after the start (0: no ban)")
	fs.IntVar(&c.banTop, "ban-top", 3, "how many top sources to ban")
	fs.IntVar(&c.banMinUsers, "ban-min-users", 20, "ban only sources with at least this many users (an operator's judgement)")
	fs.DurationVar(&c.maxTime, "max-time", 2*time.Minute, "stop the shoppers after this, sold out or not")
	fs.DurationVar(&c.reqTimeout, "timeout", 30*time.Second, "one request's timeout")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the arrival times and addresses")
}

func (c *farmConfig) check() error {
	switch {
	case c.prefixes < 1 || c.prefixes > 200:
		return errors.New("--prefixes: 1 to 200")
	case c.bots < 0 || c.honest < 0 || c.bots+c.honest == 0:
		return errors.New("--bots and --honest: at least one shopper in all")
	case c.botAddrs < 1 || c.botAddrs > 254:
		return errors.New("--bot-addrs: 1 to 254")
	case c.honest > 250*256:
		return errors.New("--honest: at most 64,000 (one /24 each in 10.0.0.0/8)")
	case c.challenge != "none" && c.challenge != "pow":
		return errors.New("--challenge: none or pow")
	case c.botPoll <= 0 || c.maxTime <= 0 || c.botConns < 1:
		return errors.New("--bot-poll, --max-time and --bot-conns must be positive")
	}
	return nil
}

// A shopper is a bot or an honest shopper: one user, one address.
type shopper struct {
	bot    bool
	farm   int // bots: which prefix
	n      int // index among its kind
	user   string
	token  string
	addr   netip.Addr
	at     time.Duration // when it joins, counted from the start
	chall  string        // proof of work: the challenge, fetched before the start
	nonce  string
	tries  uint64
	bought atomic.Bool
}

// farmPrefix is bot prefix k: the three documentation /24s, then /24s of
// 100.64.0.0/10 (shared address space), none of them in 10.0.0.0/8 where
// the honest shoppers are.
func farmPrefix(k int) netip.Prefix {
	doc := []string{"203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24"}
	if k < len(doc) {
		return netip.MustParsePrefix(doc[k])
	}
	k -= len(doc)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(k>>8), byte(k), 0}), 24)
}

// plan makes the shoppers: bot i is in prefix i mod K, on address
// 1 + (i/K) mod bot-addrs of it; honest shopper j is in 10.a.b.0/24 of its
// own, on a random host. Join times are set by schedule.
func plan(c *farmConfig, rnd *rand.Rand) []*shopper {
	var all []*shopper
	for i := range c.bots {
		k := i % c.prefixes
		b := farmPrefix(k).Addr().As4()
		b[3] = byte(1 + (i/c.prefixes)%c.botAddrs)
		all = append(all, &shopper{bot: true, farm: k, n: i, user: fmt.Sprintf("%s-bot-%d", c.runID, i),
			addr: netip.AddrFrom4(b)})
	}
	for j := range c.honest {
		all = append(all, &shopper{n: j, user: fmt.Sprintf("%s-shopper-%d", c.runID, j),
			addr: netip.AddrFrom4([4]byte{10, byte(1 + j/256), byte(j % 256), byte(1 + rnd.IntN(254))})})
	}
	return all
}

// schedule sets when each shopper joins. Without proof of work the bots go
// at once and the honest shoppers arrive uniformly over the spread. With
// it, each bot prefix is one machine with one core: its solves are
// serialized, each taking its tries at botTry; an honest shopper solves in
// their own browser after arriving, at honestTry a try.
func schedule(c *farmConfig, all []*shopper, rnd *rand.Rand) {
	farmClock := make([]time.Duration, c.prefixes)
	for _, s := range all {
		if s.bot {
			farmClock[s.farm] += time.Duration(s.tries) * c.botTry
			s.at = farmClock[s.farm]
			continue
		}
		s.at = time.Duration(rnd.Int64N(int64(c.spread) + 1))
		s.at += time.Duration(s.tries) * c.honestTry
	}
}

// tally counts answers by a label such as "join 403 ip_limit".
type tally struct {
	mu sync.Mutex
	m  map[string]int64
}

func (t *tally) add(label string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]int64{}
	}
	t.m[label]++
}

func (t *tally) total(match func(string) bool) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var n int64
	for k, v := range t.m {
		if match(k) {
			n += v
		}
	}
	return n
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, t.m[k])
	}
	return strings.Join(parts, ", ")
}

// answer is what the shopper API answers, as far as a shopper reads it.
type answer struct {
	State      string `json:"state"`
	Ticket     string `json:"ticket"`
	QueueToken string `json:"queue_token"`
	PollAfter  int    `json:"poll_after_seconds"`
	Kind       string `json:"kind"`
	Challenge  string `json:"challenge"`
	Difficulty int    `json:"difficulty"`
	ID         string `json:"id"`
	Error      struct {
		Code string `json:"code"`
	} `json:"error"`
}

type farm struct {
	c        *farmConfig
	sale     string
	botHTTP  *http.Client
	shopHTTP *http.Client
	admHTTP  *http.Client
	start    time.Time

	botCodes, honestCodes    tally
	botsJoined, honestJoined atomic.Int64
	botsSold, honestSold     atomic.Int64
	lastSale                 atomic.Int64 // ns since start
	botsBanned               atomic.Int64
	bansMu                   sync.Mutex
	bans                     []farmBan
}

type farmBan struct {
	id, prefix  string
	users, join int64
	at          time.Duration
}

func transport(conns int) *http.Transport {
	return &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: time.Minute}
}

// botfarmMain parses the botfarm mode's flags and runs it.
func botfarmMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen botfarm", flag.ContinueOnError)
	c := &farmConfig{out: os.Stdout, log: os.Stderr}
	botfarmFlags(fs, c)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.secret == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "identity-secret"))
		if err != nil {
			return fmt.Errorf("no --identity-secret and no dev secret: %w", err)
		}
		c.secret = strings.TrimSpace(string(b))
	}
	if c.adminToken == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "admin-token"))
		if err != nil {
			return fmt.Errorf("no --admin-token and no dev one: %w", err)
		}
		c.adminToken = strings.TrimSpace(string(b))
	}
	if c.runID == "" {
		c.runID = fmt.Sprintf("bf%d", time.Now().UnixNano()%1e9)
	}
	_, err := runFarm(ctx, c)
	return err
}

// farmResult is a run's outcome, for the report and for tests.
type farmResult struct {
	Sale                     string
	BotsSold, HonestSold     int64
	BotsJoined, HonestJoined int64
	HonestCodes, BotCodes    string
	HonestRefused            int64 // honest answers of 403 or 429
	SummarySold              int64
	Consistent               bool
	Bans                     []string
	Elapsed, LastSale        time.Duration
}

// runFarm creates the sale, prepares the shoppers (tokens; with proof of
// work, their challenges fetched and solved), starts the clock, lets every
// shopper loose, bans the top sources when asked, and reports.
func runFarm(ctx context.Context, c *farmConfig) (*farmResult, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.out == nil {
		c.out = io.Discard
	}
	if c.log == nil {
		c.log = io.Discard
	}
	f := &farm{c: c, sale: strings.ToLower(c.runID),
		botHTTP:  &http.Client{Timeout: c.reqTimeout, Transport: transport(c.botConns)},
		shopHTTP: &http.Client{Timeout: c.reqTimeout, Transport: transport(max(c.honest, 16))},
		admHTTP:  &http.Client{Timeout: c.reqTimeout},
	}
	defer f.botHTTP.CloseIdleConnections()
	defer f.shopHTTP.CloseIdleConnections()
	rnd := rand.New(rand.NewPCG(c.seed, 0x5eed))

	if err := f.createSale(ctx); err != nil {
		return nil, err
	}
	defer f.closeSale()
	all := plan(c, rnd)
	for _, s := range all {
		var err error
		if s.token, _, err = identity.Mint([]byte(c.secret), s.user, 2*time.Hour); err != nil {
			return nil, err
		}
	}
	if c.challenge == "pow" {
		if c.botTry <= 0 {
			c.botTry = measureTry()
			fmt.Fprintf(c.log, "one proof-of-work try on one core here: %s (difficulty %d: %.0f ms a solve on average)\n",
				c.botTry, c.difficulty, float64(c.botTry)*float64(uint64(1)<<c.difficulty)/1e6)
		}
		if err := f.prepareProofs(ctx, all); err != nil {
			return nil, err
		}
	}
	schedule(c, all, rnd)

	runCtx, cancel := context.WithTimeout(ctx, c.maxTime)
	defer cancel()
	f.start = time.Now()
	open := func() error {
		return f.admin(runCtx, "PATCH", "/api/v1/admin/sales/"+f.sale, map[string]any{"state": "open"}, nil)
	}
	var bg sync.WaitGroup
	if delay := c.prequeue; c.queueMode == "prequeue" || c.openAfter > 0 {
		if c.queueMode != "prequeue" {
			delay = c.openAfter
		}
		bg.Go(func() {
			if sleepCtx(runCtx, delay) {
				if err := open(); err != nil {
					fmt.Fprintln(c.log, "open the sale:", err)
				}
			}
		})
	} else if err := open(); err != nil {
		return nil, err
	}
	if c.banAfter > 0 {
		bg.Go(func() {
			if sleepCtx(runCtx, c.banAfter) {
				f.banTopSources(runCtx)
			}
		})
	}
	var wg sync.WaitGroup
	for _, s := range all {
		if s.bot {
			wg.Go(func() { f.runBot(runCtx, s) })
		} else {
			wg.Go(func() { f.runHonest(runCtx, s) })
		}
	}
	stopProgress := make(chan struct{})
	bg.Go(func() { f.progress(stopProgress) })
	wg.Wait()
	elapsed := time.Since(f.start)
	close(stopProgress)
	cancel()
	bg.Wait()
	return f.report(ctx, elapsed)
}

// createSale makes the run's sale, upcoming (its queue open at once) so
// that challenges can be fetched before the clock starts; the start opens it.
func (f *farm) createSale(ctx context.Context) error {
	c := f.c
	body := map[string]any{"id": f.sale, "name": "Bot farm " + c.runID, "price_cents": 100, "currency": "EUR",
		"stock": c.units, "starts_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
		"admission_rate": c.rate, "max_active": c.maxActive, "ticket_ttl_seconds": c.ticketTTL,
		"abandon_after_seconds": c.abandon, "per_user_limit": 1, "queue_mode": c.queueMode,
		"join_challenge": c.challenge, "pow_difficulty": c.difficulty, "max_users_per_ip": c.maxUsersPerIP}
	if err := f.admin(ctx, "POST", "/api/v1/admin/sales", body, nil); err != nil {
		return fmt.Errorf("create the sale: %w", err)
	}
	return nil
}

// closeSale closes the run's sale (its admitter stops, anyone left gets
// 410) and lifts the run's bans, which are the sale's own anyway.
func (f *farm) closeSale() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sl struct {
		State string `json:"state"`
	}
	err := f.admin(ctx, "GET", "/api/v1/admin/sales/"+f.sale, nil, &sl)
	if err == nil && sl.State != "sold_out" && sl.State != "closed" {
		err = f.admin(ctx, "PATCH", "/api/v1/admin/sales/"+f.sale, map[string]any{"state": "closed"}, nil)
	}
	if err != nil {
		fmt.Fprintln(f.c.log, "close the sale:", err)
	}
	f.bansMu.Lock()
	defer f.bansMu.Unlock()
	for _, b := range f.bans {
		if err := f.admin(ctx, "DELETE", "/api/v1/admin/bans/"+b.id, nil, nil); err != nil {
			fmt.Fprintln(f.c.log, "lift ban", b.id, err)
		}
	}
}

// admin makes an operator call; a non-2xx answer is an error.
func (f *farm) admin(ctx context.Context, method, path string, body, into any) error {
	return adminCall(ctx, f.admHTTP, f.c.url, f.c.adminToken, method, path, body, into)
}

// call makes a shopper's request from its address (X-Forwarded-For, which
// the server believes from loopback with --trusted-proxies 127.0.0.1/32).
// It answers the status (0 on a transport error), the decoded answer and
// Retry-After in seconds.
func (f *farm) call(ctx context.Context, hc *http.Client, s *shopper, method, path, token string, body []byte) (int, *answer, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.c.url+path, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Forwarded-For", s.addr.String())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	return readAnswer[answer](resp)
}

// label names an answer for a tally: "join 403 ip_limit", "status error".
func label(call string, code int, a *answer, err error) string {
	if err != nil {
		return call + " error"
	}
	if a != nil && a.Error.Code != "" {
		return fmt.Sprintf("%s %d %s", call, code, a.Error.Code)
	}
	return fmt.Sprintf("%s %d", call, code)
}

// retryable says a refusal is worth asking again: a rate limit, a 503, a
// transport error.
func retryable(code int, err error) bool {
	return err != nil || code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (f *farm) joinBody(s *shopper) []byte {
	if s.nonce == "" {
		return nil
	}
	b, _ := json.Marshal(map[string]any{"pow": map[string]string{"challenge": s.chall, "nonce": s.nonce}})
	return b
}

func (f *farm) path(what string) string { return "/api/v1/sales/" + f.sale + "/" + what }

// runBot is one bot account: it joins as soon as its machine has its proof
// (at once without one), polls every bot-poll whatever the server says,
// and buys the moment it is admitted. A refusal that is final (403, 404,
// 410) ends it; a rate limit or a 503 does not slow it down.
func (f *farm) runBot(ctx context.Context, s *shopper) {
	if !sleepCtx(ctx, time.Until(f.start.Add(s.at))) {
		return
	}
	var a *answer
	for {
		code, ans, _, err := f.call(ctx, f.botHTTP, s, "POST", f.path("join"), s.token, f.joinBody(s))
		if ctx.Err() != nil {
			return
		}
		if err == nil && code/100 == 2 {
			a = ans
			break
		}
		f.botCodes.add(label("join", code, ans, err))
		f.noteBanned(code, ans)
		if !retryable(code, err) || !sleepCtx(ctx, f.c.botPoll) {
			return
		}
	}
	f.botsJoined.Add(1)
	qt := a.QueueToken
	for {
		switch a.State {
		case "admitted":
			f.buy(ctx, f.botHTTP, s, a.Ticket, &f.botCodes, false)
			return
		case "purchased", "expired":
			f.botCodes.add("status " + a.State)
			return
		}
		if !sleepCtx(ctx, f.c.botPoll) {
			return
		}
		code, ans, _, err := f.call(ctx, f.botHTTP, s, "GET", f.path("status"), qt, nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil && code/100 == 2 {
			a = ans
			continue
		}
		f.botCodes.add(label("status", code, ans, err))
		f.noteBanned(code, ans)
		if !retryable(code, err) {
			return
		}
		a = &answer{}
	}
}

func (f *farm) noteBanned(code int, a *answer) {
	if code == http.StatusForbidden && a != nil && a.Error.Code == "banned" {
		f.botsBanned.Add(1)
	}
}

// runHonest is one honest shopper: arrives (and, with proof of work,
// solves in the browser), joins, polls at poll_after_seconds, waits out a
// Retry-After, and buys when admitted. A final refusal ends them.
func (f *farm) runHonest(ctx context.Context, s *shopper) {
	if !sleepCtx(ctx, time.Until(f.start.Add(s.at))) {
		return
	}
	var a *answer
	for {
		code, ans, ra, err := f.call(ctx, f.shopHTTP, s, "POST", f.path("join"), s.token, f.joinBody(s))
		if ctx.Err() != nil {
			return
		}
		if err == nil && code/100 == 2 {
			a = ans
			break
		}
		f.honestCodes.add(label("join", code, ans, err))
		if !retryable(code, err) || !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return
		}
	}
	f.honestJoined.Add(1)
	qt := a.QueueToken
	for {
		switch a.State {
		case "admitted":
			f.buy(ctx, f.shopHTTP, s, a.Ticket, &f.honestCodes, true)
			return
		case "purchased", "expired":
			f.honestCodes.add("status " + a.State)
			return
		}
		wait := time.Duration(max(a.PollAfter, 1)) * time.Second
		if !sleepCtx(ctx, wait) {
			return
		}
		code, ans, ra, err := f.call(ctx, f.shopHTTP, s, "GET", f.path("status"), qt, nil)
		if ctx.Err() != nil {
			return
		}
		if err == nil && code/100 == 2 {
			a = ans
			continue
		}
		f.honestCodes.add(label("status", code, ans, err))
		if !retryable(code, err) {
			return
		}
		// Wait out the Retry-After, less the poll interval waited next.
		a = &answer{PollAfter: max(ra, 1)}
	}
}

// buy checks out with the ticket at once; a retryable refusal is tried
// again (politely by an honest shopper).
func (f *farm) buy(ctx context.Context, hc *http.Client, s *shopper, ticket string, codes *tally, polite bool) {
	for {
		code, ans, ra, err := f.call(ctx, hc, s, "POST", f.path("checkout"), ticket, []byte(`{"quantity":1}`))
		if ctx.Err() != nil {
			return
		}
		if code == http.StatusCreated {
			s.bought.Store(true)
			if s.bot {
				f.botsSold.Add(1)
			} else {
				f.honestSold.Add(1)
			}
			f.lastSale.Store(int64(time.Since(f.start)))
			return
		}
		codes.add(label("checkout", code, ans, err))
		if s.bot {
			f.noteBanned(code, ans)
		}
		wait := f.c.botPoll
		if polite {
			wait = time.Duration(max(ra, 1)) * time.Second
		}
		if !retryable(code, err) || !sleepCtx(ctx, wait) {
			return
		}
	}
}

// banTopSources does what an operator would: read the sale's sources and
// ban the top ones (only those with many users: one shopper's /24 is not
// a farm), for this sale.
func (f *farm) banTopSources(ctx context.Context) {
	var src struct {
		Sources []struct {
			Prefix string `json:"prefix"`
			Users  int64  `json:"users"`
			Joins  int64  `json:"joins"`
		} `json:"sources"`
	}
	if err := f.admin(ctx, "GET", "/api/v1/admin/sales/"+f.sale+"/sources", nil, &src); err != nil {
		fmt.Fprintln(f.c.log, "read the sources:", err)
		return
	}
	for i, s := range src.Sources {
		if i >= f.c.banTop || s.Users < int64(f.c.banMinUsers) {
			break
		}
		var ban answer
		err := f.admin(ctx, "POST", "/api/v1/admin/bans", map[string]any{"ip": s.Prefix, "sale_id": f.sale,
			"ttl_seconds": 3600, "reason": "loadgen botfarm " + f.c.runID + ": a top source"}, &ban)
		if err != nil {
			fmt.Fprintln(f.c.log, "ban", s.Prefix, err)
			continue
		}
		at := time.Since(f.start)
		fmt.Fprintf(f.c.log, "  %4.1fs  banned %s (%d users, %d joins)\n", at.Seconds(), s.Prefix, s.Users, s.Joins)
		f.bansMu.Lock()
		f.bans = append(f.bans, farmBan{id: ban.ID, prefix: s.Prefix, users: s.Users, join: s.Joins, at: at})
		f.bansMu.Unlock()
	}
}

func (f *farm) progress(stop <-chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			fmt.Fprintf(f.c.log, "  %4.0fs  bots joined %d bought %d · honest joined %d bought %d\n",
				time.Since(f.start).Seconds(), f.botsJoined.Load(), f.botsSold.Load(),
				f.honestJoined.Load(), f.honestSold.Load())
		}
	}
}

// measureTry prices one proof-of-work try of this solver on one core (the
// bots' machines are taken to be like this one's cores).
func measureTry() time.Duration {
	const tries = 1 << 21
	t0 := time.Now()
	_, n, _ := solvePoW(strings.Repeat("x", 52), 256, tries) // cannot succeed: counts every try
	return time.Since(t0) / time.Duration(n)
}

// prepareProofs fetches every shopper's challenge and solves it, before the
// clock starts, on all the cores here; the schedule then charges each solve
// to the machine that would have done it (a bot prefix's one core, or the
// honest shopper's browser). Solving here during the run would charge all
// of them to this machine's two cores, shared with the server.
func (f *farm) prepareProofs(ctx context.Context, all []*shopper) error {
	t0 := time.Now()
	jobs := make(chan *shopper)
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for s := range jobs {
				if err := f.fetchChallenge(ctx, s); err != nil {
					failed.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	for _, s := range all {
		if failed.Load() != nil || ctx.Err() != nil {
			break
		}
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	if e := failed.Load(); e != nil {
		return *e
	}
	fmt.Fprintf(f.c.log, "fetched %d challenges in %.1fs; solving them on %d cores\n",
		len(all), time.Since(t0).Seconds(), runtime.GOMAXPROCS(0))
	t0 = time.Now()
	var done atomic.Int64
	solve := make(chan *shopper)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for s := range solve {
				nonce, tries, err := solvePoW(s.chall, f.c.difficulty, 1<<40)
				if err != nil {
					failed.CompareAndSwap(nil, &err)
					continue
				}
				s.nonce, s.tries = nonce, tries
				if n := done.Add(1); n%500 == 0 {
					fmt.Fprintf(f.c.log, "  solved %d/%d (%.0fs)\n", n, len(all), time.Since(t0).Seconds())
				}
			}
		})
	}
	for _, s := range all {
		if ctx.Err() != nil {
			break
		}
		solve <- s
	}
	close(solve)
	wg.Wait()
	if e := failed.Load(); e != nil {
		return *e
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(f.c.log, "solved %d challenges in %.1fs\n", len(all), time.Since(t0).Seconds())
	return nil
}

// fetchChallenge gets the shopper's challenge from its own address,
// waiting out rate limits.
func (f *farm) fetchChallenge(ctx context.Context, s *shopper) error {
	for {
		code, a, ra, err := f.call(ctx, f.shopHTTP, s, "POST", f.path("challenge"), s.token, nil)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil && code == http.StatusOK {
			if a.Kind != "pow" || a.Challenge == "" || a.Difficulty != f.c.difficulty {
				return fmt.Errorf("challenge for %s: kind %q difficulty %d, want pow at %d", s.user, a.Kind, a.Difficulty, f.c.difficulty)
			}
			s.chall = a.Challenge
			return nil
		}
		if !retryable(code, err) {
			return fmt.Errorf("challenge for %s: %s", s.user, label("challenge", code, a, err))
		}
		if !sleepCtx(ctx, time.Duration(max(ra, 1))*time.Second) {
			return ctx.Err()
		}
	}
}

// report prints the outcome and the sale's own summary.
func (f *farm) report(ctx context.Context, elapsed time.Duration) (*farmResult, error) {
	c := f.c
	r := &farmResult{Sale: f.sale, BotsSold: f.botsSold.Load(), HonestSold: f.honestSold.Load(),
		BotsJoined: f.botsJoined.Load(), HonestJoined: f.honestJoined.Load(),
		HonestCodes: f.honestCodes.String(), BotCodes: f.botCodes.String(),
		Elapsed: elapsed, LastSale: time.Duration(f.lastSale.Load())}
	r.HonestRefused = f.honestCodes.total(func(k string) bool {
		return strings.Contains(k, " 403") || strings.Contains(k, " 429")
	})
	var sum struct {
		Sold       int64 `json:"sold"`
		Consistent bool  `json:"consistent"`
	}
	if err := f.admin(ctx, "GET", "/api/v1/admin/sales/"+f.sale+"/summary", nil, &sum); err != nil {
		return nil, err
	}
	r.SummarySold, r.Consistent = sum.Sold, sum.Consistent
	w := c.out
	fmt.Fprintf(w, "botfarm %s: sale %s, %d units, admission_rate %g, max_active %d, queue_mode %s",
		c.runID, f.sale, c.units, c.rate, c.maxActive, c.queueMode)
	if c.queueMode == "prequeue" {
		fmt.Fprintf(w, " (starts %s after the first joins)", c.prequeue)
	} else if c.openAfter > 0 {
		fmt.Fprintf(w, " (admission starts %s after the queue opens)", c.openAfter)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  bots: %d prefixes x %d accounts (%d addresses per /24), polling every %s\n",
		c.prefixes, c.bots/c.prefixes, c.botAddrs, c.botPoll)
	fmt.Fprintf(w, "  honest: %d shoppers, one /24 each, arriving over %s, polling at poll_after_seconds\n", c.honest, c.spread)
	def := []string{}
	if c.challenge == "pow" {
		def = append(def, fmt.Sprintf("proof of work %d bits (a bot prefix: one core, %s a try = %.0f ms a solve; a browser: %s a try = %.0f ms)",
			c.difficulty, c.botTry, float64(c.botTry)*float64(uint64(1)<<c.difficulty)/1e6,
			c.honestTry, float64(c.honestTry)*float64(uint64(1)<<c.difficulty)/1e6))
	}
	if c.maxUsersPerIP > 0 {
		def = append(def, fmt.Sprintf("max_users_per_ip %d", c.maxUsersPerIP))
	}
	if c.banAfter > 0 {
		def = append(def, fmt.Sprintf("ban of the top %d sources at %s", c.banTop, c.banAfter))
	}
	if len(def) == 0 {
		def = append(def, "none in the sale")
	}
	fmt.Fprintf(w, "  defences: %s (rate limits: as the server was started)\n", strings.Join(def, ", "))
	for _, b := range f.bans {
		fmt.Fprintf(w, "  banned %s at %.1fs (%d users, %d joins)\n", b.prefix, b.at.Seconds(), b.users, b.join)
	}
	sold := r.BotsSold + r.HonestSold
	share := 0.0
	if sold > 0 {
		share = 100 * float64(r.BotsSold) / float64(sold)
	}
	fmt.Fprintf(w, "  units sold: %d (summary: %d, consistent %v): bots %d, honest %d; share to bots %.1f%% (%.1f%% of the %d units)\n",
		sold, r.SummarySold, r.Consistent, r.BotsSold, r.HonestSold, share, 100*float64(r.BotsSold)/float64(c.units), c.units)
	fmt.Fprintf(w, "  time: last unit sold at %.1fs, every shopper done at %.1fs\n", r.LastSale.Seconds(), elapsed.Seconds())
	fmt.Fprintf(w, "  bots: %d joined, %d bought, %d stopped by a ban; refusals: %s\n",
		r.BotsJoined, r.BotsSold, f.botsBanned.Load(), r.BotCodes)
	fmt.Fprintf(w, "  honest: %d joined, %d bought; non-2xx answers: %s\n", r.HonestJoined, r.HonestSold, r.HonestCodes)
	fmt.Fprintf(w, "  honest 403 or 429 answers: %d\n", r.HonestRefused)
	for _, b := range f.bans {
		r.Bans = append(r.Bans, b.prefix)
	}
	return r, nil
}
