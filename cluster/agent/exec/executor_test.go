package exec_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent/exec"
	"github.com/shoal/shoal/cluster/agent/exec/exectest"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

const wait = 5 * time.Second

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type harness struct {
	t   *testing.T
	eng *exectest.Engine
	img *exectest.Images
	ex  *exec.Executor

	mu      sync.Mutex
	reports map[string][]swarm.TaskStatus
}

func newHarness(t *testing.T, eng *exectest.Engine, img *exectest.Images, mods ...func(*exec.Config)) *harness {
	t.Helper()
	h := &harness{t: t, eng: eng, img: img, reports: map[string][]swarm.TaskStatus{}}
	cfg := exec.Config{
		Engine:     eng,
		Images:     img,
		Node:       func() swarm.NodeDescription { return node },
		Report:     h.report,
		RetryDelay: 10 * time.Millisecond,
		Log:        quiet(),
	}
	for _, m := range mods {
		m(&cfg)
	}
	h.ex = exec.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		h.ex.Wait()
	})
	return h
}

func (h *harness) report(id string, st swarm.TaskStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.reports[id] = append(h.reports[id], st)
}

func (h *harness) states(id string) []swarm.TaskState {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []swarm.TaskState
	for _, st := range h.reports[id] {
		out = append(out, st.State)
	}
	return out
}

func (h *harness) last(id string) swarm.TaskStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.reports[id]
	if len(r) == 0 {
		return swarm.TaskStatus{}
	}
	return r[len(r)-1]
}

func (h *harness) waitState(id string, st swarm.TaskState) swarm.TaskStatus {
	h.t.Helper()
	testutil.Eventually(h.t, wait, func() bool { return h.last(id).State == st }, "task %s never reached %s", id, st)
	return h.last(id)
}

func (h *harness) apply(full bool, as ...wire.Assignment) {
	h.t.Helper()
	if err := h.ex.Apply(wire.Assignments{Full: full, Tasks: as}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) container(taskID string) exectest.Ctr {
	h.t.Helper()
	var c exectest.Ctr
	testutil.Eventually(h.t, wait, func() bool {
		var ok bool
		c, ok = h.eng.ByTask(taskID)
		return ok
	}, "no container for task %s", taskID)
	return c
}

func withStatus(a wire.Assignment, st swarm.TaskState, desired swarm.TaskState) wire.Assignment {
	a.Task.Status.State = st
	a.Task.DesiredState = desired
	return a
}

func TestRunToRunningThenExit(t *testing.T) {
	tests := []struct {
		name    string
		code    int
		state   swarm.TaskState
		errText string
	}{
		{"exit 0 completes", 0, swarm.TaskStateComplete, ""},
		{"non-zero exit fails", 1, swarm.TaskStateFailed, "task: non-zero exit (1)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, exectest.NewEngine(), exectest.NewImages())
			h.img.Pullable("busybox:latest")
			h.apply(true, assignment(nil))
			run := h.waitState("task1", swarm.TaskStateRunning)
			want := []swarm.TaskState{swarm.TaskStateAccepted, swarm.TaskStatePreparing, swarm.TaskStateReady, swarm.TaskStateStarting, swarm.TaskStateRunning}
			if got := h.states("task1"); !reflect.DeepEqual(got, want) {
				t.Fatalf("states = %v, want %v", got, want)
			}
			if run.Message != "started" || run.ContainerStatus == nil || run.ContainerStatus.PID == 0 {
				t.Fatalf("running status = %+v", run)
			}
			if h.img.PullCount() != 1 {
				t.Fatalf("pulls = %v", h.img.Pulls)
			}
			c := h.container("task1")
			if c.Name != "web.3.task1" || !c.Running || c.Starts != 1 {
				t.Fatalf("container = %+v", c)
			}
			h.eng.Exit(c.ID, tc.code)
			end := h.waitState("task1", tc.state)
			if end.Err != tc.errText || end.ContainerStatus.ExitCode != tc.code || end.ContainerStatus.ContainerID != c.ID {
				t.Fatalf("final status = %+v (%+v)", end, end.ContainerStatus)
			}
		})
	}
}

