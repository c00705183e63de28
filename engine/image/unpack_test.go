package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/internal/testutil"
)

func whiteoutLayer(t testing.TB) []byte {
	return layerTar(t,
		reg(".wh.gone", ""),
		dir("d/"),
		reg("d/.wh..wh..opq", ""),
		reg("d/new", "new\n"),
		reg("e/.wh.old", ""),
		reg(".wh..wh.plnk/123", ""),
	)
}

func listTree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if rel, _ := filepath.Rel(root, p); rel != "." {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func TestUnpackWhiteoutsUnprivileged(t *testing.T) {
	dir := t.TempDir()
	if err := unpackLayer(bytes.NewReader(whiteoutLayer(t)), dir, false); err != nil {
		t.Fatal(err)
	}
	want := []string{".wh.gone", "d", "d/.wh..wh..opq", "d/new", "e", "e/.wh.old"}
	if got := listTree(t, dir); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tree %v, want %v (AUFS markers kept verbatim)", got, want)
	}
}

func TestUnpackWhiteoutsPrivileged(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unpackLayer(bytes.NewReader(whiteoutLayer(t)), dir, true); err != nil {
		t.Fatal(err)
	}
	checkOverlayWhiteouts(t, dir)
}

func TestConvertAUFS(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	if err := unpackLayer(bytes.NewReader(whiteoutLayer(t)), dir, false); err != nil {
		t.Fatal(err)
	}
	if err := convertAUFS(dir); err != nil {
		t.Fatal(err)
	}
	checkOverlayWhiteouts(t, dir)
}

func checkOverlayWhiteouts(t testing.TB, dir string) {
	t.Helper()
	want := []string{"d", "d/new", "e", "e/old", "gone"}
	if got := listTree(t, dir); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tree %v, want %v", got, want)
	}
	for _, p := range []string{"gone", "e/old"} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(dir, p), &st); err != nil {
			t.Fatal(err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
			t.Fatalf("%s: mode %o rdev %d, want a 0/0 char device", p, st.Mode, st.Rdev)
		}
	}
	buf := make([]byte, 8)
	n, err := unix.Getxattr(filepath.Join(dir, "d"), opaqueXattr, buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Fatalf("opaque xattr on d: %q %v", buf[:n], err)
	}
}

func TestUnpackConfinement(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "layer")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// "..": cleaned into the layer.
	if err := unpackLayer(bytes.NewReader(layerTar(t, reg("../../escape", "x"))), dir, false); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(dir, "escape"), "x")
	// Writing through a symlink that leaves the layer is refused.
	for name, layer := range map[string][]byte{
		"absolute symlink parent": layerTar(t, symlink("out", "/tmp"), reg("out/shimg-escape", "x")),
		"relative symlink parent": layerTar(t, symlink("out", "../.."), reg("out/shimg-escape", "x")),
		"hardlink outside":        layerTar(t, tentry{name: "h", typ: tar.TypeLink, link: "../../../etc/passwd"}),
	} {
		d := filepath.Join(parent, strings.ReplaceAll(name, " ", "-"))
		os.Mkdir(d, 0o755)
		if err := unpackLayer(bytes.NewReader(layer), d, false); err == nil {
			t.Errorf("%s: unpack succeeded", name)
		}
	}
	if _, err := os.Stat("/tmp/shimg-escape"); !errors.Is(err, os.ErrNotExist) {
		os.Remove("/tmp/shimg-escape")
		t.Fatalf("a layer wrote outside its directory")
	}
	if got := listTree(t, parent); len(got) == 0 || strings.Contains(strings.Join(got, ","), "shimg-escape") {
		t.Fatalf("tree %v", got)
	}
}

func TestUnpackOwnershipAndModes(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Typeflag: tar.TypeDir, Name: "ro/", Mode: 0o555, Uid: 1000, Gid: 1000},
		{Typeflag: tar.TypeReg, Name: "ro/suid", Mode: 0o4755, Uid: 0, Gid: 0, Size: 1, PAXRecords: map[string]string{"SCHILY.xattr.user.shimg": "v"}},
		{Typeflag: tar.TypeReg, Name: "owned", Mode: 0o640, Uid: 1234, Gid: 5678, Size: 1},
		{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600},
		{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3},
	} {
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size == 1 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	if err := unpackLayer(&buf, dir, true); err != nil {
		t.Fatal(err)
	}
	st := func(p string) *syscall.Stat_t {
		fi, err := os.Lstat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	if s := st("ro"); s.Mode&0o7777 != 0o555 || s.Uid != 1000 {
		t.Errorf("ro: mode %o uid %d", s.Mode&0o7777, s.Uid)
	}
	if s := st("ro/suid"); s.Mode&0o7777 != 0o4755 {
		t.Errorf("suid: mode %o", s.Mode&0o7777)
	}
	if s := st("owned"); s.Uid != 1234 || s.Gid != 5678 || s.Mode&0o777 != 0o640 {
		t.Errorf("owned: %d:%d %o", s.Uid, s.Gid, s.Mode&0o777)
	}
	if s := st("fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: %o", s.Mode)
	}
	if s := st("null"); s.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(s.Rdev) != 1 || unix.Minor(s.Rdev) != 3 {
		t.Errorf("null: %o %d", s.Mode, s.Rdev)
	}
	b := make([]byte, 4)
	if n, err := unix.Getxattr(filepath.Join(dir, "ro/suid"), "user.shimg", b); err != nil || string(b[:n]) != "v" {
		t.Errorf("xattr: %q %v", b[:n], err)
	}
}

// TestOverlayHidesWhiteouts mounts unpacked layers as overlayfs, the way
// the container runtime does, and checks deletions really hide files.
func TestOverlayHidesWhiteouts(t *testing.T) {
	testutil.RequireRoot(t)
	s := newTestStore(t)
	lower := layerTar(t, reg("gone", "g"), reg("keep", "k"), dir("d/"), reg("d/old", "o"), dir("e/"), reg("e/old", "o"), reg("e/stay", "s"))
	upper := whiteoutLayer(t)
	mustLoad(t, s, dockerSave(t, timg{tags: []string{"ovl:1"}, layers: [][]byte{lower, upper}}))
	img, err := s.Get(ctx, "ovl:1")
	if err != nil {
		t.Fatal(err)
	}
	mnt := filepath.Join(t.TempDir(), "shimg-ovl")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := "lowerdir=" + img.LayerDirs[1] + ":" + img.LayerDirs[0]
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, opts); err != nil {
		t.Fatalf("mount overlay: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	want := []string{"d", "d/new", "e", "e/stay", "keep"}
	if got := listTree(t, mnt); strings.Join(got, ",") != strings.Join(want, ",") {
		out, _ := exec.Command("ls", "-laR", mnt).CombinedOutput()
		t.Fatalf("merged tree %v, want %v\n%s", got, want, out)
	}
}
