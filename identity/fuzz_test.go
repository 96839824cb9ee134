package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// fuzzNow is the clock of the fuzz targets: the same answer on every run.
var fuzzNow = time.Unix(1_900_000_000, 0)

func fuzzVerifier(t testing.TB, secret []byte, issuer, audience string) *Verifier {
	t.Helper()
	v, err := newWithClock(context.Background(), Config{Secret: secret, Issuer: issuer, Audience: audience},
		func() time.Time { return fuzzNow })
	require.NoError(t, err)
	return v
}

// FuzzHS256 holds the HS256 fast path to golang-jwt: for every token both
// accept it or both refuse it, and both read the same user id. The fuzzer
// writes the header and claims (signed with the secret, so the claims are
// what is tested, not the HMAC) or, by mode, a signature or the whole
// token; half the inputs check iss and aud too.
func FuzzHS256(f *testing.F) {
	secret := []byte("fuzz-secret")
	plain := fuzzVerifier(f, secret, "", "")
	strict := fuzzVerifier(f, secret, "shop", "flashsale")
	hdr := []byte(`{"alg":"HS256","typ":"JWT"}`)
	for _, c := range []string{
		`{"sub":"alice","exp":1900000001}`,
		`{"sub":"alice","exp":1900000000}`,
		`{"sub":"alice","exp":1900000000.999}`,
		`{"sub":"alice","exp":1900000001,"nbf":1900000000.5}`,
		`{"sub":"alice","exp":1900000001,"nbf":1900000001}`,
		`{"sub":"alice","exp":1e300}`,
		`{"sub":"alice","exp":9.3e18}`,
		`{"sub":"alice","exp":-1e300}`,
		`{"sub":"alice","exp":"1900000001"}`,
		`{"sub":"alice","exp":1900000001,"nbf":null}`,
		`{"sub":"alice","exp":0}`,
		`{"sub":"alice","exp":-0,"nbf":0}`,
		`{"SUB":"alice","exp":1900000001}`,
		`{"sub":"alice","Exp":1900000001}`,
		`{"s\u0075b":"alice","exp":1900000001}`,
		`{"sub":"a","sub":"b","exp":1900000001}`,
		`{"sub":"a","exp":1900000001,"x":[1,{"y":1e999}]}`,
		`{"sub":"a\ud800","exp":1900000001}`,
		`{"sub":"a\ud83c\udf89","exp":1900000001}`,
		"{\"sub\":\"a\xff\",\"exp\":1900000001}",
		`{"sub":"auth0|abc","exp":1900000001,"iss":"shop","aud":"flashsale"}`,
		`{"sub":"a","exp":1900000001,"iss":"shop","aud":["x","flashsale"]}`,
		`{"sub":"a","exp":1900000001,"iss":"shop","aud":["flashsale",1]}`,
		`{"sub":"a","exp":1900000001,"iss":"shop","aud":[""]}`,
		`{"sub":"a","exp":1900000001,"iss":null,"aud":null}`,
		`{"sub":"a","exp":1900000001,"use":"queue"}`,
		`{"sub":"a","exp":1900000001,"use":5}`,
		`{"sub":42,"exp":1900000001}`,
		` {"sub":"a","exp":1900000001} `,
		`{"sub":"a","exp":1900000001}x`,
		`null`,
		`[]`,
		`{"sub":"` + strings.Repeat("x", 256) + `","exp":1900000001}`,
	} {
		f.Add(hdr, []byte(c), "", uint8(0))
		f.Add(hdr, []byte(c), "", uint8(4))
	}
	for _, h := range []string{`{"ALG":"HS256"}`, `{"alg":"HS256","alg":"none"}`, `{"\u0061lg":"HS\u0032\u0035\u0036"}`,
		`{"alg":"none"}`, `{"alg":"HS512"}`, `{"alg":"HS256","x":1e400}`, `null`, `{"alg":["HS256"]}`} {
		f.Add([]byte(h), []byte(`{"sub":"alice","exp":1900000001}`), "", uint8(0))
	}
	f.Add(hdr, []byte(`{"sub":"alice","exp":1900000001}`), "AAAA", uint8(1))
	f.Add(hdr, []byte(`{"sub":"alice","exp":1900000001}`), "\n", uint8(3))
	f.Add(hdr, []byte(`{"sub":"alice","exp":1900000001}`), ".", uint8(3))
	f.Add(hdr, []byte(`{"sub":"alice","exp":1900000001}`), "=", uint8(3))
	f.Add([]byte{}, []byte{}, "eyJhbGciOiJIUzI1NiJ9..", uint8(2))

	f.Fuzz(func(t *testing.T, header, claims []byte, extra string, mode uint8) {
		v := plain
		if mode&4 != 0 {
			v = strict
		}
		enc := base64.RawURLEncoding
		signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(signing))
		sig := enc.EncodeToString(m.Sum(nil))
		var token string
		switch mode & 3 {
		case 0:
			token = signing + "." + sig
		case 1:
			token = signing + "." + extra
		case 2:
			token = extra
		case 3:
			token = signing + "." + sig[:len(sig)/2] + extra + sig[len(sig)/2:]
		}
		fast, fastErr := v.Verify(context.Background(), token)
		ref, refErr := v.verifyJWT(token, func(*jwt.Token) (any, error) { return secret, nil })
		require.Equal(t, refErr == nil, fastErr == nil,
			"fast path: %v; golang-jwt: %v; header %q claims %q", fastErr, refErr, header, claims)
		require.Equal(t, ref, fast)
		if fastErr != nil {
			require.ErrorIs(t, fastErr, ErrInvalid)
			require.ErrorIs(t, refErr, ErrInvalid)
		}
	})
}

