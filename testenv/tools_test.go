package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// recorder is a toolT that notes the call instead of ending the test.
type recorder struct{ fatal, skip string }

func (r *recorder) Helper()                      {}
func (r *recorder) Fatalf(f string, args ...any) { r.fatal = fmt.Sprintf(f, args...) }
func (r *recorder) Skipf(f string, args ...any)  { r.skip = fmt.Sprintf(f, args...) }

// TestRequireTool: a tool found on PATH or at a given path is returned; a
// missing one is a skip naming it, or a failure when strict (CI).
func TestRequireTool(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "fs-tool")
	require.NoError(t, os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755))
	plain := filepath.Join(dir, "fs-plain")
	require.NoError(t, os.WriteFile(plain, []byte("not a program"), 0o644))
	t.Setenv("PATH", dir)

	for _, strict := range []bool{false, true} {
		r := &recorder{}
		require.Equal(t, exe, requireTool(r, strict, "fs-tool"))
		require.Equal(t, exe, requireTool(r, strict, "fs-elsewhere", "/nonexistent/fs-elsewhere", exe))
		require.Equal(t, &recorder{}, r, "found: neither skipped nor failed")
	}

	r := &recorder{}
	require.Empty(t, requireTool(r, false, "fs-missing", "/nonexistent/fs-missing", plain))
	require.Empty(t, r.fatal)
	require.Contains(t, r.skip, "fs-missing is not installed (not on PATH nor at /nonexistent/fs-missing, "+plain+")")
	require.Contains(t, r.skip, RequireToolsEnv+"=1")

	r = &recorder{}
	require.Empty(t, requireTool(r, true, "fs-missing"))
	require.Empty(t, r.skip)
	require.Contains(t, r.fatal, "fs-missing is not installed (not on PATH)")
	require.Contains(t, r.fatal, RequireToolsEnv+"=1 makes a missing tool a failure")
}
