// Package deploy_test checks the operations kit in deploy/ (the Grafana
// dashboard, the Prometheus alerts, the Helm chart) against a real node and
// the real tools, so none of it can drift from the code it watches.
package deploy_test

import (
	"net/http"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (the test
// nodes must stop all their loops).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// the test client's idle keep-alive connections are the client's, not the node's
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		goleak.Cleanup(func(int) { http.DefaultClient.CloseIdleConnections() }),
	)
}
