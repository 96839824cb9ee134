package waitingroom

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/identity"
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
	up     websocket.Upgrader

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
	s.up = websocket.Upgrader{
		ReadBufferSize: 1024, WriteBufferSize: 1024,
		// Origin is checked after the upgrade, so a refused browser reads 4403.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return s
}

// Register mounts the routes.
func (s *Server) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/sales", s.publicList)
	mux.HandleFunc("GET /api/v1/sales/{sale}", s.publicGet)
	mux.HandleFunc("GET /.well-known/jwks.json", s.jwks)
	mux.HandleFunc("POST /api/v1/sales/{sale}/join", s.join)
	mux.HandleFunc("GET /api/v1/sales/{sale}/status", s.status)
	mux.HandleFunc("DELETE /api/v1/sales/{sale}/join", s.leave)
	mux.HandleFunc("GET /api/v1/sales/{sale}/ws", s.ws)
	mux.HandleFunc("POST /api/v1/admin/sales", s.admin(s.createSale))
	mux.HandleFunc("GET /api/v1/admin/sales", s.admin(s.listSales))
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}", s.admin(s.getSale))
	mux.HandleFunc("PATCH /api/v1/admin/sales/{sale}", s.admin(s.patchSale))
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}/summary", s.admin(s.summary))
	mux.HandleFunc("POST /api/v1/dev/token", s.devToken)
}

// fail writes an error, logging the ones that are not the caller's fault.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := api.AsError(err)
	if e.Status >= 500 {
		s.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path,
			"sale", r.PathValue("sale"), "err", err)
	}
	api.WriteError(w, e)
}

// --- public ---

func (s *Server) publicList(w http.ResponseWriter, r *http.Request) {
	s.listMu.Lock()
	defer s.listMu.Unlock()
	if time.Since(s.listAt) >= time.Second {
		sales, err := s.store.List(r.Context())
		if err != nil {
			s.fail(w, r, err)
			return
		}
		now := time.Now()
		out := make([]any, len(sales))
		for i, sl := range sales {
			out[i] = sl.JSON(now)
		}
		s.list, s.listAt = mustJSON(map[string]any{"sales": out}), time.Now()
	}
	api.WriteRaw(w, http.StatusOK, s.list)
}

func (s *Server) publicGet(w http.ResponseWriter, r *http.Request) {
	sl, err := s.store.Cached(r.Context(), r.PathValue("sale"), time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.issuer.Keys().JWKS())
}

// --- shopper ---

// userToken finds the shop's user token: the Authorization header, else the
// fs_token cookie.
func userToken(r *http.Request) string {
	if t := api.Bearer(r); t != "" {
		return t
	}
	if c, err := r.Cookie("fs_token"); err == nil {
		return c.Value
	}
	return ""
}

const queueCookie = "fs_qt"

// shopper authenticates a status, ws or leave call: a queue token of this
// sale (header, cookie, or ?qt= when allowQuery), else a user token. With a
// queue token it also returns the place the token remembers.
func (s *Server) shopper(r *http.Request, saleID string, allowQuery bool) (string, ticket.QueuePlace, error) {
	now := time.Now()
	var candidates []string
	if t := api.Bearer(r); t != "" {
		candidates = append(candidates, t)
	}
	if allowQuery {
		if t := r.URL.Query().Get("qt"); t != "" {
			candidates = append(candidates, t)
		}
	}
	if c, err := r.Cookie(queueCookie); err == nil && c.Value != "" {
		candidates = append(candidates, c.Value)
	}
	for _, t := range candidates {
		if user, at, err := s.issuer.VerifyQueueTokenAt(t, saleID, now); err == nil {
			return user, at, nil
		}
	}
	if t := userToken(r); t != "" {
		if user, err := s.ident.Verify(r.Context(), t); err == nil {
			return user, ticket.QueuePlace{}, nil
		}
	}
	return "", ticket.QueuePlace{}, api.ErrUnauthorized
}

