//go:build linux

package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

// TestPollReader: the poll reader's handshake and frame reading against a
// gorilla server: frames of every length encoding (and frames cut across
// reads) are recorded by type, a ping is answered with its pong, and a
// close ends the socket.
func TestPollReader(t *testing.T) {
	pongs := make(chan string, 1)
	closed := make(chan struct{})
	big := strings.Repeat("x", 70_000) // a 64-bit length
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/api/v1/sales/s1/ws" {
			t.Errorf("upgrade %s with %q", r.URL.Path, r.Header.Get("Authorization")) // (not require: the handler's goroutine)
		}
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer close(closed)
		defer ws.Close()
		ws.SetPongHandler(func(data string) error { pongs <- data; return nil })
		go func() { // (reads the pong)
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		for _, f := range []string{`{"type":"position","p":1}`, `{"type":"paused","pad":"` + strings.Repeat("y", 300) + `"}`,
			`{"type":"open","pad":"` + big + `"}`, `{"type":"admitted"}`} {
			if ws.WriteMessage(websocket.TextMessage, []byte(f)) != nil {
				return
			}
		}
		_ = ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
		select {
		case <-pongs:
		case <-time.After(5 * time.Second):
			t.Error("no pong")
		}
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4410, "closed"), time.Now().Add(time.Second))
	}))
	defer srv.Close()

	r, err := newPollReader(srv.URL, "s1", "127.0.0.1")
	require.NoError(t, err)
	defer r.close()
	start := time.Now().UnixNano()
	s, err := r.dial("tok", 5*time.Second)
	require.NoError(t, err)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's handler ended")
	}
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.ended }, 5*time.Second, time.Millisecond,
		"the close ended the socket")
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.positions, 1)
	require.GreaterOrEqual(t, s.positions[0], start)
	require.NotZero(t, s.admitted)
	require.Contains(t, s.states, "paused")
	require.Contains(t, s.states, "open")
}

// TestNextFrame: a frame is taken only once whole.
func TestNextFrame(t *testing.T) {
	f := append([]byte{0x81, 126, 0x01, 0x00}, make([]byte, 256)...)
	for cut := range len(f) {
		_, _, _, ok := nextFrame(f[:cut])
		require.False(t, ok, "cut at %d", cut)
	}
	op, payload, used, ok := nextFrame(append(f, 0x89, 0))
	require.True(t, ok)
	require.Equal(t, byte(1), op)
	require.Len(t, payload, 256)
	require.Equal(t, len(f), used)
}
