package identity_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
)

// shop is the shop's identity provider as far as we see it: a real HTTP
// server of a JWKS whose keys, availability and speed a test changes.
type shop struct {
	srv     *httptest.Server
	fetches atomic.Int32
	mu      sync.Mutex
	keys    map[string]ed25519.PrivateKey // kid → key
	down    bool
	hold    chan struct{} // when set, each fetch waits for it to close
	held    chan struct{} // told of each fetch that waits
}

func newShop(t *testing.T, kids ...string) *shop {
	s := &shop{keys: map[string]ed25519.PrivateKey{}}
	s.set(kids...)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		down, hold, held := s.down, s.hold, s.held
		var keys []map[string]string
		for kid, k := range s.keys {
			keys = append(keys, map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": kid,
				"x": b64(k.Public().(ed25519.PublicKey))})
		}
		s.mu.Unlock()
		if hold != nil {
			held <- struct{}{}
			<-hold
		}
		if down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// key is the private key of a kid: made from the kid, so the same in every
// shop and test.
func key(kid string) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, kid)
	return ed25519.NewKeyFromSeed(seed)
}

// set makes the JWKS serve exactly the keys of kids.
func (s *shop) set(kids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.keys)
	for _, kid := range kids {
		s.keys[kid] = key(kid)
	}
}

func (s *shop) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// token is a user token of the kid's key.
func token(t testing.TB, kid, user string, now time.Time) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": user, "exp": now.Add(time.Hour).Unix()})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key(kid))
	require.NoError(t, err)
	return s
}

// clock is a test's clock: the time the verifier dates tokens and the
// fetches unknown kids ask for by.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// logBuf collects a verifier's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func verifier(t *testing.T, cfg identity.Config, c *clock) *identity.Verifier {
	t.Helper()
	v, err := identity.NewWithClock(context.Background(), cfg, c.now)
	require.NoError(t, err)
	t.Cleanup(v.Close)
	return v
}

// TestJWKSKeyRotation: the shop adds a key, then removes the old one. The
// new key is trusted once the JWKS is refreshed, and the removed one is
// refused after the next periodic refresh, without a restart.
func TestJWKSKeyRotation(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL, RefreshEvery: 50 * time.Millisecond}, c)
	ctx := context.Background()
	user, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.NoError(t, err)
	require.Equal(t, "alice", user)

	s.set("k1", "k2")
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, token(t, "k2", "bob", c.now()))
		return err == nil
	}, 20*time.Second, 10*time.Millisecond, "the new key is trusted after a refresh")

	s.set("k2")
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
		return err != nil
	}, 20*time.Second, 10*time.Millisecond, "the removed key is refused after a refresh")
	_, err = v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.ErrorIs(t, err, identity.ErrInvalid)
	user, err = v.Verify(ctx, token(t, "k2", "bob", c.now()))
	require.NoError(t, err)
	require.Equal(t, "bob", user)
}

// TestJWKSUnknownKidNewKey: a token of a key the shop has just added is
// trusted at once when the last fetch is older than UnknownKidEvery: its
// unknown kid asks for a fetch, and the token waits for it.
func TestJWKSUnknownKidNewKey(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL}, c)
	ctx := context.Background()
	_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.NoError(t, err)
	require.EqualValues(t, 1, s.fetches.Load())

	s.set("k1", "k2")
	c.advance(time.Minute)
	user, err := v.Verify(ctx, token(t, "k2", "bob", c.now()))
	require.NoError(t, err, "the new kid fetched the JWKS again")
	require.Equal(t, "bob", user)
	require.EqualValues(t, 2, s.fetches.Load())
}

