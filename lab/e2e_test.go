package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/demo"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

// End-to-end tests: real namespaces, links, cgroups, nftables and shoald
// daemons. Lab names start with "shlab" so nothing collides with a user's
// lab or other tests; each test removes its lab in t.Cleanup and checks that
// nothing is left.

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// testBinaries builds shoald and shoal from this module once per test run.
// SHOAL_LAB_SHOALD and SHOAL_LAB_SHOAL point at prebuilt ones instead.
func testBinaries(t *testing.T) (shoald, shoal string) {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		out, err := exec.Command(goBin, "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		binDir, err = os.MkdirTemp("", "shlab-bin-")
		if err != nil {
			buildErr = err
			return
		}
		var targets []string
		if os.Getenv("SHOAL_LAB_SHOALD") == "" {
			targets = append(targets, "./cmd/shoald")
		}
		if os.Getenv("SHOAL_LAB_SHOAL") == "" {
			targets = append(targets, "./cmd/shoal")
		}
		if len(targets) == 0 {
			return
		}
		cmd := exec.Command(goBin, append([]string{"build", "-o", binDir + "/"}, targets...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build %v: %v\n%s", targets, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	shoald, shoal = os.Getenv("SHOAL_LAB_SHOALD"), os.Getenv("SHOAL_LAB_SHOAL")
	if shoald == "" {
		shoald = filepath.Join(binDir, "shoald")
	}
	if shoal == "" {
		shoal = filepath.Join(binDir, "shoal")
	}
	return shoald, shoal
}

func randomToken(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	for i := range b {
		v, _ := rand.Int(rand.Reader, big.NewInt(int64(len(chars))))
		b[i] = chars[v.Int64()]
	}
	return string(b)
}

func randomSubnet() string {
	v, _ := rand.Int(rand.Reader, big.NewInt(256))
	return fmt.Sprintf("10.97.%d.0/24", v.Int64())
}

func requireLabHost(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "ip", "nft", "nsenter", "sh", "sleep")
}

// upTestLab brings up a lab with a random name and subnet (retrying if the
// subnet is taken) and removes it, checking nothing is left, at cleanup.
func upTestLab(t *testing.T, o Options) *Lab {
	t.Helper()
	shoald, shoal := testBinaries(t)
	o.ShoaldPath, o.ShoalPath = shoald, shoal
	if testing.Verbose() {
		o.Progress = os.Stderr
	}
	for try := 0; ; try++ {
		o.Name = "shlab" + randomToken(3)
		o.Subnet = randomSubnet()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		l, err := Up(ctx, o)
		cancel()
		if errdefs.IsConflict(err) && try < 5 {
			continue
		}
		if err != nil {
			assertGone(t, o.Name)
			t.Fatalf("Up: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			if err := l.Down(ctx); err != nil {
				t.Errorf("Down: %v", err)
			}
			t.Logf("Down took %v", time.Since(start))
			assertGone(t, l.Name())
		})
		return l
	}
}

// assertGone checks, with the system's own tools, that nothing of the lab
// is left: namespaces, links, nftables tables, mounts, cgroups, files,
// processes.
func assertGone(t *testing.T, name string) {
	t.Helper()
	run := func(cmd ...string) string {
		out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%v: %v\n%s", cmd, err, out)
		}
		return string(out)
	}
	if out := run("ip", "netns", "list"); strings.Contains(out, name+"-") {
		t.Errorf("network namespaces left:\n%s", out)
	}
	if out := run("ip", "-o", "link"); strings.Contains(out, name+"-") {
		t.Errorf("links left:\n%s", out)
	}
	if out := run("nft", "list", "tables"); strings.Contains(out, "shoal-lab-"+name) {
		t.Errorf("nftables tables left:\n%s", out)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, "/shoal-lab/"+name+"/") || strings.Contains(line, "/run/netns/"+name+"-") {
			t.Errorf("mount left: %s", line)
		}
	}
	if cgs, _ := filepath.Glob("/sys/fs/cgroup/*/shoal-lab/" + name); len(cgs) > 0 {
		t.Errorf("cgroups left: %v", cgs)
	}
	for _, d := range []string{filepath.Join(RunBase, name), filepath.Join(DataBase, name)} {
		if _, err := os.Lstat(d); err == nil {
			t.Errorf("directory left: %s", d)
		}
	}
	for _, p := range scanProcs() {
		if inCgroupTree(p.Cgroups, "/shoal-lab/"+name) && alive(p.Pid) {
			t.Errorf("process left in the lab's cgroups: %d", p.Pid)
		}
	}
}

