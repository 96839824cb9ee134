package node_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// Short limits, so the tests see them fire without waiting 10 s and 30 s.
const (
	testHeaderTimeout = 400 * time.Millisecond
	testBodyTimeout   = 800 * time.Millisecond
)

func shortLimits(c *node.Config) {
	c.HeaderTimeout, c.BodyTimeout = testHeaderTimeout, testBodyTimeout
}

// trickle writes chunk to conn every 50 ms until stop is closed or a write
// fails; the returned func stops it and waits.
func trickle(conn net.Conn, chunk string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if _, err := io.WriteString(conn, chunk); err != nil {
					return
				}
			}
		}
	})
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

// readUntilClosed reads conn until the server closes it and returns what it
// read and how long that took; it fails the test if the connection is
// still open after within.
func readUntilClosed(t *testing.T, conn net.Conn, within time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(within)))
	var got strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		got.Write(buf[:n])
		if err == nil {
			continue
		}
		var ne net.Error
		require.False(t, errors.As(err, &ne) && ne.Timeout(), "the connection was still open after %s", within)
		// A reset is a close too: the server hangs up on what we still send.
		require.True(t, errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET), "read: %v", err)
		return got.String(), time.Since(start)
	}
}

// TestTrickledHeadersAreCut: a client that sends its headers a line at a
// time, never finishing, is hung up on once the header time is up, with no
// answer.
func TestTrickledHeadersAreCut(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, shortLimits)
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	stop := trickle(conn, "X-Slow: 1\r\n")
	defer stop()
	got, took := readUntilClosed(t, conn, 10*time.Second)
	require.Empty(t, got, "no answer to a request whose headers never ended")
	require.GreaterOrEqual(t, took, testHeaderTimeout-50*time.Millisecond, "cut before the header time was up")
}

// slowBody sends a checkout-sized POST whose headers arrive at once and
// whose body trickles in for ever, and returns the answer and how long the
// server took to hang up.
func slowBody(t *testing.T, s *testenv.Server) (string, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "POST /api/v1/admin/sales HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{", s.AdminToken)
	require.NoError(t, err)
	stop := trickle(conn, " ")
	defer stop()
	return readUntilClosed(t, conn, 10*time.Second)
}

// TestTrickledBodyIsCut: a body that keeps coming a byte at a time is cut
// when the body time is up: the read fails (400, never a 5xx) and the
// connection is closed.
func TestTrickledBodyIsCut(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, shortLimits)
	got, took := slowBody(t, s)
	require.GreaterOrEqual(t, took, testBodyTimeout-50*time.Millisecond, "cut before the body time was up")
	require.True(t, strings.HasPrefix(got, "HTTP/1.1 400 "), "answer: %q", got)
	require.Contains(t, got, `"invalid_request"`)
}

// TestWebSocketOutlivesBodyTime: the body deadline is for request bodies; a
// WebSocket opened before it stays open and answers after it.
func TestWebSocketOutlivesBodyTime(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, shortLimits)
	id := s.CreateSale(t, map[string]any{"admission_rate": 0.001})["id"].(string)
	tok := s.UserToken(t, "ws-"+testenv.RandomID())
	require.Equal(t, http.StatusOK, s.Do(t, "POST", "/api/v1/sales/"+id+"/join", tok, nil).Status)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.URL, "http")+"/api/v1/sales/"+id+"/ws",
		http.Header{"Authorization": {"Bearer " + tok}})
	require.NoError(t, err)
	defer ws.Close()
	opened := time.Now()
	var first map[string]any
	require.NoError(t, ws.ReadJSON(&first))
	require.Equal(t, "position", first["type"])

	pongs := make(chan struct{}, 1)
	ws.SetPongHandler(func(string) error {
		select {
		case pongs <- struct{}{}:
		default:
		}
		return nil
	})
	readerDone := make(chan error, 1)
	go func() { // control frames are handled while reading
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				readerDone <- err
				return
			}
		}
	}()

	// A trickled body on another connection is cut: the body time has
	// passed for everything opened before it, the socket included.
	_, took := slowBody(t, s)
	require.GreaterOrEqual(t, took, testBodyTimeout-50*time.Millisecond)
	require.Greater(t, time.Since(opened), testBodyTimeout)

	require.NoError(t, ws.WriteControl(websocket.PingMessage, []byte("still there?"), time.Now().Add(5*time.Second)))
	select {
	case <-pongs:
	case err := <-readerDone:
		t.Fatalf("the socket closed after the body time: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no pong within 5 s")
	}
	ws.Close()
	<-readerDone
}

// rawRequest sends a request as bytes and returns the status line and the
// body of the answer.
func rawRequest(t *testing.T, s *testenv.Server, req string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(conn, req)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// requestOfSize is a GET /healthz whose request line and headers take
// exactly size bytes.
func requestOfSize(size int) string {
	head := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
	tail := "\r\n\r\n"
	return head + strings.Repeat("a", size-len(head)-len(tail)) + tail
}

// TestOversizedHeaders: up to 64 KiB of request line and headers is served;
// one byte more is 431 in the JSON error shape.
func TestOversizedHeaders(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	resp, body := rawRequest(t, s, requestOfSize(node.MaxHeaderBytes))
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	resp, body = rawRequest(t, s, requestOfSize(node.MaxHeaderBytes+1))
	require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode, "%s", body)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	require.JSONEq(t, `{"error":{"code":"too_large","message":"the request line and headers are over 64 KiB; send fewer or smaller headers (cookies)"}}`, body)

	// A cookie of 1 MiB, as an http.Client sends it.
	req, err := http.NewRequest("GET", s.URL+"/healthz", nil)
	require.NoError(t, err)
	req.Header.Set("Cookie", "fs_token="+strings.Repeat("x", 1<<20))
	r, err := http.DefaultClient.Do(req)
	if err == nil { // the server may hang up before the client has sent it all
		r.Body.Close()
		require.Equal(t, http.StatusRequestHeaderFieldsTooLarge, r.StatusCode)
	}
}

// TestMalformedRequestsAreJSON: what net/http refuses before any handler
// runs is answered in the JSON error shape, and never with a 5xx.
func TestMalformedRequestsAreJSON(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	for _, tc := range []struct {
		name, req, msg string
	}{
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", "the request is not valid HTTP/1.1: missing required Host header"},
		{"bad header line", "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", "the request is not valid HTTP/1.1"},
		{"unknown transfer encoding", "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
			"unsupported Transfer-Encoding: send the body with Content-Length or chunked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawRequest(t, s, tc.req)
			require.Equal(t, http.StatusBadRequest, resp.StatusCode, "%s", body)
			require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			require.JSONEq(t, `{"error":{"code":"invalid_request","message":"`+tc.msg+`"}}`, body)
		})
	}
}