// TestJWKSUnknownKidHammering: tokens with forged kids, many at once,
// cause at most one fetch of the shop's JWKS a minute.
func TestJWKSUnknownKidHammering(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL}, c)
	ctx := context.Background()
	_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.NoError(t, err)
	require.EqualValues(t, 1, s.fetches.Load(), "the start-up fetch")

	var forged [20][10]string
	for g := range forged {
		for i := range forged[g] {
			forged[g][i] = token(t, fmt.Sprintf("forged-%d-%d", g, i), "mallory", c.now())
		}
	}
	hammer := func() {
		var wg sync.WaitGroup
		var trusted atomic.Int32
		for g := range forged {
			wg.Go(func() {
				for _, tok := range forged[g] {
					if _, err := v.Verify(ctx, tok); !errors.Is(err, identity.ErrInvalid) {
						trusted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		require.Zero(t, trusted.Load(), "a forged kid was trusted")
	}
	hammer()
	require.EqualValues(t, 1, s.fetches.Load(), "no fetch within a minute of the last")
	c.advance(59 * time.Second)
	hammer()
	require.EqualValues(t, 1, s.fetches.Load(), "none at 59 s either")
	c.advance(time.Second)
	hammer()
	require.EqualValues(t, 2, s.fetches.Load(), "a minute on, 200 forged kids share one fetch")
	c.advance(30 * time.Second)
	hammer()
	require.EqualValues(t, 2, s.fetches.Load())
	c.advance(30 * time.Second)
	hammer()
	require.EqualValues(t, 3, s.fetches.Load())
}

// TestJWKSHungUpClient: a client that sends an unknown kid and hangs up
// while the fetch it asked for is under way neither cuts that fetch short
// nor spends the minute: the fetch ends on the verifier's own goroutine,
// and the next token of the new key is trusted without another fetch.
func TestJWKSHungUpClient(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL}, c)
	_, err := v.Verify(context.Background(), token(t, "k1", "alice", c.now()))
	require.NoError(t, err)

	hold, held := make(chan struct{}), make(chan struct{}, 1)
	s.mu.Lock()
	s.hold, s.held = hold, held
	s.mu.Unlock()
	s.set("k1", "k2")
	c.advance(time.Minute)

	ctx, hangUp := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, token(t, "k2", "bob", c.now()))
		errc <- err
	}()
	select {
	case <-held: // the fetch the kid asked for is at the shop
	case <-time.After(10 * time.Second):
		t.Fatal("the unknown kid asked for no fetch")
	}
	hangUp()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, identity.ErrInvalid, "the client that left is refused at once")
	case <-time.After(10 * time.Second):
		t.Fatal("Verify did not return when its client hung up")
	}
	s.mu.Lock()
	s.hold = nil
	s.mu.Unlock()
	close(hold) // the shop answers, after the client left

	user, err := v.Verify(context.Background(), token(t, "k2", "bob", c.now()))
	require.NoError(t, err, "the fetch finished without its client")
	require.Equal(t, "bob", user)
	require.EqualValues(t, 2, s.fetches.Load(), "one fetch: the one the client that left asked for")
}

// TestJWKSDownAtStartup: a JWKS that does not answer at start-up does not
// stop the verifier: a warning is logged, tokens are refused (at once, not
// hanging), and once the JWKS answers, tokens are trusted.
func TestJWKSDownAtStartup(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	s.setDown(true)
	var logs logBuf
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL, Logger: logs.logger(), UnknownKidEvery: 20 * time.Millisecond}, c)
	ctx := context.Background()
	_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.ErrorIs(t, err, identity.ErrInvalid)
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), "identity JWKS unreachable: user tokens are refused (401) until it answers")
	}, 20*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return s.fetches.Load() >= 3 }, 20*time.Second, 10*time.Millisecond,
		"retried while no key is known")
	_, err = v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.ErrorIs(t, err, identity.ErrInvalid)

	s.setDown(false)
	require.Eventually(t, func() bool {
		_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
		return err == nil
	}, 20*time.Second, 10*time.Millisecond, "trusted once the JWKS answers")
}

// TestJWKSUnreachableAddress: nothing listening at the JWKS address is the
// same as a JWKS that is down: New succeeds, tokens are refused.
func TestJWKSUnreachableAddress(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: srv.URL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, c)
	_, err := v.Verify(context.Background(), token(t, "k1", "alice", c.now()))
	require.ErrorIs(t, err, identity.ErrInvalid)
}

// TestJWKSDownLater: a JWKS that goes down after it answered keeps the
// last good keys trusted, refresh after refresh.
func TestJWKSDownLater(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	var logs logBuf
	c := newClock()
	v := verifier(t, identity.Config{JWKSURL: s.srv.URL, Logger: logs.logger(), RefreshEvery: 20 * time.Millisecond}, c)
	ctx := context.Background()
	_, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.NoError(t, err)

	s.setDown(true)
	n := s.fetches.Load()
	require.Eventually(t, func() bool { return s.fetches.Load() >= n+3 }, 20*time.Second, 10*time.Millisecond)
	require.Contains(t, logs.String(), "identity JWKS refresh failed; keeping the last good keys")
	user, err := v.Verify(ctx, token(t, "k1", "alice", c.now()))
	require.NoError(t, err, "the last good keys are kept")
	require.Equal(t, "alice", user)
}

