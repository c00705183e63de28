package controlapi

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

func u64(v uint64) *uint64 { return &v }

func spec(name, image string) swarm.ServiceSpec {
	s := swarm.ServiceSpec{}
	s.Name = name
	s.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: image}
	return s
}

func newServices() *Services { return &Services{Store: store.New()} }

func TestCreateServiceValidation(t *testing.T) {
	neg := -time.Second
	tests := []struct {
		name   string
		mutate func(*swarm.ServiceSpec)
		kind   errdefs.Kind
	}{
		{"ok", func(*swarm.ServiceSpec) {}, errdefs.KindUnknown},
		{"no name", func(s *swarm.ServiceSpec) { s.Name = "" }, errdefs.KindInvalidParameter},
		{"bad name", func(s *swarm.ServiceSpec) { s.Name = "web app" }, errdefs.KindInvalidParameter},
		{"no image", func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "" }, errdefs.KindInvalidParameter},
		{"two modes", func(s *swarm.ServiceSpec) {
			s.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: u64(2)}, Global: &swarm.GlobalService{}}
		}, errdefs.KindInvalidParameter},
		{"negative restart delay", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Delay: &neg}
		}, errdefs.KindInvalidParameter},
		{"failure ratio", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{MaxFailureRatio: 2} }, errdefs.KindInvalidParameter},
		{"bad failure action", func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{FailureAction: "explode"} }, errdefs.KindInvalidParameter},
		{"rollback on rollback", func(s *swarm.ServiceSpec) {
			s.RollbackConfig = &swarm.UpdateConfig{FailureAction: swarm.UpdateFailureActionRollback}
		}, errdefs.KindInvalidParameter},
		{"tiny memory", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{MemoryBytes: 1024}}
		}, errdefs.KindInvalidParameter},
		{"dnsrr with ingress port", func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR, Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		}, errdefs.KindInvalidParameter},
		{"duplicate ports", func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}, {TargetPort: 81, PublishedPort: 8080}}}
		}, errdefs.KindInvalidParameter},
		{"huge reservation is allowed (stays pending)", func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{MemoryBytes: 1 << 50}}
		}, errdefs.KindUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newServices()
			s := spec("web", "demo/busybox")
			tc.mutate(&s)
			_, err := c.CreateService(context.Background(), s, "")
			if tc.kind == errdefs.KindUnknown {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if errdefs.KindOf(err) != tc.kind {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
		})
	}
}

func TestCreateServiceDefaultsAndConflicts(t *testing.T) {
	c := newServices()
	ctx := context.Background()
	resp, err := c.CreateService(ctx, spec("web", "demo/hostname"), "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetService("web", false)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != resp.ID || got.Spec.Mode.Replicated == nil || *got.Spec.Mode.Replicated.Replicas != 1 {
		t.Fatalf("mode default: %+v", got.Spec.Mode)
	}
	if _, err := c.CreateService(ctx, spec("web", "x"), ""); !errdefs.IsConflict(err) {
		t.Fatalf("duplicate name: %v", err)
	}
	withDefaults, _ := c.GetService(resp.ID[:5], true)
	if withDefaults.Spec.UpdateConfig == nil || withDefaults.Spec.UpdateConfig.Monitor != 5*time.Second ||
		withDefaults.Spec.TaskTemplate.RestartPolicy.Condition != swarm.RestartPolicyConditionAny {
		t.Fatalf("insertDefaults: %+v", withDefaults.Spec)
	}

	// Ports: explicit ingress ports are exclusive, zero gets a dynamic one.
	p := spec("a", "x")
	p.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}, {TargetPort: 53, Protocol: network.UDP}}}
	if _, err := c.CreateService(ctx, p, ""); err != nil {
		t.Fatal(err)
	}
	a, _ := c.GetService("a", false)
	if len(a.Endpoint.Ports) != 2 || a.Endpoint.Ports[1].PublishedPort != dynamicPortStart || a.Endpoint.Ports[0].PublishMode != swarm.PortConfigPublishModeIngress {
		t.Fatalf("ports: %+v", a.Endpoint.Ports)
	}
	b := spec("b", "x")
	b.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	if _, err := c.CreateService(ctx, b, ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("port in use: %v", err)
	}
	b.EndpointSpec.Ports[0].PublishMode = swarm.PortConfigPublishModeHost
	if _, err := c.CreateService(ctx, b, ""); err != nil {
		t.Fatalf("host-mode port may repeat: %v", err)
	}
}

