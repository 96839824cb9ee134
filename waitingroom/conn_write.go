package waitingroom

import (
	"context"
	"sync"
	"syscall"
	"unsafe"

	"github.com/gorilla/websocket"
)

// writerPool writes the frames of polled sockets with a few goroutines
// (one per core) instead of a goroutine started per socket and per burst.
// A state frame goes to every socket of a sale at once: started per
// socket, 19,000 writer goroutines cost their creation, their scheduling
// and a stack each, on top of the write itself. A worker takes a
// contiguous run of the sockets waiting to be written (up to its share of
// them, so the workers split a broadcast between them), and writes each
// socket's pending frames with one write that never waits; a socket whose
// write would wait (its client reads slowly) is handed to a writer
// goroutine of its own (writeLoop), which owns its writes until its queue
// is empty. Sockets read by a goroutine (no poller), large frames and the
// close of a socket whose close frame cannot be written at once also go to
// writeLoop.
//
// Sockets wait in two lanes: the tick's position frames (every waiting
// socket, every second while the queue moves) in laneTick, everything
// else (state frames, admissions, orders, pings, closes) in laneEvents,
// which the workers empty first, so a state frame or a ticket does not
// wait behind a tick's burst. A socket's frames stay in its own queue in
// the order they came, whatever lane it waits in; a socket in laneTick
// that gets an event's frame moves up (an entry in laneEvents; the one
// left in laneTick is skipped: Conn.lane says which entry is the
// socket's).
type writerPool struct {
	mu      sync.Mutex
	cond    sync.Cond
	lanes   [2]poolLane // laneEvents, laneTick
	idle    int         // workers waiting for pending sockets
	workers int
	running bool // workers run (else sockets get a writer goroutine each)
}

// The writer pool's lanes (Conn.lane; 0: in none).
const (
	laneEvents uint8 = 1
	laneTick   uint8 = 2
)

// poolLane is a line of sockets waiting for a worker.
type poolLane struct {
	pending []*Conn // in the order they became due
	head    int     // pending[head:] are still to take
}

// maxTake bounds the sockets one worker takes at a time, so the other
// workers share a long run.
const maxTake = 512

// poolBuf is a worker's write buffer: the frames (and a due ping or pong)
// one socket is owed, written at once. Frames too large for it go through
// writeLoop.
const poolBuf = 8 << 10

// maxRounds bounds the writes a worker gives one socket before it puts the
// socket back at the end of the line: a socket that keeps being sent
// frames does not hold a worker.
const maxRounds = 4

// run runs n workers until ctx ends; then the sockets still waiting get a
// writer goroutine each, and so does every socket due from then on.
func (p *writerPool) run(ctx context.Context, h *Hub, n int) {
	p.mu.Lock()
	if p.cond.L == nil {
		p.cond.L = &p.mu
	}
	p.running, p.workers = true, n
	p.mu.Unlock()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { p.work(h) })
	}
	<-ctx.Done()
	p.mu.Lock()
	p.running = false
	var left []*Conn
	for i := range p.lanes {
		l := &p.lanes[i]
		left = append(left, l.pending[l.head:]...)
		l.pending, l.head = nil, 0
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	for _, c := range left {
		c.leavePool(0)
	}
	wg.Wait()
}

// push queues c in lane for a worker (the caller set c.lane); false when
// no worker runs.
func (p *writerPool) push(c *Conn, lane uint8) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return false
	}
	p.lanes[lane-1].pending = append(p.lanes[lane-1].pending, c)
	if p.idle > 0 {
		p.idle--
		p.cond.Signal()
	}
	return true
}

// take waits for sockets to write and moves a contiguous run of them (up
// to the worker's share of those waiting) from the first lane that has any
// into batch; false once stopped.
func (p *writerPool) take(batch []*Conn) ([]*Conn, uint8, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if !p.running {
			return batch, 0, false
		}
		for i := range p.lanes {
			l := &p.lanes[i]
			avail := len(l.pending) - l.head
			if avail == 0 {
				continue
			}
			k := min((avail+p.workers-1)/max(p.workers, 1), maxTake)
			batch = append(batch, l.pending[l.head:l.head+k]...)
			clear(l.pending[l.head : l.head+k])
			l.head += k
			if l.head == len(l.pending) {
				// the array stays: it holds at most one entry per socket of
				// the node and lane
				l.pending, l.head = l.pending[:0], 0
			}
			return batch, uint8(i + 1), true
		}
		p.idle++
		p.cond.Wait()
	}
}

// poolWriter is one worker's buffer and write call, made once: a closure
// made per write would be an allocation per socket.
type poolWriter struct {
	buf   []byte
	b     []byte // what the next write writes (buf's bytes)
	n     uintptr
	errno syscall.Errno
	write func(fd uintptr)
}

func newPoolWriter() *poolWriter {
	w := &poolWriter{buf: make([]byte, 0, poolBuf)}
	w.write = func(fd uintptr) {
		// A raw system call: a write to a socket that never waits returns
		// at once, so the runtime need not be told (entering and leaving
		// a system call, and the monitor thread waking every 20 us to take
		// back the core of a call that lasts, were a tenth of a broadcast's
		// CPU).
		w.n, _, w.errno = syscall.RawSyscall(syscall.SYS_WRITE, fd,
			uintptr(unsafe.Pointer(unsafe.SliceData(w.b))), uintptr(len(w.b)))
	}
	return w
}

