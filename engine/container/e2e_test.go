package container

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/engine/runtime/runtimetest"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/bridge"
)

func TestMain(m *testing.M) {
	code := m.Run()
	runtimetest.RemoveShim()
	os.Exit(code)
}

// fakeImages serves one image whose single layer is a busybox rootfs.
type fakeImages struct{ img *image.Image }

func (f *fakeImages) Get(ctx context.Context, ref string) (*image.Image, error) {
	if ref == "busybox" || ref == "busybox:latest" || ref == f.img.ID {
		return f.img, nil
	}
	return nil, errdefs.NotFound("No such image: %s", ref)
}

// fakeNet records attachments; containers get a fresh empty network namespace from runc.
type fakeNet struct {
	mu       sync.Mutex
	attached map[string]bool
}

func (f *fakeNet) Attach(ctx context.Context, req bridge.AttachRequest) (*bridge.Attachment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached[req.ContainerID] = true
	return &bridge.Attachment{}, nil
}

func (f *fakeNet) Detach(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.attached, id)
	return nil
}

type env struct {
	t      testing.TB
	dir    string
	cg     string
	images *fakeImages
	net    *fakeNet
	svc    *Service
}

// newEnv builds a service over a busybox image in fresh directories; the
// test's cleanup removes every container, mount, cgroup and directory.
func newEnv(t testing.TB) *env {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc", "busybox")
	dir, err := os.MkdirTemp("", "shrt")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, cg: runtimetest.CgroupParent(t), net: &fakeNet{attached: map[string]bool{}}}
	layer := filepath.Join(dir, "layer")
	runtimetest.BusyboxRootfs(t, layer)
	os.MkdirAll(filepath.Join(layer, "data"), 0o755)
	os.WriteFile(filepath.Join(layer, "data/seed"), []byte("from image\n"), 0o644)
	e.images = &fakeImages{img: &image.Image{
		ID:       "sha256:" + strings.Repeat("ab", 32),
		RepoTags: []string{"busybox:latest"},
		Config: ocispec.Image{Config: ocispec.ImageConfig{
			Cmd: []string{"sh"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FROM_IMAGE=1"},
		}},
		LayerDirs: []string{layer},
	}}
	shimPath := runtimetest.BuildShim(t)
	e.svc = e.open(shimPath)
	t.Cleanup(func() {
		if e.svc != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			for _, c := range e.svc.all() {
				e.svc.Remove(ctx, c.rec.ID, true, true)
			}
			cancel()
			e.svc.Close()
		}
		// Whatever a failed test left: mounts under dir.
		if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
					unmountRootfs(filepath.Dir(f[4]))
				}
			}
		}
		os.RemoveAll(dir)
	})
	return e
}

