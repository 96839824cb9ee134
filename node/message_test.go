package node_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// TestOperatorMessage: the operator's message shows on the sale and reaches
// every socket of the sale, on this node and on another one, within a
// second; a newcomer's socket gets it after its first frame; "" clears it.
func TestOperatorMessage(t *testing.T) {
	t.Parallel()
	a := testenv.Start(t)
	b := a.Peer(t)
	saleID := a.CreateSale(t, nil)["id"].(string)
	// paused: nobody is admitted, so each socket's first frame is its position
	require.Equal(t, http.StatusOK, a.Do(t, "PATCH", "/api/v1/admin/sales/"+saleID, a.AdminToken, map[string]any{"state": "paused"}).Status)
	dial := func(s *testenv.Server, user string) *websocket.Conn {
		j := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", s.UserToken(t, user), nil)
		require.Equal(t, http.StatusOK, j.Status, "%s", j.Body)
		ws, _, err := websocket.DefaultDialer.Dial(strings.Replace(s.URL, "http", "ws", 1)+
			"/api/v1/sales/"+saleID+"/ws?qt="+j.JSON(t)["queue_token"].(string), nil)
		require.NoError(t, err)
		t.Cleanup(func() { ws.Close() })
		return ws
	}
	// next reads frames until one of the type (or the deadline)
	next := func(ws *websocket.Conn, typ string) map[string]any {
		require.NoError(t, ws.SetReadDeadline(time.Now().Add(3*time.Second)))
		for {
			_, b, err := ws.ReadMessage()
			require.NoError(t, err, "waiting for a %s frame", typ)
			var f map[string]any
			require.NoError(t, json.Unmarshal(b, &f))
			if f["type"] == typ {
				return f
			}
		}
	}
	wa, wb := dial(a, "ann"), dial(b, "bob")
	next(wa, "position")
	next(wb, "position")

	sent := time.Now()
	r := a.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/message", a.AdminToken, map[string]any{"text": "Back in 5 minutes ☕"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	m := r.JSON(t)["message"].(map[string]any)
	require.Equal(t, "Back in 5 minutes ☕", m["text"])
	for _, ws := range []*websocket.Conn{wa, wb} {
		f := next(ws, "message")
		require.Equal(t, "Back in 5 minutes ☕", f["text"])
		require.Equal(t, m["at"], f["at"])
	}
	require.Less(t, time.Since(sent), 2*time.Second)
	require.Equal(t, m, a.Do(t, "GET", "/api/v1/sales/"+saleID, "", nil).JSON(t)["message"])

	late := dial(b, "cat")
	next(late, "position")
	require.Equal(t, "Back in 5 minutes ☕", next(late, "message")["text"], "a newcomer gets the message")

	r = a.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/message", a.AdminToken, map[string]any{"text": ""})
	require.Equal(t, http.StatusOK, r.Status)
	require.Nil(t, r.JSON(t)["message"])
	require.Equal(t, "", next(wb, "message")["text"], "cleared")

	for _, body := range []any{map[string]any{"text": strings.Repeat("é", 281)}, map[string]any{}, map[string]any{"text": 5},
		map[string]any{"text": "x", "extra": 1}} {
		r := a.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/message", a.AdminToken, body)
		require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v: %s", body, r.Body)
	}
	require.Equal(t, http.StatusOK, a.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/message", a.AdminToken,
		map[string]any{"text": strings.Repeat("é", 280)}).Status)
	require.Equal(t, http.StatusNotFound, a.Do(t, "POST", "/api/v1/admin/sales/nope/message", a.AdminToken,
		map[string]any{"text": "x"}).Status)
	require.Equal(t, http.StatusUnauthorized, a.Do(t, "POST", "/api/v1/admin/sales/"+saleID+"/message", "", map[string]any{"text": "x"}).Status)
}
