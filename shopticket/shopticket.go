package shopticket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// QueryParam is the query parameter the waiting page adds to a sale's
// return_url to hand the ticket over to the shop.
const QueryParam = "fs_ticket"

// notBeforeLeeway is the least skew allowed on nbf, as flashsale's own
// checkout allows: nbf is the admission time on Redis's clock, and a shop
// whose clock is a little behind would refuse a ticket used at once (the
// waiting page sends the shopper to the shop the moment it is admitted).
const notBeforeLeeway = 2 * time.Second

// maxTicketBytes bounds what is parsed: a ticket is a few hundred bytes.
const maxTicketBytes = 4096

// Config configures a Verifier. JWKSURL and Sale are required; zero values
// of the others mean their defaults.
type Config struct {
	// JWKSURL is flashsale's JWKS, https://<flashsale>/.well-known/jwks.json.
	JWKSURL string
	// Sale is the sale id the tickets must be for (their aud claim).
	Sale string
	// Issuer is the iss claim tickets must carry: flashsale's
	// --ticket-issuer (default "flashsale").
	Issuer string
	// HTTPClient fetches the JWKS (default: a client with a 10 s timeout).
	// One fetch never takes longer than 10 s, whatever the client.
	HTTPClient *http.Client
	// Leeway is the clock skew allowed on exp and nbf (default none on
	// exp; nbf always has at least 2 s, as flashsale's checkout has).
	Leeway time.Duration
	// Logger gets the JWKS's warnings (default slog.Default()).
	Logger *slog.Logger
	// RefreshEvery is how often the JWKS is fetched again (default 10
	// min): a key removed from it stops being trusted after that, and a
	// key published ahead of a rotation is known before it signs.
	RefreshEvery time.Duration
	// UnknownKidEvery is the least time between two fetches asked for by
	// tickets with a kid not in the cached keys (default 1 min), so that
	// forged kids cannot make the shop hammer flashsale's JWKS.
	UnknownKidEvery time.Duration
}

// Claims are a verified ticket's claims.
type Claims struct {
	User      string    // sub: the shopper's user id, as the shop's identity provider gave it
	Sale      string    // aud: the sale
	ID        string    // jti: the ticket's id (flashsale's checkout takes each once)
	Issuer    string    // iss
	KeyID     string    // kid: the key that signed it
	IssuedAt  time.Time // iat: when the shopper was admitted
	NotBefore time.Time // nbf
	ExpiresAt time.Time // exp: the ticket must be used before
	// Token is the ticket itself, to send on to flashsale's checkout
	// (Authorization: Bearer) when the shop buys through it.
	Token string
}

// Verification failures, matched with errors.Is on Verify's errors.
// WriteError answers each as flashsale's checkout does.
var (
	ErrNoTicket    = errors.New("no ticket")                         // 401 ticket_invalid
	ErrInvalid     = errors.New("ticket invalid")                    // 401 ticket_invalid
	ErrWrongSale   = errors.New("ticket is for another sale")        // 403 wrong_sale
	ErrExpired     = errors.New("ticket expired")                    // 401 ticket_expired
	ErrUnavailable = errors.New("the ticket keys cannot be fetched") // 503 unavailable
)

// retryError carries how long until a retry may succeed (ErrUnavailable).
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Verifier verifies tickets of one sale offline, with the keys of
// flashsale's JWKS, which it keeps fresh on a goroutine of its own until
// Close.
type Verifier struct {
	cfg    Config
	keys   *keyCache
	now    func() time.Time
	parser *jwt.Parser
}

// New returns a Verifier and starts fetching the JWKS. A JWKS that is down
// does not stop New: tickets are answered 503 until it answers. Call Close
// when done with it.
func New(cfg Config) (*Verifier, error) { return newWithClock(cfg, time.Now) }

