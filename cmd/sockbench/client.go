package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/flashsale/flashsale/identity"
)

// command is one step the coordinator asks of a client process (a JSON
// line on its stdin); reply is the answer (a JSON line on its stdout).
type command struct {
	Op      string `json:"op"`              // open, wait, gaps
	Users   []int  `json:"users,omitempty"` // open: user numbers
	Type    string `json:"type,omitempty"`  // wait: the frame type
	Since   int64  `json:"since,omitempty"` // wait: receipts at or after (unix ns)
	Timeout int64  `json:"timeout,omitempty"`
	From    int64  `json:"from,omitempty"` // gaps: the window (unix ns)
	To      int64  `json:"to,omitempty"`
}

type reply struct {
	Err      string `json:"err,omitempty"`
	Open     int    `json:"open"`
	Failed   int    `json:"failed,omitempty"`
	FirstErr string `json:"first_err,omitempty"`
	// wait
	Got  int   `json:"got,omitempty"`
	Last int64 `json:"last,omitempty"`
	// gaps
	Waiting    int     `json:"waiting,omitempty"`
	OverTwo    int     `json:"over_two,omitempty"`
	NoPosition int     `json:"no_position,omitempty"`
	MaxGaps    []int64 `json:"max_gaps,omitempty"`
	Receipts   []int64 `json:"receipts,omitempty"`
	// admitted frames received in the window: user number → receipt
	Admitted map[int]int64 `json:"admitted,omitempty"`
}

// sock is one socket held by a client and what it received.
type sock struct {
	user int             // the user's number
	ws   *websocket.Conn // (the goroutine reader's)
	// the poll reader's: the descriptor, and the start of a frame whose
	// rest has not come yet (only the poll goroutine's, once registered)
	fd   int
	pend []byte

	mu        sync.Mutex
	first     chan struct{} // closed on the first frame (or the end)
	gotFirst  bool
	states    map[string]int64 // state frame type → last receipt (unix ns)
	positions []int64          // receipts of position frames
	admitted  int64            // receipt of the admitted frame (0: none)
	ended     bool
}

type clientProc struct {
	url, sale, prefix string
	secret            []byte
	dialer            *websocket.Dialer
	dialConc          int
	poll              *pollReader // nil: a goroutine reads each socket (gorilla's reader)

	mu    sync.Mutex
	socks []*sock
	wg    sync.WaitGroup // the sockets' readers
}

func clientMain(ctx context.Context, in io.Reader, out io.Writer) error {
	env := func(k string) string { return os.Getenv("SOCKBENCH_" + k) }
	p := &clientProc{url: env("URL"), sale: env("SALE"), prefix: env("PREFIX")}
	secret, err := readTrim(filepath.Join(env("DATA_DIR"), "identity-secret"))
	if err != nil {
		return fmt.Errorf("client: the dev user-token secret: %w", err)
	}
	p.secret = []byte(secret)
	if p.dialConc, err = strconv.Atoi(env("DIAL_C")); err != nil || p.dialConc < 1 {
		p.dialConc = 64
	}
	nd := &net.Dialer{Timeout: 10 * time.Second}
	if src := env("SOURCE"); src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	p.dialer = &websocket.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: 20 * time.Second,
		ReadBufferSize: 1024, WriteBufferSize: 256}
	if env("READER") != "goroutine" {
		if p.poll, err = newPollReader(p.url, p.sale, env("SOURCE")); err != nil {
			return err
		}
	}
	defer p.closeAll()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var c command
		var r reply
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			r.Err = err.Error()
		} else {
			r = p.do(ctx, c)
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return sc.Err()
}

func (p *clientProc) do(ctx context.Context, c command) reply {
	switch c.Op {
	case "open":
		return p.open(ctx, c.Users)
	case "wait":
		return p.wait(ctx, c)
	case "gaps":
		return p.gaps(c)
	}
	return reply{Err: fmt.Sprintf("unknown op %q", c.Op)}
}

func mintRange(secret []byte, prefix string, from, to int) ([]string, error) {
	toks := make([]string, to-from)
	for i := range toks {
		var err error
		if toks[i], _, err = identity.Mint(secret, prefix+strconv.Itoa(from+i), 2*time.Hour); err != nil {
			return nil, err
		}
	}
	return toks, nil
}