// checkCookieOrigin refuses cross-site request forgery on a call that
// changes state (join, leave) when it is authenticated by a cookie alone:
// no Authorization header, and a user or queue token cookie.
func (s *Server) checkCookieOrigin(r *http.Request) error {
	if api.Bearer(r) != "" {
		return nil
	}
	_, errUser := r.Cookie("fs_token")
	_, errQueue := r.Cookie(queueCookie)
	if errUser != nil && errQueue != nil {
		return nil // no cookie: the call fails authentication
	}
	return api.CheckCookieOrigin(r, s.cfg.AllowedOrigins)
}

func (s *Server) user(r *http.Request) (string, error) {
	t := userToken(r)
	if t == "" {
		return "", api.ErrUnauthorized
	}
	user, err := s.ident.Verify(r.Context(), t)
	if err != nil {
		return "", api.Errorf(http.StatusUnauthorized, "unauthorized", "the user token is invalid or expired")
	}
	return user, nil
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

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	if err := s.checkCookieOrigin(r); err != nil {
		s.countJoin("forbidden")
		s.fail(w, r, err)
		return
	}
	user, err := s.user(r)
	if err != nil {
		s.countJoin("unauthorized")
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Cached(r.Context(), saleID, time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.queue.Join(r.Context(), saleID, user)
	if err != nil {
		s.countJoin("error")
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	s.countJoin(st.Kind)
	switch st.Kind {
	case KindClosed:
		s.fail(w, r, errSaleClosed)
		return
	case KindSoldOut:
		s.fail(w, r, errSoldOut)
		return
	case KindNotOpen:
		s.fail(w, r, api.Errorf(http.StatusConflict, "queue_not_open", "the queue opens at %s", api.Time(sl.QueueOpens())))
		return
	case KindRestoring:
		s.fail(w, r, errRestoring)
		return
	}
	now := time.Now()
	exp := now.Add(24 * time.Hour)
	if sl.EndsAt != nil {
		exp = *sl.EndsAt
	}
	var at ticket.QueuePlace
	if st.Kind == KindWaiting || st.Kind == KindLane || st.Kind == KindPrequeue {
		at = ticket.QueuePlace{Place: strconv.FormatFloat(st.Place, 'f', 0, 64), Gen: st.Gen}
	}
	qt := s.issuer.QueueTokenAt(saleID, user, at, now, exp)
	http.SetCookie(w, &http.Cookie{Name: queueCookie, Value: qt, Path: "/api/v1/sales/" + saleID,
		Expires: exp, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.cfg.Proxies.IsHTTPS(r)})
	body := s.hub.view(sl, user, st, s.etaFor(saleID, st), false, now)
	switch b := body.(type) {
	case *Position:
		b.QueueToken = qt
	case *Admitted:
		b.QueueToken = qt
	case *Simple:
		b.QueueToken = qt
	}
	api.WriteJSON(w, http.StatusOK, body)
}

func (s *Server) countJoin(result string) {
	if m := s.cfg.Metrics; m != nil {
		m.Joins.WithLabelValues(result).Inc()
	}
}

func (s *Server) etaFor(saleID string, st UserState) *int64 {
	if st.Kind != KindWaiting && st.Kind != KindLane {
		return nil
	}
	_ = s.hub.track(context.Background(), saleID) // keep this sale's table read, for ETAs
	return s.hub.ETA(saleID, st.Position)
}

var (
	errSaleClosed = api.Errorf(http.StatusGone, "sale_closed", "the sale is closed")
	errSoldOut    = api.Errorf(http.StatusGone, "sold_out", "the sale is sold out")
	errNotInQueue = api.Errorf(http.StatusNotFound, "not_in_queue", "you are not in this sale's queue; join first")
	// errRestoring: Redis lost the queue and nodes are putting its waiters
	// back; a newcomer (or one not yet back) retries shortly.
	errRestoring = api.Unavailable("the queue (being put back after a Redis loss)")
)

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	user, at, err := s.shopper(r, saleID, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Cached(r.Context(), saleID, time.Second)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.statusAt(r.Context(), saleID, user, at)
	if err != nil {
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	switch st.Kind {
	case KindClosed:
		s.fail(w, r, errSaleClosed)
	case KindSoldOut:
		s.fail(w, r, errSoldOut)
	case KindNotInQueue:
		s.fail(w, r, errNotInQueue)
	case KindRestoring:
		s.fail(w, r, errRestoring)
	default:
		api.WriteJSON(w, http.StatusOK, s.hub.view(sl, user, st, s.etaFor(saleID, st), false, time.Now()))
	}
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	if err := s.checkCookieOrigin(r); err != nil {
		s.fail(w, r, err)
		return
	}
	user, _, err := s.shopper(r, saleID, false)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := s.store.Cached(r.Context(), saleID, time.Second); err != nil {
		s.fail(w, r, err)
		return
	}
	st, err := s.queue.Leave(r.Context(), saleID, user)
	if err != nil {
		s.fail(w, r, s.queueErr(saleID, err))
		return
	}
	if st.Kind == KindNotInQueue {
		s.fail(w, r, errNotInQueue)
		return
	}
	// Void the place in queue tokens that remember it. The leave itself is
	// done; should MySQL fail, a token may put its shopper back after a
	// Redis loss, as before this record existed.
	if err := s.leaves.record(r.Context(), saleID, user, st.Place); err != nil {
		s.cfg.Logger.Warn("leave: record the place given up", "sale", saleID, "user", user, "err", err)
	}
	// The page's own queue token goes too.
	http.SetCookie(w, &http.Cookie{Name: queueCookie, Value: "", Path: "/api/v1/sales/" + saleID,
		MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.cfg.Proxies.IsHTTPS(r)})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) ws(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	ws, err := s.up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the HTTP error
	}
	refuse := func(code int, reason string) {
		msg := websocket.FormatCloseMessage(code, reason)
		_ = ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = ws.Close()
	}
	if !api.OriginAllowed(r, s.cfg.AllowedOrigins) {
		refuse(CloseOrigin, "origin not allowed")
		return
	}
	user, at, err := s.shopper(r, saleID, true)
	if err != nil {
		refuse(CloseBadToken, "bad or missing token")
		return
	}
	ctx := r.Context()
	sl, err := s.store.Cached(ctx, saleID, time.Second)
	if err != nil {
		if errors.Is(err, sale.ErrNotFound) {
			refuse(CloseNotInQueue, "no such sale")
		} else {
			refuse(websocket.CloseTryAgainLater, "store unavailable")
		}
		return
	}
	if err := s.hub.track(ctx, saleID); err != nil {
		refuse(websocket.CloseTryAgainLater, "store unavailable")
		return
	}
	c := newConn(ws, s.hub, saleID, user)
	s.hub.add(c)
	defer s.hub.remove(c)
	go c.writeLoop()

	st, err := s.statusAt(ctx, saleID, user, at)
	now := time.Now()
	switch {
	case err != nil:
		_ = s.queueErr(saleID, err)
		c.Close(websocket.CloseTryAgainLater, "store unavailable")
	case st.Kind == KindNotInQueue:
		c.Close(CloseNotInQueue, "not in queue")
	case st.Kind == KindRestoring:
		c.Close(websocket.CloseTryAgainLater, "queue being restored")
	case st.Kind == KindClosed || st.Kind == KindSoldOut:
		c.first(typeFrame(st.Kind))
		c.Close(CloseFinal, st.Kind)
	case st.Kind == KindPurchased:
		c.setState(KindPurchased, 0)
		c.first(s.orderFrame(ctx, saleID, user, st.OrderID))
	default:
		frame := mustJSON(s.hub.view(sl, user, st, s.etaFor(saleID, st), true, now))
		c.pmu.Lock()
		// An event dispatched since the socket was added (admitted, expired)
		// is newer than this read: its frame is held and follows this one,
		// and its state must stay, or the hub would push positions after it.
		if c.kind == "" {
			c.kind, c.place = st.Kind, st.Place
			if st.Kind == KindWaiting || st.Kind == KindLane {
				c.lastPos = st.Position
			}
		}
		c.pmu.Unlock()
		c.first(frame)
	}
	go func() {
		// the reader ends on the client's close or an error; a server-side
		// close ends the writer, which closes the socket and so the reader
		<-c.Done()
		_ = ws.Close()
	}()
	c.readLoop()
	<-c.Done()
}

// orderFrame is the order frame of a shopper who bought: the whole order
// when it can be read, else its id.
func (s *Server) orderFrame(ctx context.Context, saleID, user, orderID string) []byte {
	if s.cfg.OrderJSON != nil {
		if b, err := s.cfg.OrderJSON(ctx, orderID); err == nil {
			return []byte(`{"type":"order","order":` + string(b) + `}`)
		}
	}
	return mustJSON(map[string]any{"type": "order", "order": map[string]any{"id": orderID, "sale_id": saleID, "user_id": user}})
}

// --- operator ---

func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	want := []byte(s.cfg.AdminToken)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(api.Bearer(r))
		if len(want) == 0 || subtle.ConstantTimeCompare(got, want) != 1 {
			api.WriteError(w, api.Errorf(http.StatusUnauthorized, "unauthorized", "the admin token is required"))
			return
		}
		h(w, r)
	}
}

func (s *Server) createSale(w http.ResponseWriter, r *http.Request) {
	var req sale.CreateRequest
	if err := api.ReadJSON(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := req.Build(time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.store.Create(r.Context(), sl); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("sale created", "sale", sl.ID, "stock", sl.StockTotal, "rate", sl.AdmissionRate)
	got, err := s.store.Get(r.Context(), sl.ID)
	if err != nil {
		got = sl
	}
	api.WriteJSON(w, http.StatusCreated, got.JSON(time.Now()))
}

func (s *Server) listSales(w http.ResponseWriter, r *http.Request) {
	sales, err := s.store.List(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := time.Now()
	out := make([]any, len(sales))
	for i, sl := range sales {
		out[i] = sl.JSON(now)
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"sales": out})
}

func (s *Server) getSale(w http.ResponseWriter, r *http.Request) {
	sl, err := s.store.Get(r.Context(), r.PathValue("sale"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) patchSale(w http.ResponseWriter, r *http.Request) {
	var p sale.PatchRequest
	if err := api.ReadJSON(r, &p, false); err != nil {
		s.fail(w, r, err)
		return
	}
	sl, err := s.store.Patch(r.Context(), r.PathValue("sale"), &p, time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Logger.Info("sale changed", "sale", sl.ID, "state", sl.State, "rate", sl.AdmissionRate, "max_active", sl.MaxActive)
	api.WriteJSON(w, http.StatusOK, sl.JSON(time.Now()))
}

func (s *Server) summary(w http.ResponseWriter, r *http.Request) {
	sum, err := s.store.Summary(r.Context(), r.PathValue("sale"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, sum)
}

// --- dev ---

func (s *Server) devToken(w http.ResponseWriter, r *http.Request) {
	if s.cfg.DevSecret == nil {
		api.WriteError(w, api.ErrNotFound)
		return
	}
	var req struct {
		User string `json:"user"`
	}
	if err := api.ReadJSON(r, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.User == "" || len(req.User) > 64 {
		s.fail(w, r, api.Invalid("user: required, 1 to 64 characters"))
		return
	}
	tok, exp, err := identity.Mint(s.cfg.DevSecret, req.User, 12*time.Hour)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"user": req.User, "token": tok, "expires_at": api.Time(exp)})
}
