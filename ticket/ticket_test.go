package ticket_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/ticket"
)

// keyPEM is the PKCS#8 PEM of an Ed25519 key made from a fixed seed byte,
// so tests (and the fuzz corpus) are the same on every run.
func keyPEM(t testing.TB, seed byte) ([]byte, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), priv
}

func issuer(t testing.TB, pems ...[]byte) *ticket.Issuer {
	t.Helper()
	ks, err := ticket.ParseKeySet(bytes.Join(pems, nil))
	require.NoError(t, err)
	return ticket.NewIssuer(ks, "flashsale")
}

// fixedNow is the clock of these tests; admissions are valid around it.
var fixedNow = time.Unix(1_900_000_000, 0)

func admission(user string) ticket.Admission {
	return ticket.Admission{Sale: "phone-drop", User: user, JTI: "jti-" + user,
		IssuedAt: fixedNow.Unix() - 10, ExpiresAt: fixedNow.Unix() + 290}
}

func segment(t testing.TB, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	return m
}

func TestTicketDeterministic(t *testing.T) {
	t.Parallel()
	p, priv := keyPEM(t, 1)
	a := admission("alice")
	tok := issuer(t, p).Ticket(a)
	require.Equal(t, tok, issuer(t, p).Ticket(a), "another node with the key signs the same JWT")
	require.NotEqual(t, tok, issuer(t, p).Ticket(admission("bob")))

	require.Equal(t, map[string]any{"alg": "EdDSA", "kid": ticket.Kid(priv.Public().(ed25519.PublicKey)), "typ": "JWT"},
		segment(t, tok, 0))
	require.Equal(t, map[string]any{"iss": "flashsale", "sub": "alice", "aud": "phone-drop", "use": "ticket",
		"jti": "jti-alice", "iat": float64(a.IssuedAt), "nbf": float64(a.IssuedAt), "exp": float64(a.ExpiresAt)},
		segment(t, tok, 1))

	// Anyone verifies it offline with the public key alone.
	parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return priv.Public(), nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(func() time.Time { return fixedNow }))
	require.NoError(t, err)
	require.True(t, parsed.Valid)
}

func TestJWKS(t *testing.T) {
	t.Parallel()
	cur, curKey := keyPEM(t, 1)
	prev1, prevKey1 := keyPEM(t, 2)
	prev2, prevKey2 := keyPEM(t, 3)
	type jwk struct{ Kty, Crv, X, Kid, Use, Alg string }
	decode := func(b []byte) []jwk {
		var set struct{ Keys []jwk }
		require.NoError(t, json.Unmarshal(b, &set))
		return set.Keys
	}
	want := func(k ed25519.PrivateKey) jwk {
		pub := k.Public().(ed25519.PublicKey)
		return jwk{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: ticket.Kid(pub),
			Use: "sig", Alg: "EdDSA"}
	}

	one := issuer(t, cur).Keys()
	require.Equal(t, []jwk{want(curKey)}, decode(one.JWKS()))
	require.Len(t, one.Kid, 16)

	rotated := issuer(t, cur, prev1, prev2).Keys()
	got := decode(rotated.JWKS())
	require.Len(t, got, 3)
	require.Equal(t, want(curKey), got[0], "the current key first")
	require.ElementsMatch(t, []jwk{want(prevKey1), want(prevKey2)}, got[1:])
	for range 10 {
		require.Equal(t, string(rotated.JWKS()), string(issuer(t, cur, prev1, prev2).Keys().JWKS()),
			"the same bytes on every call and node")
	}

	// A file that lists the current key twice publishes it once.
	require.Len(t, decode(issuer(t, cur, cur).Keys().JWKS()), 1)
}

