package checkout

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/flashsale/flashsale/api"
	"github.com/flashsale/flashsale/bans"
	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/ratelimit"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/ticket"
)

// HTTPConfig configures the checkout's HTTP API.
type HTTPConfig struct {
	AdminToken   string
	ServiceToken string
	// Dev enables POST /api/v1/dev/orders/{order}/pay.
	Dev bool
	// AllowedOrigins are the other origins (besides the request's own)
	// whose pages may cancel with the shop's fs_token cookie.
	AllowedOrigins []string
	// Proxies are the trusted proxies, for the client address; nil: none.
	Proxies *clientaddr.Resolver
	// Bans is the node's current set of live bans; nil: none.
	Bans func() *bans.Set
	// Limits are the shopper calls' rate limits (nil: none).
	Limits *ratelimit.Limiter
}

// Handler is the checkout's HTTP API.
type Handler struct {
	cfg    HTTPConfig
	svc    *Service
	issuer *ticket.Issuer
	ident  *identity.Verifier
}

// NewHandler returns the checkout's HTTP API.
func NewHandler(cfg HTTPConfig, svc *Service, issuer *ticket.Issuer, ident *identity.Verifier) *Handler {
	return &Handler{cfg: cfg, svc: svc, issuer: issuer, ident: ident}
}

// Register mounts the routes.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/sales/{sale}/checkout", h.checkout)
	mux.HandleFunc("GET /api/v1/orders/{order}", h.getOrder)
	mux.HandleFunc("POST /api/v1/orders/{order}/cancel", h.cancel)
	mux.HandleFunc("POST /api/v1/orders/{order}/confirm", h.confirm)
	mux.HandleFunc("POST /api/v1/dev/orders/{order}/pay", h.devPay)
	mux.HandleFunc("GET /api/v1/admin/sales/{sale}/orders.csv", h.exportOrders)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := api.AsError(err)
	if e.Status >= 500 && r.Context().Err() == nil { // a client that hung up is no failure of ours
		h.svc.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	api.WriteError(w, e)
}

func (h *Handler) count(result string) {
	if m := h.svc.cfg.Metrics; m != nil {
		m.Checkouts.WithLabelValues(result).Inc()
	}
}

// checkout follows the contract's order of checks: ticket present and
// valid, for this sale, a stored Idempotency-Key answer, not expired, the
// body, then the atomic step.
func (h *Handler) checkout(w http.ResponseWriter, r *http.Request) {
	saleID := r.PathValue("sale")
	// The rate limits come first (a refusal changes nothing and is never
	// an idempotent answer): by the ticket's user when the ticket is good.
	now := time.Now()
	claims, verr := h.issuer.VerifyTicket(api.Bearer(r), saleID, now)
	user := ""
	if verr == nil {
		user = claims.Subject
	}
	if err := h.limit(r, user); err != nil {
		h.count("rate_limited")
		api.WriteError(w, err)
		return
	}
	status, body := h.checkoutReply(r, saleID, claims, verr, now)
	switch status {
	case http.StatusServiceUnavailable:
		// Until the MySQL breaker's next probe when it is open, else 1 s.
		w.Header().Set("Retry-After", strconv.Itoa(h.svc.orders.Breaker().RetryAfter()))
	}
	api.WriteRaw(w, status, body)
}

// errorReply is a checkout's error answer as status and body, counted by
// code; 5xx are logged.
func (h *Handler) errorReply(saleID, user string, err error) (int, []byte) {
	e := api.AsError(err)
	if e.Status >= 500 && !errors.Is(err, context.Canceled) {
		h.svc.cfg.Logger.Error("checkout failed", "sale", saleID, "user", user, "err", err)
	}
	h.count(e.Code)
	return e.Status, api.ErrorBody(e)
}