func (e *env) open(shimPath string) *Service {
	e.t.Helper()
	svc, err := NewService(Config{
		Root:         filepath.Join(e.dir, "containers"),
		ExecRoot:     filepath.Join(e.dir, "exec"),
		CgroupParent: e.cg,
		Images:       e.images,
		Network:      e.net,
		ShimPath:     shimPath,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

func (e *env) create(cfg *container.Config, hc *container.HostConfig) string {
	e.t.Helper()
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	id, _, err := e.svc.Create(context.Background(), "", cfg, hc, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) run(cfg *container.Config, hc *container.HostConfig) string {
	e.t.Helper()
	id := e.create(cfg, hc)
	if err := e.svc.Start(context.Background(), id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// wait waits for the condition and returns the exit code.
func (e *env) wait(id string, cond container.WaitCondition) int64 {
	e.t.Helper()
	ch, err := e.svc.Wait(context.Background(), id, cond)
	if err != nil {
		e.t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r.StatusCode
	case <-time.After(30 * time.Second):
		e.t.Fatalf("container %s: %s did not happen", id[:12], cond)
	}
	return 0
}

func (e *env) logs(id string, opts backend.LogsOptions) (string, string) {
	e.t.Helper()
	opts.ShowStdout, opts.ShowStderr = true, true
	if opts.Tail == 0 {
		opts.Tail = -1
	}
	rc, err := e.svc.Logs(context.Background(), id, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rc.Close()
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, rc); err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errb.String()
}

func (e *env) inspect(id string) *container.InspectResponse {
	e.t.Helper()
	r, err := e.svc.Inspect(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func TestE2ERunEchoLogsExitCode(t *testing.T) {
	e := newEnv(t)
	id := e.create(&container.Config{Cmd: []string{"sh", "-c", "echo hi; echo $FROM_IMAGE $HOSTNAME; echo oops >&2; exit 3"}}, nil)
	ch, _ := e.svc.Wait(context.Background(), id, container.WaitConditionNextExit)
	if err := e.svc.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if r := <-ch; r.StatusCode != 3 {
		t.Fatalf("exit code %d, want 3", r.StatusCode)
	}
	out, errs := e.logs(id, backend.LogsOptions{})
	if out != "hi\n1 "+id[:12]+"\n" || errs != "oops\n" {
		t.Fatalf("stdout %q stderr %q", out, errs)
	}
	ins := e.inspect(id)
	if ins.State.Status != container.StateExited || ins.State.ExitCode != 3 || ins.State.FinishedAt == "0001-01-01T00:00:00Z" {
		t.Fatalf("state %+v", ins.State)
	}
	if e.svc.Start(context.Background(), id) != nil {
		t.Fatal("restart of an exited container failed")
	}
	e.wait(id, container.WaitConditionNotRunning)
	// The last three records are the second run's (stdout and stderr
	// interleave in arrival order, which the two pipes do not fix).
	out, errs = e.logs(id, backend.LogsOptions{Tail: 3})
	if out != "hi\n1 "+id[:12]+"\n" || errs != "oops\n" {
		t.Fatalf("tail 3 = %q %q", out, errs)
	}
	// The exit is reported first; the unmount follows it (handleExit).
	rootfs := filepath.Join(e.svc.cfg.Root, id, rootfsDir)
	testutil.Eventually(t, 10*time.Second, func() bool { return !isMounted(rootfs) }, "rootfs still mounted after exit")
}

func TestE2EStartFailure(t *testing.T) {
	e := newEnv(t)
	id := e.create(&container.Config{Cmd: []string{"/no/such/cmd"}}, nil)
	err := e.svc.Start(context.Background(), id)
	if !errdefs.IsInvalidParameter(err) {
		t.Fatalf("err = %v, want invalid parameter", err)
	}
	ins := e.inspect(id)
	if ins.State.Running || ins.State.ExitCode != 127 || ins.State.Error == "" {
		t.Fatalf("state %+v", ins.State)
	}
	if isMounted(filepath.Join(e.svc.cfg.Root, id, rootfsDir)) || e.net.attached[id] {
		t.Fatal("failed start left its rootfs mounted or network attached")
	}
}

func TestE2EStopTimeoutAndKill(t *testing.T) {
	e := newEnv(t)
	id := e.run(&container.Config{Cmd: []string{"sh", "-c", "trap '' TERM; echo ready; while true; do sleep 0.1; done"}}, nil)
	testutil.Eventually(t, 10*time.Second, func() bool { out, _ := e.logs(id, backend.LogsOptions{}); return out == "ready\n" }, "container never got ready")
	one := 1
	start := time.Now()
	if err := e.svc.Stop(context.Background(), id, &one); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("stop returned after %v, before the timeout", took)
	}
	if ins := e.inspect(id); ins.State.ExitCode != 137 || ins.State.Running {
		t.Fatalf("after stop: %+v", ins.State)
	}
	if err := e.svc.Stop(context.Background(), id, &one); !errdefs.IsNotModified(err) {
		t.Fatalf("stop of a stopped container: %v", err)
	}

	// PID 1 only dies of signals it handles (or SIGKILL).
	id2 := e.run(&container.Config{Cmd: []string{"sh", "-c", "trap 'exit 10' USR1; echo ready; while true; do sleep 0.1; done"}}, nil)
	testutil.Eventually(t, 10*time.Second, func() bool { out, _ := e.logs(id2, backend.LogsOptions{}); return out == "ready\n" }, "container never got ready")
	if err := e.svc.Kill(context.Background(), id2, "USR1"); err != nil {
		t.Fatal(err)
	}
	if code := e.wait(id2, container.WaitConditionNotRunning); code != 10 {
		t.Fatalf("killed with USR1: exit %d", code)
	}
	if err := e.svc.Kill(context.Background(), id2, ""); !errdefs.IsConflict(err) {
		t.Fatalf("kill of a stopped container: %v", err)
	}
}

func TestE2EExec(t *testing.T) {
	e := newEnv(t)
	id := e.run(&container.Config{Cmd: []string{"sleep", "1000"}, Env: []string{"WHO=ctr"}}, nil)
	ctx := context.Background()

	execID, err := e.svc.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"sh", "-c", "cat; echo $WHO $EXTRA; id -u; echo err >&2; exit 5"},
		AttachStdin: true, AttachStdout: true, AttachStderr: true, Env: []string{"EXTRA=x"}, User: "shrt"})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := e.svc.ExecStart(ctx, execID, backend.ExecStartOptions{Stdin: strings.NewReader("in\n"), Stdout: &buf}); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	stdcopy.StdCopy(&out, &errs, &buf)
	if out.String() != "in\nctr x\n1000\n" || errs.String() != "err\n" {
		t.Fatalf("exec stdout %q stderr %q", out.String(), errs.String())
	}
	ins, err := e.svc.ExecInspect(ctx, execID)
	if err != nil || ins.Running || ins.ExitCode == nil || *ins.ExitCode != 5 || ins.Pid == 0 {
		t.Fatalf("exec inspect %+v %v", ins, err)
	}

	ttyID, err := e.svc.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"sh", "-c", "stty size; tty"}, Tty: true, AttachStdout: true, ConsoleSize: &[2]uint{20, 60}})
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := e.svc.ExecStart(ctx, ttyID, backend.ExecStartOptions{Stdout: &buf}); err != nil {
		t.Fatal(err)
	}
	// Now and then the line ends come as "\r\r\n" (seen once in many CI
	// runs; not understood yet): what matters here is the size and the tty.
	if got := strings.ReplaceAll(buf.String(), "\r\r\n", "\r\n"); !strings.HasPrefix(got, "20 60\r\n/dev/pts/") {
		t.Fatalf("tty exec output %q", got)
	}
	e.svc.Kill(ctx, id, "KILL")
	if _, err := e.svc.ExecCreate(ctx, id, container.ExecCreateRequest{Cmd: []string{"true"}}); !errdefs.IsConflict(err) {
		t.Fatalf("exec in a stopped container: %v", err)
	}
}

func TestE2EAttachStdinBeforeStart(t *testing.T) {
	e := newEnv(t)
	// What "echo hi | docker run -i busybox cat" does.
	id := e.create(&container.Config{Cmd: []string{"sh", "-c", "cat; echo done >&2"}, OpenStdin: true, StdinOnce: true, AttachStdin: true}, &container.HostConfig{AutoRemove: true})
	var out bytes.Buffer
	attached := make(chan error, 1)
	go func() {
		attached <- e.svc.Attach(context.Background(), id, backend.AttachOptions{Stdin: strings.NewReader("hi\n"), Stdout: &out,
			UseStdin: true, UseStdout: true, UseStderr: true, Stream: true})
	}()
	removed, _ := e.svc.Wait(context.Background(), id, container.WaitConditionRemoved)
	testutil.Eventually(t, 5*time.Second, func() bool {
		c, _ := e.svc.lookup(id)
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.pending) == 1
	}, "attach did not register")
	if err := e.svc.Start(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-attached:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("attach did not end")
	}
	var stdout, stderr bytes.Buffer
	stdcopy.StdCopy(&stdout, &stderr, &out)
	if stdout.String() != "hi\n" || stderr.String() != "done\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	select {
	case <-removed:
	case <-time.After(20 * time.Second):
		t.Fatal("--rm container was not removed")
	}
	if _, err := e.svc.Inspect(context.Background(), id); !errdefs.IsNotFound(err) {
		t.Fatalf("inspect after auto-remove: %v", err)
	}
}

