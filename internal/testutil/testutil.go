// Package testutil holds helpers shared by tests: gating tests that need root
// or system binaries, and waiting on conditions with deadlines.
package testutil

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// RequireRoot skips t unless running as root. End-to-end tests that touch
// namespaces, mounts, nftables or runc call it first; CI runs them as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (runs in CI as root)")
	}
}

// RequireBinary skips t unless every named binary is on PATH.
func RequireBinary(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("needs %s on PATH (make deps installs it)", n)
		}
	}
}

// Eventually polls cond until it returns true or the deadline passes, then
// fails t with msg. Use it to wait on state, never a bare sleep.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: "+msg, append([]any{timeout}, args...)...)
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}
