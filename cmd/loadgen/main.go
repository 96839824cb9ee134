// Command loadgen drives load at a flashsale server and at the baselines
// its figures are compared with, on this machine, with a progress line each
// second and a final report.
//
//	loadgen join     --url U --sale S          joins, each a different user (--xff: from its own address)
//	loadgen botfarm  --url U                   a bot farm and honest shoppers at a sale it creates
//	loadgen bulkjoin --url U --sale S -n N     N users (UUID ids) join one sale as fast as it takes them
//	loadgen scenario --url U --out DIR         realistic shoppers (join, socket or poll, buy, leave); live line, report with charts
//	loadgen soak     --url U --debug-url D     10 minutes of steady churn; the node's goroutines and heap sampled and judged flat
//	loadgen tokens   -n N                      print N user tokens, one a line (for wrk scripts)
//	loadgen tickets  --sale S -n N             print N tickets of sale S, one a line (for cmd/loadgen/wrk/checkout.lua)
//	loadgen checkout --url U --sale S          checkouts, each a different user's ticket; then the orders checked in MySQL
//	loadgen verify   --sale S --user-prefix P  after a wrk run: its users' orders in MySQL against its 2xx count (-n)
//	loadgen get      --url U                   GETs of one URL (e.g. the hello server)
//	loadgen hello    --listen ADDR             serve a hello-world HTTP server (the baseline)
//	loadgen insert   --mysql-dsn DSN           single-row INSERTs into an orders-shaped table
//
// Tokens and tickets are minted locally: --identity-secret (or the dev
// secret in --data-dir) for user tokens, --ticket-key (or the dev key in
// --data-dir) for tickets.
package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/flashsale/flashsale/identity"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type options struct {
	url, sale, dataDir, secret, keyPath, dsn, listen, prefix string
	conc, premint                                            int
	dur                                                      time.Duration
	max                                                      int64
	xff, verify                                              bool
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("a mode is required: join, bulkjoin, checkout, get, hello, insert, botfarm, scenario, soak, tokens, tickets, verify")
	}
	mode := args[0]
	if mode == "botfarm" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return botfarmMain(ctx, args[1:])
	}
	if mode == "bulkjoin" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return bulkjoinMain(ctx, args[1:])
	}
	if mode == "scenario" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return scenarioMain(ctx, args[1:])
	}
	if mode == "soak" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return soakMain(ctx, args[1:])
	}
	fs := flag.NewFlagSet("loadgen "+mode, flag.ContinueOnError)
	var o options
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "server base URL (get: the full URL)")
	fs.StringVar(&o.sale, "sale", "demo-phone", "sale id")
	fs.StringVar(&o.dataDir, "data-dir", "./.flashsale", "a --dev server's data dir (secret and key)")
	fs.StringVar(&o.secret, "identity-secret", "", "HS256 secret for user tokens (default: the dev one)")
	fs.StringVar(&o.keyPath, "ticket-key", "", "ticket key PEM (default: the dev one)")
	fs.StringVar(&o.dsn, "mysql-dsn", "", "insert: database (made if missing, its table dropped after; default "+benchDSN+"); checkout, verify: the node's database, where the run's orders are checked")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:8099", "hello: address")
	fs.StringVar(&o.prefix, "user-prefix", "", "prefix of user ids (default: random per run)")
	fs.IntVar(&o.conc, "c", 64, "concurrent workers")
	fs.IntVar(&o.premint, "premint", 200000, "join, checkout: tokens minted before the clock starts")
	fs.DurationVar(&o.dur, "d", 10*time.Second, "duration")
	fs.Int64Var(&o.max, "n", 0, "stop after this many requests (0: by duration only); tokens, tickets: how many; verify: the run's 2xx count")
	fs.BoolVar(&o.verify, "verify", true, "checkout: check the run's orders in MySQL (--mysql-dsn) against its 201s")
	fs.BoolVar(&o.xff, "xff", false, "join: each request from its own address in 10.0.0.0/8, by X-Forwarded-For (the server needs --trusted-proxies 127.0.0.1/32)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if o.prefix == "" {
		o.prefix = fmt.Sprintf("lg%d-", time.Now().UnixNano()%1e9)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch mode {
	case "hello":
		return hello(ctx, o.listen)
	case "join":
		return joinLoad(ctx, o)
	case "checkout":
		return checkoutLoad(ctx, o, o.verify)
	case "get":
		client := newClient(o.conc)
		return drive(ctx, o, "GET "+o.url, func(int64) (int, error) { return do(client, "GET", o.url, "", "") })
	case "insert":
		return insertLoad(ctx, o)
	case "tokens":
		return printTokens(o)
	case "tickets":
		return printTickets(o)
	case "verify":
		return verifyMain(ctx, o)
	}
	return fmt.Errorf("unknown mode %q", mode)
}

