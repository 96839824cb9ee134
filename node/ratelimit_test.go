package node_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/clientaddr"
	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestRateLimits: the shopper calls share one limit per client address and
// per user across nodes; over it a call is 429 rate_limited with a
// Retry-After of whole seconds, changes nothing, and a WebSocket is closed
// with 4429; operators are not limited.
func TestRateLimits(t *testing.T) {
	t.Parallel()
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	limits := func(c *node.Config) {
		c.TrustedProxies = lo
		c.IPRate, c.IPBurst, c.UserRate, c.UserBurst = 0.5, 3, 0.5, 2
	}
	a := testenv.Start(t, limits)
	b := a.Peer(t, limits)
	saleID := a.CreateSale(t, map[string]any{"admission_rate": 0.001})["id"].(string)
	join := func(s *testenv.Server, user, addr string) *testenv.Response {
		return s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil, "X-Forwarded-For", addr)
	}
	limited := func(r *testenv.Response) {
		t.Helper()
		require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
		require.Equal(t, "rate_limited", r.Code(t))
		n, err := strconv.Atoi(r.Header.Get("Retry-After"))
		require.NoError(t, err, "Retry-After %q", r.Header.Get("Retry-After"))
		require.GreaterOrEqual(t, n, 1)
	}

	// the user's burst (2) is spent on two nodes; the third call is refused
	require.Equal(t, http.StatusOK, join(a, "ann", "192.0.2.1").Status)
	require.Equal(t, http.StatusOK, join(b, "ann", "192.0.2.2").Status)
	r := join(a, "ann", "192.0.2.3")
	limited(r)

	// the address's burst (3) across users and nodes
	require.Equal(t, http.StatusOK, join(a, "u1", "198.51.100.1").Status)
	require.Equal(t, http.StatusOK, join(b, "u2", "198.51.100.1").Status)
	require.Equal(t, http.StatusOK, join(a, "u3", "198.51.100.1").Status)
	limited(join(b, "u4", "198.51.100.1"))
	st := a.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", a.UserToken(t, "u4"), nil, "X-Forwarded-For", "203.0.113.50")
	require.Equal(t, http.StatusNotFound, st.Status, "the refused join changed nothing: %s", st.Body)
	// an unauthenticated call counts against its address too
	limited(a.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", "bad-token", nil, "X-Forwarded-For", "198.51.100.1"))

	// a WebSocket over the limit is closed with 4429
	h := http.Header{}
	h.Set("X-Forwarded-For", "198.51.100.1")
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(b.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+"/ws", h)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, _, err = ws.ReadMessage()
	ce, ok := err.(*websocket.CloseError)
	require.True(t, ok, "%v", err)
	require.Equal(t, 4429, ce.Code)

	// checkout with a valid ticket, over the user's limit
	tok := a.Ticket(saleID, "cat", time.Minute)
	for range 2 {
		c := a.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", a.UserToken(t, "cat"), nil, "X-Forwarded-For", "203.0.113.77")
		require.Equal(t, http.StatusNotFound, c.Status)
	}
	limited(a.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, nil, "X-Forwarded-For", "203.0.113.78"))
	count := 0
	require.NoError(t, a.DB.QueryRow(`SELECT COUNT(*) FROM orders`).Scan(&count))
	require.Zero(t, count)

	// operators are never limited
	for range 10 {
		require.Equal(t, http.StatusOK, a.Do(t, "GET", "/api/v1/admin/sales/"+saleID, a.AdminToken, nil, "X-Forwarded-For", "198.51.100.1").Status)
	}
}

// TestRateLimitsBeforeJoinErrors: a join that stops before the queue (a
// body that is not JSON, an unknown sale, a sale whose door checks the
// address's users first) still spends its request, and over the limit its
// answer is the 429, as for every other call.
func TestRateLimitsBeforeJoinErrors(t *testing.T) {
	t.Parallel()
	lo, err := clientaddr.Parse("127.0.0.1/32")
	require.NoError(t, err)
	a := testenv.Start(t, func(c *node.Config) {
		c.TrustedProxies = lo
		c.IPRate, c.IPBurst, c.UserRate, c.UserBurst = 0.01, 100, 0.01, 2
	})
	door := a.CreateSale(t, map[string]any{"admission_rate": 0.001, "max_users_per_ip": 5})["id"].(string)
	tok := a.UserToken(t, "ann")
	bad := func() *testenv.Response {
		return a.Do(t, "POST", "/api/v1/sales/"+door+"/join", tok, "not an object", "X-Forwarded-For", "192.0.2.1")
	}
	r := bad()
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
	r = a.Do(t, "POST", "/api/v1/sales/no-such-sale/join", tok, nil, "X-Forwarded-For", "192.0.2.1")
	require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)
	// the user's burst (2) is spent by the two failed joins
	r = bad()
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
	require.Equal(t, "rate_limited", r.Code(t))
	// a status poll carries its checks in the queue's script too
	r = a.Do(t, "GET", "/api/v1/sales/"+door+"/status", tok, nil, "X-Forwarded-For", "192.0.2.1")
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
	require.Equal(t, "rate_limited", r.Code(t))

	// a sale with a door (max_users_per_ip): the limit is checked before it
	bob := a.UserToken(t, "bob")
	for range 2 {
		r = a.Do(t, "POST", "/api/v1/sales/"+door+"/join", bob, nil, "X-Forwarded-For", "192.0.2.2")
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	}
	r = a.Do(t, "POST", "/api/v1/sales/"+door+"/join", bob, nil, "X-Forwarded-For", "192.0.2.2")
	require.Equal(t, http.StatusTooManyRequests, r.Status, "%s", r.Body)
}
