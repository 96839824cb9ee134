package bans

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// Watcher must stop its loop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
