// Package faults runs private store servers for fault tests: a redis-server
// or a mariadbd of the test's own, on a free port and a temporary
// directory, that a test can stop, pause (SIGSTOP), resume (SIGCONT), kill
// (SIGKILL) and restart on the same port and data. Every process is killed
// and waited for, and its directory removed, when the test ends.
package faults

import (
	"context"
	"database/sql"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// Process is one server process of a test.
type Process struct {
	t    testing.TB
	name string
	argv []string
	log  string // the process's stdout and stderr
	// ready waits until the server answers.
	ready func(ctx context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago
// (Redis refuses port 0, so the test picks one: listen, note, close).
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())
	return port
}

// shortTempDir is a temporary directory with a short path (a Unix socket's
// path must fit in 108 bytes; t.TempDir's can be longer), removed when the
// test ends.
func shortTempDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func newProcess(t testing.TB, name string, argv []string, log string, ready func(context.Context) error) *Process {
	p := &Process{t: t, name: name, argv: argv, log: log, ready: ready}
	// Registered after the directory's cleanup, so it runs before it.
	t.Cleanup(p.kill)
	return p
}

// Start starts the process and waits until it answers (at most 30 s).
func (p *Process) Start() {
	p.t.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.t.Fatalf("%s: already running", p.name)
	}
	out, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(p.t, err)
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		out.Close()
		p.t.Fatalf("%s: start %v: %v", p.name, p.argv, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		err := p.ready(ctx)
		if err == nil {
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("%s exited while starting: %v\n%s", p.name, err, b)
		case <-ctx.Done():
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("%s did not answer within 30 s: %v\n%s", p.name, err, b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the running process's id.
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *Process) signal(sig syscall.Signal) {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotNil(p.t, p.cmd, "%s is not running", p.name)
	require.NoError(p.t, p.cmd.Process.Signal(sig), "%s: %v", p.name, sig)
}

// Pause freezes the process (SIGSTOP): its port still accepts connections,
// nothing answers. The outage that looks like a hung server. SIGSTOP takes
// effect on each thread asynchronously; Pause returns once every thread is
// stopped (so a request sent after it cannot be served).
func (p *Process) Pause() {
	p.t.Helper()
	p.signal(syscall.SIGSTOP)
	awaitStopped(p.t, p.name, p.PID())
}

// Freeze pauses a process the test started some other way (e.g. a
// flashsale node): SIGSTOP, and it returns once every thread is stopped,
// as Pause. The caller owns the process and must Thaw or kill it.
func Freeze(t testing.TB, name string, proc *os.Process) {
	t.Helper()
	require.NoError(t, proc.Signal(syscall.SIGSTOP), "%s: SIGSTOP", name)
	awaitStopped(t, name, proc.Pid)
}

// Thaw resumes a process Freeze paused (SIGCONT).
func Thaw(t testing.TB, name string, proc *os.Process) {
	t.Helper()
	require.NoError(t, proc.Signal(syscall.SIGCONT), "%s: SIGCONT", name)
}

func awaitStopped(t testing.TB, name string, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !allStopped(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d): not every thread stopped within 5 s of SIGSTOP", name, pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// allStopped reports whether every thread of pid is stopped (state T in
// /proc/<pid>/task/<tid>/stat).
func allStopped(pid int) bool {
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + task.Name() + "/stat")
		if err != nil {
			return false
		}
		// pid (comm) state ...: comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
			return false
		}
	}
	return true
}

// Resume thaws a paused process (SIGCONT).
func (p *Process) Resume() { p.t.Helper(); p.signal(syscall.SIGCONT) }

// Kill kills the process (SIGKILL: no shutdown, as a crash) and waits for
// it to exit.
func (p *Process) Kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
}

// Stop asks the process to shut down (SIGTERM) and waits for it.
func (p *Process) Stop() {
	p.t.Helper()
	p.signal(syscall.SIGCONT) // a paused process cannot act on SIGTERM
	p.signal(syscall.SIGTERM)
	p.wait(30 * time.Second)
}

// Restart starts the process again, on the same port and data, after Kill
// or Stop.
func (p *Process) Restart() { p.t.Helper(); p.Start() }

