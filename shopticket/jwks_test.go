package shopticket_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// TestKeyRotation rotates the ticket key as the operator does: the node
// runs with the key file [A]; it restarts with [B, A] (B signs, A still
// verifies). Tickets of A still pass with no fetch; the first ticket of B
// makes the middleware fetch the JWKS once, and B's tickets pass from then
// on, real admissions included.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	rdb, ks := testenv.Redis(t)
	dsn, db := testenv.MySQL(t)
	pathA, keysA := testenv.KeyFile(t)
	pathB, keysB := testenv.KeyFile(t)
	pemA, err := os.ReadFile(pathA)
	require.NoError(t, err)
	pemB, err := os.ReadFile(pathB)
	require.NoError(t, err)
	rotated := append(append([]byte{}, pemB...), pemA...) // the new key first: it signs
	pathBA := filepath.Join(t.TempDir(), "ticket.pem")
	require.NoError(t, os.WriteFile(pathBA, rotated, 0o600))
	keysBA, err := ticket.ParseKeySet(rotated)
	require.NoError(t, err)

	before := testenv.StartOn(t, rdb, ks, dsn, db, pathA, keysA)
	saleID := before.CreateSale(t, map[string]any{"stock": 5, "admission_rate": 20})["id"].(string)
	front := newJWKSFront(t, before.URL)
	var logs bytes.Buffer
	var logMu sync.Mutex
	clk := newClock()
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID, RefreshEvery: time.Hour,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{&logMu, &logs}, nil))}, clk.Now)

	oldTicket := before.Ticket(saleID, "alice", 10*time.Minute)
	require.Equal(t, keysA.Kid, sh.get(t, oldTicket, "").Claims(t).KeyID)
	require.EqualValues(t, 1, front.fetches.Load())
	before.Stop()

	after := testenv.StartOn(t, rdb, ks, dsn, db, pathBA, keysBA, func(c *node.Config) {
		c.IdentitySecret = before.Config.IdentitySecret
	})
	front.upstream.Store(&after.URL) // the load balancer now reaches the new node

	require.Equal(t, keysA.Kid, sh.get(t, oldTicket, "").Claims(t).KeyID, "the old ticket still passes")
	require.EqualValues(t, 1, front.fetches.Load(), "from the cache")

	newTicket := after.Ticket(saleID, "bob", 10*time.Minute)
	require.Equal(t, keysB.Kid, kidOf(t, newTicket))
	require.Equal(t, keysB.Kid, sh.get(t, newTicket, "").Claims(t).KeyID, "the new key is fetched")
	require.EqualValues(t, 2, front.fetches.Load(), "one fetch for the new kid")
	for range 5 {
		sh.get(t, after.Ticket(saleID, "carol", time.Minute), "").Claims(t)
		sh.get(t, oldTicket, "").Claims(t)
	}
	require.EqualValues(t, 2, front.fetches.Load(), "no more fetches: both kids are cached")

	// A shopper admitted after the rotation holds a ticket of B.
	user := "dave-" + testenv.RandomID()
	join := after.Do(t, "POST", "/api/v1/sales/"+saleID+"/join", after.UserToken(t, user), nil)
	require.Equal(t, http.StatusOK, join.Status, "%s", join.Body)
	qt := join.JSON(t)["queue_token"].(string)
	var tok string
	testenv.Eventually(t, 20*time.Second, func() bool {
		tok, _ = after.Do(t, "GET", "/api/v1/sales/"+saleID+"/status", qt, nil).JSON(t)["ticket"].(string)
		return tok != ""
	}, "admitted")
	c := sh.get(t, "", tok).Claims(t)
	require.Equal(t, user, c.User)
	require.Equal(t, keysB.Kid, c.KeyID)
	require.EqualValues(t, 2, front.fetches.Load())

	logMu.Lock()
	defer logMu.Unlock()
	require.Contains(t, logs.String(), keysB.Kid, "the new kids are logged")
}

