package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flashsale/flashsale/identity"
)

// bulkConfig is one bulkjoin run: n distinct users (36-byte UUID ids) join
// one sale as fast as the server takes them.
type bulkConfig struct {
	url, sale, dataDir, secret, adminToken string
	n, conc                                int
	duration, every                        time.Duration
	create                                 bool
	stock, abandon                         int
	out                                    io.Writer
}

// bulkResult is what a run did: joins answered 200 by status, and the rest.
type bulkResult struct {
	Joined  int64
	Codes   map[int]int64 // 0: transport errors
	Elapsed time.Duration
	Users   []string // a few sampled user ids, spread through the run (for status checks)
}

// Rate is the joins per second over the whole run.
func (r *bulkResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Joined) / r.Elapsed.Seconds()
}

func bulkjoinMain(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen bulkjoin", flag.ContinueOnError)
	c := &bulkConfig{out: os.Stdout}
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server base URL (loopback only)")
	fs.StringVar(&c.sale, "sale", "", "sale id (required)")
	fs.StringVar(&c.dataDir, "data-dir", "./.flashsale", "a --dev server's data dir (identity secret and admin token)")
	fs.StringVar(&c.secret, "identity-secret", "", "HS256 secret for user tokens (default: the dev one in --data-dir)")
	fs.StringVar(&c.adminToken, "admin-token", "", "admin token for --create (default: the dev one in --data-dir)")
	fs.IntVar(&c.n, "n", 1000000, "users to join")
	fs.IntVar(&c.conc, "c", 64, "joins in flight at once")
	fs.DurationVar(&c.duration, "duration", 30*time.Minute, "stop after this long even if fewer than -n joined")
	fs.DurationVar(&c.every, "every", 5*time.Second, "how often to print the rate")
	fs.BoolVar(&c.create, "create", false, "create --sale first: open, --stock units, admission 0.001/s (so the queue only grows)")
	fs.IntVar(&c.stock, "stock", 1000000, "--create: the sale's stock")
	fs.IntVar(&c.abandon, "abandon", 86400, "--create: the sale's abandon_after_seconds (long: bulk-joined waiters hold no socket, and would be skipped as absent once admission starts)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	if c.secret == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "identity-secret"))
		if err != nil {
			return fmt.Errorf("no --identity-secret and no dev secret in --data-dir %s: %w", c.dataDir, err)
		}
		c.secret = strings.TrimSpace(string(b))
	}
	if c.create && c.adminToken == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, "admin-token"))
		if err != nil {
			return fmt.Errorf("--create needs --admin-token or the dev one in --data-dir %s: %w", c.dataDir, err)
		}
		c.adminToken = strings.TrimSpace(string(b))
	}
	r, err := runBulk(ctx, c)
	if err != nil {
		return err
	}
	if r.Joined < int64(c.n) && ctx.Err() == nil {
		return fmt.Errorf("only %d of %d users joined (see the statuses above)", r.Joined, c.n)
	}
	return nil
}

// check refuses flags that cannot work, and any server but this machine's:
// a million joins is a load test, never something to point at a stranger.
func (c *bulkConfig) check() error {
	if c.sale == "" {
		return errors.New("bulkjoin: --sale is required (the sale the users join; --create makes it)")
	}
	if c.n < 1 || c.conc < 1 {
		return errors.New("bulkjoin: -n and -c must be at least 1")
	}
	if c.duration <= 0 || c.every <= 0 {
		return errors.New("bulkjoin: --duration and --every must be positive")
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("bulkjoin: --url %q is not an http(s) URL such as http://127.0.0.1:8080", c.url)
	}
	if h := u.Hostname(); h != "localhost" {
		ip := net.ParseIP(h)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("bulkjoin: --url %q is not on this machine: give a loopback address (127.0.0.1, [::1], localhost)", c.url)
		}
	}
	return nil
}

