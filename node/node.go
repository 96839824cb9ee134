package node

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on --debug-listen
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/audit"
	"github.com/flashsale/flashsale/bans"
	"github.com/flashsale/flashsale/challenge"
	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/openapi"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/timeline"
	"github.com/flashsale/flashsale/waitingroom"
	"github.com/flashsale/flashsale/web"
	"github.com/flashsale/flashsale/webhooks"
)

// Node is one flashsale process.
type Node struct {
	cfg Config
	log *slog.Logger

	Redis  redis.UniversalClient // a *redis.Client, or a *redis.ClusterClient with --redis-cluster
	DB     *sql.DB
	Sales  *sale.Store
	Issuer *ticket.Issuer
	Ident  *identity.Verifier

	Queue   *waitingroom.Queue
	Hub     *waitingroom.Hub
	Sources *waitingroom.Sources
	Bans    *bans.Watcher
	Limits  *ratelimit.Limiter // nil when every limit is off
	// limitRedis is the limiter's own client: its calls must give up at
	// their context's deadline (ContextTimeoutEnabled), which the shared
	// client's blocking stream reads must not.
	limitRedis redis.UniversalClient
	Admitter   *waitingroom.Admitter
	Orders     *checkout.Orders
	Checkout   *checkout.Service
	Sweeper    *checkout.Sweeper
	Timeline   *timeline.Sampler    // nil without the admitter role
	Webhooks   *webhooks.Dispatcher // nil when webhooks are off

	reg      *prometheus.Registry
	handler  http.Handler
	listener net.Listener
	// metricsListener serves /metrics alone (--metrics-listen); nil when
	// /metrics is on the main listener.
	metricsListener net.Listener
	draining        atomic.Bool
}

