package multinode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/sale"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain
	binPath   string
	buildErr  error
)

// binary builds cmd/flashsale once per test binary. FLASHSALE_RACE_BINARY=1
// builds it with the race detector (slower; finds races in the processes).
func binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "flashsale-multinode-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "flashsale")
		args := []string{"build", "-o", binPath}
		if os.Getenv("FLASHSALE_RACE_BINARY") == "1" {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/flashsale/flashsale/cmd/flashsale")...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out.String())
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// cluster is several flashsale processes on one Redis key prefix and one
// MySQL database, with the tokens and keys the test needs to talk to them.
type cluster struct {
	t      testing.TB
	rdb    *redis.Client
	ks     sale.Keyspace
	dsn    string
	key    string // ticket key file
	issuer *ticket.Issuer
	admin  string
	secret string
	http   *http.Client

	mu    sync.Mutex
	procs []*proc
}

// newCluster starts n processes with all roles (extra flags are added to
// each) and stops them when the test ends.
func newCluster(t testing.TB, n int, extra ...string) *cluster {
	t.Helper()
	bin := binary(t)
	rdb, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, keys := testenv.KeyFile(t)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	c := &cluster{t: t, rdb: rdb, ks: ks, dsn: dsn, key: keyPath, issuer: ticket.NewIssuer(keys, "flashsale"),
		admin: "admin-" + testenv.RandomID(), secret: "secret-" + testenv.RandomID(),
		http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	t.Cleanup(tr.CloseIdleConnections)
	for i := range n {
		c.procs = append(c.procs, c.start(bin, fmt.Sprintf("node%d", i), extra...))
	}
	for _, p := range c.procs {
		p.awaitServing(t)
	}
	return c
}

// start runs one `flashsale serve` on the cluster's stores.
func (c *cluster) start(bin, name string, extra ...string) *proc {
	t := c.t
	t.Helper()
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--mysql-dsn", c.dsn,
		"--redis-url", testenv.RedisURL(), "--redis-key-prefix", c.ks.Prefix, "--admin-token", c.admin,
		"--identity-secret", c.secret, "--ticket-key", c.key,
		// every shopper of these tests comes from 127.0.0.1: the rate
		// limits, which count per address, are tested in node and ratelimit
		"--ip-rate", "0", "--user-rate", "0"}, extra...)
	p := &proc{name: name, serving: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = p
	p.cmd.Stdout = p
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", p.name, p.tail(40))
		}
	})
	return p
}

// alive lists the processes not killed.
func (c *cluster) alive() []*proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*proc
	for _, p := range c.procs {
		if !p.isKilled() {
			out = append(out, p)
		}
	}
	return out
}

// leader is the process that logged the sale's current lease value as its
// own ("admitter: leading"); nil when none did (yet).
func (c *cluster) leader(saleID string) *proc {
	cur, err := c.rdb.Get(context.Background(), c.ks.Sale(saleID).Lease).Result()
	if err != nil {
		return nil
	}
	for _, p := range c.alive() {
		if p.leaseOf(saleID) == cur {
			return p
		}
	}
	return nil
}

// userToken mints a shop user token the processes accept.
func (c *cluster) userToken(user string) string {
	tok, _, err := identity.Mint([]byte(c.secret), user, time.Hour)
	require.NoError(c.t, err)
	return tok
}

// do sends a request to a process; body may be nil, a string or any JSON value.
func (c *cluster) do(p *proc, method, path, token string, body any) (int, map[string]any) {
	c.t.Helper()
	status, b, err := c.tryDo(p, method, path, token, body)
	require.NoError(c.t, err)
	var m map[string]any
	if len(b) > 0 {
		require.NoError(c.t, json.Unmarshal(b, &m), "%s %s: %s", method, path, b)
	}
	return status, m
}

