package ratelimit_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind (the
// Limiter owns none; the tests' silent Redis servers must stop too).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