// TestJWKSDownKeepsKeys: once the keys are known, a JWKS that is down,
// stalls or answers garbage changes nothing for tickets of those keys; a
// ticket of a key not yet known gets 503 with Retry-After (it may be
// good), and passes once the JWKS answers again.
func TestJWKSDownKeepsKeys(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "s-" + testenv.RandomID()
	front := newJWKSFront(t, s.URL)
	clk := newClock()
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID,
		HTTPClient: &http.Client{Timeout: 300 * time.Millisecond}, RefreshEvery: 20 * time.Millisecond}, clk.Now)
	good := s.Ticket(saleID, "alice", 10*time.Minute)
	sh.get(t, good, "").Claims(t)

	for _, mode := range []int32{frontDown, frontStall, frontHuge} {
		front.mode.Store(mode)
		n := front.fetches.Load()
		// The periodic refresh fails a few times meanwhile.
		require.Eventually(t, func() bool { return front.fetches.Load() >= n+3 }, 10*time.Second, 10*time.Millisecond,
			"mode %d: the refresh goes on", mode)
		require.Equal(t, "alice", sh.get(t, good, "").Claims(t).User, "mode %d: the cached key still verifies", mode)
	}
	front.mode.Store(frontDown)

	// A node restarted with a key the shop has not seen, while the JWKS
	// is still unreachable: its tickets cannot be judged yet.
	rdb, ks := s.Redis, s.Keys
	path2, keys2 := testenv.KeyFile(t)
	s.Stop()
	s2 := testenv.StartOn(t, rdb, ks, s.DSN, s.DB, path2, keys2)
	unseen := s2.Ticket(saleID, "bob", 10*time.Minute)
	clk.Add(time.Minute) // an unknown kid may ask for a fetch
	a := sh.get(t, unseen, "")
	require.Equal(t, http.StatusServiceUnavailable, a.Status, "%s", a.Body)
	require.Equal(t, "unavailable", a.Code(t))
	require.LessOrEqual(t, retryAfter(t, a), 60)

	// The JWKS answers again (with the new node behind it).
	front.upstream.Store(&s2.URL)
	front.mode.Store(frontUp)
	require.Eventually(t, func() bool { return sh.get(t, unseen, "").Status == http.StatusOK }, 10*time.Second, 20*time.Millisecond,
		"the periodic refresh learns the new key")
	// The old node's key left the JWKS (the new file does not keep it).
	a = sh.get(t, good, "")
	require.Equal(t, http.StatusUnauthorized, a.Status, "%s", a.Body)
	require.Equal(t, "ticket_invalid", a.Code(t))
}

// TestJWKSDownAtStart: a shop that starts while flashsale is unreachable
// answers 503 (not 401: the tickets may be good) and serves tickets once
// the JWKS answers, without a restart.
func TestJWKSDownAtStart(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "s-" + testenv.RandomID()
	front := newJWKSFront(t, s.URL)
	front.mode.Store(frontDown)
	clk := newClock()
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID, RefreshEvery: time.Hour}, clk.Now)
	good := s.Ticket(saleID, "alice", 10*time.Minute)
	a := sh.get(t, good, "")
	require.Equal(t, http.StatusServiceUnavailable, a.Status, "%s", a.Body)
	require.Equal(t, "unavailable", a.Code(t))
	require.GreaterOrEqual(t, retryAfter(t, a), 1)

	// Retry-After is the time until the ticket's kid may ask for a fetch.
	// (With no key known the refresh also retries every UnknownKidEvery,
	// on real timers: not within this test.)
	clk.Add(time.Minute)
	a = sh.get(t, good, "")
	require.Equal(t, http.StatusServiceUnavailable, a.Status, "%s", a.Body)
	require.Equal(t, 60, retryAfter(t, a))
	clk.Add(45 * time.Second)
	a = sh.get(t, good, "")
	require.Equal(t, http.StatusServiceUnavailable, a.Status, "%s", a.Body)
	require.Equal(t, 15, retryAfter(t, a))
	n := front.fetches.Load()

	front.mode.Store(frontUp)
	require.Equal(t, http.StatusServiceUnavailable, sh.get(t, good, "").Status, "no fetch before its time")
	require.Equal(t, n, front.fetches.Load())
	clk.Add(15 * time.Second)
	require.Equal(t, "alice", sh.get(t, good, "").Claims(t).User, "served once the JWKS answers, no restart")
}

