package identity_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestHS256(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v, err := identity.New(ctx, identity.Config{Secret: []byte("s3cret"), Issuer: "shop", Audience: "flashsale"})
	require.NoError(t, err)
	exp := time.Now().Add(time.Hour).Unix()
	good := jwt.MapClaims{"sub": "alice", "exp": exp, "iss": "shop", "aud": "flashsale"}
	user, err := v.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", good))
	require.NoError(t, err)
	require.Equal(t, "alice", user)
	// aud may be a list
	listAud := jwt.MapClaims{"sub": "carol", "exp": exp, "iss": "shop", "aud": []string{"x", "flashsale"}}
	user, err = v.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", listAud))
	require.NoError(t, err)
	require.Equal(t, "carol", user)

	bad := map[string]string{
		"wrong secret": sign(t, jwt.SigningMethodHS256, []byte("other"), "", good),
		"expired":      sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "exp": time.Now().Add(-time.Second).Unix(), "iss": "shop", "aud": "flashsale"}),
		"no exp":       sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "iss": "shop", "aud": "flashsale"}),
		"no sub":       sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"exp": exp, "iss": "shop", "aud": "flashsale"}),
		"wrong iss":    sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "exp": exp, "iss": "evil", "aud": "flashsale"}),
		"wrong aud":    sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "exp": exp, "iss": "shop", "aud": "other"}),
		"queue token":  sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "exp": exp, "iss": "shop", "aud": "flashsale", "use": "queue"}),
		"long sub":     sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": strings.Repeat("x", 256), "exp": exp, "iss": "shop", "aud": "flashsale"}),
		"HS512":        sign(t, jwt.SigningMethodHS512, []byte("s3cret"), "", good),
		"garbage":      "not.a.token",
		"alg none":     "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", good), ".")[1] + ".",
		"nbf ahead":    sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", jwt.MapClaims{"sub": "a", "exp": exp, "nbf": exp - 10, "iss": "shop", "aud": "flashsale"}),
		"four parts":   sign(t, jwt.SigningMethodHS256, []byte("s3cret"), "", good) + ".x",
		"empty":        "",
	}
	for name, tok := range bad {
		_, err := v.Verify(ctx, tok)
		require.ErrorIs(t, err, identity.ErrInvalid, name)
	}
}

func TestNeedsExactlyOneSource(t *testing.T) {
	t.Parallel()
	_, err := identity.New(context.Background(), identity.Config{})
	require.Error(t, err)
	_, err = identity.New(context.Background(), identity.Config{Secret: []byte("x"), JWKSURL: "http://127.0.0.1:1/"})
	require.Error(t, err)
}

// TestJWKS verifies RS256, ES256 and EdDSA user tokens from a real JWKS
// endpoint, refetching the set when an unknown kid appears.
func TestJWKS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	edPub, edPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	lateRSA, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)

	var withLate atomic.Bool
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		pad := func(b []byte) []byte { out := make([]byte, 32); copy(out[32-len(b):], b); return out }
		keys := []map[string]string{
			{"kty": "RSA", "kid": "r1", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
			{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(pad(ecKey.X.Bytes())), "y": b64(pad(ecKey.Y.Bytes()))},
			{"kty": "OKP", "kid": "o1", "crv": "Ed25519", "x": b64(edPub)},
		}
		if withLate.Load() {
			keys = append(keys, map[string]string{"kty": "RSA", "kid": "r2", "n": b64(lateRSA.N.Bytes()), "e": b64(big.NewInt(int64(lateRSA.E)).Bytes())})
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
	}))
	defer srv.Close()

	v, err := identity.New(ctx, identity.Config{JWKSURL: srv.URL})
	require.NoError(t, err)
	defer v.Close()
	claims := jwt.MapClaims{"sub": "bob", "exp": time.Now().Add(time.Hour).Unix()}
	for name, tok := range map[string]string{
		"RS256": sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims),
		"ES256": sign(t, jwt.SigningMethodES256, ecKey, "e1", claims),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, edPriv, "o1", claims),
	} {
		user, err := v.Verify(ctx, tok)
		require.NoError(t, err, name)
		require.Equal(t, "bob", user, name)
	}

	// HS256 with a JWKS is refused (no algorithm confusion), as is a token
	// signed by a key the set does not hold.
	_, err = v.Verify(ctx, sign(t, jwt.SigningMethodHS256, []byte("x"), "r1", claims))
	require.ErrorIs(t, err, identity.ErrInvalid)
	wrong, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	_, err = v.Verify(ctx, sign(t, jwt.SigningMethodRS256, wrong, "r1", claims))
	require.ErrorIs(t, err, identity.ErrInvalid)

	// An unknown kid does not refetch the set within a minute of the last
	// fetch, so forged kids cannot make the verifier hammer the shop's JWKS.
	withLate.Store(true)
	_, err = v.Verify(ctx, sign(t, jwt.SigningMethodRS256, lateRSA, "r2", claims))
	require.ErrorIs(t, err, identity.ErrInvalid, "refetches are rate limited to one a minute")
	require.Equal(t, int32(1), fetches.Load())
}
