package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// hs256 verifies HS256 user tokens directly: join verifies one on every
// call, and the general parser (header and claims decoded into maps, a new
// HMAC each time) cost a fifth of the server's CPU under join load. It
// accepts exactly what the general parser, configured as New configures it,
// accepts (FuzzHS256 checks it input by input): alg exactly HS256, the
// signature, exp required with no leeway, nbf, and iss and aud when
// configured, read as golang-jwt reads them from its maps.
type hs256 struct {
	macs     sync.Pool
	issuer   string
	audience string
}

func newHS256(secret []byte, issuer, audience string) *hs256 {
	h := &hs256{issuer: issuer, audience: audience}
	h.macs.New = func() any { return hmac.New(sha256.New, secret) }
	return h
}

// verify checks token at now and returns its sub and use claims.
func (h *hs256) verify(token string, now time.Time) (sub, use string, err error) {
	head, rest, ok := strings.Cut(token, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return "", "", fmt.Errorf("%w: not a JWT", ErrInvalid)
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(head)
	if err != nil {
		return "", "", fmt.Errorf("%w: header: %v", ErrInvalid, err)
	}
	var alg []byte
	if !jsonMembers(hb, func(k, v []byte) {
		if string(k) == "alg" {
			alg = v
		}
	}) {
		return "", "", fmt.Errorf("%w: the header is not a JSON object", ErrInvalid)
	}
	if a, _ := jsonString(alg); a != "HS256" {
		return "", "", fmt.Errorf("%w: alg must be HS256", ErrInvalid)
	}
	got, err := enc.DecodeString(sig)
	if err != nil {
		return "", "", fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	m := h.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(token[:len(head)+1+len(body)]))
	var want [sha256.Size]byte
	m.Sum(want[:0])
	h.macs.Put(m)
	if !hmac.Equal(got, want[:]) {
		return "", "", fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	cb, err := enc.DecodeString(body)
	if err != nil {
		return "", "", fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	var c struct{ sub, exp, nbf, iss, aud, use []byte }
	if !jsonMembers(cb, func(k, v []byte) {
		switch string(k) {
		case "sub":
			c.sub = v
		case "exp":
			c.exp = v
		case "nbf":
			c.nbf = v
		case "iss":
			c.iss = v
		case "aud":
			c.aud = v
		case "use":
			c.use = v
		}
	}) {
		return "", "", fmt.Errorf("%w: the claims are not a JSON object", ErrInvalid)
	}
	// As golang-jwt: exp and nbf are numbers, and 0 counts as absent.
	exp, ok := jsonNumber(c.exp)
	switch {
	case c.exp == nil || ok && exp == 0:
		return "", "", fmt.Errorf("%w: exp is required", ErrInvalid)
	case !ok:
		return "", "", fmt.Errorf("%w: exp must be a number", ErrInvalid)
	case !now.Before(numericDate(exp)):
		return "", "", fmt.Errorf("%w: expired", ErrInvalid)
	}
	if c.nbf != nil {
		nbf, ok := jsonNumber(c.nbf)
		switch {
		case !ok:
			return "", "", fmt.Errorf("%w: nbf must be a number", ErrInvalid)
		case nbf != 0 && now.Before(numericDate(nbf)):
			return "", "", fmt.Errorf("%w: not valid yet", ErrInvalid)
		}
	}
	if h.issuer != "" {
		if iss, _ := jsonString(c.iss); iss != h.issuer {
			return "", "", fmt.Errorf("%w: issuer %q", ErrInvalid, iss)
		}
	}
	if h.audience != "" && !hasAudience(c.aud, h.audience) {
		return "", "", fmt.Errorf("%w: audience", ErrInvalid)
	}
	use, _ = jsonString(c.use)
	if sub, err = subject(c.sub); err != nil {
		return "", "", err
	}
	return sub, use, nil
}

// numericDate is the time golang-jwt makes of a NumericDate's seconds.
func numericDate(f float64) time.Time {
	whole, frac := math.Modf(f)
	return time.Unix(int64(whole), int64(frac*1e9)).Truncate(jwt.TimePrecision)
}

// hasAudience reports whether aud (a string or a list of strings, as
// golang-jwt reads it) holds want.
func hasAudience(aud []byte, want string) bool {
	var v any
	if len(aud) == 0 || json.Unmarshal(aud, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case string:
		return v == want
	case []any:
		found := false
		for _, a := range v {
			s, ok := a.(string)
			if !ok {
				return false // golang-jwt refuses a list with a non-string in it
			}
			found = found || s == want
		}
		return found
	}
	return false
}

// subject reads the sub claim, raw: a user id is taken only as written, so
// a sub that is not valid UTF-8 (or escapes a lone surrogate) is refused
// rather than read with U+FFFD in it. A sub that is absent or not a string
// reads as "" (then checkUser refuses it).
func subject(raw []byte) (string, error) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", nil
	}
	sub, ok := strictString(raw)
	if !ok {
		return "", fmt.Errorf("%w: sub must be valid UTF-8", ErrInvalid)
	}
	return sub, nil
}

// rawSubject finds the sub claim in a token's claims segment, as subject
// reads it; the general path checks golang-jwt's sub against it.
func rawSubject(claims []byte) (string, error) {
	var raw []byte
	if !jsonMembers(claims, func(k, v []byte) {
		if string(k) == "sub" {
			raw = v
		}
	}) {
		return "", fmt.Errorf("%w: the claims are not a JSON object", ErrInvalid)
	}
	return subject(raw)
}
