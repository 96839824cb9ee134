package waitingroom_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
	"github.com/flashsale/flashsale/waitingroom"
)

// wsEnv is the waiting room's HTTP API alone (queue, hub, sockets) on a
// real HTTP server, with socket limits of the test's choice, and one open
// sale nobody is admitted from (no admitter runs).
type wsEnv struct {
	*storeEnv
	url     string
	hub     *waitingroom.Hub
	queue   *waitingroom.Queue
	metrics *waitingroom.Metrics
	secret  []byte
	saleID  string
}

func newWSEnv(t *testing.T, lim waitingroom.SocketLimits, opts ...func(*waitingroom.Hub)) *wsEnv {
	t.Helper()
	ctx := context.Background()
	se := newStoreEnv(t)
	e := &wsEnv{storeEnv: se, saleID: se.createSale(t, nil).ID, queue: startQueue(t, se.rdb, se.ks),
		secret: []byte("secret-" + testenv.RandomID()), metrics: waitingroom.NewMetrics(prometheus.NewRegistry())}
	_, keys := testenv.KeyFile(t)
	issuer := ticket.NewIssuer(keys, "flashsale")
	ident, err := identity.New(ctx, identity.Config{Secret: e.secret, Logger: quiet})
	require.NoError(t, err)
	e.hub = waitingroom.NewHub(waitingroom.HubConfig{Logger: quiet, Metrics: e.metrics, SocketLimits: lim},
		se.rdb, se.store, issuer)
	for _, o := range opts {
		o(e.hub)
	}
	e.hub.Start(ctx)
	mux := http.NewServeMux()
	waitingroom.NewServer(waitingroom.Config{AdminToken: "admin-" + testenv.RandomID(), Logger: quiet, Metrics: e.metrics},
		e.queue, e.hub, se.store, issuer, ident).Register(mux)
	srv := httptest.NewServer(mux)
	e.url = srv.URL
	t.Cleanup(func() {
		// every socket's goroutines end before the test does
		e.hub.CloseAll(websocket.CloseGoingAway, "test over")
		require.Eventually(t, func() bool { return e.hub.Count() == 0 }, 15*time.Second, 10*time.Millisecond,
			"every socket closed")
		e.hub.Stop()
		srv.Close()
	})
	return e
}

// join puts user in the sale's queue.
func (e *wsEnv) join(t *testing.T, user string) {
	t.Helper()
	st, err := e.queue.Join(context.Background(), e.saleID, user)
	require.NoError(t, err)
	require.Equal(t, waitingroom.KindWaiting, st.Kind)
}

// dial opens user's socket with their user token and reads its first
// frame (their position); d nil is the default dialer.
func (e *wsEnv) dial(t *testing.T, user string, d *websocket.Dialer) *socket {
	t.Helper()
	if d == nil {
		d = websocket.DefaultDialer
	}
	tok, _, err := identity.Mint(e.secret, user, time.Hour)
	require.NoError(t, err)
	u := "ws" + strings.TrimPrefix(e.url, "http") + "/api/v1/sales/" + e.saleID + "/ws"
	ws, resp, err := d.Dial(u, http.Header{"Authorization": {"Bearer " + tok}})
	require.NoError(t, err)
	resp.Body.Close()
	t.Cleanup(func() { ws.Close() })
	c := &socket{t: t, ws: ws}
	require.Equal(t, "position", c.next(5 * time.Second)["type"], "the first frame")
	return c
}

// order appends an order event for user to the sale's stream: the hub
// pushes {"type":"order","order":<order>} to the user's sockets.
func (e *wsEnv) order(t *testing.T, user string, order map[string]any) {
	t.Helper()
	b, err := json.Marshal(order)
	require.NoError(t, err)
	// trimmed: the hub reads each entry within milliseconds
	require.NoError(t, e.rdb.XAdd(context.Background(), &redis.XAddArgs{Stream: e.ks.Sale(e.saleID).Ev,
		MaxLen: 64, Approx: true, Values: map[string]any{"t": "order", "u": user, "d": string(b)}}).Err())
}

