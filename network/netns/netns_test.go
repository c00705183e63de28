package netns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/shoal/shoal/internal/testutil"
)

func TestUnescapeMountPath(t *testing.T) {
	tests := map[string]string{
		`/run/netns`:         "/run/netns",
		`/tmp/with\040space`: "/tmp/with space",
		`/a\011tab\134slash`: "/a\ttab\\slash",
		`/trailing\04`:       `/trailing\04`, // too short to be an escape
		`/not\xyzescape`:     `/not\xyzescape`,
	}
	for in, want := range tests {
		if got := unescapeMountPath(in); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func TestIsMountPoint(t *testing.T) {
	if ok, err := IsMountPoint("/"); !ok || err != nil {
		t.Fatalf("/: %v %v", ok, err)
	}
	if ok, err := IsMountPoint(t.TempDir()); ok || err != nil {
		t.Fatalf("temp dir: %v %v", ok, err)
	}
}

func TestIsPinnedOnPlainFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if IsPinned(f) || IsPinned(f+"-missing") {
		t.Fatal("a plain or missing file counts as a namespace")
	}
	if _, err := Open(f); err == nil {
		t.Fatal("opened a plain file as a namespace")
	}
	if err := Remove(f + "-missing"); err != nil {
		t.Fatalf("removing a missing pin: %v", err)
	}
}

// testDir is a prepared pin directory removed with the test, with a check
// that no mount under it remains.
func testDir(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	base := t.TempDir()
	dir := filepath.Join(base, "shbrs-netns")
	if err := PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveDir(dir); err != nil {
			t.Errorf("RemoveDir: %v", err)
		}
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		if strings.Contains(string(mi), base) {
			t.Errorf("mounts left under %s", base)
		}
	})
	return dir
}

func TestCreateEnterRemove(t *testing.T) {
	dir := testDir(t)
	// Idempotent.
	if err := PrepareDir(dir); err != nil {
		t.Fatal(err)
	}
	if ok, _ := IsMountPoint(dir); !ok {
		t.Fatal("pin dir is not a mount point")
	}
	path := filepath.Join(dir, "a")
	ns, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if !IsPinned(path) {
		t.Fatal("not pinned")
	}
	if _, err := Create(path); err == nil {
		t.Fatal("created over an existing pin")
	}
	host, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	inside, err := vnetns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if inside.Equal(host) {
		t.Fatal("the pin is the host namespace")
	}

	// Do runs inside: only lo, and it is up.
	var links []netlink.Link
	if err := ns.Do(func() error {
		var err error
		links, err = netlink.LinkList()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" || links[0].Attrs().OperState == netlink.OperDown {
		t.Fatalf("links inside: %v", links)
	}
	// ... and the calling goroutine's thread is back in the host namespace.
	if now, _ := vnetns.Get(); !now.Equal(host) {
		t.Fatal("Do leaked the namespace")
	}
	if err := ns.Do(func() error { return errors.New("boom") }); err == nil || err.Error() != "boom" {
		t.Fatalf("Do error: %v", err)
	}

	// A netlink handle on the namespace sees the same.
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	hl, err := h.LinkList()
	h.Close()
	if err != nil || len(hl) != 1 {
		t.Fatalf("handle links: %v %v", hl, err)
	}

	// Open works on a pin; Remove unpins and deletes; twice is fine.
	ns2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ns2.Close()
	if err := Remove(path); err != nil {
		t.Fatal(err)
	}
	if IsPinned(path) {
		t.Fatal("still pinned")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin file left: %v", err)
	}
	if err := Remove(path); err != nil {
		t.Fatalf("second remove: %v", err)
	}
}

// RemoveDir unpins whatever is left in the directory.
func TestRemoveDirUnpinsAll(t *testing.T) {
	dir := testDir(t)
	for _, n := range []string{"x", "y"} {
		ns, err := Create(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		ns.Close()
	}
	if err := RemoveDir(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("dir left: %v", err)
	}
	if err := RemoveDir(dir); err != nil {
		t.Fatalf("second RemoveDir: %v", err)
	}
}

// A failed Create leaves no file behind.
func TestCreateFailureLeavesNothing(t *testing.T) {
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "missing-dir", "ns")
	if _, err := Create(path); err == nil {
		t.Fatal("created in a missing directory")
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("file left: %v", err)
	}
}
