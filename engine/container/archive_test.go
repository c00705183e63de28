package container

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/shoal/shoal/errdefs"
)

type tarEntry struct {
	name, body, link string
	typ              byte
}

func mkTar(t *testing.T, entries ...tarEntry) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, Size: int64(len(e.body)), Uid: 1234, Gid: 1234}
		if e.typ == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return &buf
}

// Whatever the archive says, extraction stays inside the directory.
func TestExtractTarStaysInside(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	for _, tc := range []struct {
		name    string
		entries []tarEntry
		check   string // a path under dir that must hold "x"
	}{
		{"dot-dot", []tarEntry{{name: "../../escape", body: "x", typ: tar.TypeReg}}, "escape"},
		{"absolute", []tarEntry{{name: "/etc/escape", body: "x", typ: tar.TypeReg}}, "etc/escape"},
		{"through a symlink", []tarEntry{{name: "up", link: "/", typ: tar.TypeSymlink}, {name: "up/escape", body: "x", typ: tar.TypeReg}}, "escape"},
		{"through a relative symlink", []tarEntry{{name: "up", link: "../..", typ: tar.TypeSymlink}, {name: "up/escape", body: "x", typ: tar.TypeReg}}, "escape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outer := t.TempDir()
			dir := filepath.Join(outer, "a", "b")
			os.MkdirAll(dir, 0o755)
			if err := extractTar(mkTar(t, tc.entries...), dir, false, false); err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, tc.check)); err != nil || string(b) != "x" {
				t.Fatalf("%s inside: %q %v", tc.check, b, err)
			}
			for _, p := range []string{filepath.Join(outer, "escape"), filepath.Join(outer, "a", "escape"), "/escape", "/etc/escape"} {
				if _, err := os.Stat(p); err == nil {
					t.Fatalf("written outside: %s", p)
				}
			}
			fi, _ := os.Stat(filepath.Join(dir, tc.check))
			if st := fi.Sys().(*syscallStat); st.Uid != 0 {
				t.Fatalf("owner %d, want root without copyUIDGID", st.Uid)
			}
		})
	}
}

func TestExtractTarOverwriteRules(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown)")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "d"), 0o755)
	os.WriteFile(filepath.Join(dir, "f"), []byte("old"), 0o644)
	err := extractTar(mkTar(t, tarEntry{name: "d", body: "file", typ: tar.TypeReg}), dir, true, false)
	if !errdefs.IsInvalidParameter(err) {
		t.Fatalf("file over a directory with noOverwriteDirNonDir: %v", err)
	}
	if err := extractTar(mkTar(t, tarEntry{name: "f", body: "new", typ: tar.TypeReg}), dir, true, true); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, "f"))
	if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != "new" || fi.Sys().(*syscallStat).Uid != 1234 {
		t.Fatalf("file replaced: %q, owner %d (copyUIDGID keeps 1234)", b, fi.Sys().(*syscallStat).Uid)
	}
}

type syscallStat = syscall.Stat_t
