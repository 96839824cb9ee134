package challenge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale/sale"
)

// Life is how long a proof-of-work challenge may be used (DESIGN.md: "lives
// 10 minutes").
const Life = 10 * time.Minute

// MinDifficulty and MaxDifficulty bound a challenge's leading zero bits
// (the sale field pow_difficulty, 1–30).
const (
	MinDifficulty = 1
	MaxDifficulty = 30
)

// MaxNonce is the longest nonce accepted: 20 decimal digits hold any
// 64-bit counter a solver may use.
const MaxNonce = 20

// A challenge is 39 bytes, base64url without padding: 52 characters, a
// multiple of 3 bytes so that every character is significant and one
// challenge has one spelling.
//
//	[0]      version (1)
//	[1]      difficulty, leading zero bits (1–30)
//	[2:9]    expiry, Unix milliseconds, big-endian (7 bytes: two million years)
//	[9:21]   random id (96 bits): what makes it single-use
//	[21:39]  tag: HMAC-SHA256(key, bytes 0–20, len(sale) as uvarint, sale, user), first 18 bytes
//
// The sale and user are only in the tag: the challenge binds them without
// carrying them. The fields before the tag are groups of 3 bytes, so the id
// is the challenge's characters 12–27 (see Check).
//
// 52 characters also suit the browser's solver: challenge + ":" is 53 bytes,
// so 11 more bytes of nonce end SHA-256's first block and a solver that keeps
// those 11 digits fixed pays one block per try (web/static/pow-worker.js).
const (
	powVersion   = 1
	payloadLen   = 39
	signedLen    = 21
	tagLen       = payloadLen - signedLen
	idFrom, idTo = 12, 28 // the id's characters in the challenge
)

// ChallengeLen is the length of every challenge (52); Check refuses any
// other length before it reads anything else.
const ChallengeLen = payloadLen / 3 * 4

var b64 = base64.RawURLEncoding.Strict()

// PoW issues and checks proof-of-work challenges. It holds only a key, so
// every node with the same key checks every node's challenges; it is safe
// for concurrent use.
type PoW struct {
	// ipad and opad are the HMAC key blocks (RFC 2104), XORed once here so
	// that a check computes the tag from two SHA-256 sums of stack buffers:
	// no hash.Hash to allocate or pool.
	ipad, opad [sha256.BlockSize]byte
}

// NewPoW returns a PoW keyed with key, a secret of its own (see KeyFrom);
// the same key on every node.
func NewPoW(key []byte) *PoW {
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	p := &PoW{}
	copy(p.ipad[:], key)
	copy(p.opad[:], key)
	for i := range p.ipad {
		p.ipad[i] ^= 0x36
		p.opad[i] ^= 0x5c
	}
	return p
}

// KeyFrom derives the challenge key from a secret the nodes already share
// (the ticket key's seed), so the key signs nothing else and the secret
// itself never keys an HMAC of client-chosen input.
func KeyFrom(secret []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("flashsale join challenge v1"))
	return m.Sum(nil)
}

// Issue makes a challenge for user in saleID, with difficulty leading zero
// bits (outside 1–30 it is clamped into that range: the sale field is
// validated before it gets here), living Life from now. It answers the
// challenge and its expiry. Nothing is stored: the challenge is signed.
func (p *PoW) Issue(saleID, user string, difficulty int, now time.Time) (challenge string, expires time.Time) {
	difficulty = min(max(difficulty, MinDifficulty), MaxDifficulty)
	exp := now.Add(Life).UnixMilli()
	var b [payloadLen]byte
	b[0] = powVersion
	b[1] = byte(difficulty)
	putExpiry(b[2:9], exp)
	_, _ = rand.Read(b[9:21]) // never fails (crypto/rand's doc)
	tag := p.tag(b[:signedLen], saleID, user)
	copy(b[signedLen:], tag[:tagLen])
	var out [ChallengeLen]byte
	b64.Encode(out[:], b[:])
	return string(out[:]), time.UnixMilli(exp).UTC()
}

