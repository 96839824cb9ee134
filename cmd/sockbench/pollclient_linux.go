//go:build linux

package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// pollReader holds a client process's sockets as plain descriptors in one
// epoll set, outside Go's network poller, and reads them from one
// goroutine that looks every pollEvery while frames come: those that
// arrived meanwhile are read in one batch. The sockets are the node's load,
// not the measurement's: a goroutine per socket woken per frame (the
// goroutine reader) costs these processes 2-3 times the CPU on the cores
// the node shares with them, and every wake-up of a sleeping reader is paid
// for in the node's write call. A receipt is timed by the poll that found
// it, so up to pollEvery (plus the batch's reading) after the frame
// arrived. After idleAfter without a frame the goroutine waits in epoll
// instead (polling an idle set every millisecond costs more than a wake).
type pollReader struct {
	ep   int
	addr syscall.Sockaddr // the node's
	src  syscall.Sockaddr // this process's source address (nil: any)
	host string           // the Host header
	path string

	mu    sync.Mutex
	byFD  map[int32]*sock
	stop  chan struct{}
	ended chan struct{}
}

// epollET is EPOLLET as an event mask (package syscall has it negative).
const epollET = 1 << 31

// pollEvery is how often the poll reader looks for frames while they
// come; idleAfter is when it stops looking and waits (up to idleWait at a
// time, to see close).
const (
	pollEvery = time.Millisecond
	idleAfter = 10 * time.Millisecond
	idleWait  = 100 // (ms)
)

func newPollReader(rawURL, saleID, source string) (*pollReader, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("--url %s: the poll reader speaks plain WebSocket (ws://) only: use --reader goroutine", rawURL)
	}
	ta, err := net.ResolveTCPAddr("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	r := &pollReader{host: u.Host, path: "/api/v1/sales/" + url.PathEscape(saleID) + "/ws",
		byFD: map[int32]*sock{}, stop: make(chan struct{}), ended: make(chan struct{})}
	if r.addr, err = sockaddr(ta.IP, ta.Port); err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	if source != "" {
		if r.src, err = sockaddr(net.ParseIP(source), 0); err != nil {
			return nil, fmt.Errorf("source address %q: %w", source, err)
		}
	}
	if r.ep, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		return nil, err
	}
	go r.run()
	return r, nil
}

func sockaddr(ip net.IP, port int) (syscall.Sockaddr, error) {
	if v4 := ip.To4(); v4 != nil {
		sa := &syscall.SockaddrInet4{Port: port}
		copy(sa.Addr[:], v4)
		return sa, nil
	}
	if v6 := ip.To16(); v6 != nil {
		sa := &syscall.SockaddrInet6{Port: port}
		copy(sa.Addr[:], v6)
		return sa, nil
	}
	return nil, errors.New("not an IP address")
}

// dial opens a socket with the user token tok: a blocking connect and
// handshake (at most timeout), then the socket joins the epoll set.
func (r *pollReader) dial(tok string, timeout time.Duration) (*sock, error) {
	family := syscall.AF_INET
	if _, ok := r.addr.(*syscall.SockaddrInet6); ok {
		family = syscall.AF_INET6
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w (is ulimit -n high enough?)", err)
	}
	s, err := r.handshake(fd, tok, timeout)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	// registered before the set is told, so the poll goroutine finds it
	r.mu.Lock()
	r.byFD[int32(fd)] = s
	r.mu.Unlock()
	// edge-triggered: a socket read to its end is not looked at again by
	// every wait until more comes
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | epollET, Fd: int32(fd)}
	if err := syscall.EpollCtl(r.ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.byFD, int32(fd))
		r.mu.Unlock()
		syscall.Close(fd)
		return nil, err
	}
	return s, nil
}

func (r *pollReader) handshake(fd int, tok string, timeout time.Duration) (*sock, error) {
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			return nil, err
		}
	}
	if r.src != nil {
		if err := syscall.Bind(fd, r.src); err != nil {
			return nil, fmt.Errorf("bind the source address: %w", err)
		}
	}
	if err := connect(fd, r.addr, timeout); err != nil {
		return nil, fmt.Errorf("connect to --url: %w", err)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET " + r.path + " HTTP/1.1\r\nHost: " + r.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + k + "\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
	if err := writeAll(fd, []byte(req)); err != nil {
		return nil, fmt.Errorf("send the upgrade: %w", err)
	}
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			return nil, errors.New("the upgrade's answer is over 1 KiB")
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("read the upgrade's answer: %v (%d bytes)", err, n)
		}
		buf = buf[:len(buf)+n]
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			head, rest := buf[:i], buf[i+4:]
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
				line, _, _ := bytes.Cut(head, []byte("\r\n"))
				return nil, fmt.Errorf("the node refused the upgrade: %s", line)
			}
			sum := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			if !bytes.Contains(head, []byte("\r\nSec-WebSocket-Accept: "+base64.StdEncoding.EncodeToString(sum[:]))) {
				return nil, errors.New("the upgrade's answer has no valid Sec-WebSocket-Accept")
			}
			s := newSock()
			s.fd = fd
			// frames sent at once may have come with the answer
			s.feed(fd, rest, time.Now().UnixNano())
			return s, nil
		}
	}
}