// downAtCleanup removes lab name at the end of the test, whatever happened.
func downAtCleanup(t *testing.T, name string) {
	t.Cleanup(func() {
		if _, err := Down(context.Background(), name, DownOptions{}); err != nil {
			t.Errorf("Down %s: %v", name, err)
		}
		assertGone(t, name)
	})
}

// startReaped starts cmd and reaps it in the background.
func startReaped(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
}

// fakeContainer starts a process in the cgroup a runtime would give a
// container of the node (under the daemon's --cgroup-parent), outside the
// daemon's own cgroup, as runc does.
func fakeContainer(t *testing.T, l *Lab, node, id string, script string) int {
	t.Helper()
	ni := l.Node(node)
	pl, err := l.placement(ni.CgroupParent + "/" + id)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := spawn(cmd, pl); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	return cmd.Process.Pid
}

// canConnect reports whether from can open a TCP connection to a listener
// on to's address and read its greeting.
func canConnect(t *testing.T, l *Lab, from, to string, timeout time.Duration) bool {
	t.Helper()
	dst := l.Node(to)
	ln, err := dst.Listen("tcp", net.JoinHostPort(dst.IP, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", to, err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from " + to))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := l.Node(from).Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	return err == nil && string(b) == "hello from "+to
}

func daemonAnswers(l *Lab, node string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := l.Node(node).Client().Ping(ctx, client.PingOptions{})
	return err == nil
}

