// Package identity verifies the shop's user tokens: JWTs whose sub is the
// user id, HS256 with a shared secret or RS256/ES256/EdDSA from a JWKS URL.
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
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalid is any reason a user token is refused.
var ErrInvalid = errors.New("user token invalid")

// MaxUserIDLen bounds the user id (the sub claim), as the orders table does.
const MaxUserIDLen = 191

// Config configures a Verifier. Exactly one of Secret and JWKSURL is set.
type Config struct {
	Secret   []byte // HS256 shared secret
	JWKSURL  string // RS256, ES256 or EdDSA keys
	Issuer   string // checked when set
	Audience string // checked when set
	Logger   *slog.Logger
	Client   *http.Client // for the JWKS; default a client with a 10 s timeout
}

// Verifier checks user tokens.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
	hs     *hs256 // the secret's fast path

	mu        sync.RWMutex
	keys      map[string]crypto.PublicKey
	lastFetch time.Time
}

// New returns a Verifier; with a JWKS URL it fetches the keys once now.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if (len(cfg.Secret) == 0) == (cfg.JWKSURL == "") {
		return nil, errors.New("identity: set exactly one of --identity-secret and --identity-jwks-url")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(0)}
	if cfg.Secret != nil {
		opts = append(opts, jwt.WithValidMethods([]string{"HS256"}))
	} else {
		opts = append(opts, jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v := &Verifier{cfg: cfg, parser: jwt.NewParser(opts...)}
	if cfg.Secret != nil {
		v.hs = newHS256(cfg.Secret, cfg.Issuer, cfg.Audience)
	}
	if cfg.JWKSURL != "" {
		if err := v.refresh(ctx); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Verify checks a user token and returns its user id.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	if v.hs != nil {
		c, err := v.hs.verify(token, time.Now())
		if err != nil {
			return "", err
		}
		return checkUser(c.Subject, c.Use)
	}
	tok, err := v.parser.Parse(token, func(t *jwt.Token) (any, error) {
		if v.cfg.Secret != nil {
			return v.cfg.Secret, nil
		}
		kid, _ := t.Header["kid"].(string)
		return v.key(ctx, kid)
	})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sub, _ := tok.Claims.GetSubject()
	use, _ := tok.Claims.(jwt.MapClaims)["use"].(string)
	return checkUser(sub, use)
}

// checkUser checks what a user token's claims must be: a user id, and not
// one of our own token kinds.
func checkUser(sub, use string) (string, error) {
	if sub == "" || len(sub) > MaxUserIDLen {
		return "", fmt.Errorf("%w: sub must be a user id of 1 to %d bytes", ErrInvalid, MaxUserIDLen)
	}
	if use == "queue" || use == "ticket" {
		return "", fmt.Errorf("%w: a %s token is not a user token", ErrInvalid, use)
	}
	return sub, nil
}

// key finds a JWKS key by kid, refetching (at most every 30 s) when unknown.
func (v *Verifier) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	v.mu.RLock()
	k, ok := v.keys[kid]
	stale := time.Since(v.lastFetch) > 30*time.Second
	v.mu.RUnlock()
	if ok {
		return k, nil
	}
	if stale {
		if err := v.refresh(ctx); err != nil {
			v.cfg.Logger.Warn("identity JWKS refresh failed", "err", err)
		}
		v.mu.RLock()
		k, ok = v.keys[kid]
		v.mu.RUnlock()
		if ok {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

func (v *Verifier) refresh(ctx context.Context) error {
	v.mu.Lock()
	v.lastFetch = time.Now()
	v.mu.Unlock()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return fmt.Errorf("identity JWKS URL: %w", err)
	}
	resp, err := v.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch identity JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch identity JWKS: %s", resp.Status)
	}
	keys, err := ParseJWKS(http.MaxBytesReader(nil, resp.Body, 1<<20))
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.keys = keys
	v.mu.Unlock()
	return nil
}

type jwk struct {
	Kty, Kid, Crv, N, E, X, Y string
}

// ParseJWKS reads a JSON Web Key Set of RSA, EC P-256 and Ed25519 keys.
func ParseJWKS(r interface{ Read([]byte) (int, error) }) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.NewDecoder(r).Decode(&set); err != nil {
		return nil, fmt.Errorf("identity JWKS: %w", err)
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		b := func(s string) []byte { d, _ := base64.RawURLEncoding.DecodeString(s); return d }
		switch k.Kty {
		case "RSA":
			n, e := b(k.N), b(k.E)
			if len(n) == 0 || len(e) == 0 {
				continue
			}
			out[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		case "EC":
			x, y := b(k.X), b(k.Y)
			if k.Crv != "P-256" || len(x) != 32 || len(y) != 32 {
				continue
			}
			out[k.Kid] = &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		case "OKP":
			if x := b(k.X); k.Crv == "Ed25519" && len(x) == ed25519.PublicKeySize {
				out[k.Kid] = ed25519.PublicKey(x)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("identity JWKS: no usable key (RSA, EC P-256 or Ed25519)")
	}
	return out, nil
}

// Mint signs an HS256 user token; the dev mode and tests use it.
func Mint(secret []byte, user string, ttl time.Duration) (string, time.Time, error) {
	exp := time.Now().Add(ttl).Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": exp.Unix(), "iat": time.Now().Unix()})
	s, err := t.SignedString(secret)
	return s, exp, err
}
