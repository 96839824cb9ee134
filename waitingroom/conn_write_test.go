package waitingroom

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/sale"
)

// poolEnv is a hub that is not started (no poller, no Redis behind it)
// and real WebSockets on loopback whose server ends are the hub's
// sockets, their descriptors at hand as the poller would leave them, so
// the test runs the writer pool itself.
type poolEnv struct {
	hub   *Hub
	srv   *httptest.Server
	conns chan *websocket.Conn
}

func newPoolEnv(t *testing.T) *poolEnv {
	t.Helper()
	e := &poolEnv{conns: make(chan *websocket.Conn, 1)}
	e.hub = NewHub(HubConfig{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil, &sale.Store{}, nil)
	up := websocket.Upgrader{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err == nil {
			e.conns <- ws
		}
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// socket opens a WebSocket: the hub's end (polled: the pool may write it)
// and the client's.
func (e *poolEnv) socket(t *testing.T, user string) (*Conn, *websocket.Conn) {
	t.Helper()
	client, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(e.srv.URL, "http"), nil)
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { client.Close() })
	ws := <-e.conns
	raw, err := ws.NetConn().(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	c := newConn(ws, e.hub, "s1", user)
	c.holding, c.raw = false, raw
	e.hub.add(c)
	return c, client
}

// runPool runs the hub's writer pool with n workers until the returned
// stop is called (which waits for it).
func (e *poolEnv) runPool(t *testing.T, n int) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.hub.writers.run(ctx, e.hub, n) })
	require.Eventually(t, func() bool {
		e.hub.writers.mu.Lock()
		defer e.hub.writers.mu.Unlock()
		return e.hub.writers.running
	}, 5*time.Second, time.Millisecond, "the pool runs")
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// readFrames reads n text frames from the client's end.
func readFrames(t *testing.T, client *websocket.Conn, n int) []string {
	t.Helper()
	require.NoError(t, client.SetReadDeadline(time.Now().Add(5*time.Second)))
	var out []string
	for range n {
		typ, b, err := client.ReadMessage()
		require.NoError(t, err, "after %q", out)
		require.Equal(t, websocket.TextMessage, typ)
		out = append(out, string(b))
	}
	return out
}

// TestWriterPoolOrder: frames sent to many sockets at once reach each one
// whole and in the order they were sent, frames too large for a worker's
// buffer (written by a goroutine of the socket's own) included, and the
// sockets close with their code once their frames are out.
func TestWriterPoolOrder(t *testing.T) {
	e := newPoolEnv(t)
	stop := e.runPool(t, 2)
	const sockets, frames = 20, 30
	big := strings.Repeat("b", poolBuf+100)
	type pair struct {
		c      *Conn
		client *websocket.Conn
	}
	var ps []pair
	for i := range sockets {
		c, client := e.socket(t, fmt.Sprintf("u%d", i))
		ps = append(ps, pair{c, client})
	}
	var want []string
	for f := range frames {
		frame := fmt.Sprintf(`{"n":%d}`, f)
		if f%10 == 5 {
			frame = fmt.Sprintf(`{"n":%d,"pad":%q}`, f, big)
		}
		want = append(want, frame)
		for _, p := range ps { // as a broadcast does: one frame to every socket, then the next
			p.c.Send([]byte(frame))
		}
	}
	for _, p := range ps {
		p.c.Close(CloseFinal, "sold_out")
	}
	for i, p := range ps {
		require.Equal(t, want, readFrames(t, p.client, frames), "socket %d", i)
		_, _, err := p.client.ReadMessage()
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "socket %d", i)
		require.Equal(t, CloseFinal, ce.Code)
		<-p.c.Done()
	}
	require.Equal(t, 0, e.hub.Count(), "every socket left the hub")
	stop()
}

// TestWriterPoolStopHandsOver: sockets still waiting for a worker when the
// hub stops are written by a goroutine each, in order, and so is every
// frame sent after it stopped (no worker takes them any more).
func TestWriterPoolStopHandsOver(t *testing.T) {
	e := newPoolEnv(t)
	stop := e.runPool(t, 0) // no worker: every socket stays in line
	c, client := e.socket(t, "u1")
	c.Send([]byte(`{"n":1}`))
	c.Send([]byte(`{"n":2}`))
	c.pingSoon()
	e.hub.writers.mu.Lock()
	require.Len(t, e.hub.writers.lanes[laneEvents-1].pending, 1, "one socket in line, once, with its frames and ping")
	e.hub.writers.mu.Unlock()

	pinged := make(chan struct{}, 1)
	client.SetPingHandler(func(string) error { pinged <- struct{}{}; return nil })
	stop()
	require.Equal(t, []string{`{"n":1}`, `{"n":2}`}, readFrames(t, client, 2))
	select {
	case <-pinged: // (read with the frames: it went first)
	default:
		t.Fatal("the ping due at the stop was sent")
	}
	c.Send([]byte(`{"n":3}`))
	require.Equal(t, []string{`{"n":3}`}, readFrames(t, client, 1), "a frame after the stop")
	c.Close(closeGoingAway, "bye")
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the socket closed")
	}
}

