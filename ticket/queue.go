package ticket

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
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

// mac appends to dst the base64url HMAC of data under the queue-token key
// k (0 is the current key's).
func (i *Issuer) mac(dst []byte, k int, data []byte) []byte {
	var sum [sha256.Size]byte
	m := i.macs[k].Get().(hash.Hash)
	m.Reset()
	m.Write(data)
	m.Sum(sum[:0])
	i.macs[k].Put(m)
	return base64.RawURLEncoding.AppendEncode(dst, sum[:])
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
	signed := len(buf)
	buf = append(buf, '.')
	buf = i.mac(buf, 0, buf[:signed])
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
	if !i.signedByUs(token[:len(head)+1+len(body)], sig) {
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

// signedByUs reports whether sig is the signature of signed under any
// queue-token key of the key file (the current one first: after a rotation
// the shoppers who joined before it still hold tokens of the previous key).
// The signature is compared as text, encoded as we encode it, so the only
// spelling of a signature we accept is the one we make (a decoder would let
// line breaks or stray bits through).
func (i *Issuer) signedByUs(signed, sig string) bool {
	if len(sig) != base64.RawURLEncoding.EncodedLen(sha256.Size) {
		return false
	}
	var buf [64]byte
	for k := range i.macs {
		if hmac.Equal([]byte(sig), i.mac(buf[:0], k, []byte(signed))) {
			return true
		}
	}
	return false
}
