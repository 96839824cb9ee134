package waitingroom

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
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

// ReadPassthrough is a net.Conn wrapper (a listener's) whose reads are
// those of the connection it wraps, e.g. one that only rewrites some
// writes: the hub's poller reads a socket's own TCP connection without
// waiting, so it polls a wrapped one only when the wrapper says this.
type ReadPassthrough interface {
	ReadsFrom() net.Conn
}

// connSeq numbers sockets in the order they open, so a user's oldest is
// known.
var connSeq atomic.Uint64

// Conn is one shopper's WebSocket. What an idle socket costs is what a
// node's socket count is made of, so an idle one holds as little as it can:
// no goroutine reading it (the hub's poller reads every socket from one
// epoll set; where there is none, a goroutine per socket, readLoop), no
// write buffer, and no writer goroutine: when there is something to write
// (a frame, a due ping or pong, the close) a polled socket is handed to the
// hub's writer pool (a few goroutines for the node), any other to a writer
// goroutine of its own (writeLoop) that ends when it has written it. Pings
// come from the hub's one pinger (pingLoop), not a timer per socket.
type Conn struct {
	ws   *websocket.Conn
	sale string
	user string
	addr netip.Addr // the client's address (bans by address close it)
	hub  *Hub
	seq  uint64 // order of opening (connSeq)

	// Polled sockets (see poller): raw reads the descriptor without
	// waiting, frames is where the client's bytes are between two reads
	// (both only the poller goroutine's), lastSeen when the client was
	// last heard from (unix ns).
	raw      syscall.RawConn
	frames   clientFrames
	lastSeen atomic.Int64
	// writeSince is when the frame being written started (unix ns; 0: none)
	writeSince atomic.Int64

	mu      sync.Mutex
	queue   [][]byte
	queued  int
	holding bool     // frames wait in held until the first frame is sent
	held    [][]byte // frames that arrived before the first frame
	writing bool     // a writer runs (it owns the socket's writes)
	lane    uint8    // the writer pool's line the socket waits in (0: none)
	ping    bool     // a ping is due: the next writer sends it
	pong    []byte   // a client's ping to answer (nil: none)
	poll    *poller  // the poller reading the socket (nil: a goroutine does)
	closing bool
	discard bool // drop what is still queued: the close frame goes next
	// rest is what a pool worker's write left unwritten (the socket was
	// full): the next writer's first bytes; closeSent: it ends with the
	// close frame (only the socket's close is left to do)
	rest      []byte
	closeSent bool
	code      int
	reason    string
	done      chan struct{} // closed when the last writer has closed the socket

	// Position state, written by the hub's tick (and once at connect).
	pmu     sync.Mutex
	kind    string  // the user's state kind as this node knows it
	place   float64 // queue score
	lastPos int64   // last position sent; never goes up
	sent    posSent // what the last position frame said, to send only changes
}

func newConn(ws *websocket.Conn, hub *Hub, saleID, user string) *Conn {
	return &Conn{ws: ws, hub: hub, sale: saleID, user: user, seq: connSeq.Add(1), holding: true,
		done: make(chan struct{})}
}

// Send queues a frame. It never blocks: a socket whose queue is over
// maxQueueBytes is closed as slow.
func (c *Conn) Send(frame []byte) { c.send(frame, laneEvents) }

// send queues a frame for the writer pool's lane (laneEvents, or laneTick
// for the tick's position frames: those wait while there are others).
func (c *Conn) send(frame []byte, lane uint8) {
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
	start := c.startWriterLocked(lane)
	c.mu.Unlock()
	c.runWriter(start, lane)
}

// first sends the connection's first frame (its current state), then the
// frames that arrived meanwhile.
func (c *Conn) first(frame []byte) {
	c.mu.Lock()
	held := c.held
	c.holding, c.held = false, nil
	if c.closing {
		// a close came before the first frame and waited for it (see
		// closeAs): the first frame, what was held, then the close
		c.queue = append(c.queue, frame)
		c.queued += len(frame)
		c.queueHeldLocked(frame, held)
		start := c.startWriterLocked(laneEvents)
		c.mu.Unlock()
		c.runWriter(start, laneEvents)
		return
	}
	c.mu.Unlock()
	c.Send(frame)
	prev := frame
	for _, f := range held {
		if !bytes.Equal(f, prev) { // e.g. the state the first frame already says
			c.Send(f)
		}
		prev = f
	}
}