// FuzzParseJWKS: whatever the document, ParseJWKS does not panic, and what
// it accepts is 1 to 100 usable signing keys of the kinds we verify.
func FuzzParseJWKS(f *testing.F) {
	ed := base64.RawURLEncoding.EncodeToString(ed25519.NewKeyFromSeed(make([]byte, 32)).Public().(ed25519.PublicKey))
	n := base64.RawURLEncoding.EncodeToString(new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2047), big.NewInt(1)).Bytes())
	g := elliptic.P256().Params() // the generator: the public key of the private key 1
	x := base64.RawURLEncoding.EncodeToString(g.Gx.FillBytes(make([]byte, 32)))
	y := base64.RawURLEncoding.EncodeToString(g.Gy.FillBytes(make([]byte, 32)))
	for _, doc := range []string{
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"}]}`,
		`{"keys":[{"kty":"RSA","kid":"r1","n":"` + n + `","e":"AQAB","alg":"RS256","use":"sig"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","kid":"e1","x":"` + x + `","y":"` + y + `"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","kid":"e1","x":"` + y + `","y":"` + x + `"}]}`,
		`{"keys":[{"kty":"RSA","kid":"r1","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"RSA","kid":"r1","n":"` + n + `","e":"` + strings.Repeat("A", 100) + `"}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"},null,1,"x",[]]}`,
		`{"keys":null}`,
		`{"keys":[]}`,
		`[]`,
		``,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"o1","x":"` + ed + `"}]}trailing`,
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		keys, err := ParseJWKS(bytes.NewReader(doc))
		if err != nil {
			require.Nil(t, keys)
			require.ErrorContains(t, err, "identity JWKS")
			return
		}
		require.NotEmpty(t, keys)
		require.LessOrEqual(t, len(keys), maxJWKSKeys)
		for kid, k := range keys {
			switch k := k.(type) {
			case *rsa.PublicKey:
				require.GreaterOrEqual(t, k.N.BitLen(), minRSABits, kid)
				require.LessOrEqual(t, k.N.BitLen(), maxRSABits, kid)
				require.Equal(t, 1, k.E%2, kid)
			case *ecdsa.PublicKey:
				require.Equal(t, elliptic.P256(), k.Curve, kid)
				_, err := k.ECDH() // a second look: the point is on the curve
				require.NoError(t, err, kid)
			case ed25519.PublicKey:
				require.Len(t, k, ed25519.PublicKeySize, kid)
			default:
				t.Fatalf("kid %q: a key of an unexpected kind %T", kid, k)
			}
		}
	})
}
