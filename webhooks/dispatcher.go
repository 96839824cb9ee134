package webhooks

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flashsale/flashsale/startstop"
)

// Config is the dispatcher's: where events go and how hard it tries.
type Config struct {
	URL    string // --webhook-url
	Secret string // --webhook-secret
	// Timeout bounds one delivery (connect to last byte); default 10 s.
	Timeout time.Duration
	// GiveUpAfter ends the retries of an event this long after it was
	// written; default 24 h.
	GiveUpAfter time.Duration
	// Poll is how often an idle dispatcher looks for due events; default
	// 250 ms.
	Poll time.Duration
	// Batch bounds the events one claim takes; default 64.
	Batch int
	// Parallel bounds the deliveries in flight on one node; default 16.
	Parallel int
	// Client sends the deliveries; default a client of its own (no
	// redirects followed: a 3xx is a failure).
	Client *http.Client
	Logger *slog.Logger
	// Registerer gets the delivery metrics; nil: none.
	Registerer prometheus.Registerer
}

// maxResponse is how much of a receiver's answer is read (and dropped), so
// a receiver cannot make us read forever; the connection is then closed.
const maxResponse = 64 << 10

// retention is how long delivered and given-up events are kept (for
// `flashsale webhooks replay`).
const retention = 7 * 24 * time.Hour

// Backoff is the wait before the next attempt after n failed ones: 5 s,
// 10 s, 20 s, ... doubling up to 10 min, each ±20% (so that the events of
// one outage do not come back all at once).
func Backoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 10*time.Minute; i++ {
		d *= 2
	}
	d = min(d, 10*time.Minute)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// Dispatcher delivers the outbox's events. Every node with webhooks on runs
// one; they share the work through MySQL: a claim (under the one-row claim
// lock) leases due events to one node for Timeout + 10 s, so an event whose
// node died mid-delivery is due again after its lease, and one subject's
// next event is never claimed while an earlier one is pending.
type Dispatcher struct {
	cfg    Config
	db     *sql.DB
	key    []byte
	lease  time.Duration
	client *http.Client

	pending   prometheus.Gauge
	oldest    prometheus.Gauge
	delivered prometheus.Counter
	failed    prometheus.Counter
	gaveUp    prometheus.Counter

	startstop.Loop
}

// New checks the config (the error names the flag) and returns a
// dispatcher; Start runs it.
func New(cfg Config, db *sql.DB) (*Dispatcher, error) {
	if cfg.URL == "" {
		return nil, errors.New("--webhook-url is required for webhooks")
	}
	if !strings.HasPrefix(cfg.URL, "http://") && !strings.HasPrefix(cfg.URL, "https://") {
		return nil, fmt.Errorf("--webhook-url must be an http or https URL (it is %q)", cfg.URL)
	}
	key, err := Key(cfg.Secret)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = 24 * time.Hour
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 16
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{
			Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: cfg.Parallel,
				IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: cfg.Timeout},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	d := &Dispatcher{cfg: cfg, db: db, key: key, lease: cfg.Timeout + 10*time.Second, client: client,
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_webhook_pending",
			Help: "Webhook events written and not yet delivered (nor given up)."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "flashsale_webhook_oldest_pending_seconds",
			Help: "Age of the oldest pending webhook event; 0 when none."}),
	}
	deliveries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_webhook_deliveries_total",
		Help: "Webhook delivery attempts by this node: delivered (2xx) or failed."}, []string{"result"})
	d.delivered, d.failed = deliveries.WithLabelValues("delivered"), deliveries.WithLabelValues("failed")
	d.gaveUp = prometheus.NewCounter(prometheus.CounterOpts{Name: "flashsale_webhook_given_up_total",
		Help: "Webhook events this node gave up on after GiveUpAfter of failures."})
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{d.pending, d.oldest, deliveries, d.gaveUp} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhooks: metrics: %w", err)
			}
		}
	}
	return d, nil
}

// Start runs the dispatcher until ctx ends or Stop; deliveries in flight
// at Stop are cut (their events are due again after their lease).
func (d *Dispatcher) Start(ctx context.Context) {
	d.Go(ctx, d.run)
}

func (d *Dispatcher) run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	lastStats, lastPrune := time.Time{}, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := d.Round(ctx)
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("webhooks: claim due events", "err", err)
		}
		if time.Since(lastStats) >= 2*time.Second {
			lastStats = time.Now()
			d.stats(ctx)
		}
		if time.Since(lastPrune) >= 10*time.Minute {
			lastPrune = time.Now()
			d.prune(ctx)
		}
		if n == d.cfg.Batch {
			t.Reset(0) // more may be due
		} else {
			t.Reset(d.cfg.Poll)
		}
	}
}

// due is one claimed event.
type due struct {
	seq       int64
	id        string
	payload   []byte
	attempts  int
	createdAt time.Time
}

// Round claims the due events (at most Batch), delivers them and records
// the outcomes; it returns how many it claimed.
func (d *Dispatcher) Round(ctx context.Context) (int, error) {
	events, err := d.claim(ctx)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, d.cfg.Parallel)
	results := make([]result, len(events))
	for i := range events {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = d.deliver(ctx, &events[i])
		})
	}
	wg.Wait()
	d.record(context.WithoutCancel(ctx), events, results)
	return len(events), nil
}