// TestJWKSClose: Close stops the refresh (no fetch after it) and can be
// called again; a token then finds only the keys already known.
func TestJWKSClose(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	c := newClock()
	v, err := identity.NewWithClock(context.Background(), identity.Config{JWKSURL: s.srv.URL, RefreshEvery: 10 * time.Millisecond}, c.now)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return s.fetches.Load() >= 2 }, 20*time.Second, 10*time.Millisecond)
	v.Close()
	n := s.fetches.Load()
	v.Close()
	c.advance(time.Hour)
	_, err = v.Verify(context.Background(), token(t, "unknown", "bob", c.now()))
	require.ErrorIs(t, err, identity.ErrInvalid)
	_, err = v.Verify(context.Background(), token(t, "k1", "alice", c.now()))
	require.NoError(t, err)
	require.Equal(t, n, s.fetches.Load(), "no fetch after Close")
}

// TestJWKSContextEnds: the refresh also stops when New's context ends.
func TestJWKSContextEnds(t *testing.T) {
	t.Parallel()
	s := newShop(t, "k1")
	ctx, cancel := context.WithCancel(context.Background())
	v, err := identity.New(ctx, identity.Config{JWKSURL: s.srv.URL, RefreshEvery: 10 * time.Millisecond})
	require.NoError(t, err)
	defer v.Close()
	require.Eventually(t, func() bool { return s.fetches.Load() >= 2 }, 20*time.Second, 10*time.Millisecond)
	cancel()
	v.Close() // returns: the goroutine has ended
	n := s.fetches.Load()
	_, err = v.Verify(context.Background(), token(t, "k1", "alice", time.Now()))
	require.NoError(t, err)
	require.Equal(t, n, s.fetches.Load())
}

func TestParseJWKS(t *testing.T) {
	t.Parallel()
	ed := b64(key("o1").Public().(ed25519.PublicKey))
	odd2048 := b64(new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2047), big.NewInt(1)).Bytes())
	odd1024 := b64(new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 1023), big.NewInt(1)).Bytes())
	tests := []struct {
		name string
		doc  string
		kids []string // nil: an error
	}{
		{"ed25519", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"}]}`, []string{"o1"}},
		{"rsa", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd2048 + `","e":"AQAB","alg":"RS256","use":"sig"}]}`, []string{"r1"}},
		{"padded base64url", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd2048 + `","e":"AQAB=="}]}`, []string{"r1"}},
		{"rsa too short", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd1024 + `","e":"AQAB"}]}`, nil},
		{"rsa even exponent", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd2048 + `","e":"AQAA"}]}`, nil},
		{"rsa huge exponent", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd2048 + `","e":"AQAAAAAAAAAB"}]}`, nil},
		{"an encryption key", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `","use":"enc"}]}`, nil},
		{"another alg", `{"keys":[{"kty":"RSA","kid":"r1","n":"` + odd2048 + `","e":"AQAB","alg":"PS256"}]}`, nil},
		{"ec off the curve", `{"keys":[{"kty":"EC","crv":"P-256","kid":"e1","x":"` + b64(make([]byte, 32)) + `","y":"` + b64(make([]byte, 32)) + `"}]}`, nil},
		{"a symmetric key", `{"keys":[{"kty":"oct","kid":"h1","k":"c2VjcmV0"}]}`, nil},
		{"skips the bad, keeps the good", `{"keys":[{"kty":"oct","kid":"h1"},7,{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"}]}`, []string{"o1"}},
		{"first of one kid", `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"},{"kty":"RSA","kid":"o1","n":"` + odd2048 + `","e":"AQAB"}]}`, []string{"o1"}},
		{"not JSON", `<html>`, nil},
		{"no keys", `{}`, nil},
		{"keys not an array", `{"keys":{}}`, nil},
		{"too many keys", `{"keys":[` + strings.Repeat(`{},`, 100) + `{}]}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := identity.ParseJWKS(strings.NewReader(tt.doc))
			if tt.kids == nil {
				require.ErrorContains(t, err, "identity JWKS")
				return
			}
			require.NoError(t, err)
			var kids []string
			for kid := range keys {
				kids = append(kids, kid)
			}
			require.ElementsMatch(t, tt.kids, kids)
		})
	}
	// The first key of a kid counts: o1 is the Ed25519 key.
	keys, err := identity.ParseJWKS(strings.NewReader(tests[11].doc))
	require.NoError(t, err)
	require.IsType(t, ed25519.PublicKey{}, keys["o1"])

	// A document over 1 MiB is refused without reading it all.
	big := `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"}],"pad":"` + strings.Repeat("x", 1<<20) + `"}`
	_, err = identity.ParseJWKS(strings.NewReader(big))
	require.ErrorContains(t, err, "larger than")
}
