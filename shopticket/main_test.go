package shopticket_test

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// Verifier must stop its JWKS refresh on Close, and every node a test
// starts must stop with it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// the test client's idle keep-alive connections are the client's
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }),
	)
}