// nextOrder reads user's frames until an order frame and returns the order.
func (c *socket) nextOrder(within time.Duration) map[string]any {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		f := c.next(time.Until(deadline))
		if f["type"] == "order" {
			return f["order"].(map[string]any)
		}
		require.Equal(c.t, "position", f["type"], "frame %v", f)
	}
}

// droppedTotal reads the hub's counter of sockets dropped for reason.
func droppedTotal(t *testing.T, e *wsEnv, reason string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, e.metrics.SocketsDropped.WithLabelValues(reason).Write(&m))
	return m.GetCounter().GetValue()
}

// smallBufferDialer dials with a 4 KiB TCP receive buffer, so a client
// that stops reading stops the server's writes soon.
func smallBufferDialer() *websocket.Dialer {
	nd := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	return &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 5 * time.Second}
}

// TestSlowReaderDropped: a client that stops reading is dropped with 4408
// once its queue passes 256 KiB, and what was queued for it is not sent
// (only the close frame follows the frame being written); one that never
// reads again is disconnected within the write timeout. Meanwhile the hub
// keeps serving a healthy socket of the same sale at once: every frame
// reaches it within a second of its event.
func TestSlowReaderDropped(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, waitingroom.SocketLimits{WriteWait: 3 * time.Second})
	slowUser, muteUser, okUser := "slow-"+testenv.RandomID(), "mute-"+testenv.RandomID(), "ok-"+testenv.RandomID()
	for _, u := range []string{slowUser, muteUser, okUser} {
		e.join(t, u)
	}
	ok := e.dial(t, okUser, nil)
	slow := e.dial(t, slowUser, smallBufferDialer())
	mute := e.dial(t, muteUser, smallBufferDialer())
	_ = mute // never read again

	// One 64 KiB frame for each slow socket per round, then a small one for
	// the healthy socket: it arrives only once the hub dispatched the big
	// ones, so a hub that waited on a slow socket would stall it.
	pad := strings.Repeat("x", 64<<10)
	dropped := func() float64 { return droppedTotal(t, e, "slow") }
	overflow := -1 // the round whose frame overflowed the slow socket's queue
	var slowest time.Duration
	for round := 0; dropped() < 2; round++ {
		require.Less(t, round, 400, "both slow sockets dropped within 400 rounds (25 MB each)")
		before := dropped()
		e.order(t, slowUser, map[string]any{"id": fmt.Sprintf("big-%d", round), "pad": pad})
		e.order(t, muteUser, map[string]any{"id": fmt.Sprintf("big-%d", round), "pad": pad})
		e.order(t, okUser, map[string]any{"id": fmt.Sprintf("ok-%d", round)})
		start := time.Now()
		require.Equal(t, fmt.Sprintf("ok-%d", round), ok.nextOrder(time.Second)["id"], "the healthy socket's frame")
		slowest = max(slowest, time.Since(start))
		// the slow sockets' frames of this round were dispatched before the
		// healthy one's (one stream, in order): the counter is settled
		if overflow < 0 && dropped() > before {
			overflow = round
		}
	}
	t.Logf("dropped at round %d; the healthy socket's slowest frame took %s", overflow, slowest)
	require.Greater(t, overflow, 3, "the slow socket took several frames first")

	// The slow client reads again: the frames the server had written, then
	// 4408. The three frames still queued at the drop (3 × 64 KiB; the
	// fourth overflowed 256 KiB) were dropped with it.
	require.NoError(t, slow.ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	last := -1
	var closeErr *websocket.CloseError
	for {
		_, b, err := slow.ws.ReadMessage()
		if err != nil {
			require.ErrorAs(t, err, &closeErr, "a close frame, after frame big-%d", last)
			break
		}
		var f struct{ Order struct{ ID string } }
		require.NoError(t, json.Unmarshal(b, &f))
		n := -1
		_, err = fmt.Sscanf(f.Order.ID, "big-%d", &n)
		require.NoError(t, err, "frame %.80s", b)
		require.Equal(t, last+1, n, "frames in order, none missing before the drop")
		last = n
	}
	require.Equal(t, waitingroom.CloseSlow, closeErr.Code)
	require.Less(t, last, overflow-3, "the frames queued at the drop are not sent (dropped at big-%d)", overflow)

	// The client that never reads is disconnected by the write timeout, and
	// the healthy socket is still served.
	require.Eventually(t, func() bool { return e.hub.Count() == 1 }, 8*time.Second, 10*time.Millisecond,
		"only the healthy socket left")
	e.order(t, okUser, map[string]any{"id": "after"})
	require.Equal(t, "after", ok.nextOrder(time.Second)["id"])
}

