package node_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestWebSocketEndpointWithoutUpgrade: a request to the socket endpoint that
// is not a WebSocket handshake (a plain GET, a bad version) gets the
// contract's JSON error, not the WebSocket library's plain text.
func TestWebSocketEndpointWithoutUpgrade(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := s.CreateSale(t, nil)["id"].(string)
	path := "/api/v1/sales/" + saleID + "/ws"

	r := s.Do(t, "GET", path, "", nil)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
	require.Equal(t, "invalid_request", r.Code(t))
	require.Contains(t, r.Header.Get("Content-Type"), "application/json")

	r = s.Do(t, "GET", path, "", nil, "Connection", "Upgrade", "Upgrade", "websocket",
		"Sec-WebSocket-Version", "7", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%s", r.Body)
	require.Equal(t, "invalid_request", r.Code(t))
	require.Equal(t, "13", r.Header.Get("Sec-WebSocket-Version"))
}
