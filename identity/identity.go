// Package identity verifies the shop's user tokens: JWTs whose sub is the
// user id, HS256 with a shared secret or RS256/ES256/EdDSA from a JWKS URL.
package identity

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalid is any reason a user token is refused.
var ErrInvalid = errors.New("user token invalid")

// MaxUserIDLen bounds the user id (the sub claim) in bytes: any valid UTF-8
// of 1 to 255 bytes is a user id, as the orders table stores it.
const MaxUserIDLen = 255

// Config configures a Verifier. Exactly one of Secret and JWKSURL is set.
type Config struct {
	Secret   []byte // HS256 shared secret
	JWKSURL  string // RS256, ES256 or EdDSA keys
	Issuer   string // checked when set
	Audience string // checked when set
	Logger   *slog.Logger
	Client   *http.Client // for the JWKS; default a client with a 10 s timeout

	// RefreshEvery is how often the JWKS is fetched again (default 5 min):
	// a key the shop removes from it is no longer trusted after that.
	RefreshEvery time.Duration
	// UnknownKidEvery is the least time between two fetches of the JWKS
	// asked for by tokens with a kid we do not know (default 1 min), so
	// that forged kids cannot make us hammer the shop's JWKS. While no key
	// is known yet (the JWKS was down at start-up) it is also how often
	// the fetch is retried.
	UnknownKidEvery time.Duration
}

// Verifier checks user tokens.
type Verifier struct {
	cfg    Config
	parser *jwt.Parser
	hs     *hs256    // the secret's fast path
	jwks   *keyCache // the JWKS's keys
	now    func() time.Time
}

// New returns a Verifier. With a JWKS URL it starts fetching the keys on a
// goroutine of its own, which refreshes them until ctx ends or Close is
// called; a JWKS that is down does not stop New (a warning is logged, and
// user tokens are refused until it answers).
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	return newWithClock(ctx, cfg, time.Now)
}

// newWithClock is New on a clock of the caller's (tests move it to cross
// UnknownKidEvery without waiting): it dates tokens and the JWKS fetches
// kids ask for; the periodic refresh runs on real timers.
func newWithClock(ctx context.Context, cfg Config, now func() time.Time) (*Verifier, error) {
	if (len(cfg.Secret) == 0) == (cfg.JWKSURL == "") {
		return nil, errors.New("identity: set exactly one of --identity-secret and --identity-jwks-url")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: fetchTimeout}
	}
	if cfg.RefreshEvery <= 0 {
		cfg.RefreshEvery = 5 * time.Minute
	}
	if cfg.UnknownKidEvery <= 0 {
		cfg.UnknownKidEvery = time.Minute
	}
	v := &Verifier{cfg: cfg, now: now}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(0),
		jwt.WithTimeFunc(func() time.Time { return v.now() })}
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
	v.parser = jwt.NewParser(opts...)
	if cfg.Secret != nil {
		v.hs = newHS256(cfg.Secret, cfg.Issuer, cfg.Audience)
	} else {
		v.jwks = newKeyCache(ctx, cfg, now)
	}
	return v, nil
}

// Close stops the JWKS refresh and waits for it to end. It may be called
// more than once; with a secret it does nothing.
func (v *Verifier) Close() {
	if v.jwks != nil {
		v.jwks.close()
	}
}

// Verify checks a user token and returns its user id. With a JWKS, a token
// of a kid we do not know may wait (at most until ctx ends) for a refresh
// of the keys, which runs on the Verifier's own goroutine.
func (v *Verifier) Verify(ctx context.Context, token string) (string, error) {
	if v.hs != nil {
		sub, use, err := v.hs.verify(token, v.now())
		if err != nil {
			return "", err
		}
		return checkUser(sub, use)
	}
	return v.verifyJWT(token, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.jwks.key(ctx, kid)
	})
}

// verifyJWT checks a token with golang-jwt: the JWKS path, and for the
// secret, the reference the fast path is held to.
func (v *Verifier) verifyJWT(token string, key jwt.Keyfunc) (string, error) {
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, key); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	sub, _ := claims.GetSubject()
	use, _ := claims["use"].(string)
	// golang-jwt reads invalid UTF-8 in sub as U+FFFD: take the sub as
	// written instead, and refuse one that is not valid UTF-8.
	_, rest, _ := strings.Cut(token, ".")
	body, _, _ := strings.Cut(rest, ".")
	cb, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	raw, err := rawSubject(cb)
	if err != nil {
		return "", err
	}
	if raw != sub {
		return "", fmt.Errorf("%w: sub must be valid UTF-8", ErrInvalid)
	}
	return checkUser(sub, use)
}

// checkUser checks what a user token's claims must be: a user id, and not
// one of our own token kinds.
func checkUser(sub, use string) (string, error) {
	if sub == "" || len(sub) > MaxUserIDLen || !utf8.ValidString(sub) {
		return "", fmt.Errorf("%w: sub must be a user id of 1 to %d bytes of UTF-8", ErrInvalid, MaxUserIDLen)
	}
	if use == "queue" || use == "ticket" {
		return "", fmt.Errorf("%w: a %s token is not a user token", ErrInvalid, use)
	}
	return sub, nil
}

// Mint signs an HS256 user token; the dev mode and tests use it.
func Mint(secret []byte, user string, ttl time.Duration) (string, time.Time, error) {
	exp := time.Now().Add(ttl).Truncate(time.Second)
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": user, "exp": exp.Unix(), "iat": time.Now().Unix()})
	s, err := t.SignedString(secret)
	return s, exp, err
}
