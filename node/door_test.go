package node_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// proxied starts a node that trusts loopback as its proxy, so a test can
// say each request's client address in X-Forwarded-For.
func proxied(t *testing.T) *testenv.Server {
	t.Helper()
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	return testenv.Start(t, func(c *node.Config) { c.TrustedProxies = lo })
}

// TestMaxUsersPerIP: at most max_users_per_ip distinct users join a sale
// from one address (an IPv6 client counts as its /64); the next is 403
// ip_limit and changes nothing; a user already in rejoins; PATCH lifts it.
// The sources list counts the joins by prefix.
func TestMaxUsersPerIP(t *testing.T) {
	t.Parallel()
	s := proxied(t)
	saleID := s.CreateSale(t, map[string]any{"max_users_per_ip": 2, "admission_rate": 0.001})["id"].(string)
	join := func(user, addr string) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil, "X-Forwarded-For", addr)
	}
	ok := func(user, addr string) {
		t.Helper()
		r := join(user, addr)
		require.Equal(t, http.StatusOK, r.Status, "%s from %s: %s", user, addr, r.Body)
	}
	refused := func(user, addr string) {
		t.Helper()
		r := join(user, addr)
		require.Equal(t, http.StatusForbidden, r.Status, "%s from %s: %s", user, addr, r.Body)
		require.Equal(t, "ip_limit", r.Code(t))
		st := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", s.UserToken(t, user), nil)
		require.Equal(t, http.StatusNotFound, st.Status, "%s was not queued", user)
	}
	ok("a", "203.0.113.7")
	ok("b", "203.0.113.7")
	refused("c", "203.0.113.7")
	ok("a", "203.0.113.7") // already in
	ok("c", "203.0.113.8")
	ok("d1", "2001:db8::1")
	ok("d2", "2001:db8::2")
	refused("d3", "2001:db8::3") // the same /64
	ok("d4", "2001:db8:0:1::1")  // another /64

	r := s.Do(t, "PATCH", "/api/v1/admin/sales/"+saleID, s.AdminToken, map[string]any{"max_users_per_ip": 0})
	require.Equal(t, http.StatusOK, r.Status)
	ok("e", "203.0.113.7")

	want := map[string][2]float64{ // prefix → users, joins
		"203.0.113.0/24": {4, 5}, // a, b, c (from .8), e; a joined twice
		"2001:db8::/48":  {3, 3},
	}
	var got []any
	testenv.Eventually(t, 5*time.Second, func() bool {
		r := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/sources", s.AdminToken, nil)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		got = r.JSON(t)["sources"].([]any)
		if len(got) != len(want) {
			return false
		}
		for _, g := range got {
			m := g.(map[string]any)
			w, ok := want[m["prefix"].(string)]
			if !ok || m["users"] != w[0] || m["joins"] != w[1] {
				return false
			}
		}
		return true
	}, "sources counted: %v", got)
	first := got[0].(map[string]any)
	require.Equal(t, "203.0.113.0/24", first["prefix"], "most users first")
	require.Equal(t, http.StatusNotFound, s.Do(t, "GET", "/api/v1/admin/sales/nope/sources", s.AdminToken, nil).Status)
}