// newWithClock is New on a clock of the caller's: it dates tickets and
// paces the fetches unknown kids ask for (the periodic refresh runs on real
// timers). Tests move it to cross expiry and UnknownKidEvery without
// waiting.
func newWithClock(cfg Config, now func() time.Time) (*Verifier, error) {
	var problems []string
	u, err := url.Parse(cfg.JWKSURL)
	if cfg.JWKSURL == "" {
		problems = append(problems, "JWKSURL is required (flashsale's https://<host>/.well-known/jwks.json)")
	} else if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		problems = append(problems, fmt.Sprintf("JWKSURL %q is not an http(s) URL", cfg.JWKSURL))
	}
	if cfg.Sale == "" {
		problems = append(problems, "Sale is required (the id of the sale whose tickets are accepted)")
	}
	if cfg.Leeway < 0 {
		problems = append(problems, "Leeway must not be negative")
	}
	if len(problems) > 0 {
		return nil, errors.New("shopticket: " + strings.Join(problems, "; "))
	}
	if cfg.Issuer == "" {
		cfg.Issuer = "flashsale"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: fetchTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = 10 * time.Minute
	}
	if cfg.UnknownKidEvery <= 0 {
		cfg.UnknownKidEvery = time.Minute
	}
	v := &Verifier{cfg: cfg, now: now,
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithoutClaimsValidation())}
	v.keys = newKeyCache(cfg, now)
	return v, nil
}

// Close stops the JWKS refresh and waits for it to end. Tickets whose key
// is cached still verify after it; it is safe to call more than once.
func (v *Verifier) Close() { v.keys.close() }

// wireClaims are the claims as flashsale signs them.
type wireClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	Use       string           `json:"use"`
	ID        string           `json:"jti"`
	IssuedAt  int64            `json:"iat"`
	NotBefore int64            `json:"nbf"`
	ExpiresAt int64            `json:"exp"`
}

// The jwt.Claims interface; the claims are checked by hand, in the order
// flashsale's checkout checks them, so these only expose the values.
func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return nil, nil }
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return nil, nil }
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return nil, nil }
func (c *wireClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *wireClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// Verify checks a ticket in the order flashsale's checkout does: present
// (ErrNoTicket); signature, alg EdDSA, a kid of the JWKS, use "ticket",
// issuer, sub, jti and exp present, nbf reached (ErrInvalid); for the sale
// (ErrWrongSale); not expired (ErrExpired). ErrUnavailable says the JWKS
// could not be read to learn the ticket's key. ctx bounds the wait for a
// JWKS fetch an unknown kid asks for. With ErrWrongSale and ErrExpired the
// claims are returned too (Sale is then the ticket's aud), for logging.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrNoTicket
	}
	if len(token) > maxTicketBytes {
		return Claims{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, maxTicketBytes)
	}
	var (
		wc      wireClaims
		kid     string
		keysErr error
	)
	_, err := v.parser.ParseWithClaims(token, &wc, func(t *jwt.Token) (any, error) {
		kid, _ = t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid in its header")
		}
		k, retry, err := v.keys.key(ctx, kid)
		if errors.Is(err, errNoKeys) {
			keysErr = &retryError{err: fmt.Errorf("%w: %v", ErrUnavailable, err), after: retry}
		}
		if err != nil {
			return nil, err
		}
		return k, nil
	})
	switch {
	case keysErr != nil:
		return Claims{}, keysErr
	case err != nil:
		return Claims{}, fmt.Errorf("%w: %s", ErrInvalid, why(err))
	}
	now := v.now()
	nbfLeeway := max(v.cfg.Leeway, notBeforeLeeway)
	switch {
	case wc.Use != "ticket":
		return Claims{}, fmt.Errorf("%w: its use is %q, not a ticket", ErrInvalid, wc.Use)
	case wc.Issuer != v.cfg.Issuer:
		return Claims{}, fmt.Errorf("%w: issued by %q, not %q", ErrInvalid, wc.Issuer, v.cfg.Issuer)
	case wc.Subject == "" || wc.ID == "" || wc.ExpiresAt == 0:
		return Claims{}, fmt.Errorf("%w: sub, jti and exp are required", ErrInvalid)
	case wc.NotBefore > 0 && unix(wc.NotBefore).After(now.Add(nbfLeeway)):
		return Claims{}, fmt.Errorf("%w: not valid before %s", ErrInvalid, unix(wc.NotBefore).UTC().Format(time.RFC3339))
	}
	c := Claims{User: wc.Subject, Sale: v.cfg.Sale, ID: wc.ID, Issuer: wc.Issuer, KeyID: kid,
		IssuedAt: unix(wc.IssuedAt), NotBefore: unix(wc.NotBefore), ExpiresAt: unix(wc.ExpiresAt), Token: token}
	if len(wc.Audience) != 1 || wc.Audience[0] != v.cfg.Sale {
		c.Sale = strings.Join(wc.Audience, ",")
		return c, ErrWrongSale
	}
	if !now.Before(c.ExpiresAt.Add(v.cfg.Leeway)) {
		return c, ErrExpired
	}
	return c, nil
}