func TestUpdateAndRollback(t *testing.T) {
	c := newServices()
	ctx := context.Background()
	if _, err := c.CreateService(ctx, spec("web", "img:1"), ""); err != nil {
		t.Fatal(err)
	}
	update := func(image string) {
		t.Helper()
		cur, _ := c.GetService("web", false)
		s := cur.Spec
		cs := *s.TaskTemplate.ContainerSpec
		cs.Image = image
		s.TaskTemplate.ContainerSpec = &cs
		if _, err := c.UpdateService(ctx, "web", cur.Version.Index, s, UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	update("img:2")
	update("img:3")
	cur, _ := c.GetService("web", false)
	if cur.PreviousSpec == nil || cur.PreviousSpec.TaskTemplate.ContainerSpec.Image != "img:2" {
		t.Fatalf("previous spec: %+v", cur.PreviousSpec)
	}
	if _, err := c.UpdateService(ctx, "web", cur.Version.Index-1, cur.Spec, UpdateOptions{}); !errdefs.IsConflict(err) {
		t.Fatalf("stale version: %v", err)
	}
	global := cur.Spec
	global.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	if _, err := c.UpdateService(ctx, "web", cur.Version.Index, global, UpdateOptions{}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("mode change: %v", err)
	}

	// docker's rollback swaps Spec and PreviousSpec.
	if _, err := c.UpdateService(ctx, "web", cur.Version.Index, cur.Spec, UpdateOptions{Rollback: "previous"}); err != nil {
		t.Fatal(err)
	}
	cur, _ = c.GetService("web", false)
	if cur.Spec.TaskTemplate.ContainerSpec.Image != "img:2" || cur.PreviousSpec.TaskTemplate.ContainerSpec.Image != "img:3" ||
		cur.UpdateStatus == nil || cur.UpdateStatus.State != swarm.UpdateStateRollbackStarted {
		t.Fatalf("after rollback: spec %s prev %s status %+v", cur.Spec.TaskTemplate.ContainerSpec.Image, cur.PreviousSpec.TaskTemplate.ContainerSpec.Image, cur.UpdateStatus)
	}

	// Shoal: roll back to any remembered version.
	hist, err := c.ServiceHistory("web")
	if err != nil {
		t.Fatal(err)
	}
	var v1 uint64
	for _, h := range hist {
		if h.Spec.TaskTemplate.ContainerSpec.Image == "img:1" {
			v1 = h.Version
		}
	}
	if v1 == 0 || !hist[len(hist)-1].Current {
		t.Fatalf("history: %+v", hist)
	}
	if _, err := c.UpdateService(ctx, "web", cur.Version.Index, cur.Spec, UpdateOptions{RollbackTo: v1}); err != nil {
		t.Fatal(err)
	}
	cur, _ = c.GetService("web", false)
	if cur.Spec.TaskTemplate.ContainerSpec.Image != "img:1" {
		t.Fatalf("rollback --to: %s", cur.Spec.TaskTemplate.ContainerSpec.Image)
	}
	if _, err := c.UpdateService(ctx, "web", cur.Version.Index, cur.Spec, UpdateOptions{RollbackTo: 9999}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown version: %v", err)
	}

	fresh := newServices()
	fresh.CreateService(ctx, spec("solo", "x"), "")
	s, _ := fresh.GetService("solo", false)
	if _, err := fresh.UpdateService(ctx, "solo", s.Version.Index, s.Spec, UpdateOptions{Rollback: "previous"}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("rollback without previous: %v", err)
	}
}

func TestListServicesAndTasks(t *testing.T) {
	c := newServices()
	ctx := context.Background()
	web := spec("web", "x")
	web.Labels = map[string]string{"com.docker.stack.namespace": "demo"}
	web.Mode.Replicated = &swarm.ReplicatedService{Replicas: u64(3)}
	c.CreateService(ctx, web, "")
	c.CreateService(ctx, spec("db", "y"), "")
	g := spec("agent", "z")
	g.Mode.Global = &swarm.GlobalService{}
	c.CreateService(ctx, g, "")

	w, _ := c.GetService("web", false)
	var webSV uint64
	c.Store.View(func(rt store.ReadTx) { webSV = rt.GetService(w.ID).SpecVersion })
	mk := func(id string, slot int, node string, desired, state swarm.TaskState, sv uint64) *store.Task {
		tk := &store.Task{SpecVersion: sv}
		tk.ID, tk.ServiceID, tk.Slot, tk.NodeID, tk.DesiredState = id, w.ID, slot, node, desired
		tk.Status.State = state
		tk.Spec = w.Spec.TaskTemplate
		return tk
	}
	old := mk("t0", 1, "node1id", swarm.TaskStateShutdown, swarm.TaskStateShutdown, webSV-1)
	old.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "older"}
	err := c.Store.Update(ctx, func(tx store.Tx) error {
		n1, n2 := &store.Node{}, &store.Node{}
		n1.ID, n1.Description.Hostname, n1.Status.State = "node1id", "node1", swarm.NodeStateReady
		n2.ID, n2.Description.Hostname, n2.Status.State = "node2id", "node2", swarm.NodeStateDown
		for _, o := range []store.Object{n1, n2,
			mk("t1", 1, "node1id", swarm.TaskStateRunning, swarm.TaskStateRunning, webSV),
			mk("t2", 2, "node2id", swarm.TaskStateRunning, swarm.TaskStateRunning, webSV),
			mk("t3", 3, "node1id", swarm.TaskStateRunning, swarm.TaskStatePending, webSV),
			old,
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	svcs, err := c.ListServices(filters.NewArgs(), true)
	if err != nil || len(svcs) != 3 {
		t.Fatalf("list: %v %d", err, len(svcs))
	}
	for _, s := range svcs {
		if s.Spec.Name == "web" && (s.ServiceStatus.RunningTasks != 1 || s.ServiceStatus.DesiredTasks != 3) {
			t.Fatalf("web status %+v (a task on a down node doesn't count)", s.ServiceStatus)
		}
	}
	if _, err := c.ListServices(filters.NewArgs(filters.Arg("bogus", "x")), false); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad filter: %v", err)
	}
	if got, _ := c.ListServices(filters.NewArgs(filters.Arg("mode", "global")), false); len(got) != 1 || got[0].Spec.Name != "agent" {
		t.Fatalf("mode filter: %+v", got)
	}

	taskTests := []struct {
		name string
		args filters.Args
		want int
	}{
		{"by service name", filters.NewArgs(filters.Arg("service", "web")), 4},
		{"running only", filters.NewArgs(filters.Arg("service", "web"), filters.Arg("desired-state", "running")), 3},
		{"shutdown", filters.NewArgs(filters.Arg("desired-state", "shutdown")), 1},
		{"up to date", filters.NewArgs(filters.Arg("service", w.ID), filters.Arg("_up-to-date", "true")), 3},
		{"node by hostname", filters.NewArgs(filters.Arg("node", "node1")), 3},
		{"node self", filters.NewArgs(filters.Arg("node", "self")), 1},
		{"label of the service", filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=demo")), 4},
		{"label no match", filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace=other")), 0},
		{"unknown service", filters.NewArgs(filters.Arg("service", "nope")), 0},
		{"name", filters.NewArgs(filters.Arg("name", "web.2")), 1},
	}
	for _, tc := range taskTests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.ListTasks(tc.args, "node2id")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Fatalf("got %d tasks, want %d", len(got), tc.want)
			}
			for _, tk := range got {
				if tk.Spec.ContainerSpec == nil {
					t.Fatal("tasks must carry a ContainerSpec")
				}
			}
		})
	}
	if _, err := c.ListTasks(filters.NewArgs(filters.Arg("desired-state", "sleeping")), ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad desired-state: %v", err)
	}
	if _, err := c.GetTask("t"); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("ambiguous task prefix: %v", err)
	}
	if tk, err := c.GetTask("t2"); err != nil || tk.NodeID != "node2id" {
		t.Fatalf("get task: %v %+v", err, tk)
	}
	if err := c.RemoveService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetService("web", false); !errdefs.IsNotFound(err) {
		t.Fatalf("removed: %v", err)
	}
}
