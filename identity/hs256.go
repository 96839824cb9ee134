package identity

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// hs256 verifies HS256 user tokens directly: join verifies one on every
// call, and the general parser (header and claims decoded into maps, a new
// HMAC each time) cost a fifth of the server's CPU under join load. The
// checks are the parser's: alg exactly HS256, the signature, exp required
// with no leeway, nbf, and iss and aud when configured.
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

type hsHeader struct {
	Alg string `json:"alg"`
}

// hsClaims uses plain numbers (NumericDate's decoder is several times
// slower) and decodes aud only when an audience is required.
type hsClaims struct {
	Subject   string          `json:"sub"`
	Issuer    string          `json:"iss"`
	Audience  json.RawMessage `json:"aud"`
	ExpiresAt *float64        `json:"exp"`
	NotBefore *float64        `json:"nbf"`
	Use       string          `json:"use"`
}

func (h *hs256) verify(token string, now time.Time) (*hsClaims, error) {
	head, rest, ok := strings.Cut(token, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || strings.Contains(sig, ".") {
		return nil, fmt.Errorf("%w: not a JWT", ErrInvalid)
	}
	enc := base64.RawURLEncoding
	hb, err := enc.DecodeString(head)
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrInvalid, err)
	}
	var hdr hsHeader
	if err := json.Unmarshal(hb, &hdr); err != nil || hdr.Alg != "HS256" {
		return nil, fmt.Errorf("%w: alg must be HS256", ErrInvalid)
	}
	got, err := enc.DecodeString(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrInvalid, err)
	}
	m := h.macs.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(token[:len(head)+1+len(body)]))
	want := m.Sum(nil)
	h.macs.Put(m)
	if !hmac.Equal(got, want) {
		return nil, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	cb, err := enc.DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	var c hsClaims
	if err := json.Unmarshal(cb, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	t := float64(now.UnixNano()) / 1e9
	switch {
	case c.ExpiresAt == nil:
		return nil, fmt.Errorf("%w: exp is required", ErrInvalid)
	case t >= *c.ExpiresAt:
		return nil, fmt.Errorf("%w: expired", ErrInvalid)
	case c.NotBefore != nil && t < *c.NotBefore:
		return nil, fmt.Errorf("%w: not valid yet", ErrInvalid)
	case h.issuer != "" && c.Issuer != h.issuer:
		return nil, fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case h.audience != "" && !hasAudience(c.Audience, h.audience):
		return nil, fmt.Errorf("%w: audience", ErrInvalid)
	}
	return &c, nil
}

// hasAudience reports whether aud (a string or a list of strings) holds want.
func hasAudience(aud json.RawMessage, want string) bool {
	var list jwt.ClaimStrings
	if len(aud) == 0 || json.Unmarshal(aud, &list) != nil {
		return false
	}
	for _, v := range list {
		if v == want {
			return true
		}
	}
	return false
}