// New opens the stores, applies the schema and builds the roles of cfg.
// It does not start anything; Run does.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if err := cfg.DevDefaults(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var err error
	if n.Redis, err = openRedis(cfg.RedisURL, cfg.RedisCluster, false); err != nil {
		return nil, err
	}
	mcfg, err := mysqlConfig(cfg.MySQLDSN)
	if err != nil {
		n.Redis.Close()
		return nil, err
	}
	dsn := mcfg.FormatDSN()
	mctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	applied, err := migrations.Apply(mctx, dsn)
	cancel()
	if err != nil {
		n.Redis.Close()
		return nil, fmt.Errorf("migrate MySQL (%s@%s/%s): %w", mcfg.User, mcfg.Addr, mcfg.DBName, err)
	}
	if len(applied) > 0 {
		log.Info("applied migrations", "versions", applied)
	}
	if n.DB, err = openMySQL(dsn); err != nil {
		n.Redis.Close()
		return nil, err
	}

	keys, err := ticket.LoadKeySet(cfg.TicketKey)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("--ticket-key: %w", err)
	}
	n.Issuer = ticket.NewIssuer(keys, cfg.TicketIssuer)
	icfg := identity.Config{JWKSURL: cfg.IdentityJWKSURL, Issuer: cfg.IdentityIssuer,
		Audience: cfg.IdentityAudience, Logger: log}
	if cfg.IdentitySecret != "" {
		icfg.Secret = []byte(cfg.IdentitySecret)
	}
	if n.Ident, err = identity.New(ctx, icfg); err != nil {
		n.Close()
		return nil, err
	}
	n.Sales = sale.NewStore(n.DB, n.Redis, sale.Keyspace{Prefix: cfg.KeyPrefix})
	var outbox *webhooks.Outbox
	if cfg.WebhookURL != "" {
		// Every node writes its changes' events and delivers whoever's are due.
		outbox = webhooks.NewOutbox()
		n.Sales.Events = outbox
		if n.Webhooks, err = webhooks.New(webhooks.Config{URL: cfg.WebhookURL, Secret: cfg.WebhookSecret,
			Timeout: cfg.WebhookTimeout, Logger: log, Registerer: n.reg}, n.DB); err != nil {
			n.Close()
			return nil, err
		}
	}

	// The checkout service also serves the other roles' rebuild hook.
	cm := checkout.NewMetrics(n.reg)
	n.registerStoreGauges()
	n.Orders = checkout.NewOrders(n.DB, log, 4)
	n.Orders.Events = outbox
	n.Checkout = checkout.NewService(checkout.Config{Logger: log, Metrics: cm}, n.Redis, n.Sales, n.Orders)
	wm := waitingroom.NewMetrics(n.reg)

	mux := http.NewServeMux()
	// A shop's front end on a --cors-origins origin may open sockets and
	// call with Bearer tokens, as the pages' own origins do.
	shopOrigins := append(slices.Clone(cfg.AllowedOrigins), cfg.CORSOrigins...)
	cors, err := api.NewCORS(cfg.CORSOrigins)
	if err != nil {
		n.Close()
		return nil, err
	}
	timelines := timeline.NewStore(timeline.Config{}, n.Redis, n.Sales.Keys)
	// Bans act on every shopper call of either role; every node keeps the
	// live ones in memory, reloaded from MySQL within half a second.
	banStore := bans.NewStore(n.DB, log)
	n.Bans = bans.NewWatcher(banStore, log)
	if rl := cfg.RateLimits(); rl.IPRate > 0 || rl.UserRate > 0 {
		if n.limitRedis, err = openRedis(cfg.RedisURL, cfg.RedisCluster, true); err != nil {
			n.Close()
			return nil, err
		}
		rl.Logger = log
		if n.Limits, err = ratelimit.New(rl, n.limitRedis, cfg.KeyPrefix); err != nil {
			n.Close()
			return nil, err
		}
	}
	if cfg.Has(RoleWaitingRoom) {
		n.Queue = waitingroom.NewQueue(n.Redis, n.Sales.Keys)
		n.Sources = waitingroom.NewSources(n.Redis, n.Sales.Keys, log)
		n.Hub = waitingroom.NewHub(waitingroom.HubConfig{Logger: log, Metrics: wm}, n.Redis, n.Sales, n.Issuer)
		wcfg := waitingroom.Config{AdminToken: cfg.AdminToken, AllowedOrigins: shopOrigins,
			Proxies: cfg.TrustedProxies, Sources: n.Sources, Bans: n.Bans.Current, Limits: n.Limits,
			PoW:    challenge.NewPoW(challenge.KeyFrom(n.Issuer.Keys().Current.Seed())),
			Logger: log, Metrics: wm, OnNoState: n.Checkout.RebuildSoon, OrderJSON: n.Checkout.OrderJSON}
		if cfg.Dev {
			wcfg.DevSecret = []byte(cfg.IdentitySecret)
		}
		if cfg.CaptchaVerifyURL != "" {
			wcfg.Captcha = &challenge.Captcha{VerifyURL: cfg.CaptchaVerifyURL, Secret: cfg.CaptchaSecret,
				SiteKey: cfg.CaptchaSiteKey}
		}
		srv := waitingroom.NewServer(wcfg, n.Queue, n.Hub, n.Sales, n.Issuer, n.Ident)
		srv.Register(mux)
		n.Bans.OnChange = srv.OnBans
		bh := bans.NewHandler(banStore, log)
		bh.Changed = n.Bans.Poke
		bh.Trusted = cfg.TrustedProxies.Prefixes()
		bh.Register(mux, api.AdminOnly(cfg.AdminToken))
		timeline.NewHandler(timelines, n.Sales, log).Register(mux, api.AdminOnly(cfg.AdminToken))
		pages, err := web.NewHandler(web.Options{ThemeDir: cfg.ThemeDir})
		if err != nil {
			n.Close()
			return nil, fmt.Errorf("--theme-dir: %w", err)
		}
		mux.Handle("/", pages)
	}
	if cfg.Has(RoleCheckout) {
		checkout.NewHandler(checkout.HTTPConfig{AdminToken: cfg.AdminToken, ServiceToken: cfg.ServiceToken,
			Dev: cfg.Dev, AllowedOrigins: shopOrigins, Proxies: cfg.TrustedProxies, Bans: n.Bans.Current, Limits: n.Limits},
			n.Checkout, n.Issuer, n.Ident).Register(mux)
		n.Sweeper = checkout.NewSweeper(checkout.SweeperConfig{PendingAge: cfg.ReconcilePendingAfter}, n.Checkout)
	}
	if cfg.Has(RoleAdmitter) {
		n.Admitter = waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Logger: log, Metrics: wm,
			OnNoState: n.Checkout.RebuildSoon}, n.Redis, n.Sales)
		n.Timeline = timeline.NewSampler(timeline.SamplerConfig{Logger: log, Registerer: n.reg}, timelines, n.Sales)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", n.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	auditLog := audit.New(n.DB, cfg.TrustedProxies, log)
	mux.HandleFunc("GET /api/v1/admin/audit", api.AdminOnly(cfg.AdminToken)(auditLog.List))
	mux.HandleFunc("GET /api/v1/admin/webhooks", api.AdminOnly(cfg.AdminToken)(webhooks.Handler(n.DB)))
	mux.Handle("GET /api/v1/openapi.json", openapi.Handler())
	n.handler = n.instrument(cors.Wrap(auditLog.Middleware(api.Routes(mux))))
	return n, nil
}