// queueHeldLocked queues the frames held before the first frame (prev, or
// nil when there is none), but one that repeats the frame before it. The
// caller holds c.mu.
func (c *Conn) queueHeldLocked(prev []byte, held [][]byte) {
	for _, f := range held {
		if !bytes.Equal(f, prev) {
			c.queue = append(c.queue, f)
			c.queued += len(f)
		}
		prev = f
	}
}

// Close sends a close frame with code and closes the socket, once; it does
// not wait for the writer. Frames queued before it are sent first, except
// on a drop (CloseSlow, CloseReplaced): the client is not served any more,
// so only the close frame follows the frame being written. Code 0 closes
// the connection without a close frame, and drops what is queued: it is
// broken or dead.
func (c *Conn) Close(code int, reason string) {
	c.closeAs(code, reason, code == CloseSlow || code == CloseReplaced || code == 0)
}

// closeAs is Close, dropping what is queued when discard is set (the
// client is not served any more, or will not read it).
//
// A close that is not a drop, asked for before the socket's first frame
// (an event's, while the connection reads the user's state), waits for
// that frame: the client gets the state, the frames held since, then the
// close. A second close meanwhile (the connection gives up before its
// first frame) sends what was held and closes with the first close's code.
func (c *Conn) closeAs(code int, reason string, discard bool) {
	c.mu.Lock()
	switch {
	case c.closing && c.holding:
		held := c.held
		c.holding, c.held = false, nil
		c.queueHeldLocked(nil, held)
	case c.closing:
		c.mu.Unlock()
		return
	case c.holding && !discard:
		c.closing, c.code, c.reason, c.discard = true, code, reason, false
		c.mu.Unlock()
		return
	default:
		c.closing, c.code, c.reason, c.discard = true, code, reason, discard
		c.holding, c.held = false, nil
	}
	start := c.startWriterLocked(laneEvents)
	c.mu.Unlock()
	c.runWriter(start, laneEvents)
}

// closeInstead closes a socket that will not get its first frame (the
// connection refuses it once it is in the hub): what an event sent it
// meanwhile goes first, then the close (the code of an event's close if one
// came first).
func (c *Conn) closeInstead(code int, reason string) {
	c.mu.Lock()
	if c.holding && !c.closing {
		held := c.held
		c.holding, c.held = false, nil
		c.queueHeldLocked(nil, held)
	}
	c.mu.Unlock()
	c.Close(code, reason)
}

// pingSoon has the socket pinged by a writer (started if none runs).
func (c *Conn) pingSoon() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.ping = true
	start := c.startWriterLocked(laneEvents)
	c.mu.Unlock()
	c.runWriter(start, laneEvents)
}

// pongSoon has a writer answer the client's ping with payload (only the
// newest ping is answered, as RFC 6455 allows).
func (c *Conn) pongSoon(payload []byte) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.pong = payload
	start := c.startWriterLocked(laneEvents)
	c.mu.Unlock()
	c.runWriter(start, laneEvents)
}

// writerStart is the writer startWriterLocked asks its caller to start.
type writerStart uint8

const (
	startNone      writerStart = iota
	startGoroutine             // writeLoop
	startPool                  // the hub's writer pool, in the lane asked for
)

// startWriterLocked says what writer the caller must start for something
// to write in lane: none when one runs (or the socket is a test's, with no
// network: its frames stay queued); the writer pool for a polled socket
// (its descriptor at hand), else a goroutine. A socket waiting in the
// pool's tick lane moves up to the events lane when it gets an event's
// frame: its frames go out together, ahead of the tick's. The caller holds
// c.mu.
func (c *Conn) startWriterLocked(lane uint8) writerStart {
	switch {
	case c.ws == nil:
		return startNone
	case !c.writing:
		c.writing = true
		if c.raw == nil {
			return startGoroutine
		}
		c.lane = lane
		return startPool
	case c.lane != 0 && lane < c.lane:
		c.lane = lane
		return startPool
	}
	return startNone
}

// runWriter starts the writer startWriterLocked asked for: the hub's pool
// while it runs, else a goroutine.
func (c *Conn) runWriter(start writerStart, lane uint8) {
	switch start {
	case startGoroutine:
		go c.writeLoop()
	case startPool:
		if !c.hub.writers.push(c, lane) {
			c.leavePool(lane)
		}
	}
}

// leavePool gives a socket waiting in the pool's lane (which no longer
// runs) a writer goroutine, unless another writer took it meanwhile.
func (c *Conn) leavePool(lane uint8) {
	c.mu.Lock()
	mine := c.lane != 0 && (lane == 0 || c.lane == lane)
	if mine {
		c.lane = 0
	}
	c.mu.Unlock()
	if mine {
		go c.writeLoop()
	}
}

