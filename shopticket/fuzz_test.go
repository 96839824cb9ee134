package shopticket_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/shopticket"
	"github.com/flashsale/flashsale/testenv"
	"github.com/flashsale/flashsale/ticket"
)

// FuzzVerify feeds the verifier any string as a ticket: it never panics,
// answers one of its sentinel errors, and passes nothing but a ticket of
// the sale signed by the JWKS's key. The JWKS is flashsale's own (the
// ticket package's), served over HTTP.
func FuzzVerify(f *testing.F) {
	_, keys := testenv.KeyFile(f)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(keys.JWKS())
	}))
	defer jwks.Close()
	v, err := shopticket.New(shopticket.Config{JWKSURL: jwks.URL, Sale: "s1", RefreshEvery: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(f, err)
	defer v.Close()

	iss := ticket.NewIssuer(keys, "flashsale")
	now := time.Now().Unix()
	good := iss.Ticket(ticket.Admission{Sale: "s1", User: "alice", JTI: "j1", IssuedAt: now, ExpiresAt: now + 3600})
	f.Add(good)
	f.Add(iss.Ticket(ticket.Admission{Sale: "s2", User: "alice", JTI: "j1", IssuedAt: now, ExpiresAt: now + 3600}))
	f.Add(iss.QueueToken("s1", "alice", time.Now(), time.Now().Add(time.Hour)))
	f.Add("")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(t.Context(), tok)
		for _, known := range []error{shopticket.ErrNoTicket, shopticket.ErrInvalid, shopticket.ErrWrongSale,
			shopticket.ErrExpired, shopticket.ErrUnavailable} {
			if errors.Is(err, known) {
				return
			}
		}
		require.NoError(t, err, "an error of no known kind")
		require.Equal(t, "s1", c.Sale)
		require.Equal(t, keys.Kid, c.KeyID)
		require.NotEmpty(t, c.User)
		require.NotEmpty(t, c.ID)
	})
}

// FuzzParseJWKS: the JWKS parser never panics and keeps only 32-byte
// Ed25519 keys with a kid.
func FuzzParseJWKS(f *testing.F) {
	_, keys := testenv.KeyFile(f)
	f.Add(keys.JWKS())
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k","x":"AAAA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := shopticket.ParseJWKS(bytes.NewReader(b))
		if err != nil {
			require.Empty(t, got)
			return
		}
		require.NotEmpty(t, got)
		for kid, k := range got {
			require.NotEmpty(t, kid)
			require.Len(t, k, ed25519.PublicKeySize)
		}
	})
}
