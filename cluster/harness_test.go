package cluster_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shoal/shoal/internal/testutil"
)

// A minimal multi-daemon harness: real shoald processes on loopback, each
// with its own data/exec roots, socket, bridge, nft table and cgroup
// parent (all named shcl*), and its own swarm port 127.0.0.1:<port>.
// Everything it creates is removed in t.Cleanup, even on failure.

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// shoaldBinary builds cmd/shoald once per test binary (or uses
// $SHOALD_BINARY).
func shoaldBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SHOALD_BINARY"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "shcl-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "shoald")
		cmd := exec.Command("go", "build", "-o", buildPath, "github.com/shoal/shoal/cmd/shoald")
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building shoald: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

type daemon struct {
	t     *testing.T
	name  string // shclNNNNi: bridge, nft table, cgroup parent
	dir   string
	sock  string
	addr  string // swarm listen/advertise address
	bip   string
	bin   string
	extra []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

type harness struct {
	t       *testing.T
	daemons []*daemon
}

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newHarness starts n daemons (not in a swarm).
func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "docker", "ip", "nft")
	bin := shoaldBinary(t)
	h := &harness{t: t}
	tag := os.Getpid() % 10000
	base := 100 + (os.Getpid()%30)*4
	root := t.TempDir()
	for i := 0; i < n; i++ {
		d := &daemon{
			t:    t,
			name: fmt.Sprintf("shcl%d%d", tag, i),
			dir:  filepath.Join(root, fmt.Sprint("d", i)),
			addr: freeLoopbackPort(t),
			bip:  fmt.Sprintf("10.%d.%d.1/24", base+i/250, 10+i%250),
			bin:  bin,
		}
		d.sock = filepath.Join(d.dir, "sock")
		h.daemons = append(h.daemons, d)
		t.Cleanup(d.cleanup)
	}
	for _, d := range h.daemons {
		d.start()
	}
	return h
}

func (d *daemon) start() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		d.t.Fatal(err)
	}
	lf, err := os.OpenFile(filepath.Join(d.dir, "shoald.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	args := append([]string{
		"--data-root", filepath.Join(d.dir, "data"),
		"--exec-root", filepath.Join(d.dir, "exec"),
		"--pidfile", filepath.Join(d.dir, "shoald.pid"),
		"-H", "unix://" + d.sock,
		"--bridge", d.name, "--bip", d.bip, "--nft-table", d.name, "--cgroup-parent", d.name,
		"--label", "harness=" + d.name,
	}, d.extra...)
	cmd := exec.Command(d.bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		d.t.Fatal(err)
	}
	d.cmd, d.log, d.done = cmd, lf, make(chan struct{})
	done := d.done
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	c := d.client()
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Ping(ctx, client.PingOptions{})
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			d.t.Fatalf("%s exited at start:\n%s", d.name, d.logs())
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s not answering: %v\n%s", d.name, err, d.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the daemon with sig and waits for it.
func (d *daemon) stop(sig syscall.Signal) {
	d.mu.Lock()
	cmd, done := d.cmd, d.done
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (d *daemon) running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cmd != nil
}

func (d *daemon) logs() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "shoald.log"))
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// cleanup kills the daemon and removes the kernel objects it made.
func (d *daemon) cleanup() {
	d.stop(syscall.SIGKILL)
	unmountUnder(d.dir)
	_ = exec.Command("ip", "link", "del", d.name).Run()
	_ = exec.Command("nft", "delete", "table", "ip", d.name).Run()
	for _, cg := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		_ = os.Remove(filepath.Join(cg, d.name))
	}
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), d.name))
		}
	}
	if d.t.Failed() {
		d.t.Logf("=== %s log (tail)\n%s", d.name, d.logs())
	}
}

// unmountUnder detaches every mount below dir (the daemon's netns bind
// mounts), deepest first.
func unmountUnder(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		_ = syscall.Unmount(mp, syscall.MNT_DETACH)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if buildPath != "" {
		os.RemoveAll(filepath.Dir(buildPath))
	}
	os.Exit(code)
}

func (d *daemon) client() *client.Client {
	c, err := client.New(client.WithHost("unix://"+d.sock), client.WithAPIVersionNegotiation())
	if err != nil {
		d.t.Fatal(err)
	}
	return c
}

// docker runs the unmodified docker CLI against the daemon.
func (d *daemon) docker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST=unix://"+d.sock, "DOCKER_CONFIG="+filepath.Join(d.dir, "docker-config"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func (d *daemon) mustDocker(args ...string) string {
	d.t.Helper()
	out, err := d.docker(args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}
