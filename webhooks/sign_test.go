package webhooks_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/webhooks"
)

// TestSignStandardWebhooksVector: the signature of the Standard Webhooks
// spec's published example, so any receiver library verifies ours.
func TestSignStandardWebhooksVector(t *testing.T) {
	key, err := webhooks.Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := webhooks.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

// TestKey: a secret without the whsec_ prefix is its own bytes; a bad
// whsec_ secret and none at all are errors that name the flag.
func TestKey(t *testing.T) {
	k, err := webhooks.Key("plain secret")
	require.NoError(t, err)
	require.Equal(t, []byte("plain secret"), k)
	for _, bad := range []string{"", "whsec_", "whsec_not base64!"} {
		_, err := webhooks.Key(bad)
		require.ErrorContains(t, err, "--webhook-secret", "%q", bad)
	}
}

// TestBackoff: about 5 s, 10 s, 20 s, ... doubling up to 10 min, ±20%.
func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		7: 320 * time.Second, 8: 10 * time.Minute, 50: 10 * time.Minute} {
		for range 50 {
			d := webhooks.Backoff(n)
			require.GreaterOrEqual(t, d, want*8/10, "attempt %d", n)
			require.LessOrEqual(t, d, want*12/10, "attempt %d", n)
		}
	}
}
