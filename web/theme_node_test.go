package web_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flashsale/flashsale/node"
	"github.com/flashsale/flashsale/testenv"
)

// TestThemeDirStartErrors: a --theme-dir that is missing, or holds a theme
// that cannot work, stops the start with an error naming the flag.
func TestThemeDirStartErrors(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-such-theme")
	cfg := node.Config{Listen: "127.0.0.1:0", Roles: []string{node.RoleAll}, RedisURL: testenv.RedisURL(),
		MySQLDSN: testenv.MySQLDSN(), Dev: true, ThemeDir: missing}
	err := cfg.Validate()
	require.Error(t, err)
	require.Contains(t, err.Error(), "--theme-dir "+missing+": not a directory")

	_, ks := testenv.Redis(t)
	dsn, _ := testenv.MySQL(t)
	keyPath, _ := testenv.KeyFile(t)
	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, "text.en.json"), []byte(`{"titel": "typo"}`), 0o644))
	cfg = node.Config{Listen: "127.0.0.1:0", Roles: []string{node.RoleAll}, RedisURL: testenv.RedisURL(), MySQLDSN: dsn,
		AdminToken: "admin", IdentitySecret: "secret", TicketKey: keyPath, TicketIssuer: "flashsale",
		KeyPrefix: ks.Prefix, DataDir: t.TempDir(), ThemeDir: bad}
	require.NoError(t, cfg.Validate())
	n, err := node.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if n != nil {
		n.Close()
	}
	require.Error(t, err)
	require.Contains(t, err.Error(), "--theme-dir: text.en.json in "+bad+`: unknown key "titel"`)
}
