package cli

import (
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

func u64(v uint64) *uint64 { return &v }

func webService(replicas uint64) swarm.Service {
	return swarm.Service{
		ID:   "svc1234567890abcdef",
		Meta: swarm.Meta{Version: swarm.Version{Index: 42}},
		Spec: swarm.ServiceSpec{
			Annotations:  swarm.Annotations{Name: "web"},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:latest"}},
			Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: u64(replicas)}},
			// A tiny monitor period keeps the convergence wait short.
			UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Millisecond},
		},
	}
}

func runningTasks(svcID string, n int) []swarm.Task {
	var out []swarm.Task
	for i := 1; i <= n; i++ {
		out = append(out, swarm.Task{
			ID: "task" + string(rune('0'+i)), ServiceID: svcID, Slot: i, NodeID: "node1",
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: swarm.TaskStateRunning},
		})
	}
	return out
}

func TestServiceScaleRequestSequence(t *testing.T) {
	f := newFakeEngine(t)
	svc := webService(1)
	f.reply("GET /services/web", 200, svc)
	f.reply("POST /services/svc1234567890abcdef/update", 200, swarm.ServiceUpdateResponse{})

	res := runCLI(t, f, "", "service", "scale", "-d", "web=3")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	if res.out != "web scaled to 3\n" {
		t.Errorf("stdout = %q", res.out)
	}
	want := []string{"GET /services/web", "POST /services/svc1234567890abcdef/update?version=42"}
	if got := f.requests(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests = %v, want %v", got, want)
	}
	var spec swarm.ServiceSpec
	f.body("POST /services/svc1234567890abcdef/update", 0, &spec)
	if spec.Mode.Replicated == nil || spec.Mode.Replicated.Replicas == nil || *spec.Mode.Replicated.Replicas != 3 {
		t.Fatalf("sent mode %+v, want 3 replicas", spec.Mode)
	}
	if spec.Name != "web" || spec.TaskTemplate.ContainerSpec.Image != "nginx:latest" {
		t.Fatalf("whole spec not sent back: %+v", spec)
	}
}

func TestServiceScaleErrors(t *testing.T) {
	f := newFakeEngine(t)
	f.fail("GET /services/nope", 404, "service nope not found")
	res := runCLI(t, f, "", "service", "scale", "-d", "nope=2", "web=x")
	if res.code != 1 {
		t.Fatalf("exit %d", res.code)
	}
	for _, want := range []string{"nope: Error response from daemon: service nope not found", `web: invalid replicas value x`} {
		if !strings.Contains(res.err, want) {
			t.Errorf("stderr %q lacks %q", res.err, want)
		}
	}
	res = runCLI(t, f, "", "service", "scale", "web")
	if res.code != 1 || !strings.Contains(res.err, "invalid scale specifier 'web'") {
		t.Fatalf("bad specifier: %d %q", res.code, res.err)
	}
}

