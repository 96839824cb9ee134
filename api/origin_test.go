package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOriginAllowed(t *testing.T) {
	t.Parallel()
	allowed := []string{"https://shop.example", "http://localhost:3000/", "HTTPS://Admin.Example:8443", "not an origin"}
	cases := []struct {
		host   string
		origin []string // the Origin headers; none for nil
		want   bool
	}{
		{"waiting.example", nil, true},

		// The request's own origin, in either scheme (a TLS proxy in front).
		{"waiting.example", []string{"https://waiting.example"}, true},
		{"waiting.example", []string{"http://waiting.example"}, true},
		{"Waiting.Example", []string{"HTTPS://waiting.EXAMPLE"}, true},
		{"waiting.example:443", []string{"https://waiting.example"}, true},
		{"waiting.example", []string{"https://waiting.example:443"}, true},
		{"127.0.0.1:8080", []string{"http://127.0.0.1:8080"}, true},
		{"[::1]:8080", []string{"http://[::1]:8080"}, true},
		{"waiting.example:8080", []string{"http://waiting.example:8081"}, false},
		{"waiting.example:8080", []string{"http://waiting.example"}, false},
		{"waiting.example:443", []string{"http://waiting.example"}, false},
		{"waiting.example", []string{"https://waiting.example:8443"}, false},
		{"waiting.example", []string{"https://evil.waiting.example"}, false},
		{"waiting.example", []string{"https://waiting.example.evil"}, false},

		// The allowed list: scheme, host and port exactly, default ports normalised.
		{"waiting.example", []string{"https://shop.example"}, true},
		{"waiting.example", []string{"https://SHOP.example:443"}, true},
		{"waiting.example", []string{"http://shop.example"}, false},
		{"waiting.example", []string{"https://shop.example:444"}, false},
		{"waiting.example", []string{"http://localhost:3000"}, true},
		{"waiting.example", []string{"http://localhost:3001"}, false},
		{"waiting.example", []string{"https://admin.example:8443"}, true},
		{"waiting.example", []string{"https://admin.example"}, false},

		// Not origins, or two of them.
		{"waiting.example", []string{"null"}, false},
		{"waiting.example", []string{""}, false},
		{"waiting.example", []string{"not an origin"}, false},
		{"waiting.example", []string{"https://waiting.example/path"}, false},
		{"waiting.example", []string{"https://user@waiting.example"}, false},
		{"waiting.example", []string{"https://waiting.example?x"}, false},
		{"waiting.example", []string{"waiting.example"}, false},
		{"waiting.example", []string{"chrome-extension://waiting.example"}, false},
		{"waiting.example", []string{"https://waiting.example", "https://evil.example"}, false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/api/v1/sales/s/join", nil)
		r.Host = c.host
		for _, o := range c.origin {
			r.Header.Add("Origin", o)
		}
		require.Equal(t, c.want, OriginAllowed(r, allowed), "Host %s, Origin %q", c.host, c.origin)
	}
}

func TestCheckCookieOrigin(t *testing.T) {
	t.Parallel()
	allowed := []string{"https://shop.example"}
	cases := []struct {
		origin, site string // "-" for no header
		want         bool
	}{
		{"-", "-", true}, // no browser's
		{"https://waiting.example", "-", true},
		{"https://shop.example", "cross-site", true}, // an Origin decides
		{"https://evil.example", "-", false},
		{"https://evil.example", "same-origin", false},
		{"null", "-", false},
		{"", "-", false},
		{"-", "same-origin", true},
		{"-", "none", true},
		{"-", "Same-Origin", true},
		{"-", "same-site", false},
		{"-", "cross-site", false},
		{"-", "", false},
		{"-", "whatever", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest("POST", "/api/v1/sales/s/join", nil)
		r.Host = "waiting.example"
		if c.origin != "-" {
			r.Header.Set("Origin", c.origin)
		}
		if c.site != "-" {
			r.Header.Set("Sec-Fetch-Site", c.site)
		}
		err := CheckCookieOrigin(r, allowed)
		if c.want {
			require.NoError(t, err, "Origin %q, Sec-Fetch-Site %q", c.origin, c.site)
			continue
		}
		e, ok := err.(*Error)
		require.True(t, ok, "Origin %q, Sec-Fetch-Site %q: %v", c.origin, c.site, err)
		require.Equal(t, http.StatusForbidden, e.Status)
		require.Equal(t, "forbidden", e.Code)
		require.Contains(t, e.Message, "Authorization header")
	}

	// Two Sec-Fetch-Site headers are no browser's either.
	r := httptest.NewRequest("DELETE", "/api/v1/sales/s/join", nil)
	r.Header.Add("Sec-Fetch-Site", "same-origin")
	r.Header.Add("Sec-Fetch-Site", "cross-site")
	require.Error(t, CheckCookieOrigin(r, nil))
}