func TestPullFailureRejects(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages())
	h.apply(true, assignment(func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Image = "nope:1" }))
	st := h.waitState("task1", swarm.TaskStateRejected)
	if st.Err != "No such image: nope:1" {
		t.Fatalf("err = %q", st.Err)
	}
	if len(h.eng.Containers()) != 0 {
		t.Fatal("a container was created for a rejected task")
	}
}

func TestInvalidSpecRejects(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	h.apply(true, assignment(func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Hostname = "{{.Bad}}" }))
	st := h.waitState("task1", swarm.TaskStateRejected)
	if st.Err == "" {
		t.Fatal("no error text")
	}
}

func TestStartFailureFails(t *testing.T) {
	eng := exectest.NewEngine()
	eng.StartErr = errText("OCI runtime create failed: exec: \"nope\": not found")
	h := newHarness(t, eng, exectest.NewImages("busybox:latest"))
	h.apply(true, assignment(nil))
	st := h.waitState("task1", swarm.TaskStateFailed)
	if st.Err != "OCI runtime create failed: exec: \"nope\": not found" {
		t.Fatalf("err = %q", st.Err)
	}
}

type errText string

func (e errText) Error() string { return string(e) }

func TestShutdownStopsContainer(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	a := assignment(func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.StopGracePeriod = ptr(3 * time.Second) })
	h.apply(true, a)
	h.waitState("task1", swarm.TaskStateRunning)
	h.apply(false, withStatus(a, swarm.TaskStateRunning, swarm.TaskStateShutdown))
	st := h.waitState("task1", swarm.TaskStateShutdown)
	c := h.container("task1")
	if c.Running || !reflect.DeepEqual(c.Stops, []int{3}) {
		t.Fatalf("container = %+v", c)
	}
	if st.Message != "shutdown" || st.ContainerStatus.ExitCode != 143 {
		t.Fatalf("status = %+v", st)
	}
	// The stopped container stays (logs, history) until the task is gone.
	if err := h.ex.Apply(wire.Assignments{Removed: []string{"task1"}}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, wait, func() bool { return len(h.eng.Containers()) == 0 }, "container not removed")
}

func TestRemovedWhileRunning(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	h.apply(true, assignment(nil))
	h.waitState("task1", swarm.TaskStateRunning)
	// A full set without the task: it is gone.
	h.apply(true)
	testutil.Eventually(t, wait, func() bool { return len(h.eng.Containers()) == 0 }, "container not removed")
	testutil.Eventually(t, wait, func() bool { return len(h.ex.Statuses()) == 0 }, "runner not forgotten")
}

func TestShutdownDuringPull(t *testing.T) {
	img := exectest.NewImages()
	img.Pullable("busybox:latest")
	img.Block = make(chan struct{})
	h := newHarness(t, exectest.NewEngine(), img)
	a := assignment(nil)
	h.apply(true, a)
	h.waitState("task1", swarm.TaskStatePreparing)
	testutil.Eventually(t, wait, func() bool { return img.PullCount() == 1 }, "pull not started")
	h.apply(false, withStatus(a, swarm.TaskStatePreparing, swarm.TaskStateShutdown))
	h.waitState("task1", swarm.TaskStateShutdown)
	if len(h.eng.Containers()) != 0 {
		t.Fatal("container created after shutdown")
	}
}

func TestDesiredReadyHoldsThenRuns(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	a := withStatus(assignment(nil), swarm.TaskStateAssigned, swarm.TaskStateReady)
	h.apply(true, a)
	h.waitState("task1", swarm.TaskStateReady)
	if c := h.container("task1"); c.Running {
		t.Fatal("started while desired state is READY")
	}
	h.apply(false, withStatus(a, swarm.TaskStateReady, swarm.TaskStateRunning))
	h.waitState("task1", swarm.TaskStateRunning)
}

