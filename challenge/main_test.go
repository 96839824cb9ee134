package challenge

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the fake
// captcha verifiers' handlers must all have returned.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }))
}