func TestParseKeySet(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)
	tests := []struct {
		name string
		pem  []byte
		msg  string
	}{
		{name: "empty", pem: nil, msg: "no PEM"},
		{name: "not PEM", pem: []byte("hello"), msg: "no PEM"},
		{name: "not PKCS#8", pem: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("junk")}), msg: "PKCS#8"},
		{name: "not Ed25519", pem: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}), msg: "not Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ticket.ParseKeySet(tt.pem)
			require.ErrorContains(t, err, tt.msg)
		})
	}

	t.Run("GenerateKeyFile and LoadKeySet", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "keys", "ticket.pem")
		require.NoError(t, ticket.GenerateKeyFile(path))
		st, err := os.Stat(path)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
		ks, err := ticket.LoadKeySet(path)
		require.NoError(t, err)
		require.NoError(t, ticket.GenerateKeyFile(path), "an existing key is kept")
		again, err := ticket.LoadKeySet(path)
		require.NoError(t, err)
		require.Equal(t, ks.Kid, again.Kid)
	})
}

// signed signs arbitrary claims with key under kid, for forged variants.
func signed(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func claimsOf(a ticket.Admission, kv ...any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": "flashsale", "sub": a.User, "aud": a.Sale, "use": "ticket", "jti": a.JTI,
		"iat": a.IssuedAt, "nbf": a.IssuedAt, "exp": a.ExpiresAt}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
		} else {
			c[kv[i].(string)] = kv[i+1]
		}
	}
	return c
}

