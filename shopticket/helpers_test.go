package shopticket_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// jwksFront stands where a shop reaches flashsale's JWKS (its load
// balancer's address): it forwards to the node's real JWKS, counts the
// fetches, and can be turned to fail as a JWKS that is down, stalls or
// answers too much, so the tests see what the middleware does then.
type jwksFront struct {
	srv      *httptest.Server
	upstream atomic.Pointer[string] // the node's base URL
	mode     atomic.Int32
	fetches  atomic.Int64
}

const (
	frontUp    = iota // forwards to the node
	frontDown         // 503, as a load balancer with no node behind it
	frontStall        // answers nothing until the client gives up
	frontHuge         // answers a JWKS over the size bound
)

func newJWKSFront(t *testing.T, upstream string) *jwksFront {
	t.Helper()
	f := &jwksFront{}
	f.upstream.Store(&upstream)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.fetches.Add(1)
		switch f.mode.Load() {
		case frontDown:
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
			return
		case frontStall:
			<-r.Context().Done()
			return
		case frontHuge:
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"keys":[],"pad":"`+strings.Repeat("x", shopticket.MaxJWKSBytes)+`"}`)
			return
		}
		resp, err := http.Get(*f.upstream.Load() + "/.well-known/jwks.json")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *jwksFront) URL() string { return f.srv.URL + "/.well-known/jwks.json" }

// clock is a test's clock, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// shop is a shop's service behind the middleware: its handler answers the
// claims it was given as JSON.
type shop struct {
	URL string
	V   *shopticket.Verifier
}

// gotClaims is what the shop's handler answers: the claims it found.
type gotClaims struct {
	OK        bool
	User      string
	Sale      string
	ID        string
	Issuer    string
	KeyID     string
	ExpiresAt int64
	Token     string
}

func newShop(t *testing.T, cfg shopticket.Config, now func() time.Time) *shop {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	v, err := shopticket.NewWithClock(cfg, now)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	srv := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := shopticket.FromContext(r.Context())
		_ = json.NewEncoder(w).Encode(gotClaims{OK: ok, User: c.User, Sale: c.Sale, ID: c.ID, Issuer: c.Issuer,
			KeyID: c.KeyID, ExpiresAt: c.ExpiresAt.Unix(), Token: c.Token})
	})))
	t.Cleanup(srv.Close)
	return &shop{URL: srv.URL, V: v}
}

// answer is one HTTP answer of the shop.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) Code(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.Unmarshal(a.Body, &e), "body: %s", a.Body)
	require.NotEmpty(t, e.Error.Message, "body: %s", a.Body)
	return e.Error.Code
}

func (a answer) Claims(t *testing.T) gotClaims {
	t.Helper()
	require.Equal(t, http.StatusOK, a.Status, "body: %s", a.Body)
	var c gotClaims
	require.NoError(t, json.Unmarshal(a.Body, &c))
	require.True(t, c.OK, "the handler found no claims in its context")
	return c
}

// get calls the shop with a bearer token and an optional fs_ticket.
func (s *shop) get(t *testing.T, bearer, query string) answer {
	t.Helper()
	u := s.URL + "/checkout"
	if query != "" {
		u += "?fs_ticket=" + query
	}
	req, err := http.NewRequest("GET", u, nil)
	require.NoError(t, err)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// signed signs claims with key under kid, as flashsale signs a ticket.
func signed(t *testing.T, key ed25519.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

// ticketClaims are a good ticket's claims for user in saleID.
func ticketClaims(saleID, user string) jwt.MapClaims {
	now := time.Now().Unix()
	return jwt.MapClaims{"iss": "flashsale", "sub": user, "aud": saleID, "use": "ticket",
		"jti": "t-" + testenv.RandomID(), "iat": now, "nbf": now, "exp": now + 300}
}

// strangerTicket is a well-formed ticket signed by a key flashsale never had.
func strangerTicket(t *testing.T, saleID, user string) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return signed(t, priv, ticket.Kid(pub), ticketClaims(saleID, user))
}

// kidOf is the kid in a JWT's header.
func kidOf(t *testing.T, tok string) string {
	t.Helper()
	p := jwt.NewParser()
	parsed, _, err := p.ParseUnverified(tok, jwt.MapClaims{})
	require.NoError(t, err)
	kid, _ := parsed.Header["kid"].(string)
	return kid
}

// unsigned is a JWT with alg none.
func unsigned(t *testing.T, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodNone, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	return s
}

// hmacSigned is the algorithm-confusion attack: HS256 keyed with the
// public key anyone can read from the JWKS.
func hmacSigned(t *testing.T, secret []byte, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(secret)
	require.NoError(t, err)
	return s
}