// TestUnknownKidFlood: hundreds of tickets with kids the JWKS does not
// have, at once, fetch it once; no more within the minute; one more after
// it. Every one of them is refused 401.
func TestUnknownKidFlood(t *testing.T) {
	t.Parallel()
	s := testenv.Start(t)
	saleID := "s-" + testenv.RandomID()
	front := newJWKSFront(t, s.URL)
	clk := newClock()
	sh := newShop(t, shopticket.Config{JWKSURL: front.URL(), Sale: saleID, RefreshEvery: time.Hour}, clk.Now)
	sh.get(t, s.Ticket(saleID, "alice", time.Minute), "").Claims(t)
	require.EqualValues(t, 1, front.fetches.Load())

	forged := make([]string, 200)
	for i := range forged {
		forged[i] = strangerTicket(t, saleID, "mallory")
	}
	flood := func() {
		var wg sync.WaitGroup
		errs := make([]error, len(forged))
		for i, tok := range forged {
			wg.Go(func() { _, errs[i] = sh.V.Verify(t.Context(), tok) })
		}
		wg.Wait()
		for _, err := range errs {
			require.ErrorIs(t, err, shopticket.ErrInvalid)
		}
	}
	flood()
	require.EqualValues(t, 2, front.fetches.Load(), "one fetch for the whole flood")
	clk.Add(59 * time.Second)
	flood()
	a := sh.get(t, forged[0], "")
	require.Equal(t, "ticket_invalid", a.Code(t))
	require.EqualValues(t, 2, front.fetches.Load(), "none within the minute")
	clk.Add(time.Second)
	flood()
	require.EqualValues(t, 3, front.fetches.Load(), "one more after it")
	// The good keys were never in doubt.
	sh.get(t, s.Ticket(saleID, "alice", 10*time.Minute), "").Claims(t)
}

// TestJWKSBounds: the JWKS parser keeps only Ed25519 signing keys with a
// kid, and refuses a set that is too large or has none.
func TestJWKSBounds(t *testing.T) {
	_, keys := testenv.KeyFile(t)
	got, err := shopticket.ParseJWKS(bytes.NewReader(keys.JWKS()))
	require.NoError(t, err, "flashsale's own JWKS")
	require.Contains(t, got, keys.Kid)

	mixed := `{"keys":[
		{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"},
		{"kty":"OKP","crv":"X25519","kid":"x","x":"` + strings.Repeat("A", 43) + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"enc","use":"enc","x":"` + strings.Repeat("A", 43) + `"},
		{"kty":"OKP","crv":"Ed25519","x":"` + strings.Repeat("A", 43) + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"short","x":"AAAA"},
		{"kty":"OKP","crv":"Ed25519","kid":"ok","alg":"EdDSA","use":"sig","x":"` + strings.Repeat("A", 43) + `"},
		{"kty":"OKP","crv":"Ed25519","kid":"ok","x":"` + strings.Repeat("B", 43) + `"}]}`
	got, err = shopticket.ParseJWKS(strings.NewReader(mixed))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, byte(0), got["ok"][0], "of two keys with one kid, the first counts")

	for name, body := range map[string]string{
		"not JSON":   "<html>",
		"no keys":    `{"keys":[]}`,
		"only RSA":   `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`,
		"too many":   `{"keys":[` + strings.TrimSuffix(strings.Repeat(`{"kty":"OKP"},`, 101), ",") + `]}`,
		"over bound": `{"keys":[],"pad":"` + strings.Repeat("x", shopticket.MaxJWKSBytes) + `"}`,
	} {
		_, err := shopticket.ParseJWKS(strings.NewReader(body))
		require.Error(t, err, name)
	}
}

// lockedWriter lets a test read what a logger writes from other goroutines.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
