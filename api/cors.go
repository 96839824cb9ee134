package api

import (
	"fmt"
	"net/http"
	"strings"
)

// CORS lets a shop's own front end on one of origins (--cors-origins) call
// the shopper and checkout API from the browser with Bearer tokens: it
// answers their preflights (204) and marks their answers readable. No
// credentials are allowed (cookies stay same-site), and the operator API
// (/api/v1/admin/) is not opened. A request from any other origin passes
// untouched: the browser then keeps the answer from the page.
type CORS struct {
	origins []origin
}

// NewCORS checks the origins ("scheme://host[:port]", as --cors-origins
// lists them) and returns the rule; the error names the bad one.
func NewCORS(origins []string) (*CORS, error) {
	c := &CORS{}
	for _, s := range origins {
		o, ok := parseOrigin(s)
		if !ok || (o.scheme != "http" && o.scheme != "https") {
			return nil, fmt.Errorf("--cors-origins: %q is not an origin (scheme://host[:port], e.g. https://shop.example)", s)
		}
		c.origins = append(c.origins, o)
	}
	return c, nil
}

// corsMethods and corsHeaders are what a preflight may ask for: the
// shopper and checkout calls' methods and request headers.
const (
	corsMethods = "GET, POST, DELETE"
	corsHeaders = "Authorization, Content-Type, Idempotency-Key"
)

// Wrap puts the rule in front of next.
func (c *CORS) Wrap(next http.Handler) http.Handler {
	if c == nil || len(c.origins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.applies(r) {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		origin, ok := c.allowed(r)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !ok {
				// not one of ours: an answer without the CORS headers, which
				// the browser takes as a refusal
				w.WriteHeader(http.StatusNoContent)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Expose-Headers", "Retry-After, Location")
		}
		next.ServeHTTP(w, r)
	})
}

// applies: the shopper and checkout API and the JWKS, not the operator's.
func (c *CORS) applies(r *http.Request) bool {
	p := r.URL.Path
	if strings.HasPrefix(p, "/api/v1/admin/") || p == "/api/v1/admin" {
		return false
	}
	return strings.HasPrefix(p, "/api/v1/") || p == "/.well-known/jwks.json"
}

// allowed returns the request's Origin as sent when it is one of ours.
func (c *CORS) allowed(r *http.Request) (string, bool) {
	vals := r.Header.Values("Origin")
	if len(vals) != 1 {
		return "", false
	}
	o, ok := parseOrigin(vals[0])
	if !ok {
		return "", false
	}
	for _, a := range c.origins {
		if a == o {
			return strings.TrimSpace(vals[0]), true
		}
	}
	return "", false
}