// tryDo is do for goroutines other than the test's: it returns the error.
func (c *cluster) tryDo(p *proc, method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, p.url()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// createSale creates a sale through p; fields override the defaults.
func (c *cluster) createSale(p *proc, fields map[string]any) string {
	c.t.Helper()
	body := map[string]any{"id": "s-" + testenv.RandomID(), "name": "Multinode", "price_cents": 100,
		"currency": "EUR", "stock": 100_000, "max_active": 100_000}
	for k, v := range fields {
		body[k] = v
	}
	status, m := c.do(p, "POST", "/api/v1/admin/sales", c.admin, body)
	require.Equal(c.t, http.StatusCreated, status, "create: %v", m)
	return m["id"].(string)
}

// patch changes a sale through p.
func (c *cluster) patch(p *proc, saleID string, body map[string]any) {
	c.t.Helper()
	status, m := c.do(p, "PATCH", "/api/v1/admin/sales/"+saleID, c.admin, body)
	require.Equal(c.t, http.StatusOK, status, "patch: %v", m)
}

// join joins user through p and returns the answer.
func (c *cluster) join(p *proc, saleID, user string) (map[string]any, error) {
	status, b, err := c.tryDo(p, "POST", "/api/v1/sales/"+saleID+"/join", c.userToken(user), nil)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("join %s: %d %s", user, status, b)
	}
	return m, nil
}

// redisMS is Redis's clock in ms: the clock of the scripts and stream ids.
func (c *cluster) redisMS() int64 {
	tm, err := c.rdb.Time(context.Background()).Result()
	require.NoError(c.t, err)
	return tm.UnixMilli()
}

// stat reads a counter of the sale's stats hash (0 when missing).
func (c *cluster) stat(saleID, field string) int64 {
	v, err := c.rdb.HGet(context.Background(), c.ks.Sale(saleID).Stats, field).Int64()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	require.NoError(c.t, err)
	return v
}

// admission is one "adm" entry of a sale's event stream.
type admission struct {
	ms    int64 // the stream id's time: Redis's clock when the admit step ran
	user  string
	jti   string
	fence string // the fencing token of the lease it was made under
}

// admissions reads every admission in the sale's event stream, in order.
func (c *cluster) admissions(saleID string) []admission {
	msgs, err := c.rdb.XRange(context.Background(), c.ks.Sale(saleID).Ev, "-", "+").Result()
	require.NoError(c.t, err)
	var out []admission
	for _, m := range msgs {
		if m.Values["t"] != "adm" {
			continue
		}
		ms, err := strconv.ParseInt(m.ID[:strings.IndexByte(m.ID, '-')], 10, 64)
		require.NoError(c.t, err)
		d, _ := m.Values["d"].(string)
		u, _ := m.Values["u"].(string)
		f, _ := m.Values["f"].(string)
		jti, _, _ := strings.Cut(d, "|")
		out = append(out, admission{ms: ms, user: u, jti: jti, fence: f})
	}
	return out
}

// fenceOf is the fencing token of a lease value "holder|fence".
func fenceOf(t testing.TB, lease string) int64 {
	t.Helper()
	i := strings.LastIndexByte(lease, '|')
	require.Positive(t, i, "lease %q", lease)
	n, err := strconv.ParseInt(lease[i+1:], 10, 64)
	require.NoError(t, err)
	return n
}

// poll calls cond every 10 ms until it is true, failing the test when
// within passes first.
func poll(t testing.TB, within time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, fmt.Sprintf(msg, args...))
		}
		<-tick.C
	}
}

// proc is one flashsale process. It is its own stdout and stderr: it keeps
// the JSON log lines, and notes the address and the leases it logs.
type proc struct {
	name    string
	cmd     *exec.Cmd
	serving chan struct{}

	mu      sync.Mutex
	partial []byte
	lines   []string
	addr    string
	leases  map[string]string // sale → last lease value it logged as leading
	killed  bool
	waited  bool
}

// Write takes the process's output (exec copies it from a pipe).
func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		p.lines = append(p.lines, line)
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		switch m["msg"] {
		case "serving":
			if p.addr == "" {
				p.addr, _ = m["addr"].(string)
				close(p.serving)
			}
		case "admitter: leading":
			s, _ := m["sale"].(string)
			l, _ := m["lease"].(string)
			if p.leases == nil {
				p.leases = map[string]string{}
			}
			p.leases[s] = l
		}
	}
	return len(b), nil
}