func TestAdoptAfterRestart(t *testing.T) {
	eng := exectest.NewEngine()
	labels := func(task string) map[string]string {
		return map[string]string{exec.LabelTaskID: task, exec.LabelServiceName: "web"}
	}
	eng.Put(exectest.Ctr{ID: "keep", Name: "web.3.task1", Config: &container.Config{Labels: labels("task1")},
		Status: container.StateRunning, Running: true, Pid: 42})
	eng.Put(exectest.Ctr{ID: "gone", Name: "web.1.old", Config: &container.Config{Labels: labels("old")},
		Status: container.StateRunning, Running: true, Pid: 43})
	eng.Put(exectest.Ctr{ID: "dead", Name: "web.2.died", Config: &container.Config{Labels: labels("died")},
		Status: container.StateExited, ExitCode: 2})
	eng.Put(exectest.Ctr{ID: "other", Name: "not-a-task", Config: &container.Config{Labels: map[string]string{}},
		Status: container.StateRunning, Running: true})

	h := newHarness(t, eng, exectest.NewImages("busybox:latest"))
	died := withStatus(assignment(func(a *wire.Assignment) { a.Task.ID, a.Task.Slot = "died", 2 }), swarm.TaskStateRunning, swarm.TaskStateRunning)
	missing := withStatus(assignment(func(a *wire.Assignment) { a.Task.ID, a.Task.Slot = "missing", 4 }), swarm.TaskStateRunning, swarm.TaskStateRunning)
	h.apply(true, withStatus(assignment(nil), swarm.TaskStateRunning, swarm.TaskStateRunning), died, missing)

	// A task whose container died while we were away fails with its code;
	// one whose container vanished fails too.
	if st := h.waitState("died", swarm.TaskStateFailed); st.Err != "task: non-zero exit (2)" {
		t.Fatalf("died: %+v", st)
	}
	if st := h.waitState("missing", swarm.TaskStateFailed); st.Err == "" {
		t.Fatalf("missing: %+v", st)
	}
	// The container of a task no longer assigned goes; others stay.
	testutil.Eventually(t, wait, func() bool { _, ok := eng.ByTask("old"); return !ok }, "unassigned container not removed")
	names := []string{}
	for _, c := range eng.Containers() {
		names = append(names, c.ID)
	}
	if !reflect.DeepEqual(names, []string{"other", "dead", "keep"}) {
		t.Fatalf("containers = %v", names)
	}
	// The adopted running container is not recreated, and its exit is seen.
	if eng.Creates != 0 || len(h.states("task1")) != 0 {
		t.Fatalf("creates %d, reports %v", eng.Creates, h.states("task1"))
	}
	eng.Exit("keep", 0)
	if st := h.waitState("task1", swarm.TaskStateComplete); st.ContainerStatus.ContainerID != "keep" {
		t.Fatalf("status = %+v", st)
	}
}

func TestAdoptPreparedContainer(t *testing.T) {
	eng := exectest.NewEngine()
	eng.Put(exectest.Ctr{ID: "made", Name: "web.3.task1", Status: container.StateCreated,
		Config: &container.Config{Labels: map[string]string{exec.LabelTaskID: "task1"}}})
	h := newHarness(t, eng, exectest.NewImages("busybox:latest"))
	// The report of READY was lost: the store still says PREPARING.
	h.apply(true, withStatus(assignment(nil), swarm.TaskStatePreparing, swarm.TaskStateRunning))
	h.waitState("task1", swarm.TaskStateRunning)
	if eng.Creates != 0 {
		t.Fatal("container recreated")
	}
	if c := h.container("task1"); c.ID != "made" || !c.Running {
		t.Fatalf("container = %+v", c)
	}
}

func TestTerminalTaskContainerStopped(t *testing.T) {
	eng := exectest.NewEngine()
	eng.Put(exectest.Ctr{ID: "ghost", Name: "web.3.task1", Status: container.StateRunning, Running: true,
		Config: &container.Config{Labels: map[string]string{exec.LabelTaskID: "task1"}}})
	h := newHarness(t, eng, exectest.NewImages("busybox:latest"))
	// Back from a long DOWN: the managers orphaned the task and replaced it.
	h.apply(true, withStatus(assignment(nil), swarm.TaskStateOrphaned, swarm.TaskStateShutdown))
	testutil.Eventually(t, wait, func() bool { c, _ := eng.ByTask("task1"); return !c.Running }, "container of a finished task still runs")
}

