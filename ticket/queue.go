package ticket

import (
	"bytes"
	"crypto/hmac"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"strings"
	"time"
)

// Queue tokens are HS256 JWTs that only flashsale verifies, signed on every
// join (the hottest path). They are made and checked here directly, with a
// pooled HMAC and one fixed header, rather than through a general JWT
// library: a token whose header is not exactly ours is not one of ours.

var queueHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func (i *Issuer) mac(data []byte) []byte {
	m := i.macs.Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	sum := m.Sum(nil)
	i.macs.Put(m)
	return sum
}

// QueueToken signs a queue token for (sale, user), valid until exp.
func (i *Issuer) QueueToken(sale, user string, now, exp time.Time) string {
	payload, err := json.Marshal(&Claims{Issuer: i.issuer, Subject: user, Audience: sale, Use: UseQueue,
		IssuedAt: now.Unix(), ExpiresAt: exp.Unix()})
	if err != nil {
		panic(fmt.Sprintf("encode queue token: %v", err)) // a fixed struct of strings and ints
	}
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(queueHeader)+1+enc.EncodedLen(len(payload))+1+enc.EncodedLen(32))
	buf = append(buf, queueHeader...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, payload)
	sig := i.mac(buf)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf)
}

// VerifyQueueToken checks a queue token for the sale and returns its user.
func (i *Issuer) VerifyQueueToken(token, sale string, now time.Time) (string, error) {
	head, rest, ok := strings.Cut(token, ".")
	if !ok || head != queueHeader {
		return "", fmt.Errorf("%w: not a queue token", ErrInvalid)
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return "", fmt.Errorf("%w: malformed", ErrInvalid)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, i.mac([]byte(token[:len(head)+1+len(body)]))) {
		return "", fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return "", fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	switch {
	case c.Use != UseQueue:
		return "", fmt.Errorf("%w: not a queue token", ErrInvalid)
	case c.Issuer != i.issuer:
		return "", fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case c.Audience != sale:
		return "", ErrWrongSale
	case c.Subject == "":
		return "", fmt.Errorf("%w: no subject", ErrInvalid)
	case now.Unix() >= c.ExpiresAt:
		return "", ErrExpired
	}
	return c.Subject, nil
}
