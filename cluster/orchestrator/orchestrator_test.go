package orchestrator

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
)

func TestStateOrder(t *testing.T) {
	order := []swarm.TaskState{
		swarm.TaskStateNew, swarm.TaskStatePending, swarm.TaskStateAssigned, swarm.TaskStateAccepted,
		swarm.TaskStatePreparing, swarm.TaskStateReady, swarm.TaskStateStarting, swarm.TaskStateRunning,
		swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed, swarm.TaskStateRejected,
		swarm.TaskStateRemove, swarm.TaskStateOrphaned,
	}
	for i := 1; i < len(order); i++ {
		if !Before(order[i-1], order[i]) {
			t.Errorf("%s not before %s", order[i-1], order[i])
		}
	}
	if Terminal(swarm.TaskStateRunning) || !Terminal(swarm.TaskStateComplete) {
		t.Error("terminal")
	}
}

func TestNewTask(t *testing.T) {
	svc := &store.Service{SpecVersion: 42}
	svc.ID = "svc"
	svc.Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	now := time.Unix(100, 0)
	tk := NewTask(svc, 3, "", now)
	if len(tk.ID) != 25 || tk.Slot != 3 || tk.ServiceID != "svc" || tk.SpecVersion != 42 || tk.Annotations.Name != "" ||
		tk.DesiredState != swarm.TaskStateRunning || tk.Status.State != swarm.TaskStateNew ||
		tk.Status.Message != "created" || !tk.Status.Timestamp.Equal(now) || tk.Spec.ContainerSpec.Image != "busybox" {
		t.Fatalf("%+v", tk)
	}
	if g := NewTask(svc, 0, "node1", now); g.NodeID != "node1" || g.Slot != 0 {
		t.Fatalf("global task %+v", g)
	}
}

func TestIsTaskDirty(t *testing.T) {
	base := func() *store.Service {
		s := &store.Service{SpecVersion: 1}
		s.Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "v1"}
		s.Spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.labels.zone==a"}}
		return s
	}
	node := &store.Node{}
	node.Spec.Labels = map[string]string{"zone": "a"}
	tests := []struct {
		name   string
		change func(*store.Service)
		node   *store.Node
		dirty  bool
	}{
		{"same version", func(s *store.Service) {}, nil, false},
		{"update config only", func(s *store.Service) {
			s.SpecVersion = 2
			s.Spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 3}
		}, nil, false},
		{"image", func(s *store.Service) {
			s.SpecVersion = 2
			s.Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "v2"}
		}, nil, true},
		{"constraint the node still meets", func(s *store.Service) {
			s.SpecVersion = 2
			s.Spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.labels.zone!=b"}}
		}, node, false},
		{"constraint the node fails", func(s *store.Service) {
			s.SpecVersion = 2
			s.Spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.labels.zone==b"}}
		}, node, true},
		{"published ports", func(s *store.Service) {
			s.History = []store.SpecVersion{{Version: 1, Spec: s.Spec}}
			s.SpecVersion = 2
			s.Spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
		}, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			svc := base()
			task := NewTask(svc, 1, "", time.Now())
			tc.change(svc)
			if got := IsTaskDirty(svc, task, tc.node); got != tc.dirty {
				t.Fatalf("dirty = %v", got)
			}
		})
	}
}

func TestUpdateConfigDefaults(t *testing.T) {
	spec := &swarm.ServiceSpec{}
	got := UpdateConfig(spec, false)
	if got.Parallelism != 1 || got.FailureAction != swarm.UpdateFailureActionPause || got.Monitor != DefaultMonitor || got.Order != swarm.UpdateOrderStopFirst {
		t.Fatalf("%+v", got)
	}
	spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: 0, Order: swarm.UpdateOrderStartFirst}
	got = UpdateConfig(spec, true)
	if got.Parallelism != 0 || got.Order != swarm.UpdateOrderStartFirst || got.Monitor != DefaultMonitor {
		t.Fatalf("%+v", got)
	}
}

func TestPlacementChanged(t *testing.T) {
	base := &store.Node{}
	base.Status.State = swarm.NodeStateReady
	base.Spec.Labels = map[string]string{"a": "1"}
	tests := []struct {
		name   string
		change func(*store.Node)
		want   bool
	}{
		{"nothing", func(*store.Node) {}, false},
		{"tls info", func(n *store.Node) { n.Description.TLSInfo.TrustRoot = "x" }, false},
		{"manager status", func(n *store.Node) { n.ManagerStatus = &swarm.ManagerStatus{Leader: true} }, false},
		{"state", func(n *store.Node) { n.Status.State = swarm.NodeStateDown }, true},
		{"availability", func(n *store.Node) { n.Spec.Availability = swarm.NodeAvailabilityDrain }, true},
		{"label", func(n *store.Node) { n.Spec.Labels = map[string]string{"a": "2"} }, true},
		{"engine label", func(n *store.Node) { n.Description.Engine.Labels = map[string]string{"x": "y"} }, true},
		{"resources", func(n *store.Node) { n.Description.Resources.MemoryBytes = 1 }, true},
	}
	for _, tc := range tests {
		c := base.Copy()
		tc.change(c)
		if got := PlacementChanged(base, c); got != tc.want {
			t.Errorf("%s: %v", tc.name, got)
		}
	}
}