// broken marks the connection as broken (a write failed): closed without
// a close frame, whatever close was asked for, and nothing more written.
func (c *Conn) broken() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.holding = false
	}
	c.code, c.reason, c.discard = 0, "", true
	c.mu.Unlock()
}

// open reports whether the socket is not closing.
func (c *Conn) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.closing
}

// oldestOpen lists the oldest open sockets of conns beyond the newest
// max-1: those a user's new socket replaces. The caller holds the shard
// lock of conns.
func oldestOpen(conns []*Conn, max int) []*Conn {
	open := make([]*Conn, 0, len(conns))
	for _, c := range conns {
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

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.done }

// writeLoop is the socket's only writer while it runs: it writes what a
// pool worker left unwritten, a due pong or ping, then the queued frames
// one at a time (so a drop is not held up behind the queue), and ends when
// nothing is left, or, once closing, writes the close frame (unless the
// code is 0), closes the socket and takes it out of the hub. Unlike a pool
// worker it waits for a socket that is full.
func (c *Conn) writeLoop() {
	for {
		c.mu.Lock()
		if rest := c.rest; rest != nil {
			// first: the bytes of a frame the client has part of
			c.rest = nil
			c.mu.Unlock()
			err := c.writeRaw(rest)
			c.mu.Lock()
			c.queued -= len(rest)
			c.mu.Unlock()
			if err != nil {
				c.broken()
			}
			continue
		}
		if c.closing && (c.discard || len(c.queue) == 0) {
			code, reason, sent := c.code, c.reason, c.closeSent
			c.mu.Unlock()
			if code != 0 && !sent {
				msg := websocket.FormatCloseMessage(code, reason)
				_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			}
			c.finish()
			return
		}
		if pong := c.pong; pong != nil {
			c.pong = nil
			c.mu.Unlock()
			if err := c.control(websocket.PongMessage, pong); err != nil {
				c.broken()
			}
			continue
		}
		if c.ping {
			c.ping = false
			c.mu.Unlock()
			if err := c.control(websocket.PingMessage, nil); err != nil {
				c.broken()
			}
			continue
		}
		if len(c.queue) == 0 {
			c.queue = nil // let go of the array the queue grew into
			c.writing = false
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.queued -= len(f)
		raw := c.raw
		c.mu.Unlock()
		var err error
		if raw != nil && len(f) <= maxRawFrame {
			err = c.writeFrame(f)
		} else {
			// no write deadline (a timer armed and moved per frame, a
			// tenth of a broadcast's CPU): the pinger cuts a write stuck
			// past WriteWait
			c.writeSince.Store(time.Now().UnixNano())
			err = c.ws.WriteMessage(websocket.TextMessage, f)
			c.writeSince.Store(0)
		}
		if err != nil {
			// the connection is broken: no close frame can follow
			c.broken()
			continue
		}
		c.hub.framesSent(1)
	}
}

// finish ends the socket once its close frame is written (or cannot be):
// out of the poller while the descriptor is still this socket's, closed,
// done, out of the hub. Only the last writer calls it; writing stays set,
// so no writer starts after it.
func (c *Conn) finish() {
	c.mu.Lock()
	poll := c.poll
	c.queue, c.queued, c.ping, c.pong, c.rest = nil, 0, false, nil, nil
	c.mu.Unlock()
	if poll != nil {
		poll.remove(c) // while the descriptor is still this socket's
	}
	_ = c.ws.Close()
	close(c.done)
	c.hub.remove(c)
}

// maxRawFrame bounds the frames writeFrame writes (a frame and its header
// in one of frameBufs' buffers); a larger one goes through gorilla.
const maxRawFrame = 4096 - 10

// frameBufs lends writeFrame a buffer for a frame and its header.
var frameBufs = sync.Pool{New: func() any { return new([4096]byte) }}

// writeFrame writes a text frame straight to a polled socket's descriptor:
// header and payload in one write, without gorilla's writer (its lock,
// buffer pool, deadline and the listener's wrapper per frame: a third of
// the CPU of a frame to every socket). Only the socket's writer calls it.
func (c *Conn) writeFrame(f []byte) error {
	buf := frameBufs.Get().(*[4096]byte)
	defer frameBufs.Put(buf)
	b := appendFrameHeader(buf[:0], len(f))
	return c.writeRaw(append(b, f...))
}

// writeRaw writes b to a polled socket's descriptor, waiting for room as
// long as it takes (the pinger cuts a write stuck past WriteWait: no
// deadline per write). Only the socket's writer calls it.
func (c *Conn) writeRaw(b []byte) error {
	c.writeSince.Store(time.Now().UnixNano())
	defer c.writeSince.Store(0)
	for len(b) > 0 {
		var n int
		var werr error
		err := c.raw.Write(func(fd uintptr) bool {
			n, werr = syscall.Write(int(fd), b)
			return werr != syscall.EAGAIN // else wait for room
		})
		switch {
		case err != nil:
			return err
		case werr == syscall.EINTR:
			continue
		case werr != nil:
			return werr
		}
		b = b[n:]
	}
	return nil
}

// appendFrameHeader appends the header of a server's unfragmented text
// frame of n bytes (unmasked; RFC 6455 5.2).
func appendFrameHeader(b []byte, n int) []byte {
	b = append(b, 0x80|websocket.TextMessage)
	switch {
	case n < 126:
		return append(b, byte(n))
	case n < 1<<16:
		return append(b, 126, byte(n>>8), byte(n))
	}
	b = append(b, 127)
	for i := 7; i >= 0; i-- {
		b = append(b, byte(uint64(n)>>(8*i)))
	}
	return b
}

// control writes a ping or a pong with no write deadline: gorilla would
// leave it on the connection, and writeFrame's writes (not gorilla's) would
// fail once it passed; the pinger cuts a write stuck past WriteWait.
func (c *Conn) control(kind int, data []byte) error {
	c.writeSince.Store(time.Now().UnixNano())
	defer c.writeSince.Store(0)
	return c.ws.WriteControl(kind, data, time.Time{})
}

// readLoop reads a socket the poller does not: it reads (and drops) client
// messages, keeping the read deadline fresh on pongs; any error ends the
// connection. A client message over maxClientMessage is answered with 1009
// by the library.
func (c *Conn) readLoop() {
	lim := c.hub.cfg.SocketLimits
	c.ws.SetReadLimit(maxClientMessage)
	_ = c.ws.SetReadDeadline(time.Now().Add(lim.PingInterval + lim.PongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(lim.PingInterval + lim.PongWait))
	})
	for {
		_, r, err := c.ws.NextReader()
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err != nil {
			c.Close(0, "")
			return
		}
	}
}

// pingSlots is how many groups the pinger splits a node's sockets into (by
// their seq): it wakes PingInterval/pingSlots apart and pings the groups
// due since it last woke, so a node's pings are spread evenly and each
// socket is pinged every PingInterval by the clock, even when a busy
// machine delays the pinger's wakes.
const pingSlots = 25

// pingLoop pings every socket of the node once per PingInterval, ends
// polled sockets whose client was silent (no pong, nothing) for
// PingInterval + PongWait (a socket read by a goroutine has a read deadline
// for that), and cuts the connection of a socket whose frame has been
// written for longer than WriteWait: the client stopped reading.
func (h *Hub) pingLoop(ctx context.Context) {
	step := max(h.cfg.PingInterval/pingSlots, time.Millisecond)
	t := time.NewTicker(step)
	defer t.Stop()
	silent := int64(h.cfg.PingInterval + h.cfg.PongWait)
	last := time.Now().UnixNano() / int64(step) // the last step whose group was pinged
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		stuckAfter := int64(h.cfg.WriteWait)
		cur := now / int64(step)
		due := uint64(min(cur-last, pingSlots)) // groups due: those of steps last+1..cur
		last = cur
		var dead, stuck []*Conn
		for i := range h.shards {
			sh := &h.shards[i]
			sh.mu.RLock() // (shard, then socket: the order add takes them in)
			for _, set := range sh.bySale {
				for c := range set {
					if since := c.writeSince.Load(); since != 0 && now-since > stuckAfter {
						stuck = append(stuck, c)
					} else if seen := c.lastSeen.Load(); seen != 0 && now-seen > silent {
						dead = append(dead, c)
					} else if (uint64(cur)+pingSlots-c.seq%pingSlots)%pingSlots < due {
						c.pingSoon()
					}
				}
			}
			sh.mu.RUnlock()
		}
		for _, c := range dead {
			c.Close(0, "") // taken as dead: no close frame
		}
		for _, c := range stuck {
			c.Close(0, "")
			_ = c.ws.NetConn().Close() // the write fails, and its writer ends the socket
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