func TestReReportWhenStoreIsBehind(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	a := assignment(nil)
	h.apply(true, a)
	h.waitState("task1", swarm.TaskStateRunning)
	n := len(h.states("task1"))
	// A new leader's full set still has the task ASSIGNED (reports lost).
	h.apply(true, a)
	testutil.Eventually(t, wait, func() bool { return len(h.states("task1")) == n+1 }, "no re-report")
	if h.last("task1").State != swarm.TaskStateRunning {
		t.Fatalf("re-reported %v", h.last("task1"))
	}
}

func TestIncrementalBeforeFull(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages())
	if err := h.ex.Apply(wire.Assignments{Tasks: []wire.Assignment{assignment(nil)}}); err == nil {
		t.Fatal("incremental set accepted before a full one")
	}
}

func TestSecretsAndConfigs(t *testing.T) {
	dir := t.TempDir()
	eng := exectest.NewEngine()
	h := &harness{t: t, eng: eng, img: exectest.NewImages("busybox:latest"), reports: map[string][]swarm.TaskStatus{}}
	h.ex = exec.New(exec.Config{Engine: eng, Images: h.img, Report: h.report, RetryDelay: 10 * time.Millisecond,
		Log: quiet(), PayloadDir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	if err := h.ex.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); h.ex.Wait() })

	a := assignment(func(a *wire.Assignment) {
		cs := a.Task.Spec.ContainerSpec
		cs.Secrets = []*swarm.SecretReference{
			{SecretID: "sec1", SecretName: "pw", File: &swarm.SecretReferenceFileTarget{Name: "pw", Mode: 0o400}},
			{SecretID: "sec2", SecretName: "key", File: &swarm.SecretReferenceFileTarget{Name: "/etc/key"}},
		}
		cs.Configs = []*swarm.ConfigReference{
			{ConfigID: "cfg1", ConfigName: "app", File: &swarm.ConfigReferenceFileTarget{Name: "app.conf"}},
			{ConfigID: "cfg2", ConfigName: "cred", Runtime: &swarm.ConfigReferenceRuntimeTarget{}},
		}
		a.Secrets = []wire.Payload{{ID: "sec1", Data: []byte("hunter2")}, {ID: "sec2", Data: []byte("k")}}
		a.Configs = []wire.Payload{{ID: "cfg1", Data: []byte("conf")}}
	})
	missing := assignment(func(a *wire.Assignment) {
		a.Task.ID, a.Task.Slot = "nosecret", 4
		a.Task.Spec.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "gone", SecretName: "gone", File: &swarm.SecretReferenceFileTarget{Name: "gone"}}}
	})
	h.apply(true, a, missing)
	h.waitState("task1", swarm.TaskStateRunning)
	if st := h.waitState("nosecret", swarm.TaskStateRejected); st.Err != "secret gone (gone) not found" {
		t.Fatalf("nosecret: %+v", st)
	}

	c := h.container("task1")
	got := map[string]string{}
	for _, m := range c.HostConfig.Mounts {
		if !m.ReadOnly || m.Type != "bind" {
			t.Fatalf("mount %+v", m)
		}
		b, err := os.ReadFile(m.Source)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(m.Source)
		got[m.Target] = string(b) + " " + fi.Mode().Perm().String()
	}
	want := map[string]string{"/run/secrets/pw": "hunter2 -r--------", "/etc/key": "k -r--r--r--", "/app.conf": "conf -r--r--r--"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("payload mounts = %v", got)
	}
	// The files go with the task.
	eng.Exit(c.ID, 0)
	h.waitState("task1", swarm.TaskStateComplete)
	testutil.Eventually(t, wait, func() bool { _, err := os.Stat(filepath.Join(dir, "task1")); return os.IsNotExist(err) }, "payloads of a finished task kept")
}

