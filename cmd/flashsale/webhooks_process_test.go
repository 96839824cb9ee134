package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/webhooks"
)

// hangingReceiver is a shop's webhook endpoint (a real local server) whose
// first delivery never gets an answer, as if the shop hung; it accepts the
// rest, checking their signatures, and keeps their ids.
type hangingReceiver struct {
	srv      *httptest.Server
	inFlight chan string // the id of the delivery it holds
	release  chan struct{}

	mu  sync.Mutex
	ids []string
}

func newHangingReceiver(t *testing.T, secret string) *hangingReceiver {
	key, err := webhooks.Key(secret)
	require.NoError(t, err)
	r := &hangingReceiver{inFlight: make(chan string, 1), release: make(chan struct{})}
	var first sync.Once
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id := req.Header.Get("webhook-id")
		hang := false
		first.Do(func() { hang = true })
		if hang {
			r.inFlight <- id
			<-r.release
			return
		}
		var ts int64
		_ = json.Unmarshal([]byte(req.Header.Get("webhook-timestamp")), &ts)
		if req.Header.Get("webhook-signature") != webhooks.Sign(key, id, ts, body) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.mu.Lock()
		r.ids = append(r.ids, id)
		r.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(func() {
		close(r.release)
		r.srv.Close()
	})
	return r
}

func (r *hangingReceiver) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, x := range r.ids {
		if x == id {
			n++
		}
	}
	return n
}

// TestWebhookSurvivesSIGKILL: a node is SIGKILLed while it delivers an
// event (the receiver holds the request); another node delivers the same
// event once its lease runs out. Then `flashsale webhooks replay` makes it
// due again and it arrives a second time, with the same id.
func TestWebhookSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	secret := "whsec_c2VjcmV0LW9mLXRoZS1zaG9wLWZvci10ZXN0cw=="
	rcv := newHangingReceiver(t, secret)
	args := []string{"--dev", "--sample-sale=false", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--mysql-dsn", dsn,
		"--redis-url", testenv.RedisURL(), "--redis-key-prefix", ks.Prefix,
		"--webhook-url", rcv.srv.URL, "--webhook-secret", secret, "--webhook-timeout", "2s"}
	p := startServe(t, args...)
	admin, err := os.ReadFile(filepath.Join(dataDir, "admin-token"))
	require.NoError(t, err)
	call := func(method, path, body string) int {
		req, err := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Less(t, resp.StatusCode, 300, "%s %s: %s", method, path, b)
		return resp.StatusCode
	}
	call("POST", "/api/v1/admin/sales", `{"id":"wh-kill","name":"Kill","price_cents":100,"currency":"EUR","stock":5}`)
	call("PATCH", "/api/v1/admin/sales/wh-kill", `{"state":"closed"}`)

	var id string
	select {
	case id = <-rcv.inFlight:
	case <-time.After(20 * time.Second):
		t.Fatalf("no delivery began; log:\n%s", p.log)
	}
	require.NoError(t, p.cmd.Process.Kill())
	<-p.exited

	// another node takes the event over after its lease (2 s + 10 s)
	q := startServe(t, args...)
	testenv.Eventually(t, 40*time.Second, func() bool { return rcv.count(id) == 1 },
		"the event the killed node was delivering arrives from the other node; log:\n%s", q.log)

	r := runBinary(t, environ(), "webhooks", "replay", "--since", "10m", "--mysql-dsn", dsn)
	require.Equal(t, 0, r.code, "%s", r.stderr)
	require.Contains(t, r.stdout, "1 events written since")
	testenv.Eventually(t, 10*time.Second, func() bool { return rcv.count(id) == 2 }, "the replayed event arrives again")

	r = runBinary(t, environ(), "webhooks", "replay", "--since", "yesterday", "--mysql-dsn", dsn)
	require.Equal(t, 1, r.code)
	require.Contains(t, r.stderr, "--since")
	require.True(t, bytes.Contains([]byte(r.stderr), []byte("RFC 3339")), "%s", r.stderr)
	q.stop(t)
}
