package waitingroom

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// WebSocket close codes a browser can read.
const (
	CloseBadToken    = 4401
	CloseOrigin      = 4403
	CloseNotInQueue  = 4404
	CloseFinal       = 4410 // sold out or closed: do not reconnect
	CloseSlow        = 4408 // the client read too slowly; reconnect
	closeGoingAway   = websocket.CloseGoingAway
	pingInterval     = 25 * time.Second
	pongWait         = 10 * time.Second
	writeWait        = 10 * time.Second
	maxClientMessage = 4 << 10
	// maxQueueBytes caps what may wait to be written to one socket: past it,
	// the socket is dropped (the hub never waits for a slow client).
	maxQueueBytes = 256 << 10
)

// Conn is one shopper's WebSocket. One goroutine reads (and only watches for
// the close), one writes: it drains the send queue, pings, and closes.
type Conn struct {
	ws   *websocket.Conn
	sale string
	user string
	hub  *Hub

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	holding bool     // frames wait in held until the first frame is sent
	held    [][]byte // frames that arrived before the first frame
	closing bool
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
	return &Conn{ws: ws, hub: hub, sale: saleID, user: user, holding: true,
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
// not wait for the writer.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing, c.code, c.reason = true, code, reason
	c.holding = false
	c.mu.Unlock()
	c.wake()
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
	ping := time.NewTimer(pingInterval/2 + rand.N(pingInterval/2))
	defer ping.Stop()
	for {
		select {
		case <-c.notify:
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				c.Close(0, "")
			}
			ping.Reset(pingInterval)
		}
		c.mu.Lock()
		frames := c.queue
		c.queue, c.queued = nil, 0
		closing, code, reason := c.closing, c.code, c.reason
		c.mu.Unlock()
		for _, f := range frames {
			_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
			if err := c.ws.WriteMessage(websocket.TextMessage, f); err != nil {
				c.Close(0, "")
				closing, code = true, 0
				break
			}
			c.hub.framesSent()
		}
		if closing {
			if code != 0 {
				msg := websocket.FormatCloseMessage(code, reason)
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
			return
		}
	}
}

// readLoop reads (and drops) client messages, keeping the read deadline
// fresh on pongs; any error ends the connection.
func (c *Conn) readLoop() {
	c.ws.SetReadLimit(maxClientMessage)
	_ = c.ws.SetReadDeadline(time.Now().Add(pingInterval + pongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(pingInterval + pongWait))
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
