package ticket_test

import (
	"strings"
	"testing"
	"time"

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
