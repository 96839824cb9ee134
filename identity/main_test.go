package identity_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// Verifier with a JWKS must stop its refresh when closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