// TestPublishedPortsReported: a running task reports the node ports its
// container got, ingress ones with mode ingress and the ephemeral node
// port the routing mesh forwards to; TaskAddr gives the container's
// address for the local share of that traffic.
func TestPublishedPortsReported(t *testing.T) {
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	h.apply(true, assignment(func(a *wire.Assignment) {
		a.Service.Ports = []swarm.PortConfig{
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
			{Protocol: "tcp", TargetPort: 80, PublishedPort: 8081, PublishMode: swarm.PortConfigPublishModeIngress},
			{Protocol: "udp", TargetPort: 53, PublishedPort: 5353, PublishMode: swarm.PortConfigPublishModeIngress},
			{Protocol: "tcp", TargetPort: 22, PublishedPort: 2222, PublishMode: swarm.PortConfigPublishModeHost},
			{Protocol: "tcp", TargetPort: 23, PublishMode: swarm.PortConfigPublishModeHost},
		}
	}))
	run := h.waitState("task1", swarm.TaskStateRunning)
	c := h.container("task1")
	hostPort := func(p string) uint32 {
		t.Helper()
		bs := c.Ports[network.MustParsePort(p)]
		if len(bs) != 1 {
			t.Fatalf("%s bindings %v", p, bs)
		}
		n, err := strconv.ParseUint(bs[0].HostPort, 10, 16)
		if err != nil {
			t.Fatal(err)
		}
		return uint32(n)
	}
	want := []swarm.PortConfig{
		{Protocol: "tcp", TargetPort: 80, PublishedPort: hostPort("80/tcp"), PublishMode: swarm.PortConfigPublishModeIngress},
		{Protocol: "udp", TargetPort: 53, PublishedPort: hostPort("53/udp"), PublishMode: swarm.PortConfigPublishModeIngress},
		{Protocol: "tcp", TargetPort: 22, PublishedPort: 2222, PublishMode: swarm.PortConfigPublishModeHost},
		{Protocol: "tcp", TargetPort: 23, PublishedPort: hostPort("23/tcp"), PublishMode: swarm.PortConfigPublishModeHost},
	}
	if !reflect.DeepEqual(run.PortStatus.Ports, want) {
		t.Fatalf("port status\n got %+v\nwant %+v", run.PortStatus.Ports, want)
	}
	addr, err := h.ex.TaskAddr(context.Background(), "task1")
	if err != nil || addr != c.IP {
		t.Fatalf("TaskAddr = %v, %v; container IP %v", addr, err, c.IP)
	}
	if _, err := h.ex.TaskAddr(context.Background(), "nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown task: %v", err)
	}
	h.eng.Exit(c.ID, 0)
	h.waitState("task1", swarm.TaskStateComplete)
	if _, err := h.ex.TaskAddr(context.Background(), "task1"); !errdefs.IsNotFound(err) {
		t.Fatalf("exited task: %v", err)
	}
}

// TestHostPortHeldByIngressRejects: a host-mode port the routing mesh
// holds is refused with a Conflict naming the service.
func TestHostPortHeldByIngressRejects(t *testing.T) {
	owner := func(proto string, port uint32) (string, bool) { return "web", proto == "tcp" && port == 8080 }
	h := newHarness(t, exectest.NewEngine(), exectest.NewImages("busybox:latest"), func(c *exec.Config) { c.IngressOwner = owner })
	h.apply(true, assignment(func(a *wire.Assignment) {
		a.Service.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}}
	}), assignment(func(a *wire.Assignment) {
		a.Task.ID = "task2"
		a.Service.Ports = []swarm.PortConfig{{Protocol: "udp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}}
	}))
	st := h.waitState("task1", swarm.TaskStateRejected)
	if st.Err != "host-mode port 8080/tcp is already published through the ingress routing mesh by service web" {
		t.Fatalf("error %q", st.Err)
	}
	h.waitState("task2", swarm.TaskStateRunning)
	if _, ok := h.eng.ByTask("task1"); ok {
		t.Fatal("a container was made for the refused task")
	}
}