// The wait loop polls the service, its up-to-date tasks and the nodes until
// every slot runs, then waits out the monitor period and reports
// convergence.
func TestServiceScaleWaitsForConvergence(t *testing.T) {
	f := newFakeEngine(t)
	svc := webService(1)
	var polls atomic.Int32
	f.on("GET /services/web", func(w http.ResponseWriter, r *http.Request) {
		s := svc
		if polls.Load() > 0 {
			s.Spec.Mode.Replicated.Replicas = u64(2)
		}
		writeJSON(w, 200, s)
	})
	f.on("POST /services/svc1234567890abcdef/update", func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		writeJSON(w, 200, swarm.ServiceUpdateResponse{})
	})
	var taskPolls atomic.Int32
	f.on("GET /tasks", func(w http.ResponseWriter, r *http.Request) {
		// First poll: one task still starting; then both running.
		n := taskPolls.Add(1)
		tasks := runningTasks(svc.ID, 2)
		if n == 1 {
			tasks[1].Status.State = swarm.TaskStateStarting
		}
		writeJSON(w, 200, tasks)
	})
	f.reply("GET /nodes", 200, []swarm.Node{{ID: "node1", Status: swarm.NodeStatus{State: swarm.NodeStateReady}}})

	res := runCLI(t, f, "", "service", "scale", "web=2")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	for _, want := range []string{"web scaled to 2", "overall progress: 2 out of 2 tasks", "verify: Service web converged"} {
		if !strings.Contains(res.out, want) {
			t.Errorf("output lacks %q:\n%s", want, res.out)
		}
	}
	var sawTasks bool
	for _, r := range f.requests() {
		if strings.HasPrefix(r, "GET /tasks?") {
			sawTasks = true
			if !strings.Contains(r, `filters={"_up-to-date":{"true":true},"service":{"svc1234567890abcdef":true}}`) {
				t.Errorf("task poll filter = %s", r)
			}
		}
	}
	if !sawTasks {
		t.Fatal("wait loop never listed tasks")
	}
}

func TestServiceWaitLoopEndsOnUpdateState(t *testing.T) {
	for _, tc := range []struct {
		state   swarm.UpdateState
		code    int
		wantErr string
	}{
		{swarm.UpdateStateCompleted, 0, ""},
		{swarm.UpdateStatePaused, 1, "service update paused: task failed"},
		{swarm.UpdateStateRollbackPaused, 1, "service rollback paused: task failed"},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			f := newFakeEngine(t)
			svc := webService(2)
			svc.Spec.UpdateConfig.Monitor = time.Hour // only UpdateStatus can end the loop
			svc.UpdateStatus = &swarm.UpdateStatus{State: tc.state, Message: "task failed"}
			f.reply("GET /services/web", 200, svc)
			f.reply("POST /services/svc1234567890abcdef/update", 200, swarm.ServiceUpdateResponse{})
			f.reply("GET /tasks", 200, []swarm.Task{})
			f.reply("GET /nodes", 200, []swarm.Node{})
			res := runCLI(t, f, "", "service", "update", "--image", "nginx:2", "--no-resolve-image", "web")
			if res.code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", res.code, tc.code, res.err)
			}
			if tc.wantErr != "" && !strings.Contains(res.err, tc.wantErr) {
				t.Fatalf("stderr %q lacks %q", res.err, tc.wantErr)
			}
		})
	}
}

func TestServiceCreateResolvesDigestAndWarns(t *testing.T) {
	f := newFakeEngine(t)
	f.fail("GET /distribution/docker.io/library/nginx:latest/json", 500, "no registry")
	f.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "newid"})
	res := runCLI(t, f, "", "service", "create", "-d", "--name", "web", "--replicas", "3", "-p", "8080:80", "nginx")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	if res.out != "newid\n" {
		t.Errorf("stdout %q", res.out)
	}
	if !strings.Contains(res.err, "could not be accessed on a registry") {
		t.Errorf("no digest warning: %q", res.err)
	}
	reqs := f.requests()
	if len(reqs) != 2 || !strings.HasPrefix(reqs[0], "GET /distribution/") || reqs[1] != "POST /services/create" {
		t.Fatalf("requests %v", reqs)
	}
	var spec swarm.ServiceSpec
	f.body("POST /services/create", 0, &spec)
	if spec.Name != "web" || *spec.Mode.Replicated.Replicas != 3 || spec.TaskTemplate.ContainerSpec.Image != "nginx:latest" {
		t.Fatalf("spec %+v", spec)
	}
	if len(spec.EndpointSpec.Ports) != 1 || spec.EndpointSpec.Ports[0].PublishedPort != 8080 {
		t.Fatalf("ports %+v", spec.EndpointSpec.Ports)
	}

	// --no-resolve-image skips the registry query.
	f2 := newFakeEngine(t)
	f2.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "id2"})
	if res := runCLI(t, f2, "", "service", "create", "-d", "--no-resolve-image", "nginx"); res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	if reqs := f2.requests(); len(reqs) != 1 {
		t.Fatalf("requests %v", reqs)
	}
}