func TestVerifyTicket(t *testing.T) {
	t.Parallel()
	p, priv := keyPEM(t, 1)
	iss := issuer(t, p)
	kid := iss.Keys().Kid
	_, stranger := keyPEM(t, 9)
	a := admission("alice")
	good := iss.Ticket(a)
	parts := strings.Split(good, ".")
	now := fixedNow.Unix()
	tests := []struct {
		name  string
		token string
		err   error // nil, ticket.ErrInvalid or ticket.ErrWrongSale
	}{
		{name: "valid", token: good},
		{name: "expired is not VerifyTicket's to say", token: iss.Ticket(ticket.Admission{Sale: a.Sale, User: "x",
			JTI: "j", IssuedAt: now - 600, ExpiresAt: now - 300})},
		{name: "another sale", token: iss.Ticket(ticket.Admission{Sale: "other", User: "x", JTI: "j",
			IssuedAt: now, ExpiresAt: now + 60}), err: ticket.ErrWrongSale},
		{name: "empty", token: "", err: ticket.ErrInvalid},
		{name: "garbage", token: "abc.def.ghi", err: ticket.ErrInvalid},
		{name: "alg none", token: base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"`+kid+`"}`)) +
			"." + parts[1] + ".", err: ticket.ErrInvalid},
		{name: "HS256 with the public key", token: signed(t, jwt.SigningMethodHS256, []byte(priv.Public().(ed25519.PublicKey)),
			kid, claimsOf(a)), err: ticket.ErrInvalid},
		{name: "another key, our kid", token: signed(t, jwt.SigningMethodEdDSA, stranger, kid, claimsOf(a)), err: ticket.ErrInvalid},
		{name: "unknown kid", token: signed(t, jwt.SigningMethodEdDSA, priv, "nope", claimsOf(a)), err: ticket.ErrInvalid},
		{name: "payload altered", token: parts[0] + "." + base64.RawURLEncoding.EncodeToString(
			[]byte(strings.Replace(string(mustB64(t, parts[1])), "alice", "mallo", 1))) + "." + parts[2], err: ticket.ErrInvalid},
		{name: "use queue", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "use", "queue")), err: ticket.ErrInvalid},
		{name: "no use", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "use", nil)), err: ticket.ErrInvalid},
		{name: "another issuer", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "iss", "x")), err: ticket.ErrInvalid},
		{name: "no sub", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "sub", nil)), err: ticket.ErrInvalid},
		{name: "no jti", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "jti", nil)), err: ticket.ErrInvalid},
		{name: "no exp", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "exp", nil)), err: ticket.ErrInvalid},
		{name: "aud a list", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "aud", []string{a.Sale})), err: ticket.ErrInvalid},
		{name: "exp a string", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "exp", "soon")), err: ticket.ErrInvalid},
		{name: "nbf in the future", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "nbf", now+60)), err: ticket.ErrInvalid},
		{name: "nbf just past the skew leeway", token: signed(t, jwt.SigningMethodEdDSA, priv, kid,
			claimsOf(a, "nbf", now+int64(ticket.NotBeforeLeeway/time.Second)+1)), err: ticket.ErrInvalid},
		{name: "nbf within the skew leeway", token: signed(t, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "nbf", now+1))},
		{name: "another sale and a bad signature: invalid first", token: signed(t, jwt.SigningMethodEdDSA, stranger, kid,
			claimsOf(a, "aud", "other")), err: ticket.ErrInvalid},
		{name: "a queue token", token: iss.QueueToken(a.Sale, a.User, fixedNow, fixedNow.Add(time.Hour)), err: ticket.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := iss.VerifyTicket(tt.token, a.Sale, fixedNow)
			if tt.err == nil {
				require.NoError(t, err)
				require.NotNil(t, c)
				require.Equal(t, a.Sale, c.Audience)
				require.Equal(t, ticket.UseTicket, c.Use)
				return
			}
			require.ErrorIs(t, err, tt.err)
			if tt.err == ticket.ErrWrongSale {
				require.NotNil(t, c, "the claims come with a wrong sale")
				require.NotErrorIs(t, err, ticket.ErrInvalid)
			}
		})
	}

	c, err := iss.VerifyTicket(good, a.Sale, fixedNow)
	require.NoError(t, err)
	require.Equal(t, &ticket.Claims{Issuer: "flashsale", Subject: "alice", Audience: a.Sale, Use: "ticket",
		ID: a.JTI, IssuedAt: a.IssuedAt, NotBefore: a.IssuedAt, ExpiresAt: a.ExpiresAt}, c)
	require.False(t, c.Expired(time.Unix(a.ExpiresAt-1, 0)))
	require.True(t, c.Expired(time.Unix(a.ExpiresAt, 0)), "expired at exp")
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(t, err)
	return b
}

// TestKeyRotation: after a rotation (the new key first in the file, the old
// one after it) tickets signed with the old key still verify, and new
// tickets carry the new kid.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	oldPEM, _ := keyPEM(t, 1)
	newPEM, _ := keyPEM(t, 2)
	before := issuer(t, oldPEM)
	after := issuer(t, newPEM, oldPEM)
	require.NotEqual(t, before.Keys().Kid, after.Keys().Kid)
	require.Contains(t, after.Keys().Previous, before.Keys().Kid)

	a := admission("alice")
	oldTicket := before.Ticket(a)
	_, err := after.VerifyTicket(oldTicket, a.Sale, fixedNow)
	require.NoError(t, err, "a ticket of the previous key verifies")
	newTicket := after.Ticket(a)
	require.Equal(t, after.Keys().Kid, segment(t, newTicket, 0)["kid"])
	_, err = after.VerifyTicket(newTicket, a.Sale, fixedNow)
	require.NoError(t, err)

	// Once the old key is dropped from the file, its tickets are refused.
	_, err = issuer(t, newPEM).VerifyTicket(oldTicket, a.Sale, fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid)
}

func TestVerifyQueueToken(t *testing.T) {
	t.Parallel()
	p, _ := keyPEM(t, 1)
	iss := issuer(t, p)
	exp := fixedNow.Add(time.Hour)
	qt := iss.QueueToken("phone-drop", "alice", fixedNow, exp)

	user, err := iss.VerifyQueueToken(qt, "phone-drop", fixedNow)
	require.NoError(t, err)
	require.Equal(t, "alice", user)
	_, err = iss.VerifyQueueToken(qt, "other", fixedNow)
	require.ErrorIs(t, err, ticket.ErrWrongSale)
	_, err = iss.VerifyQueueToken(qt, "phone-drop", exp)
	require.ErrorIs(t, err, ticket.ErrExpired)
	_, err = iss.VerifyQueueToken(iss.Ticket(admission("alice")), "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid, "a ticket is not a queue token")
	other, _ := keyPEM(t, 2)
	_, err = issuer(t, other).VerifyQueueToken(qt, "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid, "another ticket key derives another queue key")

	// a token that remembers its shopper's place gives it back, signed
	_, at, err := iss.VerifyQueueTokenAt(qt, "phone-drop", fixedNow)
	require.NoError(t, err)
	require.Equal(t, ticket.QueuePlace{}, at, "a token made without a place has none")
	placed := iss.QueueTokenAt("phone-drop", "alice", ticket.QueuePlace{Place: "4503599627370517", Gen: "a1b2"}, fixedNow, exp)
	user, at, err = iss.VerifyQueueTokenAt(placed, "phone-drop", fixedNow)
	require.NoError(t, err)
	require.Equal(t, "alice", user)
	require.Equal(t, ticket.QueuePlace{Place: "4503599627370517", Gen: "a1b2"}, at)
	head, rest, _ := strings.Cut(placed, ".")
	body, sig, _ := strings.Cut(rest, ".")
	claims, err := base64.RawURLEncoding.DecodeString(body)
	require.NoError(t, err)
	moved := strings.Replace(string(claims), "4503599627370517", "1", 1)
	forged := head + "." + base64.RawURLEncoding.EncodeToString([]byte(moved)) + "." + sig
	_, _, err = iss.VerifyQueueTokenAt(forged, "phone-drop", fixedNow)
	require.ErrorIs(t, err, ticket.ErrInvalid, "a shopper cannot move their place forward")
}

// FuzzVerifyTicket: whatever the token, VerifyTicket does not panic, fails
// only with ErrInvalid or ErrWrongSale, and accepts only tickets of the
// sale with the required claims.
func FuzzVerifyTicket(f *testing.F) {
	p, priv := keyPEM(f, 1)
	iss := issuer(f, p)
	kid := iss.Keys().Kid
	a := admission("alice")
	good := iss.Ticket(a)
	parts := strings.Split(good, ".")
	f.Add(good, a.Sale)
	f.Add(good, "other")
	f.Add("", a.Sale)
	f.Add("..", a.Sale)
	f.Add("a.b.c.d", a.Sale)
	f.Add(parts[0]+"."+parts[1]+".", a.Sale)
	f.Add(parts[0]+".e30."+parts[2], a.Sale)
	f.Add("eyJhbGciOiJub25lIn0."+parts[1]+".", a.Sale)
	f.Add(signed(f, jwt.SigningMethodHS256, []byte(priv.Public().(ed25519.PublicKey)), kid, claimsOf(a)), a.Sale)
	f.Add(signed(f, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "aud", []any{1, 2})), a.Sale)
	f.Add(signed(f, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "exp", 1e300)), a.Sale)
	f.Add(signed(f, jwt.SigningMethodEdDSA, priv, kid, claimsOf(a, "nbf", -1, "sub", strings.Repeat("x", 1000))), a.Sale)
	f.Add(iss.QueueToken(a.Sale, a.User, fixedNow, fixedNow.Add(time.Hour)), a.Sale)
	f.Fuzz(func(t *testing.T, token, sale string) {
		c, err := iss.VerifyTicket(token, sale, fixedNow)
		switch {
		case err == nil:
			require.NotNil(t, c)
			require.Equal(t, sale, c.Audience)
			require.Equal(t, ticket.UseTicket, c.Use)
			require.NotEmpty(t, c.Subject)
			require.NotEmpty(t, c.ID)
			require.NotZero(t, c.ExpiresAt)
		case err == ticket.ErrWrongSale:
			require.NotNil(t, c)
			require.NotEqual(t, sale, c.Audience)
		default:
			require.ErrorIs(t, err, ticket.ErrInvalid)
			require.Nil(t, c)
		}
	})
}
