package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireToolsEnv, set to 1, turns a missing tool into a failure instead of
// a skip. CI sets it (.ci/run): there a test that cannot run must fail the
// run, never pass it quietly by skipping.
const RequireToolsEnv = "FLASHSALE_REQUIRE_TOOLS"

// RequireTool returns the path of a program a test needs: name on PATH, or
// else the first of also that is an executable file (e.g.
// /usr/sbin/mariadbd, outside a user's PATH). When it is missing the test is
// skipped with a message naming it, or fails when FLASHSALE_REQUIRE_TOOLS=1.
func RequireTool(t testing.TB, name string, also ...string) string {
	t.Helper()
	return requireTool(t, os.Getenv(RequireToolsEnv) == "1", name, also...)
}

// toolT is the part of testing.TB RequireTool uses (so its own test can
// watch what it does).
type toolT interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

func requireTool(t toolT, strict bool, name string, also ...string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	for _, p := range also {
		// LookPath of a path checks that it is an executable file
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	where := "not on PATH"
	if len(also) > 0 {
		where += " nor at " + strings.Join(also, ", ")
	}
	msg := name + " is not installed (" + where + "); deploy/services.sh installs it"
	if strict {
		t.Fatalf("%s; %s=1 makes a missing tool a failure", msg, RequireToolsEnv)
		return ""
	}
	t.Skipf("%s; skipped (set %s=1 to make this a failure)", msg, RequireToolsEnv)
	return ""
}