// openRedis opens --redis-url: one server, or with cluster (--redis-cluster)
// a Redis Cluster from a URL as go-redis's ParseClusterURL reads it
// (redis://h1:7000?addr=h2:7001&addr=h3:7002). deadlines makes the
// client give up at a call's context deadline (the rate limiter's own
// client), which the shared client's blocking stream reads must not.
func openRedis(url string, cluster, deadlines bool) (redis.UniversalClient, error) {
	if cluster {
		copt, err := redis.ParseClusterURL(url)
		if err != nil {
			return nil, fmt.Errorf("--redis-url (a cluster URL with --redis-cluster, e.g. redis://h1:7000?addr=h2:7001&addr=h3:7002): %w", err)
		}
		copt.PoolSize = max(copt.PoolSize, 64)
		copt.ContextTimeoutEnabled = deadlines
		return redis.NewClusterClient(copt), nil
	}
	ropt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	ropt.PoolSize = max(ropt.PoolSize, 64)
	ropt.ContextTimeoutEnabled = deadlines
	return redis.NewClient(ropt), nil
}

// mysqlConfig reads the DSN, with UTC times and bounded waits: a MySQL that
// stops answering must fail calls, not hang them.
func mysqlConfig(dsn string) (*mysql.Config, error) {
	mcfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	mcfg.ParseTime = true
	mcfg.Loc = time.UTC
	if mcfg.Timeout == 0 {
		mcfg.Timeout = 3 * time.Second
	}
	if mcfg.ReadTimeout == 0 {
		mcfg.ReadTimeout = 10 * time.Second
	}
	if mcfg.WriteTimeout == 0 {
		mcfg.WriteTimeout = 10 * time.Second
	}
	return mcfg, nil
}

func openMySQL(dsn string) (*sql.DB, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	db.SetMaxOpenConns(64)
	db.SetMaxIdleConns(64)
	db.SetConnMaxLifetime(time.Hour)
	return db, nil
}

// OpenCheckout opens the stores of cfg (without applying the schema) and
// builds a checkout service on them, for tools such as `flashsale
// reconcile`. The returned func closes it all.
func OpenCheckout(cfg Config, log *slog.Logger) (*checkout.Service, func(), error) {
	rdb, err := openRedis(cfg.RedisURL, cfg.RedisCluster, false)
	if err != nil {
		return nil, nil, err
	}
	mcfg, err := mysqlConfig(cfg.MySQLDSN)
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	db, err := openMySQL(mcfg.FormatDSN())
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	sales := sale.NewStore(db, rdb, sale.Keyspace{Prefix: cfg.KeyPrefix})
	orders := checkout.NewOrders(db, log, 1)
	svc := checkout.NewService(checkout.Config{Logger: log}, rdb, sales, orders)
	return svc, func() {
		orders.Close()
		db.Close()
		rdb.Close()
	}, nil
}

