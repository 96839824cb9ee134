package waitingroom

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/bans"
	"github.com/flashsale/flashsale/challenge"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

// Config configures the waiting room's HTTP API.
type Config struct {
	// AdminToken is the operators' token (required).
	AdminToken string
	// AllowedOrigins are the origins a browser WebSocket may come from, as
	// "scheme://host:port". A request's own host is always allowed.
	AllowedOrigins []string
	// DevSecret, when set (--dev), lets POST /api/v1/dev/token mint user
	// tokens with it.
	DevSecret []byte
	Logger    *slog.Logger
	Metrics   *Metrics
	// Proxies are the trusted proxies (--trusted-proxies): their
	// X-Forwarded-Proto says whether the browser's request came over TLS,
	// for the queue-token cookie's Secure flag. Nil trusts none.
	Proxies *clientaddr.Resolver
	// Bans is the node's current set of live bans (bans.Watcher.Current);
	// nil: none.
	Bans func() *bans.Set
	// PoW issues and checks proof-of-work join challenges (nil: sales that
	// ask for one answer 503).
	PoW *challenge.PoW
	// Captcha checks captcha tokens (nil: not configured; a sale cannot
	// ask for a captcha).
	Captcha *challenge.Captcha
	// Limits are the shopper calls' rate limits (nil: none).
	Limits *ratelimit.Limiter
	// Sources counts joins by client prefix (nil: not counted).
	Sources *Sources
	// OnNoState starts a rebuild of a sale's live state from MySQL in the
	// background (checkout's Service.RebuildSoon, which owns it); called
	// when a script finds none. It must not block.
	OnNoState func(saleID string)
	// OrderJSON reads an order in the contract's shape, for the order frame
	// a purchased shopper's socket opens with.
	OrderJSON func(ctx context.Context, orderID string) ([]byte, error)
}

// Server is the shopper and operator HTTP API of the waiting room.
type Server struct {
	cfg    Config
	queue  *Queue
	hub    *Hub
	store  *sale.Store
	issuer *ticket.Issuer
	ident  *identity.Verifier

	leaves leaves

	listMu sync.Mutex
	listAt time.Time
	list   []byte
}

// NewServer returns the API server.
func NewServer(cfg Config, queue *Queue, hub *Hub, store *sale.Store, issuer *ticket.Issuer, ident *identity.Verifier) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, queue: queue, hub: hub, store: store, issuer: issuer, ident: ident,
		leaves: leaves{db: store.DB}}
	return s
}

// Register mounts the routes.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/sales", s.publicList)
	mux.HandleFunc("GET /api/v1/sales/{sale}", s.publicGet)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("POST /api/v1/sales/{sale}/join", s.join)
	mux.HandleFunc("GET /api/v1/sales/{sale}/status", s.status)
	mux.HandleFunc("POST /api/v1/sales/{sale}/challenge", s.challenge)
	mux.HandleFunc("DELETE /api/v1/sales/{sale}/join", s.leave)
	mux.HandleFunc("GET /api/v1/sales/{sale}/ws", s.ws)
	mux.HandleFunc("POST /api/v1/admin/sales", s.admin(s.createSale))
	mux.HandleFunc("GET /api/v1/admin/sales", s.admin(s.listSales))
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}", s.admin(s.getSale))
	mux.HandleFunc("PATCH /api/v1/admin/sales/{sale}", s.admin(s.patchSale))
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}/summary", s.admin(s.summary))
	mux.HandleFunc("POST /api/v1/admin/sales/{sale}/message", s.admin(s.message))
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}/sources", s.admin(s.sources))
	mux.HandleFunc("POST /api/v1/admin/sales/{sale}/passes", s.admin(s.createPass))
	mux.HandleFunc("POST /api/v1/dev/token", s.devToken)
}

// fail writes an error, logging the ones that are not the caller's fault.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := api.AsError(err)
	if e.Status >= 500 && r.Context().Err() == nil { // a client that hung up is no failure of ours
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path,
			"sale", r.PathValue("sale"), "err", err)
	}
	api.WriteError(w, e)
}

// queueErr maps a queue failure: a missing live state starts a rebuild
// and answers 503 meanwhile.
func (s *Server) queueErr(saleID string, err error) error {
	if errors.Is(err, ErrNoState) {
		s.rebuild(saleID)
		return api.Unavailable("the sale's live state (being rebuilt)")
	}
	return err
}

func (s *Server) rebuild(saleID string) {
	if s.cfg.OnNoState != nil {
		s.cfg.OnNoState(saleID)
	}
}
