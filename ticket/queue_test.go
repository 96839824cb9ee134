package ticket_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/ticket"
)

// TestQueueTokenIsAStandardJWT: the hand-made HS256 token verifies with a
// general JWT library (so it is a real JWT), and tampering with any part of
// it is refused.
func TestQueueTokenIsAStandardJWT(t *testing.T) {
	t.Parallel()
	p, _ := keyPEM(t, 3)
	iss := issuer(t, p)
	qt := iss.QueueToken("phone-drop", "bob", fixedNow, fixedNow.Add(time.Hour))

	// The header is exactly HS256/JWT and the claims say queue.
	require.Equal(t, map[string]any{"alg": "HS256", "typ": "JWT"}, segment(t, qt, 0))
	claims := segment(t, qt, 1)
	require.Equal(t, "queue", claims["use"])
	require.Equal(t, "bob", claims["sub"])
	require.Equal(t, "phone-drop", claims["aud"])

	parts := strings.Split(qt, ".")
	for name, bad := range map[string]string{
		"payload":     parts[0] + "." + strings.TrimSuffix(parts[1], parts[1][len(parts[1])-2:]) + "xx." + parts[2],
		"signature":   parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"header":      "eyJhbGciOiJIUzUxMiJ9." + parts[1] + "." + parts[2],
		"alg none":    "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".",
		"two parts":   parts[0] + "." + parts[1],
		"empty":       "",
		"extra parts": qt + ".x",
	} {
		_, err := iss.VerifyQueueToken(bad, "phone-drop", fixedNow)
		require.ErrorIs(t, err, ticket.ErrInvalid, name)
	}

	// A queue token is no user token with the ticket key's derivation
	// either: a general library with a wrong key refuses it.
	_, err := jwt.Parse(qt, func(*jwt.Token) (any, error) { return []byte("guess"), nil })
	require.Error(t, err)
}

func BenchmarkQueueToken(b *testing.B) {
	p, _ := keyPEM(b, 4)
	iss := issuer(b, p)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		qt := iss.QueueToken("phone-drop", "alice", now, now.Add(time.Hour))
		if _, err := iss.VerifyQueueToken(qt, "phone-drop", now); err != nil {
			b.Fatal(err)
		}
	}
}