// claim leases the due events to this node: the oldest first, none whose
// subject has an earlier pending event (one subject's events go one at a
// time, in order).
func (d *Dispatcher) claim(ctx context.Context) ([]due, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback() //nolint:errcheck
	var one int
	if err := tx.QueryRowContext(ctx, `SELECT id FROM webhook_claim WHERE id = 1 FOR UPDATE`).Scan(&one); err != nil {
		return nil, fmt.Errorf("take the claim lock: %w", err)
	}
	now := time.Now().UTC()
	rows, err := tx.QueryContext(ctx, `SELECT e.seq, e.id, e.payload, e.attempts, e.created_at FROM webhook_events e
		WHERE e.state = 0 AND e.next_at <= ?
		AND NOT EXISTS (SELECT 1 FROM webhook_events p WHERE p.subject = e.subject AND p.state = 0 AND p.seq < e.seq)
		ORDER BY e.seq LIMIT ?`, now, d.cfg.Batch)
	if err != nil {
		return nil, err
	}
	var out []due
	for rows.Next() {
		var e due
		if err := rows.Scan(&e.seq, &e.id, &e.payload, &e.attempts, &e.createdAt); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	q, args := inSeqs(`UPDATE webhook_events SET next_at = ?, attempts = attempts + 1 WHERE seq IN `, out, now.Add(d.lease))
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for i := range out {
		out[i].attempts++
	}
	return out, nil
}

func inSeqs(q string, events []due, first ...any) (string, []any) {
	args := append(first, make([]any, 0, len(events))...)
	var sb strings.Builder
	sb.WriteString(q)
	sb.WriteString("(")
	for i, e := range events {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("?")
		args = append(args, e.seq)
	}
	sb.WriteString(")")
	return sb.String(), args
}

// result is one delivery's outcome.
type result struct {
	ok     bool
	status int // 0: no answer
	err    string
}

// deliver POSTs one event, signed, and reads at most maxResponse of the
// answer.
func (d *Dispatcher) deliver(ctx context.Context, e *due) result {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, bytes.NewReader(e.payload))
	if err != nil {
		return result{err: err.Error()}
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flashsale-webhooks/1")
	req.Header.Set("webhook-id", e.id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(d.key, e.id, ts, e.payload))
	resp, err := d.client.Do(req)
	if err != nil {
		return result{err: err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return result{ok: true, status: resp.StatusCode}
	}
	return result{status: resp.StatusCode, err: "HTTP " + strconv.Itoa(resp.StatusCode)}
}

// record writes the outcomes: delivered, due again after a backoff, or
// given up once GiveUpAfter has passed since the event was written.
func (d *Dispatcher) record(ctx context.Context, events []due, results []result) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now := time.Now().UTC()
	var ok []due
	for i, e := range events {
		r := results[i]
		if r.ok {
			ok = append(ok, e)
			d.delivered.Inc()
			continue
		}
		d.failed.Inc()
		next := now.Add(Backoff(e.attempts))
		state := 0
		if next.Sub(e.createdAt) > d.cfg.GiveUpAfter {
			state = 2
			d.gaveUp.Inc()
			d.cfg.Logger.Error("webhooks: gave up on an event", "id", e.id, "attempts", e.attempts, "last_error", r.err)
		} else if e.attempts == 1 || e.attempts%5 == 0 {
			d.cfg.Logger.Warn("webhooks: delivery failed; retrying", "id", e.id, "attempts", e.attempts,
				"retry_in", next.Sub(now).Round(time.Second).String(), "err", r.err)
		}
		var status any
		if r.status != 0 {
			status = r.status
		}
		if _, err := d.db.ExecContext(ctx, `UPDATE webhook_events SET state = ?, next_at = ?, last_status = ?, last_error = ?
			WHERE seq = ? AND state = 0`, state, next, status, truncate(r.err, 255), e.seq); err != nil {
			d.cfg.Logger.Warn("webhooks: record a failed delivery (it is retried after its lease)", "id", e.id, "err", err)
		}
	}
	if len(ok) > 0 {
		q, args := inSeqs(`UPDATE webhook_events SET state = 1, delivered_at = ?, last_status = 200, last_error = NULL WHERE seq IN `, ok, now)
		if _, err := d.db.ExecContext(ctx, q, args...); err != nil {
			// delivered but not recorded: sent again after the lease (at least once)
			d.cfg.Logger.Warn("webhooks: record deliveries (they will be sent again)", "events", len(ok), "err", err)
		}
	}
}

// truncate cuts s to at most n bytes of valid UTF-8 (a column's width).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// stats sets the pending gauges.
func (d *Dispatcher) stats(ctx context.Context) {
	p, err := Pending(ctx, d.db)
	if err != nil {
		return
	}
	d.pending.Set(float64(p.Count))
	if p.Count == 0 {
		d.oldest.Set(0)
	} else {
		d.oldest.Set(max(0, time.Since(p.Oldest).Seconds()))
	}
}

// prune deletes delivered and given-up events past the retention, a
// thousand at a time.
func (d *Dispatcher) prune(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := d.db.ExecContext(ctx, `DELETE FROM webhook_events WHERE state <> 0 AND created_at < ? LIMIT 1000`,
		time.Now().UTC().Add(-retention)); err != nil && ctx.Err() == nil {
		d.cfg.Logger.Warn("webhooks: prune old events", "err", err)
	}
}
