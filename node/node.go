package node

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // served only on --debug-listen
	"strconv"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/checkout"
	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/migrations"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/waitingroom"
	"github.com/flashsale/flashsale/web"
)

// Node is one flashsale process.
type Node struct {
	cfg Config
	log *slog.Logger

	Redis  *redis.Client
	DB     *sql.DB
	Sales  *sale.Store
	Issuer *ticket.Issuer
	Ident  *identity.Verifier

	Queue    *waitingroom.Queue
	Hub      *waitingroom.Hub
	Admitter *waitingroom.Admitter
	Orders   *checkout.Orders
	Checkout *checkout.Service
	Sweeper  *checkout.Sweeper

	reg      *prometheus.Registry
	handler  http.Handler
	listener net.Listener
	draining atomic.Bool
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
	if n.Redis, err = openRedis(cfg.RedisURL); err != nil {
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

	// The checkout service also serves the other roles' rebuild hook.
	cm := checkout.NewMetrics(n.reg)
	n.Orders = checkout.NewOrders(n.DB, log, 4)
	n.Checkout = checkout.NewService(checkout.Config{Logger: log, Metrics: cm}, n.Redis, n.Sales, n.Orders)
	wm := waitingroom.NewMetrics(n.reg)

	mux := http.NewServeMux()
	if cfg.Has(RoleWaitingRoom) {
		n.Queue = waitingroom.NewQueue(n.Redis, n.Sales.Keys)
		n.Hub = waitingroom.NewHub(waitingroom.HubConfig{Logger: log, Metrics: wm}, n.Redis, n.Sales, n.Issuer)
		wcfg := waitingroom.Config{AdminToken: cfg.AdminToken, AllowedOrigins: cfg.AllowedOrigins,
			Logger: log, Metrics: wm, OnNoState: n.Checkout.RebuildSoon, OrderJSON: n.Checkout.OrderJSON}
		if cfg.Dev {
			wcfg.DevSecret = []byte(cfg.IdentitySecret)
		}
		waitingroom.NewServer(wcfg, n.Queue, n.Hub, n.Sales, n.Issuer, n.Ident).Register(mux)
		mux.Handle("/", web.Handler())
	}
	if cfg.Has(RoleCheckout) {
		checkout.NewHandler(checkout.HTTPConfig{AdminToken: cfg.AdminToken, ServiceToken: cfg.ServiceToken,
			Dev: cfg.Dev}, n.Checkout, n.Issuer, n.Ident).Register(mux)
		n.Sweeper = checkout.NewSweeper(checkout.SweeperConfig{PendingAge: cfg.ReconcilePendingAfter}, n.Checkout)
	}
	if cfg.Has(RoleAdmitter) {
		n.Admitter = waitingroom.NewAdmitter(waitingroom.AdmitterConfig{Logger: log, Metrics: wm,
			OnNoState: n.Checkout.RebuildSoon}, n.Redis, n.Sales)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", n.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{}))
	n.handler = n.instrument(api.Routes(mux))
	return n, nil
}

func openRedis(url string) (*redis.Client, error) {
	ropt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	ropt.PoolSize = max(ropt.PoolSize, 64)
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
	rdb, err := openRedis(cfg.RedisURL)
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

// Handler is the node's HTTP handler (for tests that serve it themselves).
func (n *Node) Handler() http.Handler { return n.handler }

// ready answers 200 when Redis and MySQL answer and the node is not
// draining, else 503 naming what is down.
func (n *Node) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	status := map[string]string{"redis": "ok", "mysql": "ok"}
	ok := true
	if err := n.Redis.Ping(ctx).Err(); err != nil {
		status["redis"], ok = err.Error(), false
	}
	// Through the checkout's breaker: an open breaker is "not ready", and a
	// ping let through as its probe can close it.
	if err := n.Orders.Ping(ctx); err != nil {
		status["mysql"], ok = err.Error(), false
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

// Listen binds the listen address (Run calls it if the caller did not).
func (n *Node) Listen() (net.Addr, error) {
	if n.listener != nil {
		return n.listener.Addr(), nil
	}
	l, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", n.cfg.Listen, err)
	}
	n.listener = l
	return l.Addr(), nil
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
	if n.Queue != nil {
		n.Queue.Start(bg)
		n.Hub.Start(bg)
	}
	if n.Admitter != nil {
		n.Admitter.Start(bg)
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
	srv := &http.Server{Handler: n.handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(n.listener) }()
	n.log.Info("serving", "addr", addr.String(), "roles", n.cfg.Roles, "dev", n.cfg.Dev)

	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
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
	n.stop()
	n.log.Info("stopped")
	return err
}

func (n *Node) stop() {
	if n.Admitter != nil {
		n.Admitter.Stop()
	}
	if n.Sweeper != nil {
		n.Sweeper.Stop()
	}
	if n.Hub != nil {
		n.Hub.Stop()
	}
	if n.Queue != nil {
		n.Queue.Stop()
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
}