// TestOversizeClientMessage: a client has nothing to say; a message up to
// 4 KiB is read and dropped, a bigger one closes the socket with 1009
// (message too big).
func TestOversizeClientMessage(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, waitingroom.SocketLimits{})
	user := "big-mouth-" + testenv.RandomID()
	e.join(t, user)
	c := e.dial(t, user, nil)

	require.NoError(t, c.ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 4<<10))))
	e.order(t, user, map[string]any{"id": "still-open"})
	require.Equal(t, "still-open", c.nextOrder(5 * time.Second)["id"], "a 4 KiB message is allowed")

	require.NoError(t, c.ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 4<<10+1))))
	require.Equal(t, websocket.CloseMessageTooBig, c.closeCode(5*time.Second))
	require.Eventually(t, func() bool { return e.hub.Count() == 0 }, 5*time.Second, 10*time.Millisecond,
		"the socket is gone from the hub")
}

// pinged is a client socket that reads everything and counts the server's
// pings; it answers them with pongs only when answer is set.
type pinged struct {
	mu    sync.Mutex
	pings int
	ended time.Time // when its read failed
	err   error
	done  chan struct{}
}

func readPinged(c *socket, answer bool) *pinged {
	p := &pinged{done: make(chan struct{})}
	c.ws.SetPingHandler(func(data string) error {
		p.mu.Lock()
		p.pings++
		p.mu.Unlock()
		if !answer {
			return nil
		}
		return c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	_ = c.ws.SetReadDeadline(time.Time{})
	go func() {
		defer close(p.done)
		for {
			if _, _, err := c.ws.ReadMessage(); err != nil {
				p.mu.Lock()
				p.ended, p.err = time.Now(), err
				p.mu.Unlock()
				return
			}
		}
	}()
	c.t.Cleanup(func() { c.ws.Close(); <-p.done })
	return p
}

func (p *pinged) state() (pings int, ended time.Time, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pings, p.ended, p.err
}

// TestPings: the server pings every PingInterval; a client that answers
// stays connected, one that does not is disconnected once PingInterval +
// PongWait pass without a pong.
func TestPings(t *testing.T) {
	t.Parallel()
	const ping, pong = 300 * time.Millisecond, 300 * time.Millisecond
	e := newWSEnv(t, waitingroom.SocketLimits{PingInterval: ping, PongWait: pong})
	liveUser, deadUser := "live-"+testenv.RandomID(), "dead-"+testenv.RandomID()
	e.join(t, liveUser)
	e.join(t, deadUser)
	live := readPinged(e.dial(t, liveUser, nil), true)
	start := time.Now()
	dead := readPinged(e.dial(t, deadUser, nil), false)

	require.Eventually(t, func() bool { _, ended, _ := dead.state(); return !ended.IsZero() },
		5*time.Second, 10*time.Millisecond, "the silent client is disconnected")
	pings, ended, err := dead.state()
	require.GreaterOrEqual(t, pings, 1, "it was pinged")
	require.GreaterOrEqual(t, ended.Sub(start), ping+pong-100*time.Millisecond, "not before ping + pong wait")
	require.Less(t, ended.Sub(start), ping+pong+2*time.Second, "soon after ping + pong wait")
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, websocket.CloseAbnormalClosure, ce.Code, "the connection just ends (the client is taken as dead)")

	// the answering client outlives several rounds of ping and pong wait
	require.Eventually(t, func() bool { n, _, _ := live.state(); return n >= 6 }, 5*time.Second, 10*time.Millisecond,
		"pinged every %s", ping)
	n, ended, err := live.state()
	require.True(t, ended.IsZero(), "the answering client is still connected after %d pings: %v", n, err)
	require.Equal(t, 1, e.hub.Count())
}

// TestSocketsPerUserCapped: a user's sockets of a sale on a node are capped
// (8 by default); each one over closes their oldest with 4409 "replaced by
// a newer connection". Another user's socket is untouched.
func TestSocketsPerUserCapped(t *testing.T) {
	t.Parallel()
	const limit = 8 // the default
	e := newWSEnv(t, waitingroom.SocketLimits{})
	ann, bob := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID()
	e.join(t, ann)
	e.join(t, bob)
	bobs := e.dial(t, bob, nil)
	var anns []*socket
	for range limit + 3 {
		anns = append(anns, e.dial(t, ann, nil)) // each after the one before is registered
	}

	for i, c := range anns[:3] {
		require.NoError(t, c.ws.SetReadDeadline(time.Now().Add(5*time.Second)))
		_, _, err := c.ws.ReadMessage()
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce, "ann's socket %d (among the oldest) is closed", i)
		require.Equal(t, waitingroom.CloseReplaced, ce.Code, "socket %d", i)
		require.Equal(t, "replaced by a newer connection", ce.Text)
	}
	require.Eventually(t, func() bool { return e.hub.Count() == limit+1 }, 5*time.Second, 10*time.Millisecond,
		"ann's %d newest and bob's socket remain", limit)
	require.EqualValues(t, 3, droppedTotal(t, e, "replaced"))

	e.order(t, ann, map[string]any{"id": "ann-order"})
	e.order(t, bob, map[string]any{"id": "bob-order"})
	for i, c := range anns[3:] {
		require.Equal(t, "ann-order", c.nextOrder(5 * time.Second)["id"], "ann's socket %d is open", i+3)
	}
	require.Equal(t, "bob-order", bobs.nextOrder(5 * time.Second)["id"], "bob's socket is untouched")
}