// checkoutReply computes the answer as status and body, so an idempotent
// replay can return it byte for byte.
func (h *Handler) checkoutReply(r *http.Request, saleID string, claims *ticket.Claims, verr error, now time.Time) (int, []byte) {
	reply := func(err error) (int, []byte) { return h.errorReply(saleID, "", err) }
	switch {
	case errors.Is(verr, ticket.ErrWrongSale):
		return reply(ErrWrongSale)
	case verr != nil:
		return reply(ErrTicketInvalid)
	}
	raw, err := api.ReadBody(r)
	if err != nil {
		return reply(err)
	}

	var idem *idempotency
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if err := checkIdemKey(key); err != nil {
			return reply(err)
		}
		idem = &idempotency{rdb: h.svc.rdb, key: h.svc.keys.Sale(saleID).Idem(claims.Subject, key), hash: bodyHash(raw)}
		prev, err := idem.take(r.Context())
		if err != nil {
			return reply(err)
		}
		if prev != nil {
			h.count("replayed")
			return prev.Status, prev.Body
		}
		// Redis may have lost the reply: MySQL keeps the key on the order.
		ord, err := h.svc.orders.ByIdempotencyKey(r.Context(), saleID, claims.Subject, key)
		switch {
		case err == nil:
			// MySQL keeps no hash of the body, but its only field is the
			// quantity: another quantity is another request. The claim is
			// dropped, not answered, so the original body still replays.
			if !sameQuantity(raw, ord.Quantity) {
				idem.release(r.Context())
				return reply(errIdemMismatch)
			}
			b, _ := json.Marshal(ord.JSON())
			idem.store(r.Context(), http.StatusCreated, b)
			h.count("replayed")
			return http.StatusCreated, b
		case !errors.Is(err, ErrNoOrder):
			// Buying without knowing could answer this key differently
			// (already_bought for its own order): retry later instead.
			idem.release(r.Context())
			return reply(&sale.StoreError{Store: "MySQL", Err: err})
		}
	}
	status, body := h.buy(r, saleID, claims, raw, now)
	if idem != nil {
		idem.store(r.Context(), status, body)
	}
	return status, body
}

func (h *Handler) buy(r *http.Request, saleID string, claims *ticket.Claims, raw []byte, now time.Time) (int, []byte) {
	reply := func(err error) (int, []byte) { return h.errorReply(saleID, claims.Subject, err) }
	if claims.Expired(now) {
		return reply(ErrTicketExpired)
	}
	if err := h.banned(r, claims.Subject, saleID); err != nil {
		return reply(err)
	}
	qty, err := quantity(raw)
	if err != nil {
		return reply(err)
	}
	_, b, err := h.svc.buy(r.Context(), Purchase{SaleID: saleID, User: claims.Subject, JTI: claims.ID,
		IdempotencyKey: r.Header.Get("Idempotency-Key"), Quantity: qty})
	if errors.Is(err, ErrNoState) {
		h.svc.RebuildSoon(saleID)
		err = api.Unavailable("the sale's live state (being rebuilt)")
	}
	if err != nil {
		return reply(err)
	}
	h.count("created")
	return http.StatusCreated, b
}

// quantity reads a checkout body: its quantity, 1 when the body is empty or
// has none. The usual body, exactly {"quantity":N} with N of 1 to 9 digits
// and no leading zero, is read without the JSON decoder (decoding it was
// 4% of the node's CPU under load); any other body goes through api.Decode,
// which answers it as it always did.
func quantity(raw []byte) (int, error) {
	const head, tail = `{"quantity":`, `}`
	if d := raw; len(d) > len(head)+len(tail) && string(d[:len(head)]) == head && d[len(d)-1] == tail[0] {
		d = d[len(head) : len(d)-1]
		if n := len(d); n <= 9 && d[0] != '0' {
			qty := 0
			for _, c := range d {
				if c < '0' || c > '9' {
					qty = -1
					break
				}
				qty = 10*qty + int(c-'0')
			}
			if qty > 0 {
				return qty, nil
			}
		}
	}
	var req struct {
		Quantity *int `json:"quantity"`
	}
	if err := api.Decode(raw, &req, true); err != nil {
		return 0, err
	}
	if req.Quantity == nil {
		return 1, nil
	}
	return *req.Quantity, nil
}

// sameQuantity reports whether a checkout body asks for qty units.
func sameQuantity(raw []byte, qty int) bool {
	var req struct {
		Quantity *int `json:"quantity"`
	}
	if err := api.Decode(raw, &req, true); err != nil {
		return false
	}
	if req.Quantity == nil {
		return qty == 1
	}
	return *req.Quantity == qty
}

// caller is who calls an order endpoint.
type caller struct {
	admin, service bool
	user           string
	// byCookie: the token came from the fs_token cookie, not the
	// Authorization header (a browser's ambient credential).
	byCookie bool
}

func (h *Handler) caller(r *http.Request) (caller, error) {
	tok, byCookie := api.Bearer(r), false
	if tok == "" {
		if c, err := r.Cookie("fs_token"); err == nil {
			tok, byCookie = c.Value, true
		}
	}
	if tok == "" {
		return caller{}, api.ErrUnauthorized
	}
	if eq(tok, h.cfg.AdminToken) {
		return caller{admin: true, byCookie: byCookie}, nil
	}
	if eq(tok, h.cfg.ServiceToken) {
		return caller{service: true, byCookie: byCookie}, nil
	}
	user, err := h.ident.Verify(r.Context(), tok)
	if err != nil {
		return caller{}, api.ErrUnauthorized
	}
	return caller{user: user, byCookie: byCookie}, nil
}