// tryWrite writes b to c's descriptor without waiting: n is what the
// socket took (EAGAIN: nothing, err nil). Control, not Write: only the
// socket's writer writes it (no write lock needed), and Control holds the
// descriptor open during the call all the same.
func (w *poolWriter) tryWrite(c *Conn, b []byte) (int, error) {
	w.b = b
	for {
		w.n, w.errno = 0, 0
		if err := c.raw.Control(w.write); err != nil {
			return 0, err
		}
		switch w.errno {
		case 0:
			return int(w.n), nil
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, nil
		}
		return 0, w.errno
	}
}

func (p *writerPool) work(h *Hub) {
	w := newPoolWriter()
	var batch []*Conn
	for {
		var lane uint8
		var ok bool
		batch, lane, ok = p.take(batch[:0])
		if !ok {
			return
		}
		frames := 0
		for i, c := range batch {
			frames += c.flush(w, p, lane)
			batch[i] = nil
		}
		h.framesSent(frames)
	}
}

// flush writes what c is owed (a pong, a ping, its queued frames; or its
// close) with writes that never wait, and lets go of c's writing when
// nothing is left; a socket that would make it wait goes to writeLoop with
// the unwritten bytes. It returns the frames written. The caller (a worker)
// took c from lane: the socket's writes are its unless c moved to another
// lane since (an entry there is the socket's).
func (c *Conn) flush(w *poolWriter, p *writerPool, lane uint8) (frames int) {
	c.mu.Lock()
	if c.lane != lane {
		c.mu.Unlock()
		return 0
	}
	c.lane = 0 // (being written: new frames wait for this writer)
	c.mu.Unlock()
	for range maxRounds {
		c.mu.Lock()
		if c.closing && (c.discard || len(c.queue) == 0) {
			c.mu.Unlock()
			c.closeFromPool(w)
			return frames
		}
		b := w.buf[:0]
		if c.pong != nil {
			b = appendControl(b, websocket.PongMessage, c.pong)
			c.pong = nil
		}
		if c.ping {
			b = appendControl(b, websocket.PingMessage, nil)
			c.ping = false
		}
		k, size := 0, 0
		for _, f := range c.queue {
			if len(b)+maxFrameHeader+len(f) > cap(b) {
				break
			}
			b = appendFrameHeader(b, len(f))
			b = append(b, f...)
			k++
			size += len(f)
		}
		if len(b) == 0 {
			if len(c.queue) > 0 {
				// a frame larger than the buffer: writeLoop writes it
				c.mu.Unlock()
				go c.writeLoop()
				return frames
			}
			c.writing = false
			c.mu.Unlock()
			return frames
		}
		if k == len(c.queue) {
			clear(c.queue)
			if cap(c.queue) <= 4 {
				c.queue = c.queue[:0] // kept: the next frames need no allocation
			} else {
				c.queue = nil // let go of what a burst grew
			}
		} else {
			c.queue = c.queue[k:]
		}
		c.queued -= size
		c.mu.Unlock()
		n, err := w.tryWrite(c, b)
		switch {
		case err != nil:
			// the connection is broken: no close frame can follow
			c.broken()
			continue // (the next round closes it)
		case n < len(b):
			// the client's buffer is full: a writer goroutine waits for
			// room, the unwritten bytes first
			c.mu.Lock()
			c.rest = append([]byte(nil), b[n:]...)
			c.queued += len(c.rest)
			c.mu.Unlock()
			go c.writeLoop()
			return frames + k
		}
		frames += k
	}
	// still more to write: back of the line (writing stays taken)
	c.mu.Lock()
	c.lane = lane
	c.mu.Unlock()
	if !p.push(c, lane) {
		c.leavePool(lane)
	}
	return frames
}

// closeFromPool closes c from a worker: its close frame with one write
// that never waits, then the socket; a close frame the socket cannot take
// at once goes to writeLoop (which gives it a second), with what the
// socket did take of it.
func (c *Conn) closeFromPool(w *poolWriter) {
	c.mu.Lock()
	code, reason := c.code, c.reason
	c.mu.Unlock()
	if code != 0 {
		b := appendControl(w.buf[:0], websocket.CloseMessage, websocket.FormatCloseMessage(code, reason))
		n, err := w.tryWrite(c, b)
		switch {
		case err != nil:
			// broken: closed without a close frame
		case n == 0:
			go c.writeLoop()
			return
		case n < len(b):
			c.mu.Lock()
			c.rest, c.closeSent = append([]byte(nil), b[n:]...), true
			c.mu.Unlock()
			go c.writeLoop()
			return
		}
	}
	c.finish()
}

// maxFrameHeader is the longest header of a server frame.
const maxFrameHeader = 10

// appendControl appends a control frame (ping, pong, close) with payload
// (at most 125 bytes, RFC 6455 5.5; longer is cut).
func appendControl(b []byte, op int, payload []byte) []byte {
	payload = payload[:min(len(payload), 125)]
	b = append(b, 0x80|byte(op), byte(len(payload)))
	return append(b, payload...)
}
