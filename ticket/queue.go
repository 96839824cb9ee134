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

// QueuePlace is where a shopper waits, as their queue token remembers it:
// the place (the queue score, in decimal) in the generation Gen of the
// sale's keys in Redis. After Redis loses the queue, it puts them back there.
type QueuePlace struct {
	Place string
	Gen   string
}

// QueueToken signs a queue token for (sale, user), valid until exp.
func (i *Issuer) QueueToken(sale, user string, now, exp time.Time) string {
	return i.QueueTokenAt(sale, user, QueuePlace{}, now, exp)
}

// QueueTokenAt signs a queue token that also remembers the shopper's place.
func (i *Issuer) QueueTokenAt(sale, user string, at QueuePlace, now, exp time.Time) string {
	payload, err := json.Marshal(&Claims{Issuer: i.issuer, Subject: user, Audience: sale, Use: UseQueue,
		IssuedAt: now.Unix(), ExpiresAt: exp.Unix(), Place: at.Place, Gen: at.Gen})
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
	user, _, err := i.VerifyQueueTokenAt(token, sale, now)
	return user, err
}

// VerifyQueueTokenAt checks a queue token for the sale and returns its user
// and the place it remembers (empty for a token made without one).
func (i *Issuer) VerifyQueueTokenAt(token, sale string, now time.Time) (string, QueuePlace, error) {
	head, rest, ok := strings.Cut(token, ".")
	if !ok || head != queueHeader {
		return "", QueuePlace{}, fmt.Errorf("%w: not a queue token", ErrInvalid)
	}
	body, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return "", QueuePlace{}, fmt.Errorf("%w: malformed", ErrInvalid)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, i.mac([]byte(token[:len(head)+1+len(body)]))) {
		return "", QueuePlace{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", QueuePlace{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&c); err != nil {
		return "", QueuePlace{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	switch {
	case c.Use != UseQueue:
		return "", QueuePlace{}, fmt.Errorf("%w: not a queue token", ErrInvalid)
	case c.Issuer != i.issuer:
		return "", QueuePlace{}, fmt.Errorf("%w: issuer %q", ErrInvalid, c.Issuer)
	case c.Audience != sale:
		return "", QueuePlace{}, ErrWrongSale
	case c.Subject == "":
		return "", QueuePlace{}, fmt.Errorf("%w: no subject", ErrInvalid)
	case now.Unix() >= c.ExpiresAt:
		return "", QueuePlace{}, ErrExpired
	}
	return c.Subject, QueuePlace{Place: c.Place, Gen: c.Gen}, nil
}