// name identifies the caller in idempotency keys.
func (c caller) name() string {
	switch {
	case c.admin:
		return "~admin"
	case c.service:
		return "~service"
	}
	return "u:" + c.user
}

func eq(a, b string) bool {
	return b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// ownOrder reads an order the caller may see: the owner's, or any for the
// admin and the service. Another shopper's order is not found.
func (h *Handler) ownOrder(r *http.Request, c caller) (*Order, error) {
	if !c.admin && !c.service {
		if err := h.limit(r, c.user); err != nil {
			return nil, err
		}
	}
	o, err := h.svc.Order(r.Context(), r.PathValue("order"))
	if err != nil {
		return nil, err
	}
	if !c.admin && !c.service && o.UserID != c.user {
		return nil, api.ErrNotFound
	}
	if !c.admin && !c.service {
		if err := h.banned(r, c.user, o.SaleID); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// limit spends one request of the client's address and of user ("" when
// not known) from the cluster-wide rate limits: 429 when over.
func (h *Handler) limit(r *http.Request, user string) error {
	if h.cfg.Limits == nil {
		return nil
	}
	return h.cfg.Limits.Allow(r.Context(), clientaddr.Key(h.cfg.Proxies.Addr(r)), user)
}

// ErrBanned answers a banned user or address.
var ErrBanned = api.Errorf(http.StatusForbidden, "banned", "you are banned from this sale")

// banned answers 403 banned when a live ban matches the user or the
// client address in the sale.
func (h *Handler) banned(r *http.Request, user, saleID string) error {
	if h.cfg.Bans == nil {
		return nil
	}
	if _, ok := h.cfg.Bans().Match(user, h.cfg.Proxies.Addr(r), saleID, time.Now()); ok {
		return ErrBanned
	}
	return nil
}

func (h *Handler) getOrder(w http.ResponseWriter, r *http.Request) {
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	o, err := h.ownOrder(r, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, o.JSON())
}

func (h *Handler) cancel(w http.ResponseWriter, r *http.Request) {
	h.settle(w, r, StatusCancelled, func(c caller) bool { return true })
}

// confirm takes the admin or service token only: a shopper can never mark
// an order paid.
func (h *Handler) confirm(w http.ResponseWriter, r *http.Request) {
	h.settle(w, r, StatusPaid, func(c caller) bool { return c.admin || c.service })
}

// devPay stands in for the payment provider in --dev: the owner pays.
func (h *Handler) devPay(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Dev {
		api.WriteError(w, api.ErrNotFound)
		return
	}
	h.settle(w, r, StatusPaid, func(c caller) bool { return true })
}

func (h *Handler) settle(w http.ResponseWriter, r *http.Request, to string, allowed func(caller) bool) {
	c, err := h.caller(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if c.byCookie {
		// no cross-site request forgery through the shop's cookie
		if err := api.CheckCookieOrigin(r, h.cfg.AllowedOrigins); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	if !allowed(c) {
		h.fail(w, r, api.Errorf(http.StatusForbidden, "forbidden", "only the payment service or an operator may confirm an order"))
		return
	}
	raw, err := api.ReadBody(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	ord, err := h.ownOrder(r, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// An Idempotency-Key makes a retried confirm or cancel answer what the
	// first one did (a 200 with the order, not a 409 because it is no longer
	// held). Keys are scoped to the caller, the action and the order.
	var idem *idempotency
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if err := checkIdemKey(key); err != nil {
			h.fail(w, r, err)
			return
		}
		idem = &idempotency{rdb: h.svc.rdb, hash: bodyHash(raw),
			key: h.svc.keys.Sale(ord.SaleID).Idem(c.name(), to+":"+ord.ID+":"+key)}
		prev, err := idem.take(r.Context())
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if prev != nil {
			api.WriteRaw(w, prev.Status, prev.Body)
			return
		}
	}
	status, body := http.StatusOK, []byte(nil)
	o, err := h.svc.Settle(r.Context(), ord.ID, to)
	if err != nil {
		e := api.AsError(err)
		if e.Status >= 500 {
			h.svc.cfg.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "order", ord.ID, "err", err)
		}
		if e.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
		}
		status, body = e.Status, api.ErrorBody(e)
	} else {
		if m := h.svc.cfg.Metrics; m != nil {
			m.Settles.WithLabelValues(to).Inc()
		}
		body, _ = json.Marshal(o.JSON())
	}
	if idem != nil {
		idem.store(r.Context(), status, body)
	}
	api.WriteRaw(w, status, body)
}