// TestClientPingAndClose: the node reads a socket's client frames itself
// (its poller): a client's ping is answered with a pong carrying its data,
// and a client's close with a close of the same code, after which the
// socket leaves the hub.
func TestClientPingAndClose(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, waitingroom.SocketLimits{})
	ann, bob := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID()
	e.join(t, ann)
	e.join(t, bob)
	a := e.dial(t, ann, nil)
	b := e.dial(t, bob, nil)
	require.Equal(t, 2, e.hub.Count())

	pongs := make(chan string, 1)
	a.ws.SetPongHandler(func(data string) error { pongs <- data; return nil })
	require.NoError(t, a.ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)))
	// frames to read the pong on the way to (the client reads control
	// frames only while reading)
	for i := 0; len(pongs) == 0; i++ {
		require.Less(t, i, 50, "a pong within 50 frames")
		id := fmt.Sprintf("after-ping-%d", i)
		e.order(t, ann, map[string]any{"id": id})
		require.Equal(t, id, a.nextOrder(5 * time.Second)["id"])
	}
	require.Equal(t, "are you there", <-pongs)

	require.NoError(t, b.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second)))
	require.Equal(t, websocket.CloseNormalClosure, b.closeCode(5*time.Second), "the close is answered")
	require.Eventually(t, func() bool { return e.hub.Count() == 1 }, 5*time.Second, 10*time.Millisecond,
		"bob's socket left the hub")
}

