//go:build linux

package waitingroom

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller watches every idle socket of a hub for reads with one epoll set
// and one goroutine, instead of a goroutine blocked reading per socket: a
// blocked goroutine costs its stack (4 KiB once gorilla's read path has
// grown it) and, since the GC paces on stacks too, about as much heap
// again; most of a node's sockets only ever send a pong every 25 s. The
// epoll set is itself in Go's netpoller, so the goroutine parks like any
// reader while no socket has anything, and stops when the set is closed.
type poller struct {
	ep *os.File
	rc syscall.RawConn

	mu    sync.Mutex
	conns map[uint64]*Conn // by Conn.seq; one entry per polled socket of the node

	buf []byte // the reads' buffer (only the poller goroutine reads)
}

func newPoller() (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	ep := os.NewFile(uintptr(fd), "epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, err
	}
	return &poller{ep: ep, rc: rc, conns: map[uint64]*Conn{}, buf: make([]byte, 4096)}, nil
}

// add has the poller read c. False when c's connection cannot be polled
// (not TCP) or c is closing already: then a goroutine reads it.
func (p *poller) add(c *Conn) bool {
	nc := c.ws.NetConn()
	for range 4 { // a wrapper that leaves reads to the conn it wraps
		u, ok := nc.(ReadPassthrough)
		if !ok {
			break
		}
		nc = u.ReadsFrom()
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return false // (TLS, or a wrapper whose reads are its own)
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	// Under c.mu throughout: the last writer either sees c.poll set (and
	// takes the socket out of the set) or this sees the socket closing.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.raw = raw
	c.seen(time.Now())
	p.mu.Lock()
	p.conns[c.seq] = c
	p.mu.Unlock()
	var addErr error
	err = p.rc.Control(func(epfd uintptr) {
		err := raw.Control(func(fd uintptr) {
			ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP,
				Fd: int32(uint32(c.seq)), Pad: int32(uint32(c.seq >> 32))}
			addErr = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_ADD, int(fd), &ev)
		})
		addErr = errors.Join(addErr, err)
	})
	if err = errors.Join(err, addErr); err != nil {
		p.mu.Lock()
		delete(p.conns, c.seq)
		p.mu.Unlock()
		c.lastSeen.Store(0)
		return false
	}
	c.poll = p
	return true
}

// remove stops polling c; called before its connection is closed, so the
// descriptor it names is still c's (a closed one may be reused at once).
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	delete(p.conns, c.seq)
	p.mu.Unlock()
	_ = p.rc.Control(func(epfd uintptr) {
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.EpollCtl(int(epfd), syscall.EPOLL_CTL_DEL, int(fd), nil)
		})
	})
}

// run reads the sockets epoll reports until ctx ends.
func (p *poller) run(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { p.ep.Close() }) // wakes the wait below
	defer stop()
	events := make([]syscall.EpollEvent, 256)
	for {
		var n int
		err := p.rc.Read(func(epfd uintptr) bool {
			var werr error
			n, werr = syscall.EpollWait(int(epfd), events, 0)
			return n > 0 || (werr != nil && werr != syscall.EINTR && werr != syscall.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		for i := range n {
			seq := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			p.mu.Lock()
			c := p.conns[seq]
			p.mu.Unlock()
			if c != nil {
				p.read(c)
			}
		}
	}
}

// maxReadsPerWake bounds the reads of one socket per wake (64 KiB), so a
// client that keeps sending cannot hold the poller; epoll reports it again.
const maxReadsPerWake = 16

// read takes what c's client sent, without blocking, and acts on it.
func (p *poller) read(c *Conn) {
	for range maxReadsPerWake {
		var n int
		var rerr error
		if err := c.raw.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), p.buf)
			return true // one try: never wait here
		}); err != nil {
			rerr = err
		}
		switch {
		case rerr == syscall.EAGAIN:
			return
		case rerr == syscall.EINTR:
			continue
		case rerr != nil || n == 0: // reset, or the client hung up
			p.remove(c)
			c.closeAs(0, "", true)
			return
		}
		c.seen(time.Now())
		for b := p.buf[:n]; len(b) > 0; {
			used, v := c.frames.feed(b)
			b = b[used:]
			if v.ping != nil {
				c.pongSoon(v.ping)
			}
			if v.close != 0 {
				p.remove(c)
				c.closeAs(v.close, v.reason, true)
				return
			}
		}
	}
}
