package waitingroom

import (
	"math/rand/v2"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket close codes a browser can read.
const (
	CloseBadToken    = 4401
	CloseOrigin      = 4403
	CloseBanned      = 4403 // the user or their address is banned (the reason says "banned")
	CloseRateLimited = 4429 // too many connections from this user or address: retry after a while
	CloseNotInQueue  = 4404
	CloseFinal       = 4410 // sold out or closed: do not reconnect
	CloseSlow        = 4408 // the client read too slowly; reconnect
	// CloseReplaced ends a user's oldest socket of a sale on a node when
	// they open more than SocketLimits.MaxUserSockets (reason "replaced by
	// a newer connection"): a newer tab took its place, so a page should
	// not reconnect it (it would only replace another).
	CloseReplaced  = 4409
	closeGoingAway = websocket.CloseGoingAway
	// maxClientMessage bounds a client message: a bigger one closes the
	// socket with 1009 (message too big). Clients have nothing to say.
	maxClientMessage = 4 << 10
	// maxQueueBytes caps what may wait to be written to one socket: past it,
	// the socket is dropped (the hub never waits for a slow client).
	maxQueueBytes = 256 << 10
)

// replacedReason is the close reason of CloseReplaced.
const replacedReason = "replaced by a newer connection"

// SocketLimits bound a hub's shopper sockets. Zero values mean the
// defaults.
type SocketLimits struct {
	// PingInterval is how often the server pings a socket; default 25 s
	// (DESIGN.md).
	PingInterval time.Duration
	// PongWait is how long past a ping interval a socket may stay silent
	// (no pong, no message) before it is closed as dead; default 10 s.
	PongWait time.Duration
	// WriteWait bounds one write to a socket; a client that reads nothing
	// for that long is disconnected; default 10 s.
	WriteWait time.Duration
	// MaxUserSockets caps one user's sockets of one sale on this node
	// (each costs memory: 2,000 from one token cost 48 MB); opening one
	// more closes their oldest with CloseReplaced. Default 8.
	MaxUserSockets int
}

func (l SocketLimits) withDefaults() SocketLimits {
	if l.PingInterval <= 0 {
		l.PingInterval = 25 * time.Second
	}
	if l.PongWait <= 0 {
		l.PongWait = 10 * time.Second
	}
	if l.WriteWait <= 0 {
		l.WriteWait = 10 * time.Second
	}
	if l.MaxUserSockets <= 0 {
		l.MaxUserSockets = 8
	}
	return l
}

// connSeq numbers sockets in the order they open, so a user's oldest is
// known.
var connSeq atomic.Uint64

// Conn is one shopper's WebSocket. One goroutine reads (and only watches for
// the close), one writes: it drains the send queue, pings, and closes.
type Conn struct {
	ws   *websocket.Conn
	sale string
	user string
	addr netip.Addr // the client's address (bans by address close it)
	hub  *Hub
	seq  uint64 // order of opening (connSeq)

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	holding bool     // frames wait in held until the first frame is sent
	held    [][]byte // frames that arrived before the first frame
	closing bool
	discard bool // drop what is still queued: the close frame goes next
	code    int
	reason  string
	notify  chan struct{}
	done    chan struct{} // closed when the writer has finished

	// Position state, written by the hub's tick (and once at connect).
	pmu      sync.Mutex
	kind     string  // the user's state kind as this node knows it
	place    float64 // queue score
	lastPos  int64   // last position sent; never goes up
	lastSent string  // the last position frame, to send only changes
}

func newConn(ws *websocket.Conn, hub *Hub, saleID, user string) *Conn {
	return &Conn{ws: ws, hub: hub, sale: saleID, user: user, seq: connSeq.Add(1), holding: true,
		notify: make(chan struct{}, 1), done: make(chan struct{})}
}

// Send queues a frame. It never blocks: a socket whose queue is over
// maxQueueBytes is closed as slow.
func (c *Conn) Send(frame []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.holding {
		c.held = append(c.held, frame)
		c.mu.Unlock()
		return
	}
	if c.queued+len(frame) > maxQueueBytes {
		c.mu.Unlock()
		c.hub.dropped("slow")
		c.Close(CloseSlow, "too slow")
		return
	}
	c.queue = append(c.queue, frame)
	c.queued += len(frame)
	c.mu.Unlock()
	c.wake()
}

// first sends the connection's first frame (its current state), then the
// frames that arrived meanwhile.
func (c *Conn) first(frame []byte) {
	c.mu.Lock()
	c.holding = false
	held := c.held
	c.held = nil
	c.mu.Unlock()
	c.Send(frame)
	for _, f := range held {
		c.Send(f)
	}
}

// Close sends a close frame with code and closes the socket, once; it does
// not wait for the writer. Frames queued before it are sent first, except
// on a drop (CloseSlow, CloseReplaced): the client is not served any more,
// so only the close frame follows the frame being written.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.code, c.reason = true, code, reason
	c.discard = code == CloseSlow || code == CloseReplaced
	c.holding = false
	c.mu.Unlock()
	c.wake()
}

