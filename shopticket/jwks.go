package shopticket

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of one JWKS fetch: flashsale's JWKS holds a few keys (the current
// one and those of recent rotations), so anything far larger is not it.
const (
	fetchTimeout = 10 * time.Second
	maxJWKSBytes = 256 << 10
	maxJWKSKeys  = 100
)

// keySet is what one fetch learnt: the keys of the last good answer, and
// whether the latest fetch failed (then the keys are older than it).
type keySet struct {
	keys   map[string]ed25519.PublicKey
	failed error // the latest fetch's error, nil when it answered
}

// keyCache holds the JWKS's Ed25519 keys. One goroutine of its own fetches
// them: at start, every refreshEvery (so a key removed from the JWKS stops
// being trusted), and when a ticket names a kid it does not know, at most
// once per kidEvery. Requests never fetch themselves: they ask and wait, so
// a client that hangs up cannot cut a fetch short, and forged kids cannot
// make us hammer the JWKS. A failed fetch keeps the last good keys.
type keyCache struct {
	url          string
	client       *http.Client
	log          *slog.Logger
	refreshEvery time.Duration
	kidEvery     time.Duration
	now          func() time.Time

	set atomic.Pointer[keySet]

	mu      sync.Mutex
	round   chan struct{} // closed when the fetch asked for ends; nil when none is asked for
	lastKid time.Time     // when a kid last asked for a fetch
	kick    chan struct{} // wakes the goroutine for a fetch a kid asked for

	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine has ended
}

func newKeyCache(cfg Config, now func() time.Time) *keyCache {
	c := &keyCache{url: cfg.JWKSURL, client: cfg.HTTPClient, log: cfg.Logger,
		refreshEvery: cfg.RefreshEvery, kidEvery: cfg.UnknownKidEvery, now: now,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	c.set.Store(&keySet{keys: map[string]ed25519.PublicKey{}})
	var ctx context.Context
	ctx, c.cancel = context.WithCancel(context.Background())
	// The first fetch is asked for before the goroutine starts, so tickets
	// that come before it ends wait for it instead of being refused.
	c.mu.Lock()
	c.round = make(chan struct{})
	c.mu.Unlock()
	go c.run(ctx)
	return c
}

// close stops the goroutine and waits for it; safe to call twice.
func (c *keyCache) close() {
	c.cancel()
	<-c.done
}

func (c *keyCache) run(ctx context.Context) {
	defer close(c.done)
	c.fetch(ctx)
	timer := time.NewTimer(c.next())
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			if c.round != nil { // a kid asked just before Close: let it go
				close(c.round)
				c.round = nil
			}
			c.mu.Unlock()
			return
		case <-timer.C:
			c.mu.Lock()
			if c.round == nil {
				c.round = make(chan struct{})
			}
			c.mu.Unlock()
			c.fetch(ctx)
			timer.Reset(c.next())
		case <-c.kick:
			c.mu.Lock()
			asked := c.round != nil // the timer's fetch may have served it already
			c.mu.Unlock()
			if asked {
				c.fetch(ctx)
			}
		}
	}
}

// next is the wait before the periodic fetch: shorter while no key is
// known, so a JWKS that was down at start-up is used soon after it answers.
func (c *keyCache) next() time.Duration {
	if len(c.set.Load().keys) == 0 {
		return c.kidEvery
	}
	return c.refreshEvery
}

// fetch fetches the JWKS for the round asked for, keeps the keys if it
// answered with usable ones, and ends the round.
func (c *keyCache) fetch(ctx context.Context) {
	keys, err := c.get(ctx)
	old := c.set.Load()
	next := &keySet{keys: keys}
	if err != nil {
		next = &keySet{keys: old.keys, failed: err}
	}
	c.mu.Lock()
	c.set.Store(next)
	if c.round != nil {
		close(c.round)
		c.round = nil
	}
	c.mu.Unlock()
	switch {
	case err != nil && ctx.Err() != nil: // closing
	case err != nil && len(old.keys) == 0:
		c.log.Warn("flashsale ticket JWKS unreachable: tickets are answered 503 until it answers",
			"url", c.url, "err", err)
	case err != nil:
		c.log.Warn("flashsale ticket JWKS refresh failed; keeping the last good keys",
			"url", c.url, "err", err, "kids", slices.Sorted(maps.Keys(old.keys)))
	case !sameKids(old.keys, keys):
		c.log.Info("flashsale ticket JWKS keys", "url", c.url, "kids", slices.Sorted(maps.Keys(keys)))
	}
}

