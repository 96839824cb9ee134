package node_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// TestReadyzSaysUnavailableNotWhy: with Redis down /readyz is 503 and says
// "unavailable", never the dial error (it names internal hosts and ports to
// anyone); the log has the reason.
func TestReadyzSaysUnavailableNotWhy(t *testing.T) {
	t.Parallel()
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, _ := testenv.KeyFile(t)
	redisAddr := deadAddr(t)
	cfg := node.Config{Listen: "127.0.0.1:0", Roles: []string{node.RoleCheckout}, RedisURL: "redis://" + redisAddr + "/0",
		MySQLDSN: dsn, AdminToken: "adm", IdentitySecret: "sec", TicketKey: keyPath, TicketIssuer: "flashsale",
		KeyPrefix: ks.Prefix, DataDir: t.TempDir()}
	var logs testenv.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	addr, err := n.Listen()
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("the node did not stop within 30 s")
		}
	})

	resp, err := http.Get("http://" + addr.String() + "/readyz")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{"redis":"unavailable","mysql":"ok"}`, string(body))
	require.NotContains(t, string(body), redisAddr)
	testenv.Eventually(t, 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "not ready: Redis does not answer") && strings.Contains(logs.String(), redisAddr)
	}, "the log names the reason; log: %s", logs.String())
}

// TestReadyzWhenUp: both stores answer "ok".
func TestReadyzWhenUp(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	r := s.Do(t, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, `{"redis":"ok","mysql":"ok"}`, string(r.Body))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestMetricsListen: with --metrics-listen, /metrics is served there only
// and the public listener answers 404 for it; without, it stays on the
// public listener.
func TestMetricsListen(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t, func(c *node.Config) { c.MetricsListen = "127.0.0.1:0" })
	maddr := s.Node.MetricsAddr()
	require.NotNil(t, maddr)
	require.NotEqual(t, strings.TrimPrefix(s.URL, "http://"), maddr.String())
	// one request on the public side, so its latency histogram has a sample
	require.Equal(t, http.StatusOK, s.Do(t, "GET", "/healthz", "", nil).Status)

	code, body := get(t, "http://"+maddr.String()+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, name := range []string{"flashsale_joins_total", "flashsale_http_request_duration_seconds", "go_goroutines"} {
		require.Contains(t, body, name)
	}
	r := s.Do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusNotFound, r.Status, "%s", r.Body)
	require.Equal(t, "not_found", r.Code(t))
	code, body = get(t, "http://"+maddr.String()+"/readyz")
	require.Equal(t, http.StatusNotFound, code, "the metrics listener serves /metrics only: %s", body)

	plain := testenv.Start(t)
	require.Nil(t, plain.Node.MetricsAddr())
	require.Equal(t, http.StatusOK, plain.Do(t, "GET", "/metrics", "", nil).Status)
}

// TestMetricsListenBusy: an address in use stops the start naming the flag.
func TestMetricsListenBusy(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, _ := testenv.KeyFile(t)
	cfg := node.Config{Listen: "127.0.0.1:0", Roles: []string{node.RoleCheckout}, RedisURL: testenv.RedisURL(),
		MySQLDSN: dsn, AdminToken: "adm", IdentitySecret: "sec", TicketKey: keyPath, TicketIssuer: "flashsale",
		KeyPrefix: ks.Prefix, DataDir: t.TempDir(), MetricsListen: l.Addr().String()}
	n, err := node.New(t.Context(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	defer n.Close()
	_, err = n.Listen()
	require.ErrorContains(t, err, "--metrics-listen "+l.Addr().String())
}