// why says in words why the JWT library refused a ticket.
func why(err error) string {
	switch {
	case errors.Is(err, errUnknownKid):
		return errUnknownKid.Error()
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "it is not a JWT (three base64url parts with JSON header and claims)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "its signature does not verify (alg EdDSA, by a key of the JWKS)"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "it cannot be verified: its header needs alg EdDSA and the kid of a key in the JWKS"
	}
	return "it cannot be verified"
}

// unix is a NumericDate as a time; 0 (absent) is the zero time.
func unix(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0)
}

// FromRequest is the ticket of a request: the fs_ticket query parameter
// when there is one, else the Authorization: Bearer header. The query
// parameter wins because it can only be a flashsale ticket (the waiting
// page put it there on the way back to the shop), while the header may
// carry the shop's own login token on the same request.
func FromRequest(r *http.Request) string {
	if t := r.URL.Query().Get(QueryParam); t != "" {
		return t
	}
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// Middleware wraps next: a request with a valid ticket of the sale goes on
// with the claims in its context (FromContext); any other is answered as
// flashsale's checkout answers it (WriteError), and next is not called.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := v.Verify(r.Context(), FromRequest(r))
		if err != nil {
			WriteError(w, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), c)))
	})
}

type ctxKey struct{}

// NewContext returns ctx carrying the claims (for the shop's own tests of
// handlers that run behind the middleware).
func NewContext(ctx context.Context, c Claims) context.Context {
	return context.WithValue(ctx, ctxKey{}, c)
}

// FromContext returns the claims the middleware put in a request's
// context, and whether there are any.
func FromContext(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(ctxKey{}).(Claims)
	return c, ok
}

// WriteError answers a Verify error in flashsale's error shape,
// {"error":{"code":"...","message":"..."}}, with the status and code
// flashsale's checkout gives the same ticket: 401 ticket_invalid (none,
// or not valid), 403 wrong_sale, 401 ticket_expired, and 503 unavailable
// with Retry-After when the JWKS could not be read.
func WriteError(w http.ResponseWriter, err error) {
	status, code, msg := http.StatusUnauthorized, "ticket_invalid", "a valid ticket is required"
	h := w.Header()
	switch {
	case errors.Is(err, ErrNoTicket):
		msg = "a ticket is required: send it in an Authorization: Bearer header or the " + QueryParam + " query parameter"
	case errors.Is(err, ErrWrongSale):
		status, code, msg = http.StatusForbidden, "wrong_sale", "the ticket is for another sale"
	case errors.Is(err, ErrExpired):
		code, msg = "ticket_expired", "the ticket has expired; join the queue again"
	case errors.Is(err, ErrUnavailable):
		status, code = http.StatusServiceUnavailable, "unavailable"
		msg = "the ticket's keys cannot be fetched from flashsale's JWKS; retry after the Retry-After delay"
		after := time.Second
		if re := (*retryError)(nil); errors.As(err, &re) && re.after > after {
			after = re.after
		}
		h.Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
	case errors.Is(err, ErrInvalid):
		msg = "a valid ticket is required: " + strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": ")
	}
	switch {
	case errors.Is(err, ErrNoTicket): // RFC 6750: no error code when no token came
		h.Set("WWW-Authenticate", "Bearer")
	case status == http.StatusUnauthorized:
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"code": code, "message": msg}})
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