// open dials a socket for each user and waits for every first frame.
func (p *clientProc) open(ctx context.Context, users []int) reply {
	u := "ws" + strings.TrimPrefix(p.url, "http") + "/api/v1/sales/" + p.sale + "/ws"
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failed   int
		firstErr string
		next     = make(chan int)
	)
	for range p.dialConc {
		wg.Go(func() {
			for i := range next {
				tok, _, err := identity.Mint(p.secret, p.prefix+strconv.Itoa(i), 2*time.Hour)
				var s *sock
				if err == nil {
					s, err = p.dial(ctx, u, tok)
				}
				if err == nil {
					s.mu.Lock()
					s.user = i
					s.mu.Unlock()
					select {
					case <-s.first:
					case <-time.After(20 * time.Second):
						err = errors.New("no first frame within 20 s")
					}
				}
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == "" {
						firstErr = err.Error()
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, i := range users {
		next <- i
	}
	close(next)
	wg.Wait()
	return reply{Open: p.openCount(), Failed: failed, FirstErr: firstErr}
}

func (p *clientProc) dial(ctx context.Context, u, tok string) (*sock, error) {
	var s *sock
	if p.poll != nil {
		var err error
		if s, err = p.poll.dial(tok, 20*time.Second); err != nil {
			return nil, err
		}
	} else {
		ws, resp, err := p.dialer.DialContext(ctx, u, http.Header{"Authorization": {"Bearer " + tok}})
		if err != nil {
			return nil, err
		}
		resp.Body.Close()
		s = newSock()
		s.ws = ws
		p.wg.Go(func() { s.read() })
	}
	p.mu.Lock()
	p.socks = append(p.socks, s)
	p.mu.Unlock()
	return s, nil
}

func newSock() *sock { return &sock{first: make(chan struct{}), states: map[string]int64{}} }

var typePrefix = []byte(`{"type":"`)

// read records each frame's receipt by its type until the socket ends (the
// goroutine reader).
func (s *sock) read() {
	defer s.end()
	for {
		_, b, err := s.ws.ReadMessage()
		if err != nil {
			return
		}
		s.got(b, time.Now().UnixNano())
	}
}

// got records the receipt of a frame by its type.
func (s *sock) got(b []byte, now int64) {
	typ := ""
	if rest, ok := bytes.CutPrefix(b, typePrefix); ok {
		if i := bytes.IndexByte(rest, '"'); i > 0 {
			typ = string(rest[:i])
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch typ {
	case "position":
		s.positions = append(s.positions, now)
	case "admitted":
		s.admitted = now
	default:
		if s.states[typ] < now {
			s.states[typ] = now
		}
	}
	if !s.gotFirst {
		s.gotFirst = true
		close(s.first)
	}
}

// end records that the socket ended.
func (s *sock) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	if !s.gotFirst {
		s.gotFirst = true
		close(s.first)
	}
}

func (p *clientProc) all() []*sock {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sock(nil), p.socks...)
}

func (p *clientProc) openCount() int {
	n := 0
	for _, s := range p.all() {
		s.mu.Lock()
		if !s.ended {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// wait waits until every open socket received a frame of c.Type at or
// after c.Since (or c.Timeout passed) and reports the last receipt. It
// looks every 20 ms, at the sockets that had not had it yet: the receipts
// carry their own times, and looking costs the cores the node uses.
func (p *clientProc) wait(ctx context.Context, c command) reply {
	deadline := time.Now().Add(time.Duration(c.Timeout))
	var last int64
	got := 0
	left := p.all()
	for {
		kept := left[:0]
		for _, s := range left {
			s.mu.Lock()
			switch t := s.states[c.Type]; {
			case s.ended:
			case t >= c.Since:
				got++
				last = max(last, t)
			default:
				kept = append(kept, s)
			}
			s.mu.Unlock()
		}
		left = kept
		if len(left) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return reply{Open: p.openCount(), Got: got, Last: last}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gaps reports, for each socket still waiting in the window, the longest
// time without a position frame (the window's ends count as frames), and
// every receipt in the window, for the coordinator's tick spans.
func (p *clientProc) gaps(c command) reply {
	var r reply
	for _, s := range p.all() {
		s.mu.Lock()
		end := c.To
		if s.admitted != 0 && s.admitted < end {
			end = s.admitted
		}
		if s.admitted >= c.From && s.admitted <= c.To {
			if r.Admitted == nil {
				r.Admitted = map[int]int64{}
			}
			r.Admitted[s.user] = s.admitted
		}
		if s.ended || end <= c.From {
			s.mu.Unlock()
			continue
		}
		r.Waiting++
		last, longest, seen := c.From, int64(0), false
		for _, t := range s.positions {
			if t < c.From || t > end {
				continue
			}
			seen = true
			longest = max(longest, t-last)
			last = t
			r.Receipts = append(r.Receipts, t)
		}
		longest = max(longest, end-last)
		s.mu.Unlock()
		if !seen && end-c.From > int64(2*time.Second) {
			r.NoPosition++ // (one admitted early in the window may have had none due)
		}
		if longest > int64(2*time.Second) {
			r.OverTwo++
		}
		r.MaxGaps = append(r.MaxGaps, longest)
	}
	return r
}

func (p *clientProc) closeAll() {
	if p.poll != nil {
		p.poll.close()
	}
	for _, s := range p.all() {
		if s.ws != nil {
			_ = s.ws.Close()
		}
	}
	p.wg.Wait()
}
