package main

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
	"github.com/flashsale/flashsale/testenv"
)

func TestServeNamesEveryMissingFlag(t *testing.T) {
	var out, errb bytes.Buffer
	t.Setenv("FLASHSALE_ADMIN_TOKEN", "")
	err := run([]string{"serve", "--listen", "127.0.0.1:0"}, &out, &errb)
	require.Error(t, err)
	for _, flag := range []string{"--identity-secret", "--admin-token", "--ticket-key"} {
		require.Contains(t, err.Error(), flag)
	}
}

func TestEnvironmentFillsFlags(t *testing.T) {
	// FLASHSALE_* fill what the flags do not give; flags win.
	t.Setenv("FLASHSALE_IDENTITY_SECRET", "s")
	t.Setenv("FLASHSALE_ADMIN_TOKEN", "a")
	t.Setenv("FLASHSALE_ROLES", "nonsense")
	var out, errb bytes.Buffer
	err := run([]string{"serve", "--ticket-key", "/nonexistent.pem"}, &out, &errb)
	require.Error(t, err)
	require.Contains(t, err.Error(), `unknown role "nonsense"`)
	require.NotContains(t, err.Error(), "--admin-token")
	err = run([]string{"serve", "--ticket-key", "/nonexistent.pem", "--roles", "checkout,bogus"}, &out, &errb)
	require.Contains(t, err.Error(), `unknown role "bogus"`)
	require.NotContains(t, err.Error(), "nonsense")
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	require.NoError(t, run([]string{"version"}, &out, &errb))
	require.Contains(t, out.String(), "flashsale")
	require.Error(t, run([]string{"frobnicate"}, &out, &errb))
	require.Contains(t, errb.String(), "Usage:")
}

func TestTokenUsesTheDevSecret(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "identity-secret"), []byte("dev-secret\n"), 0o600))
	var out, errb bytes.Buffer
	require.NoError(t, run([]string{"token", "--user", "alice", "--data-dir", dir}, &out, &errb))
	v, err := identity.New(t.Context(), identity.Config{Secret: []byte("dev-secret")})
	require.NoError(t, err)
	user, err := v.Verify(t.Context(), strings.TrimSpace(out.String()))
	require.NoError(t, err)
	require.Equal(t, "alice", user)
	require.Error(t, run([]string{"token"}, &out, &errb))
}

// TestGracefulShutdown runs the real binary, holds a WebSocket, sends
// SIGTERM and expects the socket closed with "going away" and exit 0.
func TestGracefulShutdown(t *testing.T) {
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, _ := testenv.KeyFile(t)
	p := startServe(t, "--listen", "127.0.0.1:0", "--mysql-dsn", dsn,
		"--redis-url", testenv.RedisURL(), "--redis-key-prefix", ks.Prefix, "--admin-token", "adm",
		"--identity-secret", "sec", "--ticket-key", keyPath)
	addr := p.addr
	base := "http://" + addr

	req, _ := http.NewRequest("POST", base+"/api/v1/admin/sales", strings.NewReader(
		`{"id":"shut","name":"S","price_cents":1,"currency":"EUR","stock":5,"admission_rate":0.001}`))
	req.Header.Set("Authorization", "Bearer adm")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	tok, _, err := identity.Mint([]byte("sec"), "alice", time.Hour)
	require.NoError(t, err)
	req, _ = http.NewRequest("POST", base+"/api/v1/sales/shut/join", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	h := http.Header{"Authorization": {"Bearer " + tok}}
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/api/v1/sales/shut/ws", h)
	require.NoError(t, err)
	defer ws.Close()
	var first map[string]any
	require.NoError(t, ws.ReadJSON(&first))
	require.Equal(t, "position", first["type"])

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(20*time.Second)))
	for {
		_, _, err = ws.ReadMessage()
		if err != nil {
			break
		}
	}
	require.True(t, websocket.IsCloseError(err, websocket.CloseGoingAway), "close: %v", err)
	p.wait(t)
}

// TestReconcileCommand: `flashsale reconcile` prints each difference and
// exits 1 (an error from run) while they remain; --repair fixes them and
// prints "consistent".
func TestReconcileCommand(t *testing.T) {
	s := testenv.Start(t)
	saleID := s.CreateSale(t, map[string]any{"stock": 5})["id"].(string)
	r := s.Do(t, "POST", "/api/v1/sales/"+saleID+"/checkout", s.Ticket(saleID, "alice", time.Minute), nil)
	require.Equal(t, http.StatusCreated, r.Status, "%s", r.Body)
	orderID := r.JSON(t)["id"].(string)
	k := s.Keys.Sale(saleID)
	args := []string{"reconcile", "--sale", saleID, "--redis-url", testenv.RedisURL(),
		"--redis-key-prefix", s.Keys.Prefix, "--mysql-dsn", s.DSN}

	var out, errb bytes.Buffer
	require.NoError(t, run(args, &out, &errb), "stderr: %s", errb.String())
	require.Equal(t, "consistent\n", out.String())

	require.NoError(t, s.Redis.HDel(t.Context(), k.Buyers, "alice").Err())
	out.Reset()
	err := run(args, &out, &errb)
	require.ErrorIs(t, err, errDifferences)
	require.Equal(t, "buyer: user alice: Redis has none, MySQL has live order "+orderID+" (paid): restore\n1 difference\n", out.String())
	require.Empty(t, s.Redis.HGet(t.Context(), k.Buyers, "alice").Val(), "a dry run changes nothing")

	out.Reset()
	require.NoError(t, run(append(args, "--repair"), &out, &errb), "stdout: %s", out.String())
	require.Equal(t, "buyer: user alice: Redis has none, MySQL has live order "+orderID+" (paid): restore (repaired)\nconsistent\n", out.String())
	require.Equal(t, orderID, s.Redis.HGet(t.Context(), k.Buyers, "alice").Val())

	out.Reset()
	require.NoError(t, run(args, &out, &errb))
	require.Equal(t, "consistent\n", out.String())

	err = run([]string{"reconcile", "--sale", "no-such-sale", "--redis-url", testenv.RedisURL(),
		"--redis-key-prefix", s.Keys.Prefix, "--mysql-dsn", s.DSN}, &out, &errb)
	require.ErrorContains(t, err, "no such sale")
	require.ErrorContains(t, run([]string{"reconcile"}, &out, &errb), "--sale is required")
}