// connect connects a blocking socket: a signal (Go's runtime sends them)
// interrupts the call but not the connection, which goes on; it is asked
// again until it is made.
func connect(fd int, sa syscall.Sockaddr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		switch err := syscall.Connect(fd, sa); err {
		case nil, syscall.EISCONN:
			return nil
		case syscall.EINTR, syscall.EALREADY, syscall.EINPROGRESS:
			if time.Now().After(deadline) {
				return syscall.ETIMEDOUT
			}
			time.Sleep(time.Millisecond)
		default:
			return err
		}
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// run reads the sockets epoll reports, every pollEvery, until close.
func (r *pollReader) run() {
	defer close(r.ended)
	events := make([]syscall.EpollEvent, 1024)
	buf := make([]byte, 64<<10)
	lastRead := time.Now()
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		var n int
		var err error
		if time.Since(lastRead) > idleAfter {
			n, err = syscall.EpollWait(r.ep, events, idleWait)
		} else {
			n, err = rawEpollWait(r.ep, events)
			if err == nil && n == 0 {
				time.Sleep(pollEvery)
				continue
			}
		}
		if err != nil || n <= 0 {
			continue
		}
		now := time.Now().UnixNano()
		lastRead = time.Unix(0, now)
		for _, ev := range events[:n] {
			r.mu.Lock()
			s := r.byFD[ev.Fd]
			r.mu.Unlock()
			if s != nil {
				r.read(s, buf, now)
			}
		}
	}
}

// read reads a socket epoll reported to its end (edge-triggered).
func (r *pollReader) read(s *sock, buf []byte, now int64) {
	for {
		m, err := rawRead(s.fd, buf)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return
		case err != nil || m == 0:
			r.end(s)
			return
		}
		if !s.feed(s.fd, buf[:m], now) {
			r.end(s)
			return
		}
		if m < len(buf) {
			return // all there was (more raises another edge)
		}
	}
}

// rawRead and rawEpollWait are system calls that never wait, made raw: the
// runtime is not told (a call it is told of keeps its monitor thread
// waking every 20 us, on the cores the node uses).
func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func rawEpollWait(ep int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// end takes a socket out of the set and closes it.
func (r *pollReader) end(s *sock) {
	r.mu.Lock()
	delete(r.byFD, int32(s.fd))
	r.mu.Unlock()
	_ = syscall.EpollCtl(r.ep, syscall.EPOLL_CTL_DEL, s.fd, nil)
	_ = syscall.Close(s.fd)
	s.end()
}

// close stops the poll goroutine and closes every socket.
func (r *pollReader) close() {
	close(r.stop)
	<-r.ended
	r.mu.Lock()
	socks := make([]*sock, 0, len(r.byFD))
	for _, s := range r.byFD {
		socks = append(socks, s)
	}
	r.byFD = nil
	r.mu.Unlock()
	for _, s := range socks {
		_ = syscall.Close(s.fd)
		s.end()
	}
	_ = syscall.Close(r.ep)
}

// feed parses the node's frames in b (after what an earlier read left of
// an unfinished frame) and records each; a ping is answered with a pong
// (the node ends a socket silent past its ping interval + pong wait).
// False when the node closed the socket.
func (s *sock) feed(fd int, b []byte, now int64) bool {
	if len(s.pend) > 0 {
		s.pend = append(s.pend, b...)
		b = s.pend
	}
	for {
		op, payload, used, ok := nextFrame(b)
		if !ok {
			break
		}
		b = b[used:]
		switch op {
		case 0x1, 0x2, 0x0: // a message (the node never fragments its frames)
			s.got(payload, now)
		case 0x9: // ping
			_ = writeAll(fd, maskedFrame(0xA, payload))
		case 0x8: // close
			return false
		}
	}
	s.pend = append(s.pend[:0], b...)
	if len(s.pend) == 0 {
		s.pend = nil
	}
	return true
}

// nextFrame parses one unmasked server frame from the head of b; ok false
// when b holds only part of one.
func nextFrame(b []byte) (op byte, payload []byte, used int, ok bool) {
	if len(b) < 2 {
		return 0, nil, 0, false
	}
	op, n, h := b[0]&0x0f, uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return 0, nil, 0, false
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:4])), 4
	case 127:
		if len(b) < 10 {
			return 0, nil, 0, false
		}
		n, h = binary.BigEndian.Uint64(b[2:10]), 10
	}
	if uint64(len(b)-h) < n {
		return 0, nil, 0, false
	}
	return op, b[h : h+int(n)], h + int(n), true
}

// maskedFrame is a client frame (masked, RFC 6455 5.3) of a control
// message with payload (at most 125 bytes).
func maskedFrame(op byte, payload []byte) []byte {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f := append([]byte{0x80 | op, 0x80 | byte(len(payload))}, mask[:]...)
	for i, c := range payload {
		f = append(f, c^mask[i&3])
	}
	return f
}
