package node_test

import (
	"flag"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
)

func parseConfig(t *testing.T, args ...string) (*node.Config, *flag.FlagSet, error) {
	t.Helper()
	var c node.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	return &c, fs, c.Parse(fs, args)
}

// TestEnvironmentFillsWhatFlagsDoNot: every kind of setting comes from its
// FLASHSALE_* variable, a flag wins over it, an empty variable is unset,
// and variables that are not settings are left alone.
func TestEnvironmentFillsWhatFlagsDoNot(t *testing.T) {
	t.Setenv("FLASHSALE_LISTEN", "127.0.0.1:9999")
	t.Setenv("FLASHSALE_SHUTDOWN_DELAY", "3s")
	t.Setenv("FLASHSALE_DEV", "yes")
	t.Setenv("FLASHSALE_SAMPLE_SALE", "off")
	t.Setenv("FLASHSALE_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.1")
	t.Setenv("FLASHSALE_ROLES", "checkout,admitter")
	t.Setenv("FLASHSALE_REDIS_URL", "")
	t.Setenv("FLASHSALE_METRICS_LISTEN", "127.0.0.1:9100")
	t.Setenv("FLASHSALE_USER", "bob") // a command's own flag, not a setting
	t.Setenv("FLASHSALE_REQUIRE_TOOLS", "1")

	var c node.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Flags(fs)
	user := fs.String("user", "", "")
	require.NoError(t, c.Parse(fs, []string{"--listen", "127.0.0.1:7000", "--shutdown-delay", "1s"}))

	require.Equal(t, "127.0.0.1:7000", c.Listen, "the flag wins")
	require.Equal(t, time.Second, c.ShutdownDelay, "the flag wins")
	require.True(t, c.Dev)
	require.False(t, c.SampleSale)
	require.True(t, c.TrustedProxies.Trusted(netip.MustParseAddr("10.200.0.1")))
	require.True(t, c.TrustedProxies.Trusted(netip.MustParseAddr("192.0.2.1")))
	require.False(t, c.TrustedProxies.Trusted(netip.MustParseAddr("192.0.2.2")))
	require.Equal(t, []string{"checkout", "admitter"}, c.Roles)
	require.Equal(t, "redis://127.0.0.1:6379/0", c.RedisURL, "an empty variable is unset")
	require.Equal(t, "127.0.0.1:9100", c.MetricsListen)
	require.Empty(t, *user)
}

func TestDefaults(t *testing.T) {
	c, _, err := parseConfig(t)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", c.Listen)
	require.Equal(t, []string{"all"}, c.Roles)
	require.Nil(t, c.TrustedProxies, "no proxy is trusted by default")
	require.False(t, c.TrustedProxies.Trusted(netip.MustParseAddr("127.0.0.1")))
	require.Empty(t, c.MetricsListen)
	require.True(t, c.SampleSale)
	require.False(t, c.Dev)
}

// TestBadEnvironmentNamesTheVariable: a value that does not parse stops
// the start with a message naming the variable and what it takes; every
// such variable is named at once.
func TestBadEnvironmentNamesTheVariable(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"FLASHSALE_SHUTDOWN_DELAY", "5", `FLASHSALE_SHUTDOWN_DELAY="5" is not a duration: give a number with a unit, such as 5s, 250ms or 2m; it sets --shutdown-delay`},
		{"FLASHSALE_RECONCILE_PENDING_AFTER", "soon", `FLASHSALE_RECONCILE_PENDING_AFTER="soon" is not a duration`},
		{"FLASHSALE_DEV", "maybe", `FLASHSALE_DEV="maybe" is not a boolean: use true or false (or 1/0, yes/no, on/off); it sets --dev`},
		{"FLASHSALE_SAMPLE_SALE", "2", `FLASHSALE_SAMPLE_SALE="2" is not a boolean`},
		{"FLASHSALE_TRUSTED_PROXIES", "10.0.0/8", `FLASHSALE_TRUSTED_PROXIES="10.0.0/8": "10.0.0/8" is not a CIDR`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(tc.name, tc.value)
			_, _, err := parseConfig(t)
			require.ErrorContains(t, err, tc.want)
		})
	}
	t.Run("all at once", func(t *testing.T) {
		t.Setenv("FLASHSALE_SHUTDOWN_DELAY", "5")
		t.Setenv("FLASHSALE_DEV", "maybe")
		_, _, err := parseConfig(t)
		require.ErrorContains(t, err, "FLASHSALE_SHUTDOWN_DELAY")
		require.ErrorContains(t, err, "FLASHSALE_DEV")
	})
	t.Run("a flag over a bad variable", func(t *testing.T) {
		t.Setenv("FLASHSALE_SHUTDOWN_DELAY", "5")
		c, _, err := parseConfig(t, "--shutdown-delay", "2s")
		require.NoError(t, err, "the variable is not read when the flag is given")
		require.Equal(t, 2*time.Second, c.ShutdownDelay)
	})
}

func TestTrustedProxiesFlag(t *testing.T) {
	c, _, err := parseConfig(t, "--trusted-proxies", "2001:db8::/32,10.0.0.0/8")
	require.NoError(t, err)
	require.Equal(t, "2001:db8::/32,10.0.0.0/8", c.TrustedProxies.String())
	_, _, err = parseConfig(t, "--trusted-proxies", "10.0.0.0/8,lb.internal")
	require.ErrorContains(t, err, "-trusted-proxies")
	require.ErrorContains(t, err, `"lb.internal" is not a CIDR or an address`)
}

func TestHelpIsErrHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		_, _, err := parseConfig(t, arg)
		require.ErrorIs(t, err, flag.ErrHelp, arg)
	}
}

// TestDevListensOnLoopbackOnly: --dev mints tokens and pays orders for
// whoever asks, so it refuses any address other hosts can reach.
func TestDevListensOnLoopbackOnly(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ok     bool
	}{
		{"127.0.0.1:8080", true},
		{"127.0.0.1:0", true},
		{"127.5.6.7:8080", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LocalHost:8080", true},
		{"[::ffff:127.0.0.1]:8080", true},
		{"0.0.0.0:8080", false},
		{":8080", false},
		{"[::]:8080", false},
		{"192.168.1.5:8080", false},
		{"[2001:db8::1]:8080", false},
		{"example.com:8080", false},
		{"localhost.example.com:8080", false},
	} {
		t.Run(tc.listen, func(t *testing.T) {
			c := node.Config{Listen: tc.listen, Roles: []string{"all"}, RedisURL: "redis://x", MySQLDSN: "x", Dev: true}
			err := c.Validate()
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, "--listen "+tc.listen+" with --dev")
				require.ErrorContains(t, err, "loopback")
				// and before --dev generates anything in --data-dir
				c.DataDir = t.TempDir() + "/never"
				require.ErrorContains(t, c.DevDefaults(), "--listen")
				require.NoDirExists(t, c.DataDir)
			}
			c.Dev = false
			require.NotContains(t, errString(c.Validate()), "--listen", "without --dev any address is fine")
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