func hello(ctx context.Context, addr string) error {
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"hello":"world"}` + "\n"))
	})}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	fmt.Fprintln(os.Stderr, "hello server on", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newClient(conc int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conc * 2, MaxIdleConnsPerHost: conc * 2, MaxConnsPerHost: conc * 2, IdleConnTimeout: time.Minute,
	}}
}

// do makes one request; hdr are extra header name, value pairs.
func do(c *http.Client, method, url, token, body string, hdr ...string) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func secret(o options) ([]byte, error) {
	if o.secret != "" {
		return []byte(o.secret), nil
	}
	b, err := os.ReadFile(filepath.Join(o.dataDir, "identity-secret"))
	if err != nil {
		return nil, fmt.Errorf("no --identity-secret and no dev secret: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

func joinLoad(ctx context.Context, o options) error {
	sec, err := secret(o)
	if err != nil {
		return err
	}
	// Tokens are minted before the clock starts (the shop mints them, not
	// the waiting room); past the pool, each request mints its own.
	toks := make([]string, o.premint)
	for i := range toks {
		if toks[i], _, err = identity.Mint(sec, fmt.Sprintf("%s%d", o.prefix, i+1), time.Hour); err != nil {
			return err
		}
	}
	client := newClient(o.conc)
	url := o.url + "/api/v1/sales/" + o.sale + "/join"
	return drive(ctx, o, "join "+o.sale, func(i int64) (int, error) {
		var tok string
		if i <= int64(len(toks)) {
			tok = toks[i-1]
		} else if tok, _, err = identity.Mint(sec, fmt.Sprintf("%s%d", o.prefix, i), time.Hour); err != nil {
			return 0, err
		}
		if o.xff {
			return do(client, "POST", url, tok, "", "X-Forwarded-For", xffAddr(i).String())
		}
		return do(client, "POST", url, tok, "")
	})
}

// xffAddr is request i's client address for --xff: 10.0.0.0/8 counted up
// from 10.0.0.1, so every request of a run (up to 16 million) is a
// different address, hence a different rate-limit key.
func xffAddr(i int64) netip.Addr {
	v := uint32(10<<24) + uint32(i%(1<<24))
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// printTokens writes o.max user tokens (distinct users, valid 2 h) to
// stdout, one a line, for load tools that cannot mint them (wrk's Lua).
func printTokens(o options) error {
	if o.max <= 0 {
		return errors.New("tokens: -n must be at least 1")
	}
	sec, err := secret(o)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(os.Stdout)
	for i := int64(1); i <= o.max; i++ {
		tok, _, err := identity.Mint(sec, fmt.Sprintf("%s%d", o.prefix, i), 2*time.Hour)
		if err != nil {
			return err
		}
		w.WriteString(tok)
		w.WriteByte('\n')
	}
	return w.Flush()
}

// benchDSN is insert's database when --mysql-dsn is not given.
const benchDSN = "flashsale:flashsale@tcp(127.0.0.1:3306)/flashsale_bench?parseTime=true"

func insertLoad(ctx context.Context, o options) error {
	if o.dsn == "" {
		o.dsn = benchDSN
	}
	// create the database if missing
	base := o.dsn[:strings.LastIndex(o.dsn, "/")+1]
	name := o.dsn[strings.LastIndex(o.dsn, "/")+1:]
	if i := strings.IndexByte(name, '?'); i >= 0 {
		base += name[i:]
		name = name[:i]
	}
	adm, err := sql.Open("mysql", base)
	if err != nil {
		return err
	}
	if _, err := adm.Exec("CREATE DATABASE IF NOT EXISTS `" + name + "`"); err != nil {
		return err
	}
	adm.Close()
	db, err := sql.Open("mysql", o.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(o.conc)
	db.SetMaxIdleConns(o.conc)
	table := fmt.Sprintf("bench_orders_%d", time.Now().UnixNano()%1e9)
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (
		id VARCHAR(40) NOT NULL PRIMARY KEY, sale_id VARCHAR(64) NOT NULL, user_id VARCHAR(191) NOT NULL,
		quantity INT NOT NULL, amount_cents BIGINT NOT NULL, currency CHAR(3) NOT NULL, status VARCHAR(16) NOT NULL,
		ticket_jti VARCHAR(64) NULL, idempotency_key VARCHAR(255) NULL, hold_expires_at DATETIME(3) NULL,
		created_at DATETIME(3) NOT NULL, updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
		UNIQUE KEY (ticket_jti), KEY (sale_id, status)) ENGINE=InnoDB`); err != nil {
		return err
	}
	defer db.Exec(`DROP TABLE ` + table) //nolint:errcheck
	q := `INSERT INTO ` + table + ` (id, sale_id, user_id, quantity, amount_cents, currency, status, ticket_jti, created_at)
		VALUES (?, 'bench', ?, 1, 79900, 'EUR', 'paid', ?, NOW(3))`
	return drive(ctx, o, "single-row INSERT (autocommit)", func(i int64) (int, error) {
		id := fmt.Sprintf("%s%d", o.prefix, i)
		if _, err := db.Exec(q, id, id, id); err != nil {
			return 0, err
		}
		return 201, nil
	})
}