// TestSlowReaderSmallFrames: frames small enough to be written at once by
// their sender, to a client that stops reading: once its socket takes only
// part of one, the rest goes first when it drains, so what the client
// finally reads is every frame whole and in order, then 4408 (a frame cut
// in two by another would be a protocol error or broken JSON).
func TestSlowReaderSmallFrames(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, waitingroom.SocketLimits{WriteWait: 20 * time.Second})
	user := "slow-small-" + testenv.RandomID()
	e.join(t, user)
	slow := e.dial(t, user, smallBufferDialer())
	pad := strings.Repeat("y", 3000) // a frame of about 3 KiB
	dropped := func() float64 { return droppedTotal(t, e, "slow") }
	sent := 0
	for ; dropped() < 1; sent++ {
		require.Less(t, sent, 2000, "dropped within 2,000 frames (6 MB)")
		e.order(t, user, map[string]any{"id": fmt.Sprintf("small-%d", sent), "pad": pad})
	}
	require.NoError(t, slow.ws.SetReadDeadline(time.Now().Add(10*time.Second)))
	last := -1
	var closeErr *websocket.CloseError
	for {
		_, b, err := slow.ws.ReadMessage()
		if err != nil {
			require.ErrorAs(t, err, &closeErr, "a close frame after small-%d (a broken frame would be a protocol error)", last)
			break
		}
		var f struct{ Order struct{ ID, Pad string } }
		require.NoError(t, json.Unmarshal(b, &f), "frame %.80s", b)
		n := -1
		_, err = fmt.Sscanf(f.Order.ID, "small-%d", &n)
		require.NoError(t, err, "frame %.80s", b)
		// (in order; the test's stream is trimmed to 64 entries, so one the
		// hub had not read yet may be gone)
		require.Greater(t, n, last, "frames in order")
		require.Equal(t, pad, f.Order.Pad)
		last = n
	}
	require.Equal(t, waitingroom.CloseSlow, closeErr.Code)
	require.Greater(t, last, 10, "the client had taken frames before it stopped reading")
}

// TestFramesAfterPings: a socket pinged many times, long past WriteWait
// after a ping, still gets its frames (a ping's write deadline left on the
// connection would fail the frames the hub writes without waiting).
func TestFramesAfterPings(t *testing.T) {
	t.Parallel()
	// a write deadline of a ping would be past 50 ms after it: most frames
	// come later than that
	e := newWSEnv(t, waitingroom.SocketLimits{PingInterval: 300 * time.Millisecond, WriteWait: 50 * time.Millisecond})
	user := "pinged-" + testenv.RandomID()
	e.join(t, user)
	c := e.dial(t, user, nil)
	p := readPingedFrames(c)
	require.Eventually(t, func() bool { return p.pings.Load() >= 2 }, 5*time.Second, 10*time.Millisecond, "pinged")
	for i := range 10 {
		id := fmt.Sprintf("after-pings-%d", i)
		e.order(t, user, map[string]any{"id": id})
		require.Eventually(t, func() bool { return p.has(id) }, 5*time.Second, 10*time.Millisecond, "frame %s", id)
	}
	require.Equal(t, 1, e.hub.Count(), "the socket is still open")
}

// pingedFrames reads a socket in the background, answering pings, and
// keeps the order ids of its frames.
type pingedFrames struct {
	pings atomic.Int64
	mu    sync.Mutex
	ids   map[string]bool
}

func readPingedFrames(c *socket) *pingedFrames {
	p := &pingedFrames{ids: map[string]bool{}}
	c.ws.SetPingHandler(func(data string) error {
		p.pings.Add(1)
		return c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	_ = c.ws.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			_, b, err := c.ws.ReadMessage()
			if err != nil {
				return
			}
			var f struct{ Order struct{ ID string } }
			if json.Unmarshal(b, &f) == nil && f.Order.ID != "" {
				p.mu.Lock()
				p.ids[f.Order.ID] = true
				p.mu.Unlock()
			}
		}
	}()
	c.t.Cleanup(func() { c.ws.Close(); <-done })
	return p
}

func (p *pingedFrames) has(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ids[id]
}