// open reports whether the socket is not closing.
func (c *Conn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closing
}

// oldestOpen lists the oldest open sockets of set beyond the newest max-1:
// those a user's new socket replaces. The caller holds the set's shard lock.
func oldestOpen(set map[*Conn]struct{}, max int) []*Conn {
	open := make([]*Conn, 0, len(set))
	for c := range set {
		if c.open() {
			open = append(open, c)
		}
	}
	if len(open) < max {
		return nil
	}
	sort.Slice(open, func(i, j int) bool { return open[i].seq < open[j].seq })
	return open[:len(open)-max+1]
}

func (c *Conn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// writeLoop is the only writer. The first ping is jittered so a node's
// sockets do not all ping in the same instant.
func (c *Conn) writeLoop() {
	defer close(c.done)
	defer c.ws.Close()
	lim := c.hub.cfg.SocketLimits
	ping := time.NewTimer(lim.PingInterval/2 + rand.N(lim.PingInterval/2+1))
	defer ping.Stop()
	for {
		select {
		case <-c.notify:
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(lim.WriteWait)); err != nil {
				c.Close(0, "")
			}
			ping.Reset(lim.PingInterval)
		}
		if !c.flush(lim.WriteWait) {
			return
		}
	}
}

// flush writes the queued frames, one at a time so a drop is not held up
// behind the queue, and the close frame once closing; false when the
// socket is done.
func (c *Conn) flush(writeWait time.Duration) bool {
	for {
		c.mu.Lock()
		if c.closing && (c.discard || len(c.queue) == 0) {
			code, reason := c.code, c.reason
			c.queue, c.queued = nil, 0
			c.mu.Unlock()
			if code != 0 {
				msg := websocket.FormatCloseMessage(code, reason)
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
			return false
		}
		if len(c.queue) == 0 {
			c.queue = nil // let go of the array the queue grew into
			c.mu.Unlock()
			return true
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.queued -= len(f)
		c.mu.Unlock()
		_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
		if err := c.ws.WriteMessage(websocket.TextMessage, f); err != nil {
			// the connection is broken: no close frame can follow
			c.Close(0, "")
			return false
		}
		c.hub.framesSent()
	}
}

// readLoop reads (and drops) client messages, keeping the read deadline
// fresh on pongs; any error ends the connection. A client message over
// maxClientMessage is answered with 1009 by the library.
func (c *Conn) readLoop() {
	lim := c.hub.cfg.SocketLimits
	c.ws.SetReadLimit(maxClientMessage)
	_ = c.ws.SetReadDeadline(time.Now().Add(lim.PingInterval + lim.PongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(lim.PingInterval + lim.PongWait))
	})
	for {
		if _, _, err := c.ws.ReadMessage(); err != nil {
			c.Close(0, "")
			return
		}
	}
}

func (c *Conn) setState(kind string, place float64) {
	c.pmu.Lock()
	c.kind = kind
	if place != 0 {
		c.place = place
	}
	c.pmu.Unlock()
}

// waiting reports whether the user may still be waiting (or the node does
// not know yet), with the place the node knows: only such sockets count as
// presence, and only they are put back in a queue Redis lost.
func (c *Conn) waiting() (place float64, ok bool) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	switch c.kind {
	case "", KindWaiting, KindLane, KindPrequeue:
		return c.place, true
	}
	return 0, false
}
