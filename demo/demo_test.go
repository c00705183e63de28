package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/internal/testutil"
)

func requireBusybox(t *testing.T) {
	t.Helper()
	if err := CheckBusybox(); err != nil {
		t.Skip(err) // make deps installs busybox-static
	}
}

func loadDemo(t *testing.T, names ...string) *image.Store {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteTar(&buf, names...); err != nil {
		t.Fatal(err)
	}
	s, err := image.NewStore(image.Config{Root: filepath.Join(t.TempDir(), "shimg-demo")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestWriteTarIsDeterministic(t *testing.T) {
	requireBusybox(t)
	var a, b bytes.Buffer
	if err := WriteTar(&a); err != nil {
		t.Fatal(err)
	}
	if err := WriteTar(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two builds differ")
	}
	s1, s2 := loadDemo(t), loadDemo(t)
	for _, n := range Names {
		i1, err := s1.Get(context.Background(), n)
		if err != nil {
			t.Fatal(err)
		}
		i2, _ := s2.Get(context.Background(), n)
		if i1.ID != i2.ID {
			t.Fatalf("%s: IDs differ across builds", n)
		}
	}
}

func TestDemoImages(t *testing.T) {
	requireBusybox(t)
	s := loadDemo(t)
	ctx := context.Background()
	bb, err := s.Get(ctx, "demo/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	root := bb.LayerDirs[0]
	for _, applet := range []string{"sh", "ls", "cat", "echo", "sleep", "httpd", "nslookup", "wget", "hostname", "ps", "top", "ping", "env", "id", "mkdir", "rm"} {
		if l, err := os.Readlink(filepath.Join(root, "bin", applet)); err != nil || l != "busybox" {
			t.Errorf("bin/%s: %q %v", applet, l, err)
		}
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	for _, u := range []string{"root:x:0:0:", "nobody:x:65534:65534:"} {
		if !strings.Contains(string(passwd), u) {
			t.Errorf("passwd lacks %s", u)
		}
	}
	if !strings.Contains(string(group), "nobody:x:65534:") {
		t.Errorf("group: %s", group)
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 || fi.Mode().Perm() != 0o777 {
		t.Errorf("tmp: %v %v", fi.Mode(), err)
	}
	if !reflect.DeepEqual(bb.Config.Config.Cmd, []string{"sh"}) {
		t.Errorf("busybox Cmd %v", bb.Config.Config.Cmd)
	}

	hn, err := s.Get(ctx, "demo/hostname")
	if err != nil {
		t.Fatal(err)
	}
	if len(hn.LayerDirs) != 2 || hn.LayerDirs[0] != root {
		t.Fatalf("hostname layers %v: the busybox layer must be shared", hn.LayerDirs)
	}
	if _, ok := hn.Config.Config.ExposedPorts["80/tcp"]; !ok || !reflect.DeepEqual(hn.Config.Config.Entrypoint, []string{"/hostname-httpd.sh"}) {
		t.Errorf("hostname config %+v", hn.Config.Config)
	}
	if fi, err := os.Stat(filepath.Join(hn.LayerDirs[1], "hostname-httpd.sh")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("entrypoint script: %v", err)
	}
	dn, err := s.Get(ctx, "demo/dnstools")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dn.Config.Config.Cmd, []string{"sh", "-c", dnstoolsCmd}) {
		t.Errorf("dnstools Cmd %v", dn.Config.Config.Cmd)
	}
}

func TestWriteTarSubsetAndErrors(t *testing.T) {
	requireBusybox(t)
	s := loadDemo(t, "demo/dnstools:latest")
	if s.Count() != 1 {
		t.Fatalf("Count = %d", s.Count())
	}
	if err := WriteTar(&bytes.Buffer{}, "demo/nope"); err == nil || !strings.Contains(err.Error(), "unknown demo image") {
		t.Fatalf("unknown name: %v", err)
	}
	old := BusyboxPath
	BusyboxPath = filepath.Join(t.TempDir(), "no-busybox")
	defer func() { BusyboxPath = old }()
	if err := WriteTar(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "busybox-static") {
		t.Fatalf("missing busybox: %v", err)
	}
}

// TestHostnameServes runs demo/hostname's entrypoint in a chroot of its
// layers, in fresh UTS, network, mount and PID namespaces, and checks GET /
// answers the hostname.
func TestHostnameServes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "unshare")
	requireBusybox(t)
	s := loadDemo(t, "demo/hostname")
	img, err := s.Get(context.Background(), "demo/hostname")
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(t.TempDir(), "shimg-demo-ovl")
	merged, upper, work := filepath.Join(base, "merged"), filepath.Join(base, "upper"), filepath.Join(base, "work")
	for _, d := range []string{merged, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	opts := "lowerdir=" + img.LayerDirs[1] + ":" + img.LayerDirs[0] + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	script := `mknod -m 666 /dev/null c 1 3
hostname shimg-demo-host
ip link set lo up
/hostname-httpd.sh &
i=0
while [ $i -lt 50 ]; do
  if out=$(wget -qO- http://127.0.0.1/ 2>&1); then echo "$out"; exit 0; fi
  i=$((i+1)); sleep 0.1
done
exit 1`
	cmd := exec.Command("timeout", "20", "unshare", "--uts", "--net", "--mount", "--pid", "--fork", "--kill-child", "chroot", merged, "/bin/sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running the entrypoint: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) != "shimg-demo-host" {
		t.Fatalf("GET / answered %q, want the hostname", out)
	}
}