func TestE2EInitAndMemoryLimit(t *testing.T) {
	e := newEnv(t)
	yes := true
	id := e.run(&container.Config{Cmd: []string{"sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; cat /sys/fs/cgroup/memory/memory.limit_in_bytes; sleep 1000"}},
		&container.HostConfig{Init: &yes, Resources: container.Resources{Memory: 64 << 20, PidsLimit: ptr(int64(50))}})
	testutil.Eventually(t, 10*time.Second, func() bool { out, _ := e.logs(id, backend.LogsOptions{}); return strings.Count(out, "\n") >= 2 }, "no output")
	out, _ := e.logs(id, backend.LogsOptions{})
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "/sbin/shoal-init -- sh -c") {
		t.Fatalf("pid 1 is %q", lines[0])
	}
	if lines[1] != "67108864" {
		t.Fatalf("memory limit inside %q", lines[1])
	}
	host, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", e.cg, id, "memory.limit_in_bytes"))
	if err != nil || strings.TrimSpace(string(host)) != "67108864" {
		t.Fatalf("memory limit on the host %q %v", host, err)
	}
	pids, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids", e.cg, id, "pids.max"))
	if strings.TrimSpace(string(pids)) != "50" {
		t.Fatalf("pids.max %q", pids)
	}
	// init forwards SIGTERM to sh, which dies of it.
	zero := 5
	if err := e.svc.Stop(context.Background(), id, &zero); err != nil {
		t.Fatal(err)
	}
	if ins := e.inspect(id); ins.State.ExitCode != 143 {
		t.Fatalf("exit code %d, want 143", ins.State.ExitCode)
	}
}