// TestWriterPoolLanes: sockets with an event's frame are taken before those
// with only the tick's position frames, whenever they came; a socket
// waiting with a position frame that gets an event's frame moves up and
// gets both at once, in order, and its entry left in the tick lane writes
// nothing again.
func TestWriterPoolLanes(t *testing.T) {
	e := newPoolEnv(t)
	stop := e.runPool(t, 0) // no worker: the test takes from the lanes itself
	p := &e.hub.writers
	a, aClient := e.socket(t, "a") // a position, then an event
	b, _ := e.socket(t, "b")       // a position only
	c, cClient := e.socket(t, "c") // an event only
	a.send([]byte(`{"type":"position","n":1}`), laneTick)
	b.send([]byte(`{"type":"position","n":1}`), laneTick)
	c.Send([]byte(`{"type":"paused"}`))
	a.Send([]byte(`{"type":"paused"}`))

	p.mu.Lock()
	p.workers = 1 // (take's share: all it finds)
	p.mu.Unlock()
	batch, lane, ok := p.take(nil)
	require.True(t, ok)
	require.Equal(t, laneEvents, lane)
	require.Equal(t, []*Conn{c, a}, batch, "the events lane first, in order")
	w := newPoolWriter()
	require.Equal(t, 1, c.flush(w, p, lane))
	require.Equal(t, 2, a.flush(w, p, lane), "a's position and state frames together")
	require.Equal(t, []string{`{"type":"paused"}`}, readFrames(t, cClient, 1))
	require.Equal(t, []string{`{"type":"position","n":1}`, `{"type":"paused"}`}, readFrames(t, aClient, 2))

	batch, lane, ok = p.take(nil)
	require.True(t, ok)
	require.Equal(t, laneTick, lane)
	require.Equal(t, []*Conn{a, b}, batch, "then the tick lane")
	require.Zero(t, a.flush(w, p, lane), "a's entry there is not a's any more")
	require.Equal(t, 1, b.flush(w, p, lane))
	a.Send([]byte(`{"type":"open"}`))
	a.mu.Lock()
	require.Equal(t, laneEvents, a.lane, "a waits again once it is due again")
	a.mu.Unlock()
	stop()
	require.Equal(t, []string{`{"type":"open"}`}, readFrames(t, aClient, 1), "handed over at the stop")
}

// TestCloseBeforeFirstFrame: a close that comes while a socket waits for
// its first frame (an event's, while the connection reads the user's
// state: CI saw a sale's "closed" event close a new socket that way, and
// the client got the close code without the frame) waits for that frame:
// the client reads the first frame, the held ones that do not repeat it,
// then the close. A second close before the first frame sends what was
// held and keeps the first close's code; so does the connection's own
// refusal (closeInstead) with its code.
func TestCloseBeforeFirstFrame(t *testing.T) {
	e := newPoolEnv(t)
	e.runPool(t, 1)
	closeCode := func(client *websocket.Conn) int {
		t.Helper()
		_, _, err := client.ReadMessage()
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		return ce.Code
	}
	holding := func(c *Conn) {
		c.mu.Lock()
		c.holding = true
		c.mu.Unlock()
	}

	t.Run("then the first frame", func(t *testing.T) {
		c, client := e.socket(t, "u1")
		holding(c)
		c.Send([]byte(`{"type":"closed"}`)) // the event, as dispatch sends it
		c.Close(CloseFinal, "closed")
		c.first([]byte(`{"type":"closed"}`)) // the state the connection read
		c.Close(CloseFinal, "closed")        // and closes with
		require.Equal(t, []string{`{"type":"closed"}`}, readFrames(t, client, 1))
		require.Equal(t, CloseFinal, closeCode(client))
		<-c.Done()
	})
	t.Run("then another close", func(t *testing.T) {
		c, client := e.socket(t, "u2")
		holding(c)
		c.Send([]byte(`{"type":"sold_out"}`))
		c.Close(CloseFinal, "sold_out")
		c.Close(CloseNotInQueue, "not in queue")
		require.Equal(t, []string{`{"type":"sold_out"}`}, readFrames(t, client, 1))
		require.Equal(t, CloseFinal, closeCode(client))
		<-c.Done()
	})
	t.Run("the connection refuses it", func(t *testing.T) {
		c, client := e.socket(t, "u4")
		holding(c)
		c.Send([]byte(`{"type":"admitted"}`))
		c.closeInstead(CloseNotInQueue, "not in queue")
		require.Equal(t, []string{`{"type":"admitted"}`}, readFrames(t, client, 1))
		require.Equal(t, CloseNotInQueue, closeCode(client))
		<-c.Done()
	})
	t.Run("a drop does not wait", func(t *testing.T) {
		c, client := e.socket(t, "u3")
		holding(c)
		c.Send([]byte(`{"type":"open"}`))
		c.Close(CloseReplaced, replacedReason)
		require.Equal(t, CloseReplaced, closeCode(client))
		<-c.Done()
	})
}
