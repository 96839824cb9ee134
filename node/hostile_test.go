package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestCrossSiteCookieCalls: a call that changes state (join, leave, cancel)
// authenticated by a cookie alone is refused with 403 forbidden when it
// comes from another site (its Origin, or without one its Sec-Fetch-Site),
// and changes nothing; the same call from the page's own origin, with no
// browser header, or with the token in the Authorization header goes
// through.
func TestCrossSiteCookieCalls(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"hold_ttl_seconds": 300, "admission_rate": 0.001})["id"].(string)
	join := "/api/v1/sales/" + saleID + "/join"
	status := "/api/v1/sales/" + saleID + "/status"
	evil := "https://evil.example"

	for _, hdr := range [][]string{
		{"Origin", evil},
		{"Origin", "null"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site"},
	} {
		user := "csrf-" + testenv.RandomID()
		cookie := "fs_token=" + s.UserToken(t, user)
		r := s.Do(t, "POST", join, "", nil, append([]string{"Cookie", cookie}, hdr...)...)
		require.Equal(t, http.StatusForbidden, r.Status, "%v: %s", hdr, r.Body)
		require.Equal(t, "forbidden", r.Code(t))
		st := s.Do(t, "GET", status, s.UserToken(t, user), nil)
		require.Equal(t, http.StatusNotFound, st.Status, "%v: the user was not queued: %s", hdr, st.Body)
	}

	for _, hdr := range [][]string{
		{"Origin", s.URL},
		{"Sec-Fetch-Site", "same-origin"},
		{"Sec-Fetch-Site", "none"},
		nil, // no browser header: not a browser's request
	} {
		user := "ok-" + testenv.RandomID()
		r := s.Do(t, "POST", join, "", nil, append([]string{"Cookie", "fs_token=" + s.UserToken(t, user)}, hdr...)...)
		require.Equal(t, http.StatusOK, r.Status, "%v: %s", hdr, r.Body)
	}
	// A bearer token is no ambient credential: another site's page may use it.
	r := s.Do(t, "POST", join, s.UserToken(t, "bearer-user"), nil, "Origin", evil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)

	// Leave with the queue-token cookie from another site: refused, still queued.
	user := "leaver"
	j := s.Do(t, "POST", join, s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, j.Status)
	qt := j.JSON(t)["queue_token"].(string)
	l := s.Do(t, "DELETE", join, "", nil, "Cookie", "fs_qt="+qt, "Origin", evil)
	require.Equal(t, http.StatusForbidden, l.Status, "%s", l.Body)
	require.Equal(t, "waiting", s.Do(t, "GET", status, qt, nil).JSON(t)["state"])
	l = s.Do(t, "DELETE", join, "", nil, "Cookie", "fs_qt="+qt, "Origin", s.URL)
	require.Equal(t, http.StatusNoContent, l.Status, "%s", l.Body)

	// Cancel with the shop's cookie from another site: refused, still held.
	tok := s.Ticket(saleID, "buyer", 60e9)
	c := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, nil)
	require.Equal(t, http.StatusCreated, c.Status, "%s", c.Body)
	order := c.JSON(t)["id"].(string)
	cookie := "fs_token=" + s.UserToken(t, "buyer")
	x := s.Do(t, "POST", "/api/v1/orders/"+order+"/cancel", "", nil, "Cookie", cookie, "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, x.Status, "%s", x.Body)
	require.Equal(t, "held", s.Do(t, "GET", "/api/v1/orders/"+order, s.UserToken(t, "buyer"), nil).JSON(t)["status"])
	x = s.Do(t, "POST", "/api/v1/orders/"+order+"/cancel", "", nil, "Cookie", cookie, "Origin", s.URL)
	require.Equal(t, http.StatusOK, x.Status, "%s", x.Body)
}

// TestUnknownAPIPaths: an unknown path under /api/ is 404 not_found and a
// known path with another method 405 method_not_allowed with Allow, both
// in the contract's JSON shape.
func TestUnknownAPIPaths(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	r := s.Do(t, "GET", "/api/v1/nope", "", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.Equal(t, "application/json", r.Header.Get("Content-Type"))
	require.Equal(t, "not_found", r.Code(t))
	r = s.Do(t, "PUT", "/api/v1/sales/x/join", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.Status)
	require.Equal(t, "method_not_allowed", r.Code(t))
	require.Equal(t, "DELETE, POST", r.Header.Get("Allow"))
}

// TestSecureCookieBehindTLSProxy: the queue-token cookie is Secure when the
// request came through a trusted proxy that says https, and only then (an
// untrusted client's X-Forwarded-Proto is its own word).
func TestSecureCookieBehindTLSProxy(t *testing.T) {
	t.Parallel()
	trusted, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	for _, tc := range []struct {
		name    string
		proxies *clientaddr.Resolver
		secure  bool
	}{{"trusted proxy", trusted, true}, {"no trusted proxy", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testenv.Start(t, func(c *node.Config) { c.TrustedProxies = tc.proxies })
			saleID := s.CreateSale(t, nil)["id"].(string)
			r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "u1"), nil, "X-Forwarded-Proto", "https")
			require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
			c := cookieNamed(t, r.Header, "fs_qt")
			require.Equal(t, tc.secure, c.Secure, "%s", r.Header.Get("Set-Cookie"))
			r = s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "u2"), nil)
			require.False(t, cookieNamed(t, r.Header, "fs_qt").Secure, "plain http without the header")
		})
	}
}

func cookieNamed(t *testing.T, h http.Header, name string) *http.Cookie {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no cookie %s in %v", name, h.Values("Set-Cookie"))
	return nil
}