// registerStoreGauges exports the stores' health for the alerts:
// flashsale_store_up{store} (a ping at scrape time, 1 s at most) and
// flashsale_mysql_breaker_open (the checkout's MySQL circuit breaker open
// or probing).
func (n *Node) registerStoreGauges() {
	ping := func(store string, f func(context.Context) error) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashsale_store_up", ConstLabels: prometheus.Labels{"store": store},
			Help: "1 when the store answered a ping at scrape time (within 1 s), else 0."}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if f(ctx) != nil {
				return 0
			}
			return 1
		})
	}
	n.reg.MustRegister(
		ping("redis", func(ctx context.Context) error { return n.Redis.Ping(ctx).Err() }),
		ping("mysql", func(ctx context.Context) error { return n.DB.PingContext(ctx) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "flashsale_mysql_breaker_open",
			Help: "1 while the checkout's MySQL circuit breaker is open or probing (checkouts answer 503), else 0."}, func() float64 {
			if n.Orders == nil || n.Orders.Breaker().State() == checkout.BreakerClosed {
				return 0
			}
			return 1
		}))
}

// Handler is the node's HTTP handler (for tests that serve it themselves).
func (n *Node) Handler() http.Handler { return n.handler }

// ready answers 200 when Redis and MySQL answer and the node is not
// draining, else 503 saying which is "unavailable". The reason goes to the
// log only: /readyz is public, and a dial error names internal hosts.
func (n *Node) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"redis": "ok", "mysql": "ok"}
	ok := true
	if err := n.Redis.Ping(ctx).Err(); err != nil {
		status["redis"], ok = "unavailable", false
		n.log.Warn("not ready: Redis does not answer", "err", err)
	}
	// Through the checkout's breaker: an open breaker is "not ready", and a
	// ping let through as its probe can close it.
	if err := n.Orders.Ping(ctx); err != nil {
		status["mysql"], ok = "unavailable", false
		n.log.Warn("not ready: MySQL does not answer", "err", err)
	}
	if n.draining.Load() {
		status["node"], ok = "shutting down", false
	}
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	api.WriteJSON(w, code, status)
}

// instrument records request latency by route pattern and status.
func (n *Node) instrument(next http.Handler) http.Handler {
	hist := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "flashsale_http_request_duration_seconds", Help: "HTTP request latency by route and status.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"route", "code"})
	n.reg.MustRegister(hist)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if route != "GET /api/v1/sales/{sale}/ws" {
			hist.WithLabelValues(route, strconv.Itoa(rec.code)).Observe(time.Since(start).Seconds())
		}
	})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Hijack hands the connection to the WebSocket upgrade.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response writer cannot be hijacked")
	}
	s.code = http.StatusSwitchingProtocols
	return h.Hijack()
}

// Listen binds the listen address, and --metrics-listen when set (Run
// calls it if the caller did not).
func (n *Node) Listen() (net.Addr, error) {
	if n.listener != nil {
		return n.listener.Addr(), nil
	}
	l, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", n.cfg.Listen, err)
	}
	if n.cfg.MetricsListen != "" {
		ml, err := net.Listen("tcp", n.cfg.MetricsListen)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("--metrics-listen %s: %w", n.cfg.MetricsListen, err)
		}
		n.metricsListener = ml
	}
	n.listener = l
	return l.Addr(), nil
}

// MetricsAddr is the address /metrics is served on alone (--metrics-listen),
// or nil when it is served on the main listener. Valid after Listen.
func (n *Node) MetricsAddr() net.Addr {
	if n.metricsListener == nil {
		return nil
	}
	return n.metricsListener.Addr()
}

// newServer is an HTTP server with the contract's limits on slow and
// oversized requests: 10 s for the headers (then the connection is closed
// without an answer), 30 s for the body, headers up to 64 KiB (431 past
// them, in the JSON error shape).
func (n *Node) newServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           bodyDeadline(h, cmp.Or(n.cfg.BodyTimeout, DefaultBodyTimeout)),
		ReadHeaderTimeout: cmp.Or(n.cfg.HeaderTimeout, DefaultHeaderTimeout),
		// net/http reads up to 4096 bytes past MaxHeaderBytes before it
		// refuses, so this makes the refusal start at 64 KiB, not 68.
		MaxHeaderBytes: MaxHeaderBytes - 4096,
		IdleTimeout:    120 * time.Second,
		ErrorLog:       slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
	}
}