// drive runs fn from o.conc workers until the duration or count is reached,
// printing a progress line each second and a report at the end.
func drive(ctx context.Context, o options, what string, fn func(i int64) (int, error)) error {
	ctx, cancel := context.WithTimeout(ctx, o.dur)
	defer cancel()
	var next, done atomic.Int64
	var mu sync.Mutex
	codes := map[int]int64{}
	var errs []string
	lat := make([][]time.Duration, o.conc)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range o.conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if o.max > 0 && i > o.max {
					return
				}
				t0 := time.Now()
				code, err := fn(i)
				lat[w] = append(lat[w], time.Since(t0))
				done.Add(1)
				mu.Lock()
				if err != nil {
					if len(errs) < 5 && ctx.Err() == nil {
						errs = append(errs, err.Error())
					}
					codes[0]++
				} else {
					codes[code]++
				}
				mu.Unlock()
			}
		})
	}
	tick := time.NewTicker(time.Second)
	stopProgress := make(chan struct{})
	go func() {
		var last int64
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				d := done.Load()
				fmt.Fprintf(os.Stderr, "  %4.0fs  %s: %d done, %d/s\n", time.Since(start).Seconds(), what, d, d-last)
				last = d
			}
		}
	}()
	wg.Wait()
	close(stopProgress)
	tick.Stop()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) time.Duration {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))]
	}
	n := done.Load()
	fmt.Printf("%s: %d requests in %.1fs = %.0f req/s, %d workers; latency p50 %s p99 %s\n",
		what, n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), o.conc, pct(.5).Round(10*time.Microsecond), pct(.99).Round(10*time.Microsecond))
	keys := make([]int, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		label := fmt.Sprint(k)
		if k == 0 {
			label = "error"
		}
		fmt.Printf("  status %s: %d\n", label, codes[k])
	}
	for _, e := range errs {
		fmt.Printf("  e.g. %s\n", e)
	}
	return nil
}