// Check verifies a proof of work: the challenge is ours, for saleID and
// user, not expired at now, and SHA-256(challenge + ":" + nonce) starts
// with the challenge's own difficulty in zero bits (the difficulty it was
// issued with, whatever the sale says now). nonce is 1–20 decimal digits.
// It answers the challenge's id, to spend with Spend, and its expiry.
// Every refusal matches ErrFailed.
//
// The cheap checks come first (lengths, digits, encoding, expiry), then the
// one SHA-256 of the proof, and the HMAC last: a forged or random proof
// costs at most one hash, and only a real proof pays for the tag.
func (p *PoW) Check(challenge, nonce, saleID, user string, now time.Time) (id string, expires time.Time, err error) {
	if len(challenge) != ChallengeLen {
		return "", time.Time{}, errMalformed
	}
	if len(nonce) == 0 || len(nonce) > MaxNonce {
		return "", time.Time{}, errNonce
	}
	for i := 0; i < len(nonce); i++ {
		if nonce[i] < '0' || nonce[i] > '9' {
			return "", time.Time{}, errNonce
		}
	}
	// The proof's input doubles as the decoder's: challenge, ":", nonce.
	var in [ChallengeLen + 1 + MaxNonce]byte
	copy(in[:], challenge)
	in[ChallengeLen] = ':'
	n := ChallengeLen + 1 + copy(in[ChallengeLen+1:], nonce)
	var b [payloadLen]byte
	if m, err := b64.Decode(b[:], in[:ChallengeLen]); err != nil || m != payloadLen {
		return "", time.Time{}, errMalformed
	}
	d := int(b[1])
	if b[0] != powVersion || d < MinDifficulty || d > MaxDifficulty {
		return "", time.Time{}, errMalformed
	}
	exp := expiry(b[2:9])
	if now.UnixMilli() >= exp {
		return "", time.Time{}, errExpired
	}
	if !leadingZeros(sha256.Sum256(in[:n]), d) {
		return "", time.Time{}, errWrong
	}
	tag := p.tag(b[:signedLen], saleID, user)
	if !hmac.Equal(tag[:tagLen], b[signedLen:]) {
		return "", time.Time{}, errForeign
	}
	return challenge[idFrom:idTo], time.UnixMilli(exp).UTC(), nil
}

// tag is HMAC-SHA256(key, fields, uvarint(len(sale)), sale, user). The
// sale's length keeps ("ab", "c") and ("a", "bc") apart.
func (p *PoW) tag(fields []byte, saleID, user string) [sha256.Size]byte {
	// Ids are short (a user id is at most 255 bytes), so the message fits a
	// stack buffer; a longer one still works, on the heap.
	var buf [sha256.BlockSize + signedLen + binary.MaxVarintLen64 + 512]byte
	m := append(buf[:0], p.ipad[:]...)
	m = append(m, fields...)
	m = binary.AppendUvarint(m, uint64(len(saleID)))
	m = append(m, saleID...)
	m = append(m, user...)
	inner := sha256.Sum256(m)
	var outer [sha256.BlockSize + sha256.Size]byte
	copy(outer[:], p.opad[:])
	copy(outer[sha256.BlockSize:], inner[:])
	return sha256.Sum256(outer[:])
}

// leadingZeros tells whether sum starts with d zero bits.
func leadingZeros(sum [sha256.Size]byte, d int) bool {
	// d ≤ 30: the first 4 bytes hold them all.
	return bits.LeadingZeros32(binary.BigEndian.Uint32(sum[:4])) >= d
}

func putExpiry(b []byte, ms int64) {
	var w [8]byte
	binary.BigEndian.PutUint64(w[:], uint64(ms))
	copy(b, w[1:])
}

func expiry(b []byte) int64 {
	var w [8]byte
	copy(w[1:], b)
	return int64(binary.BigEndian.Uint64(w[:]))
}

// SpendKey is the Redis key that marks the challenge id spent, on the
// sale's slot: <prefix>:{<sale>}:pow:<id>.
func SpendKey(ks sale.Keyspace, saleID, id string) string {
	// Keys.Cfg is "<prefix>:{<sale>}:cfg": its stem is the sale's key prefix.
	return strings.TrimSuffix(ks.Sale(saleID).Cfg, "cfg") + "pow:" + id
}

// Spend makes a checked challenge single-use: one SET NX of key that lives
// ttl, the challenge's remaining life (its expiry from Check minus now).
// A second spend of the same key, or a ttl that is not positive, is
// ErrFailed; a Redis failure is a *sale.StoreError (503).
//
// The expiry is read on host clocks: a node whose clock is behind the
// spender's by d accepts the challenge d after its key is gone. NTP keeps d
// to milliseconds; a caller that fears more may add it to ttl.
func Spend(ctx context.Context, rdb redis.UniversalClient, key string, ttl time.Duration) error {
	if ttl <= 0 {
		return errExpired
	}
	ok, err := rdb.SetNX(ctx, key, 1, ttl).Result()
	if err != nil {
		return &sale.StoreError{Store: "Redis", Err: err}
	}
	if !ok {
		return errUsed
	}
	return nil
}