// newUUID is a random (version 4) UUID: 36 bytes, the size of the user ids
// of the identity providers a sale night sees.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func runBulk(ctx context.Context, c *bulkConfig) (*bulkResult, error) {
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: c.conc, MaxIdleConnsPerHost: c.conc, MaxConnsPerHost: c.conc, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()
	if c.create {
		if err := c.createSale(ctx, hc); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	endpoint := c.url + "/api/v1/sales/" + url.PathEscape(c.sale) + "/join"
	sec := []byte(c.secret)
	var next, joined, failed atomic.Int64
	var mu sync.Mutex
	codes := map[int]int64{}
	var firstErr []string
	// one sampled user every n/8, so that status checks later see waiters
	// spread through the queue
	sampleEvery := max(1, int64(c.n)/8)
	var users []string
	start := time.Now()
	var wg sync.WaitGroup
	for range c.conc {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(c.n) {
					return
				}
				user := newUUID()
				tok, _, err := identity.Mint(sec, user, 2*time.Hour)
				code := 0
				if err == nil {
					code, err = c.join(ctx, hc, endpoint, tok)
				}
				if code == http.StatusOK {
					joined.Add(1)
				} else {
					failed.Add(1)
				}
				mu.Lock()
				codes[code]++
				if err != nil && len(firstErr) < 3 && ctx.Err() == nil {
					firstErr = append(firstErr, err.Error())
				}
				if code == http.StatusOK && (i-1)%sampleEvery == 0 {
					users = append(users, user)
				}
				mu.Unlock()
			}
		})
	}
	stopProgress := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		t := time.NewTicker(c.every)
		defer t.Stop()
		var last int64
		lastAt := start
		for {
			select {
			case <-stopProgress:
				return
			case now := <-t.C:
				j := joined.Load()
				fmt.Fprintf(c.out, "%6.0fs  joined %d/%d  %.0f/s now, %.0f/s overall, %d failed\n",
					now.Sub(start).Seconds(), j, c.n, float64(j-last)/now.Sub(lastAt).Seconds(),
					float64(j)/now.Sub(start).Seconds(), failed.Load())
				last, lastAt = j, now
			}
		}
	})
	wg.Wait()
	close(stopProgress)
	pwg.Wait()
	r := &bulkResult{Joined: joined.Load(), Codes: codes, Elapsed: time.Since(start), Users: users}
	fmt.Fprintf(c.out, "bulkjoin %s: %d joined in %.1fs = %.0f joins/s, %d in flight\n",
		c.sale, r.Joined, r.Elapsed.Seconds(), r.Rate(), c.conc)
	keys := make([]int, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		label := fmt.Sprint(k)
		if k == 0 {
			label = "no answer"
		}
		fmt.Fprintf(c.out, "  status %s: %d\n", label, codes[k])
	}
	for _, e := range firstErr {
		fmt.Fprintf(c.out, "  e.g. %s\n", e)
	}
	for _, u := range users {
		fmt.Fprintf(c.out, "  sampled user %s\n", u)
	}
	return r, nil
}

// join makes one join; a non-200 answer comes back as its status and an
// error carrying the start of its body.
func (c *bulkConfig) join(ctx context.Context, hc *http.Client, endpoint, tok string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", endpoint, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("join: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return resp.StatusCode, nil
}

// createSale makes the run's sale, open, with an admission rate so low that
// the queue only grows while the users join (raise it with PATCH after).
func (c *bulkConfig) createSale(ctx context.Context, hc *http.Client) error {
	body, _ := json.Marshal(map[string]any{"id": c.sale, "name": "Bulk join " + c.sale, "price_cents": 100,
		"currency": "EUR", "stock": c.stock, "admission_rate": 0.001, "max_active": 1, "per_user_limit": 1,
		"abandon_after_seconds": max(5, c.abandon)})
	req, err := http.NewRequestWithContext(ctx, "POST", c.url+"/api/v1/admin/sales", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.adminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("create the sale: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("create the sale: %d %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}
