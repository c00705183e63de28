// Package runtimetest helps root end-to-end tests of the container runtime:
// it builds the shim, a busybox root filesystem, and cleans cgroups.
package runtimetest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
)

var (
	shimOnce sync.Once
	shimPath string
	shimErr  error
)

// BuildShim builds cmd/shoal-shim (static) once per test binary and returns
// its path. TestMain removes it with RemoveShim.
func BuildShim(t testing.TB) string {
	t.Helper()
	shimOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shrt-shim-")
		if err != nil {
			shimErr = err
			return
		}
		goBin := filepath.Join(goruntime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goBin); err != nil {
			goBin = "go"
		}
		out := filepath.Join(dir, "shoal-shim")
		cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/shoal/shoal/cmd/shoal-shim")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			shimErr = &buildError{out: string(b), err: err}
			os.RemoveAll(dir)
			return
		}
		shimPath = out
	})
	if shimErr != nil {
		t.Fatalf("building shoal-shim: %v", shimErr)
	}
	return shimPath
}

// RemoveShim deletes the built shim; call it from TestMain after m.Run.
func RemoveShim() {
	if shimPath != "" {
		os.RemoveAll(filepath.Dir(shimPath))
	}
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }

// Passwd and Group are the /etc files of BusyboxRootfs: root, a regular
// user "shrt" (1000:1000, also in group "extra" 1001), and nobody.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\nshrt:x:1000:1000:shrt:/home/shrt:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	Group  = "root:x:0:\nshrt:x:1000:\nextra:x:1001:shrt\nnogroup:x:65534:\n"
)

// BusyboxRootfs fills dir with a root filesystem made of the host's static
// busybox and its applets.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("needs busybox (busybox-static)")
	}
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "home/shrt", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	os.Chown(filepath.Join(dir, "home/shrt"), 1000, 1000)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(list)) {
		if a == "busybox" {
			continue
		}
		os.Symlink("busybox", filepath.Join(dir, "bin", a))
	}
	for name, content := range map[string]string{"etc/passwd": Passwd, "etc/group": Group} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Tag returns a short unique name for kernel objects: "shrt" + 6 hex digits.
func Tag() string {
	b := make([]byte, 3)
	rand.Read(b)
	return "shrt" + hex.EncodeToString(b)
}

// CgroupParent returns a fresh cgroup parent name and removes it (in every
// hierarchy) when the test ends; runc deletes the containers' own cgroups.
func CgroupParent(t testing.TB) string {
	t.Helper()
	name := Tag()
	t.Cleanup(func() { RemoveCgroup(name) })
	return name
}

// RemoveCgroup removes cgroup directory name (relative to the hierarchy
// roots) in every hierarchy, children first.
func RemoveCgroup(name string) {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, root := range roots {
		base := filepath.Join(root, name)
		var dirs []string
		filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			os.Remove(dirs[i])
		}
	}
}
