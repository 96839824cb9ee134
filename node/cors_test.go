package node_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestCORSForAShopFrontEnd: a shop's front end on a --cors-origins origin
// joins, polls, opens the socket and buys with Bearer tokens: its
// preflights are answered and its answers readable; another origin gets no
// CORS headers, and the operator API is not opened to anyone.
func TestCORSForAShopFrontEnd(t *testing.T) {
	t.Parallel()
	const shop = "https://shop.example"
	s := testenv.Start(t, func(c *node.Config) { c.CORSOrigins = []string{shop, "http://127.0.0.1:9"} })
	saleID := s.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 1000})["id"].(string)

	preflight := func(origin, path, method string) *http.Response {
		req, err := http.NewRequest(http.MethodOptions, s.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", method)
		req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,idempotency-key")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	for _, c := range []struct{ path, method string }{
		{"/api/v1/sales/" + saleID + "/join", "POST"},
		{"/api/v1/sales/" + saleID + "/status", "GET"},
		{"/api/v1/sales/" + saleID + "/join", "DELETE"},
		{"/api/v1/sales/" + saleID + "/checkout", "POST"},
		{"/api/v1/orders/ord_x", "GET"},
	} {
		resp := preflight(shop, c.path, c.method)
		require.Equal(t, http.StatusNoContent, resp.StatusCode, c.path)
		h := resp.Header
		require.Equal(t, shop, h.Get("Access-Control-Allow-Origin"), c.path)
		require.Contains(t, h.Get("Access-Control-Allow-Methods"), c.method)
		for _, want := range []string{"Authorization", "Content-Type", "Idempotency-Key"} {
			require.Contains(t, h.Get("Access-Control-Allow-Headers"), want)
		}
		require.Empty(t, h.Get("Access-Control-Allow-Credentials"), "no cookies cross-origin")
		require.Contains(t, h.Values("Vary"), "Origin")
	}
	other := preflight("https://evil.example", "/api/v1/sales/"+saleID+"/join", "POST")
	require.Empty(t, other.Header.Get("Access-Control-Allow-Origin"), "another origin is not allowed")
	admin := preflight(shop, "/api/v1/admin/sales", "POST")
	require.Empty(t, admin.Header.Get("Access-Control-Allow-Origin"), "the operator API is not opened")

	// the calls themselves, from the shop's origin with Bearer tokens
	from := []string{"Origin", shop}
	j := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, "front"), nil, from...)
	require.Equal(t, http.StatusOK, j.Status, "%s", j.Body)
	require.Equal(t, shop, j.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, j.Header.Get("Access-Control-Expose-Headers"), "Retry-After")
	qt := j.JSON(t)["queue_token"].(string)

	h := http.Header{"Origin": {shop}}
	ws, _, err := websocket.DefaultDialer.DialContext(context.Background(),
		strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+"/ws?qt="+qt, h)
	require.NoError(t, err, "the shop's origin may open the socket")
	ws.Close()
	evil, _, err := websocket.DefaultDialer.DialContext(context.Background(),
		strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+"/ws?qt="+qt, http.Header{"Origin": {"https://evil.example"}})
	require.NoError(t, err)
	defer evil.Close()
	_, _, err = evil.ReadMessage()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce, "another origin may not")
	require.Equal(t, 4403, ce.Code)

	tok := admitted(t, s, saleID, qt)
	buy := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, `{"quantity":1}`, append(from, "Idempotency-Key", "cors-1")...)
	require.Equal(t, http.StatusCreated, buy.Status, "%s", buy.Body)
	require.Equal(t, shop, buy.Header.Get("Access-Control-Allow-Origin"))
	noCORS := s.Do(t, "GET", "/api/v1/sales/"+saleID, "", nil, "Origin", "https://evil.example")
	require.Equal(t, http.StatusOK, noCORS.Status)
	require.Empty(t, noCORS.Header.Get("Access-Control-Allow-Origin"))
}

// TestCORSOriginsChecked: --cors-origins takes origins only.
func TestCORSOriginsChecked(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"shop.example", "https://shop.example/path", "ftp://shop.example", "*"} {
		cfg, _, err := parseConfig(t, "--cors-origins", "https://ok.example,"+bad)
		if err == nil {
			err = cfg.Validate()
		}
		require.ErrorContains(t, err, "--cors-origins", bad)
	}
	cfg, _, err := parseConfig(t, "--cors-origins", "https://a.example, http://localhost:3000")
	require.NoError(t, err)
	require.Equal(t, []string{"https://a.example", "http://localhost:3000"}, cfg.CORSOrigins)
}
