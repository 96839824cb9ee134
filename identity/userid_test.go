package identity_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
)

// rawToken signs a token whose header and claims are written by hand (a
// JSON library would turn invalid UTF-8 into U+FFFD before it is signed).
func rawToken(header, claims string, sign func(signing []byte) []byte) string {
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	return signing + "." + enc.EncodeToString(sign([]byte(signing)))
}

func hs256(secret []byte) func([]byte) []byte {
	return func(b []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(b)
		return m.Sum(nil)
	}
}

// TestUserIDs: a user id (sub) is any valid UTF-8 of 1 to 255 bytes, on
// the HS256 fast path and the JWKS path alike; anything else is refused.
// The sub is taken as written: invalid UTF-8 is not read as U+FFFD (two
// users would then be one).
func TestUserIDs(t *testing.T) {
	t.Parallel()
	exp := time.Now().Add(time.Hour).Unix()
	long := strings.Repeat("é", 127) + "x" // 255 bytes, multi-byte to the end
	require.Len(t, long, 255)
	good := map[string]string{ // the sub as JSON → the user id
		`"auth0|abc"`:                        "auth0|abc",
		`"google-oauth2|123"`:                "google-oauth2|123",
		`"a:b"`:                              "a:b",
		`"{x}"`:                              "{x}",
		`"ünïcödé 用户 🎉"`:                     "ünïcödé 用户 🎉",
		`"\u00fc\ud83c\udf89"`:               "ü🎉", // escapes, a surrogate pair among them
		`"` + long + `"`:                     long,
		`"` + strings.Repeat("x", 255) + `"`: strings.Repeat("x", 255),
		`"\ufffd"`:                           "\ufffd", // U+FFFD written as such is a character like any
		`"a\"b\\c"`:                          `a"b\c`,
		`"ok","sub":"later"`:                 "later", // of two subs, the last, as JSON decoders read it
	}
	bad := map[string]string{
		"256 bytes":            `"` + strings.Repeat("x", 256) + `"`,
		"256 bytes, multibyte": `"` + long + `é"`,
		"empty":                `""`,
		"invalid UTF-8":        "\"a\xffb\"",
		"a cut rune":           "\"\xe7\x94\"",
		"an overlong encoding": "\"\xc0\xaf\"",
		"a lone surrogate":     `"a\ud800b"`,
		"a lone low surrogate": `"\udc00"`,
		"a reversed pair":      `"\udf89\ud83c"`,
		"a number":             `42`,
		"null":                 `null`,
		"a list":               `["a"]`,
	}

	secret := []byte("s3cret")
	hs, err := identity.New(context.Background(), identity.Config{Secret: secret})
	require.NoError(t, err)
	s := newShop(t, "k1")
	jw := verifier(t, identity.Config{JWKSURL: s.srv.URL}, newClock())
	paths := map[string]struct {
		v    *identity.Verifier
		sign func(string) string
	}{
		"HS256": {hs, func(claims string) string {
			return rawToken(`{"alg":"HS256","typ":"JWT"}`, claims, hs256(secret))
		}},
		"JWKS": {jw, func(claims string) string {
			return rawToken(`{"alg":"EdDSA","kid":"k1"}`, claims, func(b []byte) []byte { return ed25519.Sign(key("k1"), b) })
		}},
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for sub, want := range good {
				user, err := p.v.Verify(context.Background(), p.sign(fmt.Sprintf(`{"sub":%s,"exp":%d}`, sub, exp)))
				require.NoError(t, err, "sub %s", sub)
				require.Equal(t, want, user)
			}
			for why, sub := range bad {
				_, err := p.v.Verify(context.Background(), p.sign(fmt.Sprintf(`{"sub":%s,"exp":%d}`, sub, exp)))
				require.ErrorIs(t, err, identity.ErrInvalid, why)
			}
			_, err := p.v.Verify(context.Background(), p.sign(fmt.Sprintf(`{"exp":%d}`, exp)))
			require.ErrorIs(t, err, identity.ErrInvalid, "no sub")
			// Invalid UTF-8 elsewhere than in sub is no reason to refuse.
			user, err := p.v.Verify(context.Background(), p.sign(fmt.Sprintf("{\"sub\":\"bob\",\"name\":\"\xff\\ud800\",\"exp\":%d}", exp)))
			require.NoError(t, err)
			require.Equal(t, "bob", user)
		})
	}
}

// TestHS256ExactClaims: the fast path reads claims as golang-jwt does,
// by exact key, not as a Go struct would (any case).
func TestHS256ExactClaims(t *testing.T) {
	t.Parallel()
	secret := []byte("s3cret")
	v, err := identity.New(context.Background(), identity.Config{Secret: secret, Issuer: "shop"})
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour).Unix()
	sign := func(header, claims string) string { return rawToken(header, claims, hs256(secret)) }
	hdr := `{"alg":"HS256"}`
	for name, tok := range map[string]string{
		"SUB is not sub":         sign(hdr, fmt.Sprintf(`{"SUB":"a","exp":%d,"iss":"shop"}`, exp)),
		"EXP is not exp":         sign(hdr, fmt.Sprintf(`{"sub":"a","EXP":%d,"iss":"shop"}`, exp)),
		"ISS is not iss":         sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"ISS":"shop"}`, exp)),
		"ALG is not alg":         sign(`{"ALG":"HS256"}`, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop"}`, exp)),
		"a later alg wins":       sign(`{"alg":"HS256","alg":"none"}`, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop"}`, exp)),
		"exp of zero":            sign(hdr, `{"sub":"a","exp":0,"iss":"shop"}`),
		"exp as a string":        sign(hdr, fmt.Sprintf(`{"sub":"a","exp":"%d","iss":"shop"}`, exp)),
		"nbf of null":            sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"nbf":null,"iss":"shop"}`, exp)),
		"a number out of range":  sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop","x":[1e999]}`, exp)),
		"claims not an object":   sign(hdr, `["sub"]`),
		"trailing data":          sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop"}{}`, exp)),
		"a later exp wins":       sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"exp":1,"iss":"shop"}`, exp)),
		"use of a queue token":   sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop","use":"queue"}`, exp)),
		"use escaped, a ticket":  sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop","us\u0065":"ticket"}`, exp)),
		"a fraction short of it": sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d.999,"iss":"shop"}`, time.Now().Unix()-1)),
	} {
		_, err := v.Verify(context.Background(), tok)
		require.ErrorIs(t, err, identity.ErrInvalid, name)
	}
	for name, tok := range map[string]string{
		"an escaped key":      sign(`{"\u0061lg":"HS256"}`, fmt.Sprintf(`{"s\u0075b":"a","exp":%d,"iss":"shop"}`, exp)),
		"use of another kind": sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"iss":"shop","use":5}`, exp)),
		"Sub beside sub":      sign(hdr, fmt.Sprintf(`{"sub":"a","Sub":"b","exp":%d,"iss":"shop"}`, exp)),
		"nbf of zero":         sign(hdr, fmt.Sprintf(`{"sub":"a","exp":%d,"nbf":0,"iss":"shop"}`, exp)),
	} {
		user, err := v.Verify(context.Background(), tok)
		require.NoError(t, err, name)
		require.Equal(t, "a", user, name)
	}
}
