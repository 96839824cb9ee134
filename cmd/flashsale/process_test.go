package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
)

// testVersion is stamped into the binary the process tests run.
const testVersion = "v0.0.0-test"

var built struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// binary builds flashsale once for the package's tests, with the version
// stamped the way the Makefile and the Dockerfile stamp it.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "flashsale-bin-"); built.err != nil {
			return
		}
		built.path = filepath.Join(built.dir, "flashsale")
		cmd := exec.Command("go", "build", "-ldflags", "-X main.version="+testVersion, "-o", built.path, ".")
		out, err := cmd.CombinedOutput()
		if err != nil {
			built.err = errors.New("go build: " + err.Error() + "\n" + string(out))
		}
	})
	require.NoError(t, built.err)
	return built.path
}

// environ is the test's environment without FLASHSALE_* settings (a
// developer's own would change what the process does), plus extra.
func environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FLASHSALE_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// result is a finished process.
type result struct {
	code           int
	stdout, stderr string
}

// runBinary runs flashsale to the end (at most a minute).
func runBinary(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		require.NoError(t, err)
	}
	return result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
}

func TestVersionIsStamped(t *testing.T) {
	t.Parallel()
	r := runBinary(t, environ(), "version")
	require.Equal(t, 0, r.code)
	require.Equal(t, "flashsale "+testVersion+"\n", r.stdout)
}

// TestHelpExitsZero: -h and --help print the command's usage on stdout,
// with every flag, and exit 0.
func TestHelpExitsZero(t *testing.T) {
	t.Parallel()
	for _, command := range []string{"serve", "migrate", "token", "reconcile"} {
		for _, flag := range []string{"--help", "-h"} {
			r := runBinary(t, environ(), command, flag)
			require.Equal(t, 0, r.code, "%s %s: %s", command, flag, r.stderr)
			require.Contains(t, r.stdout, "Usage: flashsale "+command)
			require.Contains(t, r.stdout, "-redis-url")
			require.Empty(t, r.stderr)
		}
	}
	r := runBinary(t, environ(), "serve", "--help")
	for _, f := range []string{"-listen", "-trusted-proxies", "-metrics-listen", "-dev", "-shutdown-delay", "FLASHSALE_"} {
		require.Contains(t, r.stdout, f)
	}
	r = runBinary(t, environ(), "serve", "--no-such-flag")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "no-such-flag")
}

// TestBadEnvironmentStopsServe: a FLASHSALE_* value that does not parse
// stops serve at once, naming the variable; nothing is silently dropped.
func TestBadEnvironmentStopsServe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ kv, want string }{
		{"FLASHSALE_SHUTDOWN_DELAY=5", `FLASHSALE_SHUTDOWN_DELAY="5" is not a duration`},
		{"FLASHSALE_DEV=maybe", `FLASHSALE_DEV="maybe" is not a boolean`},
		{"FLASHSALE_TRUSTED_PROXIES=10.0.0/8", `FLASHSALE_TRUSTED_PROXIES="10.0.0/8"`},
		{"FLASHSALE_RECONCILE_PENDING_AFTER=15", `FLASHSALE_RECONCILE_PENDING_AFTER="15" is not a duration`},
	} {
		r := runBinary(t, environ(tc.kv), "serve")
		require.Equal(t, 1, r.code, "%s: %s", tc.kv, r.stderr)
		require.Contains(t, r.stderr, tc.want)
		require.NotContains(t, r.stderr, "serving")
	}
	r := runBinary(t, environ(), "serve", "--trusted-proxies", "10.0.0.0/8,nope")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "-trusted-proxies")
	require.Contains(t, r.stderr, `"nope" is not a CIDR or an address`)
}

// TestDevRefusesPublicListen: --dev on an address other hosts reach stops
// before anything is generated.
func TestDevRefusesPublicListen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		r := runBinary(t, environ(), "serve", "--dev", "--listen", listen, "--data-dir", dir)
		require.Equal(t, 1, r.code)
		require.Contains(t, r.stderr, "--listen "+listen+" with --dev")
		require.NoDirExists(t, dir)
	}
	r := runBinary(t, environ("FLASHSALE_DEV=1", "FLASHSALE_LISTEN=0.0.0.0:0", "FLASHSALE_DATA_DIR="+dir), "serve")
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "--listen 0.0.0.0:0 with --dev")
}

// logWriter keeps a process's JSON log and hands over the address of its
// "serving" line.
type logWriter struct {
	mu   sync.Mutex
	all  bytes.Buffer
	line []byte
	addr chan string
}