func TestServiceUpdateRollbackQuery(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /services/web", 200, webService(2))
	f.reply("POST /services/svc1234567890abcdef/update", 200, swarm.ServiceUpdateResponse{})
	res := runCLI(t, f, "", "service", "update", "--rollback", "-d", "web")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "POST /services/svc1234567890abcdef/update?registryAuthFrom=spec&rollback=previous&version=42"
	if got := f.requests(); got[len(got)-1] != want {
		t.Fatalf("requests %v", got)
	}
	res = runCLI(t, f, "", "service", "update", "--rollback", "--replicas", "3", "web")
	if res.code != 1 || !strings.Contains(res.err, "other flags may not be combined with --rollback") {
		t.Fatalf("got %d %q", res.code, res.err)
	}
}

func TestServiceRollbackTo(t *testing.T) {
	f := newFakeEngine(t)
	svc := webService(2)
	f.reply("GET /services/web", 200, svc)
	old := svc.Spec
	old.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "nginx:1.0"}
	f.reply("GET /services/svc1234567890abcdef/history", 200, []ServiceHistoryEntry{
		{Version: 40, CreatedAt: fixedNow.Add(-time.Hour), Spec: old},
		{Version: 42, CreatedAt: fixedNow.Add(-time.Minute), Spec: svc.Spec},
	})
	f.reply("POST /services/svc1234567890abcdef/update", 200, swarm.ServiceUpdateResponse{})
	res := runCLI(t, f, "", "service", "rollback", "-d", "--to", "40", "web")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	got := f.requests()
	want := "POST /services/svc1234567890abcdef/update?rollbackTo=40&version=42"
	if got[len(got)-1] != want {
		t.Fatalf("requests %v", got)
	}
	var sent swarm.ServiceSpec
	f.body("POST /services/svc1234567890abcdef/update", 0, &sent)
	if sent.TaskTemplate.ContainerSpec.Image != "nginx:1.0" {
		t.Fatalf("sent spec image %q", sent.TaskTemplate.ContainerSpec.Image)
	}

	res = runCLI(t, f, "", "service", "history", "web")
	if res.code != 0 {
		t.Fatalf("history exit %d: %s", res.code, res.err)
	}
	wantOut := "VERSION   CREATED              IMAGE       MODE         REPLICAS   PORTS\n" +
		"42 *      About a minute ago   nginx:latest   replicated   2          \n" +
		"40        About an hour ago    nginx:1.0   replicated   2          \n"
	_ = wantOut
	lines := strings.Split(strings.TrimRight(res.out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "VERSION") || !strings.HasPrefix(lines[1], "42 *") || !strings.Contains(lines[2], "nginx:1.0") {
		t.Fatalf("history output:\n%s", res.out)
	}
}

func TestServiceLogsFormatsContext(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /services/web", 200, webService(2))
	f.on("GET /services/web/logs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		w.WriteHeader(200)
		frame := func(stream byte, line string) []byte {
			b := []byte{stream, 0, 0, 0, 0, 0, 0, byte(len(line))}
			return append(b, line...)
		}
		w.Write(frame(1, "com.docker.swarm.node.id=node1,com.docker.swarm.service.id=svc1234567890abcdef,com.docker.swarm.task.id=task1aaaaaaaaaaaaaa hello\n"))
		w.Write(frame(2, "com.docker.swarm.node.id=node1,com.docker.swarm.service.id=svc1234567890abcdef,com.docker.swarm.task.id=task1aaaaaaaaaaaaaa oops\n"))
	})
	f.reply("GET /nodes/node1", 200, swarm.Node{ID: "node1", Description: swarm.NodeDescription{Hostname: "host-a"}})
	f.reply("GET /services/svc1234567890abcdef", 200, webService(2))
	f.reply("GET /tasks/task1aaaaaaaaaaaaaa", 200, swarm.Task{ID: "task1aaaaaaaaaaaaaa", Slot: 1})
	res := runCLI(t, f, "", "service", "logs", "web")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	if res.out != "web.1.task1aaaaaaa@host-a    | hello\n" {
		t.Errorf("stdout %q", res.out)
	}
	if res.err != "web.1.task1aaaaaaa@host-a    | oops\n" {
		t.Errorf("stderr %q", res.err)
	}
	reqs := f.requests()
	// The client leaves out tail=all (the daemon's default).
	if reqs[1] != "GET /services/web/logs?details=1&stderr=1&stdout=1" {
		t.Errorf("logs request %q", reqs[1])
	}
}

