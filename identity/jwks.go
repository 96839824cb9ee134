package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fetchTimeout bounds one fetch of the JWKS, whatever the client: a JWKS
// that stalls must not hold the refresh (and the tokens waiting on it).
const fetchTimeout = 10 * time.Second

// keyCache holds the shop's JWKS keys. One goroutine of its own fetches
// them: at start, every RefreshEvery (so a key the shop removed stops being
// trusted), and when a token's kid is unknown, at most once per
// UnknownKidEvery. Requests never fetch: they only ask and wait, so a
// client that hangs up cannot cut a fetch short, and forged kids cannot
// make us hammer the JWKS. A failed fetch keeps the last good keys.
//
// We do not use MicahParks/keyfunc (v3.9.2, with jwkset v0.11.4), although
// it drops removed keys on refresh and can start with the JWKS down: its
// refresh for an unknown kid runs in the request, on the request's context,
// after taking the rate limiter's token, which is item 12's bug again (a
// client that hangs up cancels the fetch and spends the minute); other
// requests for the same new kid either wait on the limiter (up to its
// RateLimitWaitMax) or fail instead of sharing the fetch; that fetch and the
// periodic one can run at once, an older answer landing last; the body is
// read without a bound; and its goroutine cannot be waited for.
type keyCache struct {
	url      string
	client   *http.Client
	log      *slog.Logger
	every    time.Duration
	kidEvery time.Duration
	now      func() time.Time

	keys atomic.Pointer[map[string]crypto.PublicKey]

	mu        sync.Mutex
	round     chan struct{} // closed when the fetch asked for ends; nil when none is
	lastStart time.Time     // when the last fetch was asked for
	kick      chan struct{} // wakes the goroutine for a fetch a kid asked for

	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has ended
}

func newKeyCache(ctx context.Context, cfg Config, now func() time.Time) *keyCache {
	c := &keyCache{url: cfg.JWKSURL, client: cfg.Client, log: cfg.Logger,
		every: cfg.RefreshEvery, kidEvery: cfg.UnknownKidEvery, now: now,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	c.keys.Store(&map[string]crypto.PublicKey{})
	ctx, c.cancel = context.WithCancel(ctx)
	// The first fetch is asked for now, so tokens that come before it
	// ends wait for it rather than being refused.
	c.mu.Lock()
	c.begin()
	c.mu.Unlock()
	go c.run(ctx)
	return c
}

func (c *keyCache) close() {
	c.cancel()
	<-c.done
}

// begin asks for a fetch; c.mu is held.
func (c *keyCache) begin() chan struct{} {
	c.round = make(chan struct{})
	c.lastStart = c.now()
	return c.round
}

func (c *keyCache) run(ctx context.Context) {
	defer close(c.done)
	c.fetch(ctx)
	timer := time.NewTimer(c.next())
	defer timer.Stop()
	for {
		timed := false
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			timed = true
		case <-c.kick:
		}
		c.mu.Lock()
		if c.round == nil && timed {
			c.begin()
		}
		asked := c.round != nil // a kick whose fetch the timer's already did asks for nothing
		c.mu.Unlock()
		if asked {
			c.fetch(ctx)
		}
		if timed {
			timer.Reset(c.next())
		}
	}
}

// next is the wait before the periodic fetch: shorter while no key is
// known, so a JWKS that was down at start-up is used soon after it answers.
func (c *keyCache) next() time.Duration {
	if len(*c.keys.Load()) == 0 {
		return c.kidEvery
	}
	return c.every
}

// fetch fetches the JWKS for the round asked for, keeps the keys if it
// answered with usable ones, and ends the round.
func (c *keyCache) fetch(ctx context.Context) {
	keys, skipped, err := c.get(ctx)
	old := *c.keys.Load()
	c.mu.Lock()
	if err == nil {
		c.keys.Store(&keys)
	}
	close(c.round)
	c.round = nil
	c.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil: // shutting down
	case err != nil && len(old) == 0:
		c.log.Warn("identity JWKS unreachable: user tokens are refused (401) until it answers",
			"url", c.url, "err", err, "retry_in", c.kidEvery.String())
	case err != nil:
		c.log.Warn("identity JWKS refresh failed; keeping the last good keys",
			"url", c.url, "err", err, "kids", slices.Sorted(maps.Keys(old)), "retry_in", c.every.String())
	case !sameKids(old, keys):
		c.log.Info("identity JWKS keys", "url", c.url, "kids", slices.Sorted(maps.Keys(keys)))
		if len(skipped) > 0 {
			c.log.Warn("identity JWKS: keys skipped", "url", c.url, "skipped", skipped)
		}
	}
}

func sameKids(a, b map[string]crypto.PublicKey) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return true
}

func (c *keyCache) get(ctx context.Context) (map[string]crypto.PublicKey, []string, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("identity JWKS URL: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch identity JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("fetch identity JWKS: %s", resp.Status)
	}
	return parseJWKS(resp.Body)
}