// TestSocketsReadByGoroutines: where the hub has no poller (not Linux), a
// goroutine reads each socket: frames arrive, a client answering pings
// stays, a silent one is ended after ping interval + pong wait, an oversize
// message gets 1009, and every goroutine ends with its socket (goleak).
func TestSocketsReadByGoroutines(t *testing.T) {
	t.Parallel()
	const ping, pong = 300 * time.Millisecond, 300 * time.Millisecond
	e := newWSEnv(t, waitingroom.SocketLimits{PingInterval: ping, PongWait: pong}, (*waitingroom.Hub).WithoutPoller)
	ann, bob, cid := "ann-"+testenv.RandomID(), "bob-"+testenv.RandomID(), "cid-"+testenv.RandomID()
	for _, u := range []string{ann, bob, cid} {
		e.join(t, u)
	}
	a := readPingedFrames(e.dial(t, ann, nil))
	e.order(t, ann, map[string]any{"id": "by-goroutine"})
	require.Eventually(t, func() bool { return a.has("by-goroutine") }, 5*time.Second, 10*time.Millisecond)

	start := time.Now()
	dead := readPinged(e.dial(t, bob, nil), false)
	require.Eventually(t, func() bool { _, ended, _ := dead.state(); return !ended.IsZero() },
		5*time.Second, 10*time.Millisecond, "the silent client is disconnected")
	_, ended, _ := dead.state()
	require.GreaterOrEqual(t, ended.Sub(start), ping+pong-100*time.Millisecond, "not before ping + pong wait")

	c := e.dial(t, cid, nil)
	require.NoError(t, c.ws.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("a", 4<<10+1))))
	require.Equal(t, websocket.CloseMessageTooBig, c.closeCode(5*time.Second))

	require.GreaterOrEqual(t, a.pings.Load(), int64(1), "ann was pinged and answered")
	require.Eventually(t, func() bool { return e.hub.Count() == 1 }, 5*time.Second, 10*time.Millisecond,
		"only ann's socket left")
}

// TestBroadcastOrder: state frames go to every socket of the sale at once
// (the writer pool), per-user frames to a user's sockets; whatever writes
// them, each socket gets its frames in the order of the sale's event
// stream: a state frame never overtakes an earlier frame of the same
// socket, nor a later one it.
func TestBroadcastOrder(t *testing.T) {
	t.Parallel()
	e := newWSEnv(t, waitingroom.SocketLimits{})
	const users, perUser, rounds = 12, 2, 40
	type sock struct {
		user string
		c    *socket
	}
	var socks []sock
	var ids []string
	for i := range users {
		u := fmt.Sprintf("order-%d-%s", i, testenv.RandomID())
		ids = append(ids, u)
		e.join(t, u)
		for range perUser {
			socks = append(socks, sock{u, e.dial(t, u, nil)})
		}
	}
	ctx := context.Background()
	ev := e.ks.Sale(e.saleID).Ev
	add := func(values map[string]any) {
		// (untrimmed: every entry must reach the hub)
		require.NoError(t, e.rdb.XAdd(ctx, &redis.XAddArgs{Stream: ev, Values: values}).Err())
	}
	want := map[string][]string{}
	for r := range rounds {
		for _, u := range ids {
			id := fmt.Sprintf("%s/%d", u, r)
			add(map[string]any{"t": "order", "u": u, "d": fmt.Sprintf(`{"id":%q}`, id)})
			want[u] = append(want[u], "order "+id)
		}
		state := []string{"paused", "open"}[r%2]
		add(map[string]any{"t": "state", "d": state})
		for u := range want {
			want[u] = append(want[u], state)
		}
	}
	got := make([][]string, len(socks))
	var wg sync.WaitGroup
	for i, s := range socks {
		wg.Go(func() {
			_ = s.c.ws.SetReadDeadline(time.Now().Add(15 * time.Second))
			for len(got[i]) < 2*rounds {
				_, b, err := s.c.ws.ReadMessage()
				if err != nil {
					return
				}
				var f struct {
					Type  string
					Order struct{ ID string }
				}
				if json.Unmarshal(b, &f) != nil || f.Type == "position" {
					continue
				}
				if f.Type == "order" {
					got[i] = append(got[i], "order "+f.Order.ID)
				} else {
					got[i] = append(got[i], f.Type)
				}
			}
		})
	}
	wg.Wait()
	for i, s := range socks {
		require.Equal(t, want[s.user], got[i], "socket %d (user %s)", i, s.user)
	}
}
