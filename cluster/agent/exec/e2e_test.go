package exec_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent/exec"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/demo"
	enginectr "github.com/shoal/shoal/engine/container"
	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/engine/runtime/runtimetest"
	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/bridge"
)

func TestMain(m *testing.M) {
	code := m.Run()
	runtimetest.RemoveShim()
	os.Exit(code)
}

// noNet gives containers an empty network namespace (runc makes it): the
// bridge has its own end-to-end tests.
type noNet struct{}

func (noNet) Attach(context.Context, bridge.AttachRequest) (*bridge.Attachment, error) {
	return &bridge.Attachment{}, nil
}
func (noNet) Detach(context.Context, string) error { return nil }

type realEnv struct {
	dir    string
	images *image.Store
	ctrs   *enginectr.Service
}

// newRealEnv opens a real image store holding demo/busybox and a real
// container service, all under a fresh directory and cgroup ("shag"
// prefix) that the test's cleanup removes.
func newRealEnv(t *testing.T) *realEnv {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc", "busybox")
	dir, err := os.MkdirTemp("", "shag")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	cg := "shag" + hex.EncodeToString(b)
	e := &realEnv{dir: dir}
	t.Cleanup(func() {
		if e.ctrs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			list, _ := e.ctrs.List(ctx, backend.ListOptions{All: true})
			for _, c := range list {
				_ = e.ctrs.Remove(ctx, c.ID, true, true)
			}
			cancel()
			_ = e.ctrs.Close()
		}
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			var mounts []string
			for _, l := range strings.Split(string(mi), "\n") {
				if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
					mounts = append(mounts, f[4])
				}
			}
			sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
			for _, m := range mounts {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
		runtimetest.RemoveCgroup(cg)
		os.RemoveAll(dir)
	})
	e.images, err = image.NewStore(image.Config{Root: filepath.Join(dir, "image"), Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := demo.WriteTar(&tarball, "demo/busybox"); err != nil {
		t.Skipf("demo image: %v", err)
	}
	if _, err := e.images.Load(context.Background(), &tarball); err != nil {
		t.Fatal(err)
	}
	e.ctrs, err = enginectr.NewService(enginectr.Config{
		Root:         filepath.Join(dir, "containers"),
		ExecRoot:     filepath.Join(dir, "exec"),
		CgroupParent: cg,
		Images:       e.images,
		Network:      noNet{},
		ShimPath:     runtimetest.BuildShim(t),
		Log:          quiet(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// realHarness is a harness over the real engine.
func (e *realEnv) harness(t *testing.T) (*harness, context.CancelFunc) {
	h := &harness{t: t, reports: map[string][]swarm.TaskStatus{}}
	h.ex = exec.New(exec.Config{
		Engine:     exec.NewEngine(e.ctrs),
		Images:     exec.NewImages(e.images),
		Node:       func() swarm.NodeDescription { return node },
		Report:     h.report,
		RetryDelay: 50 * time.Millisecond,
		Log:        quiet(),
		PayloadDir: filepath.Join(e.dir, "payloads"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); h.ex.Wait() }) }
	t.Cleanup(stop)
	return h, stop
}

func (e *realEnv) taskContainers(t *testing.T) []string {
	t.Helper()
	list, err := e.ctrs.List(context.Background(), backend.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", exec.LabelTaskID))})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range list {
		names = append(names, strings.TrimPrefix(c.Names[0], "/"))
	}
	sort.Strings(names)
	return names
}

func busyboxTask(id string, slot int, cmd ...string) wire.Assignment {
	return assignment(func(a *wire.Assignment) {
		a.Task.ID, a.Task.Slot = id, slot
		a.Task.Spec.ContainerSpec.Image = "demo/busybox:latest"
		a.Task.Spec.ContainerSpec.Command = cmd
		a.Task.Spec.ContainerSpec.Hostname = "{{.Service.Name}}-{{.Task.Slot}}"
		a.Task.Spec.ContainerSpec.StopGracePeriod = ptr(time.Second)
	})
}

func TestE2EExecutorRealEngine(t *testing.T) {
	e := newRealEnv(t)
	h, _ := e.harness(t)
	h.apply(true,
		busyboxTask("fails", 1, "sh", "-c", "exit 3"),
		busyboxTask("runs", 2, "sleep", "1000"),
		withPayloads(busyboxTask("secret", 3, "sh", "-c",
			`test "$(cat /run/secrets/pw)" = hunter2 && test "$(cat /app.conf)" = conf && test "$(stat -c %a /run/secrets/pw)" = 400`)),
		assignment(func(a *wire.Assignment) {
			a.Task.ID = "nopull"
			// Nothing listens on loopback port 1: the pull fails at once.
			a.Task.Spec.ContainerSpec.Image = "127.0.0.1:1/nope:latest"
		}),
	)
	if st := h.waitState("fails", swarm.TaskStateFailed); st.Err != "task: non-zero exit (3)" || st.ContainerStatus.ExitCode != 3 {
		t.Fatalf("fails: %+v", st)
	}
	run := h.waitState("runs", swarm.TaskStateRunning)
	if run.ContainerStatus == nil || run.ContainerStatus.PID == 0 {
		t.Fatalf("runs: %+v", run)
	}
	if st := h.waitState("secret", swarm.TaskStateComplete); st.ContainerStatus.ExitCode != 0 {
		t.Fatalf("secret: %+v", st)
	}
	if st := h.waitState("nopull", swarm.TaskStateRejected); st.Err == "" {
		t.Fatalf("nopull: %+v", st)
	}
	ins, err := e.ctrs.Inspect(context.Background(), run.ContainerStatus.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if ins.Name != "/web.2.runs" || ins.Config.Hostname != "web-2" || ins.Config.Labels[exec.LabelServiceName] != "web" ||
		ins.HostConfig.RestartPolicy.Name != "no" {
		t.Fatalf("container: name %q hostname %q labels %v restart %v", ins.Name, ins.Config.Hostname, ins.Config.Labels, ins.HostConfig.RestartPolicy)
	}

	// Shut down: sleep, as PID 1, ignores TERM and is killed after the
	// 1 s grace period.
	h.apply(false, withStatus(busyboxTask("runs", 2, "sleep", "1000"), swarm.TaskStateRunning, swarm.TaskStateShutdown))
	if st := h.waitState("runs", swarm.TaskStateShutdown); st.ContainerStatus.ContainerID != run.ContainerStatus.ContainerID {
		t.Fatalf("shutdown: %+v", st)
	}
	if got := e.taskContainers(t); !equalStrings(got, []string{"web.1.fails", "web.2.runs", "web.3.secret"}) {
		t.Fatalf("containers = %v", got)
	}
	// Removed tasks take their containers with them.
	if err := h.ex.Apply(wire.Assignments{Removed: []string{"runs", "fails", "secret"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return len(e.taskContainers(t)) == 0 }, "task containers not removed")
}

func TestE2EExecutorAdoptsAfterRestart(t *testing.T) {
	e := newRealEnv(t)
	h1, stop1 := e.harness(t)
	a := busyboxTask("keep", 1, "sleep", "1000")
	h1.apply(true, a, busyboxTask("drop", 2, "sleep", "1000"))
	run := h1.waitState("keep", swarm.TaskStateRunning)
	h1.waitState("drop", swarm.TaskStateRunning)
	stop1()

	// A new executor (daemon restart): "keep" is still assigned, "drop" not.
	h2, _ := e.harness(t)
	h2.apply(true, withStatus(a, swarm.TaskStateRunning, swarm.TaskStateRunning))
	testutil.Eventually(t, 20*time.Second, func() bool { return equalStrings(e.taskContainers(t), []string{"web.1.keep"}) }, "containers = %v", e.taskContainers(t))
	ins, err := e.ctrs.Inspect(context.Background(), run.ContainerStatus.ContainerID)
	if err != nil || !ins.State.Running {
		t.Fatalf("adopted container: %+v %v", ins, err)
	}
	if err := e.ctrs.Kill(context.Background(), ins.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	if st := h2.waitState("keep", swarm.TaskStateFailed); st.Err != "task: non-zero exit (137)" {
		t.Fatalf("keep: %+v", st)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func withPayloads(a wire.Assignment) wire.Assignment {
	cs := a.Task.Spec.ContainerSpec
	cs.Secrets = []*swarm.SecretReference{{SecretID: "s1", SecretName: "pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", Mode: 0o400}}}
	cs.Configs = []*swarm.ConfigReference{{ConfigID: "c1", ConfigName: "app", File: &swarm.ConfigReferenceFileTarget{Name: "app.conf"}}}
	a.Secrets = []wire.Payload{{ID: "s1", Data: []byte("hunter2")}}
	a.Configs = []wire.Payload{{ID: "c1", Data: []byte("conf")}}
	return a
}