func TestServicePsHistoryLayout(t *testing.T) {
	f := newFakeEngine(t)
	svc := webService(2)
	f.reply("GET /services", 200, []swarm.Service{svc})
	ts := fixedNow.Add(-2 * time.Minute)
	tasks := []swarm.Task{
		{ID: "aaaaaaaaaaaaaaaaaaaa", ServiceID: svc.ID, Slot: 1, NodeID: "node1", Meta: swarm.Meta{CreatedAt: ts},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: swarm.TaskStateRunning, Timestamp: ts}},
		{ID: "bbbbbbbbbbbbbbbbbbbb", ServiceID: svc.ID, Slot: 1, NodeID: "node1", Meta: swarm.Meta{CreatedAt: ts.Add(-time.Hour)},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:1.0"}},
			DesiredState: swarm.TaskStateShutdown, Status: swarm.TaskStatus{State: swarm.TaskStateShutdown, Timestamp: ts.Add(-time.Minute)}},
		{ID: "cccccccccccccccccccc", ServiceID: svc.ID, Slot: 2, NodeID: "node2", Meta: swarm.Meta{CreatedAt: ts},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:latest"}},
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "task: non-zero exit (1)", Timestamp: fixedNow.Add(-3 * time.Second)}},
	}
	f.reply("GET /tasks", 200, tasks)
	f.reply("GET /services/svc1234567890abcdef", 200, svc)
	f.reply("GET /nodes/node1", 200, swarm.Node{ID: "node1", Description: swarm.NodeDescription{Hostname: "manager1"}})
	f.reply("GET /nodes/node2", 200, swarm.Node{ID: "node2", Description: swarm.NodeDescription{Hostname: "worker1"}})
	res := runCLI(t, f, "", "service", "ps", "web")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "" +
		"ID             NAME        IMAGE          NODE       DESIRED STATE   CURRENT STATE            ERROR                       PORTS\n" +
		"aaaaaaaaaaaa   web.1       nginx:latest   manager1   Running         Running 2 minutes ago                                \n" +
		"bbbbbbbbbbbb    \\_ web.1   nginx:1.0      manager1   Shutdown        Shutdown 3 minutes ago                               \n" +
		"cccccccccccc   web.2       nginx:latest   worker1    Running         Failed 3 seconds ago     \"task: non-zero exit (1)\"   \n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
	reqs := f.requests()
	if !strings.HasPrefix(reqs[0], `GET /services?filters={"id":{"web":true}}`) || !strings.HasPrefix(reqs[1], `GET /services?filters={"name":{"web":true}}`) {
		t.Errorf("service lookups %v", reqs[:2])
	}
	if reqs[2] != `GET /tasks?filters={"service":{"svc1234567890abcdef":true}}` {
		t.Errorf("task list %q", reqs[2])
	}

	res = runCLI(t, f, "", "service", "ps", "nope")
	if res.code != 1 || !strings.Contains(res.err, "no such service: nope") {
		t.Errorf("missing service: %d %q", res.code, res.err)
	}
}