func (p *proc) awaitServing(t testing.TB) {
	t.Helper()
	select {
	case <-p.serving:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not log \"serving\" within 30 s:\n%s", p.name, p.tail(40))
	}
}

func (p *proc) url() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return "http://" + p.addr
}

func (p *proc) wsURL(saleID string) string {
	return "ws" + strings.TrimPrefix(p.url(), "http") + "/api/v1/sales/" + saleID + "/ws"
}

func (p *proc) leaseOf(saleID string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leases[saleID]
}

func (p *proc) isKilled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.killed
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

// kill sends SIGKILL (no resign, no goodbye) and waits for the process to
// be gone; safe twice.
func (p *proc) kill() {
	p.mu.Lock()
	p.killed = true
	if p.waited {
		p.mu.Unlock()
		return
	}
	p.waited = true
	p.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// shopper is one waiting user with a WebSocket, reconnecting to a living
// node when its node dies (as a browser behind a load balancer would). It
// keeps every frame it reads.
type shopper struct {
	user  string
	qt    string // queue token
	place int64  // position when it joined (its order in a paused queue)

	mu      sync.Mutex
	frames  []frame
	conns   int // sockets opened
	final   int // the close code that ended it (4410), or 0
	ws      *websocket.Conn
	stopped bool
	done    chan struct{}
}

type frame struct {
	at   time.Time
	node string
	m    map[string]any
}

// connect runs the shopper's socket in the background: first on node, then
// on any living node of c after a drop, until stop or a final close code.
func (s *shopper) connect(c *cluster, saleID string, node *proc) {
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		p := node
		for attempt := 0; ; attempt++ {
			code := s.run(p, saleID)
			s.mu.Lock()
			stop := s.stopped || code == 4410
			if code == 4410 {
				s.final = code
			}
			s.mu.Unlock()
			if stop {
				return
			}
			alive := c.alive()
			if len(alive) == 0 || attempt > 100 {
				return
			}
			p = alive[attempt%len(alive)]
		}
	}()
}

// run holds one socket until it ends; it answers the close code (0 for
// none, e.g. the node died).
func (s *shopper) run(p *proc, saleID string) int {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	ws, resp, err := d.Dial(p.wsURL(saleID)+"?qt="+s.qt, nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		ws.Close()
		return 0
	}
	s.ws = ws
	s.conns++
	s.mu.Unlock()
	defer ws.Close()
	for {
		_, b, err := ws.ReadMessage()
		at := time.Now()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return 0
		}
		var m map[string]any
		if json.Unmarshal(b, &m) != nil {
			m = map[string]any{"type": "unparsable", "raw": string(b)}
		}
		s.mu.Lock()
		s.frames = append(s.frames, frame{at: at, node: p.name, m: m})
		s.mu.Unlock()
	}
}

// stop closes the socket and waits for the shopper's goroutine.
func (s *shopper) stop() {
	s.mu.Lock()
	s.stopped = true
	if s.ws != nil {
		s.ws.Close()
	}
	s.mu.Unlock()
	if s.done != nil {
		<-s.done
	}
}

// find returns the first frame of a type at or after index from.
func (s *shopper) find(typ string, from int) (frame, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames[min(from, len(s.frames)):] {
		if f.m["type"] == typ {
			return f, true
		}
	}
	return frame{}, false
}

func (s *shopper) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.frames)
}

func (s *shopper) finalCode() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.final
}

// joinAll joins users through the processes in turn (user i on
// procs[i%len]), a few at a time, and returns them with their queue tokens.
func (c *cluster) joinAll(saleID string, users []string, procs []*proc) []*shopper {
	c.t.Helper()
	out := make([]*shopper, len(users))
	errs := make([]error, len(users))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				m, err := c.join(procs[i%len(procs)], saleID, users[i])
				if err != nil {
					errs[i] = err
					continue
				}
				qt, _ := m["queue_token"].(string)
				pos, _ := m["position"].(float64)
				out[i] = &shopper{user: users[i], qt: qt, place: int64(pos)}
			}
		})
	}
	for i := range users {
		next <- i
	}
	close(next)
	wg.Wait()
	require.NoError(c.t, errors.Join(errs...))
	return out
}