// serve runs srv on l, wrapped so that net/http's own refusals are JSON.
func serve(srv *http.Server, l net.Listener, errc chan<- error) {
	errc <- srv.Serve(jsonRefusals{l})
}

// bodyDeadline gives the client d, from the moment its headers are in, to
// send the rest of the request; a body still arriving then fails to read
// and the connection is closed. (Server.ReadTimeout would count from the
// first byte of the headers.) A WebSocket is not cut: the upgrade clears
// the connection's deadlines and the socket keeps its own ping deadline.
func bodyDeadline(next http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(d))
		next.ServeHTTP(w, r)
	})
}

// withoutMetrics answers 404 for /metrics, which --metrics-listen moved off
// the public listener.
func withoutMetrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			api.WriteError(w, api.ErrNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// metricsOnly serves /metrics and nothing else.
func metricsOnly(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { api.WriteError(w, api.ErrNotFound) })
	return mux
}

// jsonRefusals is a listener whose connections turn the plain-text answers
// net/http writes itself, before any handler runs (headers over the limit,
// a request that is not HTTP), into the contract's JSON error shape.
type jsonRefusals struct{ net.Listener }

func (l jsonRefusals) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &refusalConn{Conn: c}, nil
}

type refusalConn struct{ net.Conn }

// netHTTPRefusal is what follows the status line of net/http's own
// refusals (and no answer of a handler: those carry a Date).
const netHTTPRefusal = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