// TestQueueTokenAfterRotation: a queue token lives as long as its sale, so
// after a rotation (the new key first in the file, the old one after it)
// the tokens of the old key still verify, new ones are signed with the new
// key, and once the old key leaves the file its tokens are refused.
func TestQueueTokenAfterRotation(t *testing.T) {
	t.Parallel()
	oldPEM, _ := keyPEM(t, 1)
	newPEM, _ := keyPEM(t, 2)
	thirdPEM, _ := keyPEM(t, 3)
	before := issuer(t, oldPEM)
	after := issuer(t, newPEM, oldPEM)
	at := ticket.QueuePlace{Place: "42", Gen: "g1"}
	exp := fixedNow.Add(time.Hour)
	old := before.QueueTokenAt("phone-drop", "alice", at, fixedNow, exp)

	user, got, err := after.VerifyQueueTokenAt(old, "phone-drop", fixedNow)
	require.NoError(t, err, "a waiter's token of the previous key still verifies")
	require.Equal(t, "alice", user)
	require.Equal(t, at, got)
	_, err = after.VerifyQueueToken(old, "other-sale", fixedNow)
	require.ErrorIs(t, err, ticket.ErrWrongSale, "the previous key's token is still bound to its sale")
	_, err = after.VerifyQueueToken(old, "phone-drop", exp)
	require.ErrorIs(t, err, ticket.ErrExpired)

	fresh := after.QueueToken("phone-drop", "bob", fixedNow, exp)
	_, err = issuer(t, newPEM).VerifyQueueToken(fresh, "phone-drop", fixedNow)
	require.NoError(t, err, "new tokens are signed with the new key")
	_, err = before.VerifyQueueToken(fresh, "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid, "new tokens are not signed with the old key")

	// Every key of the file verifies, in any position after the first.
	_, err = issuer(t, thirdPEM, newPEM, oldPEM).VerifyQueueToken(old, "phone-drop", fixedNow)
	require.NoError(t, err)
	// Once the old key leaves the file, its tokens are refused.
	_, err = issuer(t, newPEM).VerifyQueueToken(old, "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid)
	_, err = issuer(t, thirdPEM, newPEM).VerifyQueueToken(old, "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid)
}

// TestQueueTokenSignatureSpelling: the signature is accepted only as we
// spell it; a decoder's leniency (line breaks, padding) is not.
func TestQueueTokenSignatureSpelling(t *testing.T) {
	t.Parallel()
	p, _ := keyPEM(t, 1)
	iss := issuer(t, p)
	qt := iss.QueueToken("phone-drop", "alice", fixedNow, fixedNow.Add(time.Hour))
	_, err := iss.VerifyQueueToken(qt, "phone-drop", fixedNow)
	require.NoError(t, err)
	cut := len(qt) - 10
	for name, bad := range map[string]string{
		"line break in the signature": qt[:cut] + "\n" + qt[cut:],
		"padded signature":            qt + "=",
	} {
		_, err := iss.VerifyQueueToken(bad, "phone-drop", fixedNow)
		require.ErrorIs(t, err, ticket.ErrInvalid, name)
	}
}

// FuzzQueueToken: for any shopper, sale and place, a minted token verifies
// for its sale only and gives them back (the round trip); any change to the
// token is refused (a token verifies only if we minted it); and whatever the
// input, verification does not panic and fails only with the package's
// errors.
func FuzzQueueToken(f *testing.F) {
	p, _ := keyPEM(f, 1)
	prev, _ := keyPEM(f, 2)
	iss := issuer(f, p, prev)
	old := issuer(f, prev)
	f.Add("alice", "phone-drop", "4503599627370517", "a1b2", int64(3600), uint16(0), byte(0), false)
	f.Add("auth0|abc", "s-1", "", "", int64(60), uint16(12), byte('A'), false)
	f.Add("{x}", "a:b", "1", "g", int64(1), uint16(200), byte('.'), true)
	f.Add("ü\u00e9\u2028", "sale", "-1", "\x00", int64(-5), uint16(5), byte('\n'), false)
	f.Add("", "sale", "", "", int64(10), uint16(0), byte(0), false)
	f.Fuzz(func(t *testing.T, user, sale, place, gen string, ttl int64, at uint16, b byte, byOld bool) {
		ttl %= 10 * 365 * 86400 // a sale of up to ten years; no Duration overflow
		exp := fixedNow.Add(time.Duration(ttl) * time.Second)
		signer := iss
		if byOld {
			signer = old // a token signed before the rotation
		}
		tok := signer.QueueTokenAt(sale, user, ticket.QueuePlace{Place: place, Gen: gen}, fixedNow, exp)

		gotUser, gotAt, err := iss.VerifyQueueTokenAt(tok, sale, fixedNow)
		valid := utf8.ValidString(user) && utf8.ValidString(sale) && utf8.ValidString(place) && utf8.ValidString(gen)
		switch {
		case !valid: // JSON cannot carry invalid UTF-8: the claims come back changed
			if err == nil {
				require.True(t, gotUser != user || gotAt != ticket.QueuePlace{Place: place, Gen: gen})
			}
		case user == "":
			require.ErrorIs(t, err, ticket.ErrInvalid)
		case ttl <= 0:
			require.ErrorIs(t, err, ticket.ErrExpired)
		default:
			require.NoError(t, err)
			require.Equal(t, user, gotUser)
			require.Equal(t, ticket.QueuePlace{Place: place, Gen: gen}, gotAt)
			_, err = iss.VerifyQueueToken(tok, sale+"x", fixedNow)
			require.ErrorIs(t, err, ticket.ErrWrongSale, "bound to its sale")
		}

		// Change one byte, or cut the token short: refused.
		changed := []byte(tok)
		if i := int(at) % (len(tok) + 1); i == len(tok) {
			changed = append(changed, b)
		} else if changed[i] != b {
			changed[i] = b
		} else {
			changed = changed[:i]
		}
		_, _, err = iss.VerifyQueueTokenAt(string(changed), sale, fixedNow)
		require.ErrorIs(t, err, ticket.ErrInvalid, "changed token %q", changed)

		// Whatever else, no panic and only the package's errors.
		for _, in := range []string{string(changed), user, sale + "." + place + "." + gen} {
			_, _, err := iss.VerifyQueueTokenAt(in, sale, fixedNow)
			if err != nil && !errors.Is(err, ticket.ErrInvalid) && !errors.Is(err, ticket.ErrWrongSale) && !errors.Is(err, ticket.ErrExpired) {
				t.Fatalf("unexpected error %v", err)
			}
		}
	})
}
