package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/identity"
)

// BenchmarkVerifyHS256 is the join path's user-token check.
func BenchmarkVerifyHS256(b *testing.B) {
	secret := []byte("s3cret")
	v, err := identity.New(context.Background(), identity.Config{Secret: secret})
	require.NoError(b, err)
	tok, _, err := identity.Mint(secret, "auth0|alice", time.Hour)
	require.NoError(b, err)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
	}
}
