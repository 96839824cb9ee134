package ticket

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// UsePass is the use claim of an operator's pass: it lets one user join
// one sale once, with no challenge, admitted ahead of the queue.
const UsePass = "pass"

// Pass signs an operator's pass for user in sale, valid until exp, with a
// fresh jti (its single use is kept by the waiting room).
func (i *Issuer) Pass(sale, user string, now, exp time.Time) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, &Claims{
		Issuer: i.issuer, Subject: user, Audience: sale, Use: UsePass, ID: hex.EncodeToString(b),
		IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: exp.Unix(),
	})
	t.Header["kid"] = i.keys.Kid
	s, err := t.SignedString(i.keys.Current)
	if err != nil { // only on a broken key, which LoadKeySet refuses
		panic(fmt.Sprintf("sign pass: %v", err))
	}
	return s
}

// VerifyPass checks a pass's signature, kid, use and issuer (ErrInvalid)
// and its exp (ErrExpired). The caller compares its sub and aud.
func (i *Issuer) VerifyPass(token string, now time.Time) (*Claims, error) {
	if len(token) > 4096 {
		return nil, fmt.Errorf("%w: too long", ErrInvalid)
	}
	var c Claims
	_, err := ticketParser.ParseWithClaims(token, &c, i.keyOf)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch {
	case c.Use != UsePass:
		return nil, fmt.Errorf("%w: use is %q, not a pass", ErrInvalid, c.Use)
	case c.Issuer != i.issuer:
		return nil, fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case c.Subject == "" || c.ID == "" || c.ExpiresAt == 0:
		return nil, fmt.Errorf("%w: sub, jti and exp are required", ErrInvalid)
	case c.Expired(now):
		return &c, ErrExpired
	}
	return &c, nil
}