func TestLab(t *testing.T) {
	requireLabHost(t)
	l := upTestLab(t, Options{Nodes: 3, StopTimeout: time.Second, NoSwarm: true, NoRegistry: true})
	ctx := t.Context()

	t.Run("daemons are hosts", func(t *testing.T) {
		for _, n := range l.Nodes() {
			if _, err := n.Client().Ping(ctx, client.PingOptions{}); err != nil {
				t.Fatalf("%s: ping: %v", n.Name, err)
			}
			info, err := n.Client().Info(ctx, client.InfoOptions{})
			if err != nil {
				t.Fatalf("%s: info: %v", n.Name, err)
			}
			if info.Info.Name != n.Name || info.Info.DockerRootDir != n.DataRoot {
				t.Errorf("%s: info Name=%q DockerRootDir=%q", n.Name, info.Info.Name, info.Info.DockerRootDir)
			}
			out, err := l.Exec(ctx, n.Name, "hostname")
			if err != nil || strings.TrimSpace(string(out)) != n.Name {
				t.Errorf("%s: hostname printed %q (%v)", n.Name, out, err)
			}
			out, err = l.Exec(ctx, n.Name, "sh", "-c", "echo $DOCKER_HOST $SHOAL_HOST")
			if want := n.Host() + " " + n.Host(); err != nil || strings.TrimSpace(string(out)) != want {
				t.Errorf("%s: env %q, want %q (%v)", n.Name, out, want, err)
			}
			if st, _ := l.Status(n.Name); st != StateRunning {
				t.Errorf("%s: status %s", n.Name, st)
			}
		}
		hostname, _ := os.Hostname()
		if hostname == "node1" {
			t.Errorf("the host's own hostname changed to node1")
		}
	})

	t.Run("run dir is a tmpfs", func(t *testing.T) {
		// Each lab's hosts keep their runtime state on a tmpfs, as /run
		// on a systemd host; lab down unmounts it (checked by the
		// cleanup's leftover scan).
		var st unix.Statfs_t
		if err := unix.Statfs(names{lab: l.Name()}.runDir(), &st); err != nil || st.Type != unix.TMPFS_MAGIC {
			t.Errorf("run dir: statfs type %#x, err %v; want a tmpfs", st.Type, err)
		}
	})

	t.Run("exec exit code", func(t *testing.T) {
		_, err := l.Exec(ctx, "node1", "sh", "-c", "exit 3")
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 3 {
			t.Errorf("exit 3 gave %v", err)
		}
		if _, err := l.Exec(ctx, "node9", "true"); !errdefs.IsNotFound(err) {
			t.Errorf("unknown node: %v, want NotFound", err)
		}
	})

	t.Run("nodes reach each other", func(t *testing.T) {
		for _, p := range [][2]string{{"node1", "node2"}, {"node2", "node3"}, {"node3", "node1"}} {
			if !canConnect(t, l, p[0], p[1], 5*time.Second) {
				t.Errorf("%s cannot reach %s", p[0], p[1])
			}
		}
	})

	t.Run("partition and heal", func(t *testing.T) {
		if err := l.Partition(ctx, []string{"node1"}, []string{"node2"}); err != nil {
			t.Fatal(err)
		}
		for _, p := range [][2]string{{"node1", "node2"}, {"node2", "node1"}} {
			if canConnect(t, l, p[0], p[1], 300*time.Millisecond) {
				t.Errorf("%s reaches %s across the partition", p[0], p[1])
			}
		}
		for _, p := range [][2]string{{"node1", "node3"}, {"node3", "node2"}} {
			if !canConnect(t, l, p[0], p[1], 5*time.Second) {
				t.Errorf("%s cannot reach %s, which is not partitioned", p[0], p[1])
			}
		}
		st, err := l.State()
		if err != nil || len(st.Partitions) != 1 {
			t.Errorf("state partitions %v (%v)", st.Partitions, err)
		}
		if err := l.Partition(ctx, []string{"node1"}, []string{"node4"}); !errdefs.IsNotFound(err) {
			t.Errorf("partition from an unknown node: %v, want NotFound", err)
		}
		if err := l.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		if !canConnect(t, l, "node1", "node2", 5*time.Second) {
			t.Errorf("node1 cannot reach node2 after heal")
		}
		if ok, _ := tableExists(l.names.nftTable()); ok {
			t.Errorf("partition table still there after heal")
		}
	})

	t.Run("kill and start", func(t *testing.T) {
		n2 := l.Node("node2")
		daemon := l.daemonPid(n2.NodeInfo)
		if daemon == 0 {
			t.Fatal("no daemon pid for node2")
		}
		// What a dying host takes with it: its containers (in the
		// node's cgroup tree) and anything else running in it.
		ctr := fakeContainer(t, l, "node2", "c0ffee", "sleep 1000")
		cmd, err := l.Command(ctx, "node2", "sleep", "1000")
		if err != nil {
			t.Fatal(err)
		}
		startReaped(t, cmd)
		if err := os.WriteFile(filepath.Join(n2.DataRoot, "marker"), []byte("kept"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(n2.ExecRoot, "marker"), []byte("volatile"), 0o644); err != nil {
			t.Fatal(err)
		}
		oldNS := nsInode(n2.Netns)

		if err := l.Kill(ctx, "node2"); err != nil {
			t.Fatal(err)
		}
		for _, pid := range []int{daemon, ctr, cmd.Process.Pid} {
			if alive(pid) {
				t.Errorf("pid %d survived the kill", pid)
			}
		}
		if st, _ := l.Status("node2"); st != StateKilled {
			t.Errorf("status after kill: %s", st)
		}
		if daemonAnswers(l, "node2") {
			t.Errorf("node2's daemon still answers")
		}
		if !daemonAnswers(l, "node1") || !daemonAnswers(l, "node3") {
			t.Errorf("killing node2 hurt other nodes")
		}
		if err := l.Kill(ctx, "node2"); err != nil {
			t.Errorf("second kill: %v", err)
		}

		if err := l.Start(ctx, "node2"); err != nil {
			t.Fatal(err)
		}
		if err := l.Start(ctx, "node2"); !errdefs.IsConflict(err) {
			t.Errorf("start of a running node: %v, want Conflict", err)
		}
		info, err := l.Node("node2").Client().Info(ctx, client.InfoOptions{})
		if err != nil || info.Info.Name != "node2" || info.Info.DockerRootDir != n2.DataRoot {
			t.Fatalf("after restart: %+v, %v", info.Info, err)
		}
		if b, err := os.ReadFile(filepath.Join(n2.DataRoot, "marker")); err != nil || string(b) != "kept" {
			t.Errorf("data root lost across the restart: %q %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(n2.ExecRoot, "marker")); err == nil {
			t.Errorf("exec root survived the reboot")
		}
		if nsInode(n2.Netns) == oldNS {
			t.Errorf("node2 kept its old network namespace across the reboot")
		}
		if pid := l.daemonPid(l.Node("node2").NodeInfo); pid == 0 || pid == daemon {
			t.Errorf("daemon pid after restart %d (before %d)", pid, daemon)
		}
		if !canConnect(t, l, "node1", "node2", 5*time.Second) {
			t.Errorf("node1 cannot reach node2 after its reboot")
		}
	})

	t.Run("stop", func(t *testing.T) {
		daemon := l.daemonPid(l.Node("node3").NodeInfo)
		polite := fakeContainer(t, l, "node3", "aaaa", "exec sleep 1000")
		// A container that ignores SIGTERM is killed after the grace period.
		stubborn := fakeContainer(t, l, "node3", "bbbb", "trap '' TERM; while :; do sleep 1; done")
		if err := l.Stop(ctx, "node3"); err != nil {
			t.Fatal(err)
		}
		for _, pid := range []int{daemon, polite, stubborn} {
			if alive(pid) {
				t.Errorf("pid %d survived the stop", pid)
			}
		}
		if st, _ := l.Status("node3"); st != StateStopped {
			t.Errorf("status after stop: %s", st)
		}
		// The daemon shut down cleanly: it removed its own socket.
		if _, err := os.Stat(l.Node("node3").Socket); err == nil {
			t.Errorf("socket left after a clean stop")
		}
		if err := l.Start(ctx, "node3"); err != nil {
			t.Fatal(err)
		}
		if !daemonAnswers(l, "node3") {
			t.Errorf("node3 does not answer after start")
		}
	})

	t.Run("up of an existing lab", func(t *testing.T) {
		shoald, _ := testBinaries(t)
		_, err := Up(ctx, Options{Name: l.Name(), Subnet: "10.96.0.0/24", NoSwarm: true, NoRegistry: true, ShoaldPath: shoald})
		if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "shoal lab down") {
			t.Errorf("second Up: %v, want Conflict naming `shoal lab down`", err)
		}
		if !daemonAnswers(l, "node1") {
			t.Errorf("the failed Up hurt the existing lab")
		}
	})
}

func TestDownAfterCrash(t *testing.T) {
	requireLabHost(t)
	for _, tc := range []struct {
		name  string
		state func(path string) error
	}{
		{"state file deleted", os.Remove},
		{"state file corrupt", func(p string) error { return os.WriteFile(p, []byte("{garbage"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			l := upTestLab(t, Options{Nodes: 2, NoSwarm: true, NoRegistry: true})
			n1 := l.Node("node1")
			// What daemons leave behind: a container network namespace
			// pinned under the exec root, an overlay-like mount under the
			// data root with a mount on top of it.
			if err := makeNamespace(filepath.Join(n1.ExecRoot, "netns", "c1"), unix.CLONE_NEWNET, nil); err != nil {
				t.Fatal(err)
			}
			merged := filepath.Join(n1.DataRoot, "overlay", "x", "merged")
			if err := os.MkdirAll(merged, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("tmpfs", merged, "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(merged, "dev", "shm"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := unix.Mount("shm", filepath.Join(merged, "dev", "shm"), "tmpfs", 0, "size=1m"); err != nil {
				t.Fatal(err)
			}
			fakeContainer(t, l, "node2", "dead", "sleep 1000")
			cmd, err := l.Command(ctx, "node1", "sleep", "1000")
			if err != nil {
				t.Fatal(err)
			}
			startReaped(t, cmd)
			if err := l.Partition(ctx, []string{"node1"}, nil); err != nil {
				t.Fatal(err)
			}
			// The crash: daemons die, state is lost.
			for _, n := range l.Nodes() {
				if pid := l.daemonPid(n.NodeInfo); pid > 0 {
					unix.Kill(pid, syscall.SIGKILL)
				}
			}
			if err := tc.state(l.names.statePath()); err != nil {
				t.Fatal(err)
			}

			found, err := Down(ctx, l.Name(), DownOptions{})
			if err != nil || !found {
				t.Fatalf("Down after crash: found=%v err=%v", found, err)
			}
			assertGone(t, l.Name())
			if alive(cmd.Process.Pid) {
				t.Errorf("a process in node1's namespace survived Down")
			}
			found, err = Down(ctx, l.Name(), DownOptions{})
			if err != nil || found {
				t.Errorf("second Down: found=%v err=%v, want a no-op", found, err)
			}
			if _, err := Open(l.Name()); !errdefs.IsNotFound(err) {
				t.Errorf("Open after Down: %v, want NotFound", err)
			}
		})
	}
}

func TestUpFailureCleansUp(t *testing.T) {
	requireLabHost(t)
	bad := filepath.Join(t.TempDir(), "shoald")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'shoald: boom' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	name := "shlab" + randomToken(3)
	downAtCleanup(t, name)
	_, err := Up(t.Context(), Options{Name: name, Subnet: randomSubnet(), Nodes: 2, NoSwarm: true, NoRegistry: true, ShoaldPath: bad})
	if err == nil || !strings.Contains(err.Error(), "shoald: boom") {
		t.Errorf("Up with a failing daemon: %v, want its log in the error", err)
	}
	assertGone(t, name)
	for _, o := range []Options{
		{Name: "Bad-Name"},
		{Name: name, Nodes: 3, Managers: 5},
		{Name: name, Subnet: "172.18.0.0/24"},
	} {
		o.ShoaldPath = bad
		if _, err := Up(t.Context(), o); !errdefs.IsInvalidParameter(err) {
			t.Errorf("Up(%+v): %v, want InvalidParameter", o, err)
		}
	}
	assertGone(t, name)
}

// TestCLI drives a lab through the `shoal lab` commands.
func TestCLI(t *testing.T) {
	requireLabHost(t)
	shoald, shoal := testBinaries(t)
	name := "shlab" + randomToken(3)
	subnet := randomSubnet()
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(shoal, append([]string{"lab", "--name", name}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return out.String(), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("shoal %v: %v", args, err)
		}
		return out.String(), 0
	}
	downAtCleanup(t, name)
	out, code := run("up", "--nodes", "2", "--no-swarm", "--no-registry", "--subnet", subnet, "--shoald", shoald)
	if code != 0 {
		t.Fatalf("lab up: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "node2") || !strings.Contains(out, "DOCKER_HOST") {
		t.Errorf("lab up summary:\n%s", out)
	}
	out, code = run("up", "--nodes", "2", "--no-swarm", "--no-registry", "--subnet", "10.96.1.0/24", "--shoald", shoald)
	if code == 0 || !strings.Contains(out, "shoal lab down") {
		t.Errorf("second lab up: exit %d\n%s", code, out)
	}
	out, _ = run("env", "node2")
	sock := filepath.Join(RunBase, name, "node2", "exec", "shoald.sock")
	if !strings.Contains(out, "export DOCKER_HOST=unix://"+sock) || !strings.Contains(out, "export SHOAL_HOST=unix://"+sock) {
		t.Errorf("lab env:\n%s", out)
	}
	if out, code = run("exec", "node2", "hostname"); code != 0 || strings.TrimSpace(out) != "node2" {
		t.Errorf("lab exec hostname: %d %q", code, out)
	}
	if _, code = run("exec", "node1", "--", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("lab exec exit code %d, want 7", code)
	}
	if _, code = run("kill", "node2"); code != 0 {
		t.Errorf("lab kill: exit %d", code)
	}
	out, _ = run("ls")
	if !strings.Contains(out, "killed") || !strings.Contains(out, "running") {
		t.Errorf("lab ls after kill:\n%s", out)
	}
	if out, code = run("start", "node2"); code != 0 {
		t.Errorf("lab start: exit %d\n%s", code, out)
	}
	if out, code = run("partition", "node1"); code != 0 {
		t.Errorf("lab partition: exit %d\n%s", code, out)
	}
	if out, _ = run("ls"); !strings.Contains(out, "node1 <-/-> node2") {
		t.Errorf("lab ls shows no partition:\n%s", out)
	}
	if out, code = run("heal"); code != 0 {
		t.Errorf("lab heal: exit %d\n%s", code, out)
	}
	if out, code = run("logs", "node1"); code != 0 || !strings.Contains(out, "starting node1") {
		t.Errorf("lab logs: exit %d\n%s", code, out)
	}
	if out, code = run("down"); code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("lab down: exit %d\n%s", code, out)
	}
	if out, code = run("down"); code != 0 || !strings.Contains(out, "no lab named") {
		t.Errorf("second lab down: exit %d\n%s", code, out)
	}
	if out, code = run("ls"); code == 0 || !strings.Contains(out, "no lab named") {
		t.Errorf("lab ls without a lab: exit %d\n%s", code, out)
	}
}

// TestRegistry runs the lab registry (`shoal registry serve` on the bridge)
// with the demo images pushed to it.
func TestRegistry(t *testing.T) {
	requireLabHost(t)
	if err := demo.CheckBusybox(); err != nil {
		t.Skip(err)
	}
	l := upTestLab(t, Options{Nodes: 1, NoSwarm: true})
	shoald, _ := testBinaries(t)
	st, err := l.State()
	if err != nil {
		t.Fatal(err)
	}
	if st.Registry == "" || st.RegistryPid == 0 {
		t.Fatalf("no registry in state: %+v", st)
	}
	for _, img := range demo.Names {
		ref, err := name.ParseReference(st.Registry+"/"+img+":latest", name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Image(ref, remote.WithTransport(directHTTP.Transport)); err != nil {
			t.Errorf("%s not in the lab registry: %v", ref, err)
		}
	}
	// Nodes reach the registry on the bridge address.
	c, err := l.Node("node1").Dial(t.Context(), "tcp", st.Registry)
	if err != nil {
		t.Errorf("node1 cannot reach the registry: %v", err)
	} else {
		c.Close()
	}

	t.Run("missing registry command", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "shoal")
		if err := os.WriteFile(bad, []byte("#!/bin/sh\necho \"unknown command $1\" >&2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		name := "shlab" + randomToken(3)
		downAtCleanup(t, name)
		_, err := Up(t.Context(), Options{Name: name, Subnet: randomSubnet(), Nodes: 1, NoSwarm: true, ShoaldPath: shoald, ShoalPath: bad})
		if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "--no-registry") || !strings.Contains(err.Error(), "unknown command registry") {
			t.Errorf("Up without a registry command: %v", err)
		}
		assertGone(t, name)
	})
}

// TestKillTakesRuncContainers runs a real runc container inside a node, in
// a cgroup under the node's --cgroup-parent as the engine places them, and
// checks that killing the node kills it.
func TestKillTakesRuncContainers(t *testing.T) {
	requireLabHost(t)
	testutil.RequireBinary(t, "runc")
	if err := demo.CheckBusybox(); err != nil {
		t.Skip(err)
	}
	l := upTestLab(t, Options{Nodes: 1, NoSwarm: true, NoRegistry: true})
	ctx := t.Context()
	n1 := l.Node("node1")
	bundle := t.TempDir()
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile(demo.BusyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "rootfs", "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("runc", "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v\n%s", err, out)
	}
	spec := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	proc := cfg["process"].(map[string]any)
	proc["args"] = []string{"/bin/busybox", "sleep", "1000"}
	proc["terminal"] = false
	cfg["linux"].(map[string]any)["cgroupsPath"] = n1.CgroupParent + "/shlabctr"
	if b, err = json.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spec, b, 0o644); err != nil {
		t.Fatal(err)
	}
	runcRoot := filepath.Join(n1.ExecRoot, "runc")
	id := "shlab-" + randomToken(6)
	// The detached container keeps runc's stdio: give it /dev/null, not
	// a pipe the test would wait on.
	run, err := l.Command(ctx, "node1", "runc", "--root", runcRoot, "run", "-d", "--bundle", bundle, id)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Run(); err != nil {
		t.Fatalf("runc run in node1: %v", err)
	}
	out, err := l.Exec(ctx, "node1", "runc", "--root", runcRoot, "state", id)
	if err != nil {
		t.Fatalf("runc state: %v\n%s", err, out)
	}
	var state struct {
		Pid    int    `json:"pid"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &state); err != nil || state.Status != "running" || state.Pid == 0 {
		t.Fatalf("container state %s (%v)", out, err)
	}
	if err := l.Kill(ctx, "node1"); err != nil {
		t.Fatal(err)
	}
	if alive(state.Pid) {
		t.Errorf("the container's process %d survived the node's death", state.Pid)
	}
}

// TestKeepData brings a lab down keeping its data roots, and up again on
// them.
func TestKeepData(t *testing.T) {
	requireLabHost(t)
	ctx := t.Context()
	l := upTestLab(t, Options{Nodes: 1, NoSwarm: true, NoRegistry: true})
	n1 := l.Node("node1")
	st, err := l.State()
	if err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(n1.DataRoot, "marker")
	if err := os.WriteFile(marker, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	found, err := Down(ctx, l.Name(), DownOptions{KeepData: true})
	if err != nil || !found {
		t.Fatalf("Down --keep-data: %v %v", found, err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("data root not kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(RunBase, l.Name())); err == nil {
		t.Errorf("run dir kept")
	}
	shoald, shoal := testBinaries(t)
	l2, err := Up(ctx, Options{Name: l.Name(), Subnet: st.Subnet, Nodes: 1, NoSwarm: true, NoRegistry: true, ShoaldPath: shoald, ShoalPath: shoal})
	if err != nil {
		t.Fatalf("Up on kept data: %v", err)
	}
	defer l2.Close()
	if b, err := os.ReadFile(marker); err != nil || string(b) != "kept" {
		t.Errorf("data root after Up again: %q %v", b, err)
	}
	if !daemonAnswers(l2, "node1") {
		t.Errorf("node1 does not answer")
	}
	// upTestLab's cleanup removes the second lab (same name) with its data.
}