func TestE2ERestartOnFailure(t *testing.T) {
	e := newEnv(t)
	id := e.run(&container.Config{Cmd: []string{"sh", "-c", "echo run; exit 2"}},
		&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 2}})
	testutil.Eventually(t, 20*time.Second, func() bool {
		ins := e.inspect(id)
		return ins.State.Status == container.StateExited && ins.RestartCount == 2
	}, "on-failure:2 did not settle")
	out, _ := e.logs(id, backend.LogsOptions{})
	if out != "run\nrun\nrun\n" {
		t.Fatalf("runs: %q", out)
	}
	if ins := e.inspect(id); ins.State.ExitCode != 2 {
		t.Fatalf("state %+v", ins.State)
	}
}

func TestE2ESurvivesDaemonRestart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := e.run(&container.Config{Cmd: []string{"sh", "-c", "echo before; read x; echo after $x; exit 42"}, OpenStdin: true}, nil)
	testutil.Eventually(t, 10*time.Second, func() bool { out, _ := e.logs(id, backend.LogsOptions{}); return out == "before\n" }, "no output")
	c, _ := e.svc.lookup(id)
	bundle := c.bundle
	pid := e.inspect(id).State.Pid

	e.svc.Close() // shoald exits; the shim keeps the container
	e.svc = nil
	if _, err := os.Stat(filepath.Join("/proc", itoa(pid))); err != nil {
		t.Fatalf("container died with the daemon: %v", err)
	}
	// The container exits while no daemon runs; its output is still logged.
	conn, err := attachRaw(bundle)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("x\n"))
	io.Copy(io.Discard, conn)
	conn.Close()
	testutil.Eventually(t, 10*time.Second, func() bool { _, err := os.Stat(filepath.Join(bundle, "exit")); return err == nil }, "no exit file")

	e.svc = e.open(runtimetest.BuildShim(t))
	ins := e.inspect(id)
	if ins.State.Status != container.StateExited || ins.State.ExitCode != 42 {
		t.Fatalf("after daemon restart: %+v", ins.State)
	}
	out, _ := e.logs(id, backend.LogsOptions{})
	if out != "before\nafter x\n" {
		t.Fatalf("logs %q", out)
	}

	// And one still running across a restart is watched again.
	id2 := e.run(&container.Config{Cmd: []string{"sleep", "1000"}}, nil)
	e.svc.Close()
	e.svc = e.open(runtimetest.BuildShim(t))
	if ins := e.inspect(id2); !ins.State.Running {
		t.Fatalf("running container not recovered: %+v", ins.State)
	}
	if err := e.svc.Kill(ctx, id2, "KILL"); err != nil {
		t.Fatal(err)
	}
	if ins := e.inspect(id2); ins.State.Running || ins.State.ExitCode != 137 {
		t.Fatalf("after kill: %+v", ins.State)
	}
}

func TestE2EVolumesAndFollowLogs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	vol := runtimetest.Tag()
	id := e.run(&container.Config{Cmd: []string{"sh", "-c", "cat /data/seed; echo new > /data/new; echo line1; sleep 0.3; echo line2"}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: vol, Target: "/data"}}, ReadonlyRootfs: true})
	rc, err := e.svc.Logs(ctx, id, backend.LogsOptions{ShowStdout: true, Follow: true, Tail: -1})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	done := make(chan struct{})
	go func() { stdcopy.StdCopy(&out, io.Discard, rc); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end with the container")
	}
	if out.String() != "from image\nline1\nline2\n" {
		t.Fatalf("followed %q", out.String())
	}
	b, err := os.ReadFile(filepath.Join(e.svc.cfg.VolumesRoot, vol, "_data/new"))
	if err != nil || string(b) != "new\n" {
		t.Fatalf("volume content %q %v", b, err)
	}
	e.svc.Remove(ctx, id, false, true)
	if _, err := os.Stat(filepath.Join(e.svc.cfg.VolumesRoot, vol)); err != nil {
		t.Fatal("named volume removed with the container")
	}
	os.RemoveAll(filepath.Join(e.svc.cfg.VolumesRoot, vol))
}

func ptr[T any](v T) *T { return &v }

func itoa(i int) string { return strconv.Itoa(i) }

// attachRaw talks to a shim directly, as no daemon runs.
func attachRaw(bundle string) (*net.UnixConn, error) {
	return runtime.Attach(bundle, runtime.AttachFlags{Stdin: true, Stdout: true})
}