// key finds a key by kid. An unknown kid asks for a fetch (unless one was
// asked for within UnknownKidEvery) and waits for the fetch in flight, if
// any, at most until ctx ends; the fetch goes on when the caller leaves.
func (c *keyCache) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	if k, ok := (*c.keys.Load())[kid]; ok {
		return k, nil
	}
	c.mu.Lock()
	wait := c.round
	if wait == nil && c.now().Sub(c.lastStart) >= c.kidEvery {
		select {
		case <-c.done: // closed: nothing fetches any more
		default:
			wait = c.begin()
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
	c.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-c.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("unknown kid %q (gave up waiting for the JWKS: %w)", kid, ctx.Err())
		}
		if k, ok := (*c.keys.Load())[kid]; ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

// Bounds of a JWKS document: the shop's, but read over the network.
const (
	maxJWKSBytes = 1 << 20
	maxJWKSKeys  = 100
)

// ParseJWKS reads a JSON Web Key Set of signing keys: RSA (2048 to 16384
// bits), EC P-256 and Ed25519. Keys of other kinds, for other uses or
// algorithms, or malformed, are skipped; a set with no usable key, of more
// than 100 keys, or over 1 MiB is an error. Of two keys with one kid, the
// first counts.
func ParseJWKS(r io.Reader) (map[string]crypto.PublicKey, error) {
	keys, _, err := parseJWKS(r)
	return keys, err
}

// parseJWKS is ParseJWKS that also says which keys it skipped and why.
func parseJWKS(r io.Reader) (map[string]crypto.PublicKey, []string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("identity JWKS: read: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, nil, fmt.Errorf("identity JWKS: larger than %d bytes", maxJWKSBytes)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, nil, fmt.Errorf("identity JWKS: not a JSON Web Key Set (an object with a \"keys\" array): %v", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, nil, fmt.Errorf("identity JWKS: %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	out := map[string]crypto.PublicKey{}
	var skipped []string
	for i, raw := range set.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d: not a JSON Web Key", i))
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			skipped = append(skipped, fmt.Sprintf("key %d (kid %q): %v", i, k.Kid, err))
			continue
		}
		if _, dup := out[k.Kid]; dup {
			skipped = append(skipped, fmt.Sprintf("key %d: kid %q again", i, k.Kid))
			continue
		}
		out[k.Kid] = pub
	}
	if len(out) == 0 {
		return nil, skipped, fmt.Errorf("identity JWKS: no usable key (RSA of 2048 to 16384 bits, EC P-256 or Ed25519, for signing); skipped: %s",
			strings.Join(skipped, "; "))
	}
	return out, skipped, nil
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// Bounds of an RSA key: under 2048 bits is breakable; over 16384 only
// makes each verification dear.
const (
	minRSABits = 2048
	maxRSABits = 16384
)

func (k *jwk) publicKey() (crypto.PublicKey, error) {
	if k.Use != "" && k.Use != "sig" {
		return nil, fmt.Errorf("use %q is not sig", k.Use)
	}
	switch k.Kty {
	case "RSA":
		if k.Alg != "" && k.Alg != "RS256" {
			return nil, fmt.Errorf("alg %q: only RS256 is accepted for RSA", k.Alg)
		}
		n, err1 := b64(k.N)
		e, err2 := b64(k.E)
		if err1 != nil || err2 != nil {
			return nil, errors.New("n and e must be base64url")
		}
		nn := new(big.Int).SetBytes(n)
		if bits := nn.BitLen(); bits < minRSABits || bits > maxRSABits || nn.Bit(0) == 0 {
			return nil, fmt.Errorf("an RSA modulus of %d bits (odd, %d to %d bits are accepted)", bits, minRSABits, maxRSABits)
		}
		ee := new(big.Int).SetBytes(e)
		if !ee.IsInt64() || ee.Int64() < 3 || ee.Int64() > 1<<31-1 || ee.Bit(0) == 0 {
			return nil, errors.New("the RSA exponent must be odd, from 3 to 2^31-1")
		}
		return &rsa.PublicKey{N: nn, E: int(ee.Int64())}, nil
	case "EC":
		if k.Alg != "" && k.Alg != "ES256" {
			return nil, fmt.Errorf("alg %q: only ES256 is accepted for EC", k.Alg)
		}
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("curve %q: only P-256 is accepted", k.Crv)
		}
		x, err1 := b64(k.X)
		y, err2 := b64(k.Y)
		if err1 != nil || err2 != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("x and y must be 32 bytes, base64url")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, errors.New("the point is not on P-256")
		}
		return pub, nil
	case "OKP":
		if k.Alg != "" && k.Alg != "EdDSA" && k.Alg != "Ed25519" {
			return nil, fmt.Errorf("alg %q: only EdDSA is accepted for OKP", k.Alg)
		}
		x, err := b64(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("only Ed25519 keys of 32 bytes, base64url, are accepted for OKP")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, fmt.Errorf("kty %q: RSA, EC and OKP are accepted", k.Kty)
}

// b64 decodes base64url, without padding as RFC 7518 says, or with it.
func b64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
