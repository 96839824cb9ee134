package ticket

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token uses: each endpoint accepts only its own kind.
const (
	UseTicket = "ticket"
	UseQueue  = "queue"
)

// Verification failures, in the order the checkout checks them.
var (
	ErrInvalid   = errors.New("ticket invalid")
	ErrWrongSale = errors.New("ticket is for another sale")
	ErrExpired   = errors.New("ticket expired")
)

// NotBeforeLeeway absorbs clock skew on nbf: a ticket's nbf is its iat,
// taken from Redis's clock when the admitter admits, and a checkout node
// whose clock is a little behind Redis's would refuse a ticket used at once
// (the shop may check out the moment the ticket arrives). Only exp is
// enforced to the second.
const NotBeforeLeeway = 2 * time.Second

// Claims are a ticket's (and a queue token's) claims. Field order is fixed so
// that signing the same admission record gives the same JWT on every node.
type Claims struct {
	Issuer    string `json:"iss"`
	Subject   string `json:"sub"`
	Audience  string `json:"aud"`
	Use       string `json:"use"`
	ID        string `json:"jti,omitempty"`
	IssuedAt  int64  `json:"iat"`
	NotBefore int64  `json:"nbf,omitempty"`
	ExpiresAt int64  `json:"exp"`
	// A queue token's only: where its shopper waits (see QueuePlace).
	Place string `json:"plc,omitempty"`
	Gen   string `json:"gen,omitempty"`
}

// The jwt.Claims interface; validation is done by hand, in the contract's
// order, so these only expose the values.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) { return date(c.ExpiresAt), nil }
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error)       { return date(c.IssuedAt), nil }
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error)      { return date(c.NotBefore), nil }
func (c *Claims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *Claims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *Claims) GetAudience() (jwt.ClaimStrings, error)       { return jwt.ClaimStrings{c.Audience}, nil }

func date(s int64) *jwt.NumericDate {
	if s == 0 {
		return nil
	}
	return jwt.NewNumericDate(time.Unix(s, 0))
}

// Admission is the record of one admission, from which any node signs the
// same ticket.
type Admission struct {
	Sale, User, JTI string
	IssuedAt        int64 // unix seconds
	ExpiresAt       int64 // unix seconds
}

// Issuer signs tickets and queue tokens.
type Issuer struct {
	keys   *KeySet
	issuer string
	// macs pools HMAC-SHA256 states, one pool per queue-token key of the key
	// file: the first (the current key's) signs, every one verifies.
	macs []*sync.Pool
}

// NewIssuer returns an Issuer for the key set; issuer is the iss claim.
func NewIssuer(keys *KeySet, issuer string) *Issuer {
	i := &Issuer{keys: keys, issuer: issuer}
	for _, k := range keys.queueKeys() {
		i.macs = append(i.macs, &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }})
	}
	return i
}

// Keys returns the key set.
func (i *Issuer) Keys() *KeySet { return i.keys }

// Ticket signs the ticket of an admission. Ed25519 is deterministic, so the
// same record gives the same JWT on every node.
func (i *Issuer) Ticket(a Admission) string {
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &Claims{
		Issuer: i.issuer, Subject: a.User, Audience: a.Sale, Use: UseTicket, ID: a.JTI,
		IssuedAt: a.IssuedAt, NotBefore: a.IssuedAt, ExpiresAt: a.ExpiresAt,
	})
	t.Header["kid"] = i.keys.Kid
	s, err := t.SignedString(i.keys.Current)
	if err != nil { // only on a broken key, which LoadKeySet refuses
		panic(fmt.Sprintf("sign ticket: %v", err))
	}
	return s
}

var ticketParser = jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithoutClaimsValidation())

// VerifyTicket checks a ticket in the checkout's order: signature, alg, kid,
// use, issuer and nbf (ErrInvalid), then the sale (ErrWrongSale). It does not
// check exp: the caller does, after its idempotency lookup, with Expired.
func (i *Issuer) VerifyTicket(token, sale string, now time.Time) (*Claims, error) {
	var c Claims
	_, err := ticketParser.ParseWithClaims(token, &c, i.keyOf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case c.Use != UseTicket:
		return nil, fmt.Errorf("%w: use is %q, not a ticket", ErrInvalid, c.Use)
	case c.Issuer != i.issuer:
		return nil, fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case c.Subject == "" || c.ID == "" || c.ExpiresAt == 0:
		return nil, fmt.Errorf("%w: sub, jti and exp are required", ErrInvalid)
	case c.NotBefore > now.Add(NotBeforeLeeway).Unix():
		return nil, fmt.Errorf("%w: not valid before %d", ErrInvalid, c.NotBefore)
	case c.Audience != sale:
		return &c, ErrWrongSale
	}
	return &c, nil
}

// keyOf is the public key of a token's kid: the current key or a previous
// one of the key file.
func (i *Issuer) keyOf(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	if kid == i.keys.Kid {
		return i.keys.Current.Public(), nil
	}
	if pub, ok := i.keys.Previous[kid]; ok {
		return pub, nil
	}
	return nil, fmt.Errorf("unknown kid %q", kid)
}

// Expired reports whether the claims' exp has passed.
func (c *Claims) Expired(now time.Time) bool { return now.Unix() >= c.ExpiresAt }

// PublicKey returns the current public key.
func (i *Issuer) PublicKey() ed25519.PublicKey { return i.keys.Current.Public().(ed25519.PublicKey) }