func newLogWriter() *logWriter { return &logWriter{addr: make(chan string, 1)} }

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.all.Write(p)
	w.line = append(w.line, p...)
	for {
		i := bytes.IndexByte(w.line, '\n')
		if i < 0 {
			break
		}
		var rec map[string]any
		if json.Unmarshal(w.line[:i], &rec) == nil && rec["msg"] == "serving" {
			if a, ok := rec["addr"].(string); ok {
				select {
				case w.addr <- a:
				default:
				}
			}
		}
		w.line = w.line[i+1:]
	}
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

// process is a running `flashsale serve`.
type process struct {
	cmd    *exec.Cmd
	addr   string
	log    *logWriter
	stdout *testenv.SyncBuffer
	exited chan struct{} // closed when it has exited; then cmd.ProcessState is set
}

// startServe runs `flashsale serve args...` and waits for it to say where
// it listens; it is killed at the test's end if still running.
func startServe(t *testing.T, args ...string) *process {
	t.Helper()
	p := &process{log: newLogWriter(), stdout: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(binary(t), append([]string{"serve"}, args...)...)
	p.cmd.Env = environ()
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.log
	require.NoError(t, p.cmd.Start())
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	select {
	case p.addr = <-p.log.addr:
	case <-p.exited:
		t.Fatalf("serve exited with %d before serving; log:\n%s", p.cmd.ProcessState.ExitCode(), p.log)
	case <-time.After(time.Minute):
		t.Fatalf("serve did not say where it listens within a minute; log:\n%s", p.log)
	}
	return p
}

// stop sends SIGTERM and requires a clean exit (0) within 30 s.
func (p *process) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	p.wait(t)
}

// wait requires the process to exit with 0 within 30 s.
func (p *process) wait(t *testing.T) {
	t.Helper()
	select {
	case <-p.exited:
		require.Equal(t, 0, p.cmd.ProcessState.ExitCode(), "exit status; log:\n%s", p.log)
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit within 30 s of SIGTERM; log:\n%s", p.log)
	}
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

// TestDevServeProcess: `flashsale serve --dev` starts as a process on a
// loopback port with its own data dir, database and key prefix, prints the
// demo banner, creates the sample sale, answers /healthz and /readyz, and
// stops with exit 0 on SIGTERM.
func TestDevServeProcess(t *testing.T) {
	t.Parallel()
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	p := startServe(t, "--dev", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--mysql-dsn", dsn,
		"--redis-url", testenv.RedisURL(), "--redis-key-prefix", ks.Prefix)
	base := "http://" + p.addr

	code, body := httpGet(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code, "%s", body)
	code, body = httpGet(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.JSONEq(t, `{"redis":"ok","mysql":"ok"}`, string(body))
	code, body = httpGet(t, base+"/api/v1/sales/"+sampleSaleID)
	require.Equal(t, http.StatusOK, code, "the sample sale: %s", body)

	admin, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	require.NoError(t, err, "--dev keeps its admin token in --data-dir")
	require.FileExists(t, filepath.Join(dataDir, "ticket-key.pem"))
	testenv.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(p.stdout.String(), "demo mode (--dev) on "+base)
	}, "the banner; stdout:\n%s", p.stdout.String())
	require.Contains(t, p.stdout.String(), "Admin token:       "+strings.TrimSpace(string(admin)))
	require.Contains(t, p.log.String(), `"version":"`+testVersion+`"`, "serve logs its version at start")

	p.stop(t)
	require.Contains(t, p.log.String(), `"msg":"stopped"`)
}

// TestMigrateProcess: `flashsale migrate` creates a database that is
// missing, applies the schema, and changes nothing on a second run.
func TestMigrateProcess(t *testing.T) {
	t.Parallel()
	server, err := mysql.ParseDSN(testenv.MySQLDSN())
	require.NoError(t, err)
	admin, err := sql.Open("mysql", server.FormatDSN())
	require.NoError(t, err)
	defer admin.Close()
	cfg := server.Clone()
	cfg.DBName = "fs_test_mig_" + testenv.RandomID()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+cfg.DBName+"`")
	})
	tables := func() int {
		var n int
		require.NoError(t, admin.QueryRowContext(t.Context(),
			"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ? AND table_name IN ('sales','orders','items')",
			cfg.DBName).Scan(&n))
		return n
	}
	require.Zero(t, tables(), "the database is missing before")

	r := runBinary(t, environ(), "migrate", "--mysql-dsn", cfg.FormatDSN())
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	require.Contains(t, r.stdout, "applied migrations [1 ")
	require.Equal(t, 3, tables())

	r = runBinary(t, environ("FLASHSALE_MYSQL_DSN="+cfg.FormatDSN()), "migrate")
	require.Equal(t, 0, r.code, "stderr: %s", r.stderr)
	require.Equal(t, "schema up to date\n", r.stdout)
	require.Equal(t, 3, tables())
}