func (p *Process) wait(within time.Duration) {
	p.t.Helper()
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
	case <-time.After(within):
		p.t.Fatalf("%s did not exit within %s", p.name, within)
	}
	p.mu.Lock()
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
}

// kill is the cleanup: whatever state it is in, the process ends and is
// waited for.
func (p *Process) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd, p.done = nil, nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL) // works on a stopped process too
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.t.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, cmd.Process.Pid)
	}
}

// Redis is a private redis-server, without persistence.
type Redis struct {
	*Process
	Addr string
	// URL is its redis:// URL, for --redis-url.
	URL string
	// Dir is its working directory (a SAVE writes dump.rdb there, which a
	// restart loads).
	Dir string
}

// StartRedis starts a redis-server of the test's own: a free port, no
// snapshots, no AOF, its directory a temporary one.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	// fault tests need a server of their own: skipped without one, or
	// failed in CI (FLASHSALE_REQUIRE_TOOLS=1)
	bin := testenv.RequireTool(t, "redis-server")
	dir := shortTempDir(t, "fsredis")
	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	r := &Redis{Addr: addr, URL: "redis://" + addr + "/0", Dir: dir}
	argv := []string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "no"}
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	r.Process = newProcess(t, "redis-server :"+strconv.Itoa(port), argv, filepath.Join(dir, "redis.log"),
		func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return client.Ping(cctx).Err()
		})
	r.Start()
	return r
}

// Client is a new client of this Redis, closed when the test ends.
func (r *Redis) Client(t testing.TB) *redis.Client {
	t.Helper()
	// Context deadlines bound its calls (go-redis ignores them by default),
	// so a call to a paused server ends when its context does.
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// Open is a handle on this MariaDB's database (none when ""), closed when
// the test ends.
func (m *MariaDB) Open(t testing.TB, database string) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(m.DSN)
	require.NoError(t, err)
	cfg.DBName = database
	db, err := sql.Open("mysql", cfg.FormatDSN())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// MariaDB is a private mariadbd. It runs without grant tables: any user
// connects with every privilege (a throwaway server on 127.0.0.1).
type MariaDB struct {
	*Process
	Addr string
	// DSN is a go-sql-driver DSN without a database, for testenv.MySQLOn.
	DSN string
}

// StartMariaDB initialises a data directory (mariadb-install-db) and starts
// a mariadbd of the test's own on it, on a free port. A restart after Kill
// recovers the same data, as a crashed server would.
func StartMariaDB(t testing.TB) *MariaDB {
	t.Helper()
	// skipped without MariaDB, or failed in CI (FLASHSALE_REQUIRE_TOOLS=1);
	// mariadbd is often in /usr/sbin, outside a user's PATH
	install := testenv.RequireTool(t, "mariadb-install-db")
	server := testenv.RequireTool(t, "mariadbd", "/usr/sbin/mariadbd")
	dir := shortTempDir(t, "fsdb")
	data := filepath.Join(dir, "data")
	args := []string{"--no-defaults", "--datadir=" + data}
	user := []string{}
	if os.Geteuid() == 0 {
		user = []string{"--user=root"} // mariadbd refuses to run as root otherwise
	}
	out, err := exec.Command(install, append(append(args, user...), "--auth-root-authentication-method=normal",
		"--skip-test-db")...).CombinedOutput()
	require.NoError(t, err, "mariadb-install-db: %s", out)

	port := FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := append([]string{server}, args...)
	argv = append(argv, user...)
	argv = append(argv, "--socket="+filepath.Join(dir, "sock"), "--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--skip-grant-tables", "--pid-file="+filepath.Join(dir, "pid"),
		"--skip-log-bin", "--innodb-buffer-pool-size=32M", "--max-connections=500")
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.ParseTime = "root", "tcp", addr, true
	cfg.Loc = time.UTC
	m := &MariaDB{Addr: addr, DSN: cfg.FormatDSN()}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	m.Process = newProcess(t, "mariadbd :"+strconv.Itoa(port), argv, filepath.Join(dir, "mariadbd.log"),
		func(ctx context.Context) error {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			return db.PingContext(cctx)
		})
	m.Start()
	return m
}
