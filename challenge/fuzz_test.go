package challenge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

// The fuzz target's key and clock are fixed, so that the proofs in
// testdata/fuzz/FuzzCheck stay valid: they were issued with fuzzKey at
// fuzzNow minus a minute.
var (
	fuzzKey = []byte("the fuzz target's key")
	fuzzNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// FuzzCheck: Check never panics, refuses only with ErrFailed, and accepts
// only what was issued by us: a challenge that is the canonical encoding of
// its bytes, whose tag is crypto/hmac's under our key for exactly this sale
// and user, not expired, whose proof has the signed difficulty in zero bits,
// and whose id is its random part. (Only our key makes such a tag, so
// anything else accepted would be a forgery.)
func FuzzCheck(f *testing.F) {
	p := NewPoW(fuzzKey)
	issued := fuzzNow.Add(-time.Minute)
	for _, d := range []int{1, 4, 8} {
		c, _ := p.Issue("drop-1", "alice", d, issued)
		nonce := solve(f, c, d)
		f.Add(c, nonce, "drop-1", "alice")
		f.Add(c, nonce, "drop-1", "bob")
		f.Add(c, nonce, "drop-2", "alice")
		f.Add(c, nonce+"x", "drop-1", "alice")
		f.Add(c, "0"+nonce, "drop-1", "alice")
		f.Add(edit(f, c, func(b []byte) { b[1] = 1 }), nonce, "drop-1", "alice")
		f.Add(edit(f, c, func(b []byte) { b[38] ^= 1 }), nonce, "drop-1", "alice")
		f.Add(c[:ChallengeLen-1], nonce, "drop-1", "alice")
	}
	old, _ := p.Issue("drop-1", "alice", 2, fuzzNow.Add(-Life-time.Second))
	f.Add(old, solve(f, old, 2), "drop-1", "alice")
	f.Add(strings.Repeat("A", 4096), "1", "drop-1", "alice")
	f.Add("", "", "", "")
	f.Add(strings.Repeat("_", ChallengeLen), "99999999999999999999", "", "")

	f.Fuzz(func(t *testing.T, challenge, nonce, saleID, user string) {
		id, exp, err := p.Check(challenge, nonce, saleID, user, fuzzNow)
		if err != nil {
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("refused with %v, which is not ErrFailed", err)
			}
			if id != "" || !exp.IsZero() {
				t.Fatalf("refused, yet answered id %q and expiry %v", id, exp)
			}
			return
		}
		b, decErr := base64.RawURLEncoding.DecodeString(challenge)
		if decErr != nil || len(b) != payloadLen || base64.RawURLEncoding.EncodeToString(b) != challenge {
			t.Fatalf("accepted %q, which is not the canonical encoding of %d bytes", challenge, payloadLen)
		}
		m := hmac.New(sha256.New, fuzzKey)
		m.Write(b[:signedLen])
		m.Write(binary.AppendUvarint(nil, uint64(len(saleID))))
		m.Write([]byte(saleID))
		m.Write([]byte(user))
		if !hmac.Equal(m.Sum(nil)[:tagLen], b[signedLen:]) {
			t.Fatalf("accepted %q for (%q, %q) without our tag", challenge, saleID, user)
		}
		if b[0] != powVersion || b[1] < MinDifficulty || b[1] > MaxDifficulty {
			t.Fatalf("accepted version %d difficulty %d", b[0], b[1])
		}
		sum := sha256.Sum256([]byte(challenge + ":" + nonce))
		if zeroBits(sum[:]) < int(b[1]) {
			t.Fatalf("accepted nonce %q with %d zero bits for difficulty %d", nonce, zeroBits(sum[:]), b[1])
		}
		if strings.Trim(nonce, "0123456789") != "" || len(nonce) < 1 || len(nonce) > MaxNonce {
			t.Fatalf("accepted nonce %q", nonce)
		}
		if !exp.After(fuzzNow) || exp.Sub(fuzzNow) > Life {
			t.Fatalf("accepted a challenge expiring at %v, checked at %v", exp, fuzzNow)
		}
		if id != base64.RawURLEncoding.EncodeToString(b[9:signedLen]) {
			t.Fatalf("id %q is not the challenge's random part", id)
		}
	})
}
