package node_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestEndToEnd walks the whole flow as a shopper and an operator would, over
// real HTTP and WebSockets against real Redis and MariaDB: create a sale,
// join, watch the socket until admitted, verify the ticket from the
// published JWKS alone, buy, and find the order in MySQL and the summary
// consistent.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	sl := s.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 20, "max_active": 10, "price_cents": 79900})
	saleID := sl["id"].(string)
	require.Equal(t, "open", sl["state"])
	require.EqualValues(t, 5, sl["stock_remaining"])

	// Join over HTTP: a position and a queue token (body and cookie).
	user := "alice-" + testenv.RandomID()
	join := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	jb := join.JSON(t)
	qt, _ := jb["queue_token"].(string)
	require.NotEmpty(t, qt)
	require.Contains(t, join.Header.Get("Set-Cookie"), "fs_qt=")
	require.Contains(t, []any{"waiting", "admitted"}, jb["state"])

	// The socket's first frame is the current state; then comes admitted.
	ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL, "http", "ws", 1)+"/api/v1/sales/"+saleID+"/ws?qt="+qt, nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	var frame map[string]any
	for frame["type"] != "admitted" {
		frame = nil
		require.NoError(t, ws.ReadJSON(&frame))
		require.Contains(t, []any{"position", "admitted"}, frame["type"], "frame %v", frame)
	}
	tok := frame["ticket"].(string)

	// Anyone can verify the ticket from the JWKS alone.
	jwks := s.Do(t, "GET", "/.well-known/jwks.json", "", nil)
	require.Equal(t, http.StatusOK, jwks.Status)
	var set struct {
		Keys []struct{ Kty, Crv, X, Kid string }
	}
	require.NoError(t, json.Unmarshal(jwks.Body, &set))
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		require.Equal(t, "OKP", k.Kty)
		require.Equal(t, "Ed25519", k.Crv)
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		require.NoError(t, err)
		keys[k.Kid] = x
	}
	claims := jwt.MapClaims{}
	parsed, err := jwt.ParseWithClaims(tok, claims, func(t *jwt.Token) (any, error) {
		return keys[t.Header["kid"].(string)], nil
	}, jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience(saleID), jwt.WithIssuer("flashsale"))
	require.NoError(t, err)
	require.True(t, parsed.Valid)
	require.Equal(t, user, claims["sub"])
	require.Equal(t, "ticket", claims["use"])
	exp, _ := claims.GetExpirationTime()
	require.Equal(t, frame["ticket_expires_at"], exp.UTC().Format("2006-01-02T15:04:05Z"))

	// Status agrees with the socket (the record is the truth; signing is deterministic).
	st := s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
	require.Equal(t, http.StatusOK, st.Status)
	require.Equal(t, tok, st.JSON(t)["ticket"])

	// Buy.
	buy := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", tok, `{"quantity":1}`, "Idempotency-Key", "e2e-1")
	require.Equal(t, http.StatusCreated, buy.Status, "%s", buy.Body)
	order := buy.JSON(t)
	require.Equal(t, "paid", order["status"])
	require.EqualValues(t, 79900, order["amount_cents"])
	orderID := order["id"].(string)

	// The socket hears of the order.
	for frame["type"] != "order" {
		frame = nil
		require.NoError(t, ws.ReadJSON(&frame))
	}
	require.Equal(t, orderID, frame["order"].(map[string]any)["id"])

	// MySQL has it, durable.
	var dbUser, status, jti string
	var qty int
	require.NoError(t, s.DB.QueryRow(`SELECT user_id, status, quantity, ticket_jti FROM orders WHERE id = ?`, orderID).
		Scan(&dbUser, &status, &qty, &jti))
	require.Equal(t, user, dbUser)
	require.Equal(t, "paid", status)
	require.Equal(t, 1, qty)
	require.Equal(t, claims["jti"], jti)

	// The shopper sees purchased; the owner reads the order.
	st = s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil)
	require.Equal(t, "purchased", st.JSON(t)["state"])
	require.Equal(t, orderID, st.JSON(t)["order_id"])
	got := s.Do(t, "GET", "/api/v1/orders/"+orderID, s.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, orderID, got.JSON(t)["id"])

	// The operator's summary: Redis and MySQL agree.
	sum := s.Do(t, "GET", "/api/v1/admin/sales/"+saleID+"/summary", s.AdminToken, nil)
	require.Equal(t, http.StatusOK, sum.Status)
	sb := sum.JSON(t)
	require.Equal(t, true, sb["consistent"], "%s", sum.Body)
	require.EqualValues(t, 1, sb["sold"])
	require.EqualValues(t, 4, sb["remaining"])
	require.EqualValues(t, 1, sb["orders_total"])
	require.EqualValues(t, 1, sb["mysql"].(map[string]any)["paid"])

	// A second shopper who only polls gets in too.
	bob := "bob-" + testenv.RandomID()
	btok := s.UserToken(t, bob)
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", btok, nil).Status)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return s.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", btok, nil).JSON(t)["state"] == "admitted"
	}, "bob admitted by polling")
}

// TestHealth checks the ops endpoints.
func TestHealth(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/healthz", "", nil).Status)
	r := s.Do(t, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	m := s.Do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusOK, m.Status)
	for _, name := range []string{"flashsale_joins_total", "flashsale_websocket_connections", "flashsale_http_request_duration_seconds"} {
		require.Contains(t, string(m.Body), name)
	}
}