func sameKids(a, b map[string]ed25519.PublicKey) bool {
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

// get fetches and parses the JWKS, within fetchTimeout whatever the
// client's own timeout.
func (c *keyCache) get(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKSURL %q: %w", c.url, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch the JWKS: %s", resp.Status)
	}
	return parseJWKS(resp.Body)
}

// errUnknownKid and errNoKeys are the two ways a kid is not found: the
// JWKS answered without it, or the JWKS could not be read.
var (
	errUnknownKid = errors.New("the ticket is signed with a key that is not in the JWKS")
	errNoKeys     = errors.New("the JWKS is unreachable")
)

// key finds a key by kid. An unknown kid asks for a fetch (unless a kid
// asked for one within kidEvery) and waits for the fetch in flight, if any,
// at most until ctx ends; the fetch goes on when the caller leaves.
// errNoKeys (with how long until a kid may ask again) says the JWKS could
// not be read, so the ticket may well be good.
func (c *keyCache) key(ctx context.Context, kid string) (ed25519.PublicKey, time.Duration, error) {
	if k, ok := c.set.Load().keys[kid]; ok {
		return k, 0, nil
	}
	c.mu.Lock()
	wait := c.round
	now := c.now()
	if wait == nil && (c.lastKid.IsZero() || now.Sub(c.lastKid) >= c.kidEvery) {
		select {
		case <-c.done: // closed: nothing fetches any more
		default:
			c.round = make(chan struct{})
			wait = c.round
			c.lastKid = now
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
	}
	// How long until a kid may ask for a fetch again: what a 503 tells the
	// client to wait when the JWKS cannot be read.
	retry := time.Second
	if !c.lastKid.IsZero() {
		retry = max(retry, c.kidEvery-now.Sub(c.lastKid))
	}
	c.mu.Unlock()
	if wait != nil {
		select {
		case <-wait:
		case <-c.done:
		case <-ctx.Done():
			return nil, time.Second, fmt.Errorf("%w (gave up waiting for it: %v)", errNoKeys, ctx.Err())
		}
		set := c.set.Load()
		if k, ok := set.keys[kid]; ok {
			return k, 0, nil
		}
		if set.failed != nil {
			return nil, retry, fmt.Errorf("%w: %v", errNoKeys, set.failed)
		}
		return nil, 0, errUnknownKid
	}
	if set := c.set.Load(); set.failed != nil {
		return nil, retry, fmt.Errorf("%w: %v", errNoKeys, set.failed)
	}
	return nil, 0, errUnknownKid
}

// parseJWKS reads a JSON Web Key Set and keeps its Ed25519 signing keys
// with a kid (the only kind flashsale signs tickets with); other keys are
// skipped. A set with no such key, of more than maxJWKSKeys keys, or over
// maxJWKSBytes is an error.
func parseJWKS(r io.Reader) (map[string]ed25519.PublicKey, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the JWKS: %w", err)
	}
	if len(b) > maxJWKSBytes {
		return nil, fmt.Errorf("the JWKS is larger than %d bytes", maxJWKSBytes)
	}
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("the JWKS is not a JSON Web Key Set (an object with a \"keys\" array): %v", err)
	}
	if len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("the JWKS has %d keys, more than %d", len(set.Keys), maxJWKSKeys)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		switch {
		case k.Kty != "OKP" || k.Crv != "Ed25519" || k.Kid == "":
		case k.Use != "" && k.Use != "sig":
		case k.Alg != "" && k.Alg != "EdDSA" && k.Alg != "Ed25519":
		case err != nil || len(x) != ed25519.PublicKeySize:
		default:
			if _, dup := keys[k.Kid]; !dup { // of two keys with one kid, the first counts
				keys[k.Kid] = ed25519.PublicKey(x)
			}
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("the JWKS has no Ed25519 signing key with a kid (is JWKSURL flashsale's /.well-known/jwks.json?)")
	}
	return keys, nil
}