func (c *refusalConn) Write(p []byte) (int, error) {
	if b := refusalJSON(p); b != nil {
		if _, err := c.Conn.Write(b); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// ReadsFrom is the connection reads go to (refusalConn only rewrites
// writes): the waiting room's socket poller reads it directly.
func (c *refusalConn) ReadsFrom() net.Conn { return c.Conn }

// CloseWrite lets net/http half-close after a refusal, so the client reads
// the answer instead of a reset.
func (c *refusalConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// refusalJSON rewrites one of net/http's refusals ("HTTP/1.1 431 Request
// Header Fields Too Large" + netHTTPRefusal + text) as JSON; anything else
// is nil. A 501 for an unknown Transfer-Encoding becomes 400: it is the
// client's mistake, and the contract answers none of those with a 5xx.
func refusalJSON(p []byte) []byte {
	const proto = "HTTP/1.1 "
	if len(p) < len(proto)+4 || string(p[:len(proto)]) != proto {
		return nil
	}
	line := bytes.IndexByte(p, '\r')
	if line < 0 || !bytes.HasPrefix(p[line:], []byte(netHTTPRefusal)) {
		return nil
	}
	code, err := strconv.Atoi(string(p[len(proto) : len(proto)+3]))
	if err != nil {
		return nil
	}
	var e *api.Error
	switch {
	case code == http.StatusRequestHeaderFieldsTooLarge:
		e = api.Errorf(code, "too_large", "the request line and headers are over %d KiB; send fewer or smaller headers (cookies)",
			MaxHeaderBytes>>10)
	case code == http.StatusNotImplemented:
		e = api.Errorf(http.StatusBadRequest, "invalid_request",
			"unsupported Transfer-Encoding: send the body with Content-Length or chunked")
	case code >= 400 && code < 500:
		msg := "the request is not valid HTTP/1.1"
		// net/http's text is "400 Bad Request: missing required Host header"
		text := string(p[line+len(netHTTPRefusal):])
		if _, detail, ok := strings.Cut(text, ": "); ok {
			msg += ": " + detail
		}
		e = api.Errorf(code, "invalid_request", "%s", msg)
	default:
		return nil
	}
	body := append(api.ErrorBody(e), '\n')
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"+
		"Content-Length: %d\r\n\r\n%s", e.Status, http.StatusText(e.Status), len(body), body)
}

// Run starts the roles and serves until ctx ends, then shuts down
// gracefully: /readyz turns 503, the server stops accepting and finishes
// in-flight requests (checkouts included), sockets close with "going
// away", the loops stop, the stores close.
func (n *Node) Run(ctx context.Context) error {
	addr, err := n.Listen()
	if err != nil {
		return err
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	// The live bans before the first request (a MySQL that does not answer
	// yet leaves the set empty; the watcher keeps trying).
	rctx, cancel := context.WithTimeout(bg, 5*time.Second)
	if err := n.Bans.Reload(rctx); err != nil {
		n.log.Warn("bans: first load failed; retrying in the background", "err", err)
	}
	cancel()
	n.Bans.Start(bg)
	if n.Limits != nil {
		n.Limits.Start(bg)
	}
	if n.Webhooks != nil {
		n.Webhooks.Start(bg)
	}
	if n.Queue != nil {
		n.Queue.Start(bg)
		n.Sources.Start(bg)
		n.Hub.Start(bg)
	}
	if n.Admitter != nil {
		n.Admitter.Start(bg)
		n.Timeline.Start(bg)
	}
	if n.Sweeper != nil {
		n.Sweeper.Start(bg)
	}
	if n.cfg.DebugListen != "" {
		dbg := &http.Server{Addr: n.cfg.DebugListen, Handler: http.DefaultServeMux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := dbg.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("debug listener", "err", err)
			}
		}()
		defer dbg.Close()
	}
	h := n.handler
	if n.metricsListener != nil {
		h = withoutMetrics(h)
	}
	srv := n.newServer(h)
	errc := make(chan error, 2)
	go serve(srv, n.listener, errc)
	var msrv *http.Server
	if n.metricsListener != nil {
		msrv = n.newServer(metricsOnly(promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})))
		go serve(msrv, n.metricsListener, errc)
		n.log.Info("serving metrics", "addr", n.metricsListener.Addr().String())
	}
	n.log.Info("serving", "addr", addr.String(), "roles", n.cfg.Roles, "dev", n.cfg.Dev)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			srv.Close()
			if msrv != nil {
				msrv.Close()
			}
			n.stop()
			return fmt.Errorf("http server: %w", err)
		}
	}
	n.log.Info("shutting down")
	n.draining.Store(true)
	if n.cfg.ShutdownDelay > 0 {
		time.Sleep(n.cfg.ShutdownDelay)
	}
	if n.Hub != nil {
		n.Hub.CloseAll(1001, "server shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if msrv != nil {
		// After the main server: a scrape during the drain still answers.
		if merr := msrv.Shutdown(sctx); err == nil {
			err = merr
		}
	}
	n.stop()
	n.log.Info("stopped")
	return err
}

func (n *Node) stop() {
	n.Bans.Stop()
	if n.Limits != nil {
		// after the server's drain: no request is left to ask it
		n.Limits.Stop()
	}
	if n.Webhooks != nil {
		// deliveries in flight are cut: their events are due again after their lease
		n.Webhooks.Stop()
	}
	if n.Admitter != nil {
		n.Admitter.Stop()
		n.Timeline.Stop()
	}
	if n.Sweeper != nil {
		n.Sweeper.Stop()
	}
	if n.Hub != nil {
		n.Hub.Stop()
	}
	if n.Queue != nil {
		n.Queue.Stop()
		n.Sources.Stop()
	}
	n.Close()
}

// Close stops the background jobs the roles started (compensations,
// rebuilds, a sale's finish) and waits for them, then closes the stores
// under them (Run does it on the way out).
func (n *Node) Close() {
	if n.Checkout != nil {
		n.Checkout.Close()
	}
	if n.Ident != nil {
		n.Ident.Close()
	}
	if n.Orders != nil {
		n.Orders.Close()
	}
	if n.DB != nil {
		n.DB.Close()
	}
	if n.Redis != nil {
		n.Redis.Close()
	}
	if n.limitRedis != nil {
		n.limitRedis.Close()
	}
}
