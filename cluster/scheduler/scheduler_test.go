package scheduler

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
)

func TestExplain(t *testing.T) {
	tests := []struct {
		counts [nFilters]int
		want   string
	}{
		{[nFilters]int{}, ""},
		{[nFilters]int{fReady: 1}, "1 node not available for new tasks"},
		{[nFilters]int{fResources: 3, fConstraints: 2}, "insufficient resources on 3 nodes; scheduling constraints not satisfied on 2 nodes"},
		{[nFilters]int{fResources: 1, fConstraints: 2}, "scheduling constraints not satisfied on 2 nodes; insufficient resources on 1 node"},
		{[nFilters]int{fPlatform: 2, fHostPorts: 2, fMaxReplicas: 5}, "max replicas per node limit exceed; unsupported platform on 2 nodes; host-mode port already in use on 2 nodes"},
	}
	for _, tc := range tests {
		if got := explain(&tc.counts); got != tc.want {
			t.Errorf("explain(%v) = %q, want %q", tc.counts, got, tc.want)
		}
	}
}

// fixture is a store with the scheduler running on it.
type fixture struct {
	t *testing.T
	s *store.Store
}

func newFixture(t *testing.T) *fixture {
	s := store.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(s, Config{Clock: clock.NewFake(time.Unix(0, 0))}).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{t, s}
}

func (f *fixture) update(fn func(tx store.Tx) error) {
	f.t.Helper()
	if err := f.s.Update(context.Background(), fn); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) node(id string, fn func(*store.Node)) {
	n := &store.Node{}
	n.ID = id
	n.Spec.Availability = swarm.NodeAvailabilityActive
	n.Status.State = swarm.NodeStateReady
	n.Description.Resources = swarm.Resources{NanoCPUs: 2e9, MemoryBytes: 2 << 30}
	n.Description.Platform = swarm.Platform{OS: "linux", Architecture: "amd64"}
	if fn != nil {
		fn(n)
	}
	f.update(func(tx store.Tx) error { return tx.Create(n) })
}

func (f *fixture) task(id, svc, node string, desired swarm.TaskState, fn func(*store.Task)) {
	t := &store.Task{SpecVersion: 1}
	t.ID, t.ServiceID, t.NodeID, t.DesiredState = id, svc, node, desired
	t.Status.State = swarm.TaskStatePending
	t.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	if fn != nil {
		fn(t)
	}
	f.update(func(tx store.Tx) error { return tx.Create(t) })
}

// wait waits, on store events, until cond holds for task id.
func (f *fixture) wait(id string, desc string, cond func(*store.Task) bool) *store.Task {
	f.t.Helper()
	events, cancel := f.s.Watch(store.KindTask)
	defer cancel()
	deadline := time.After(10 * time.Second)
	for {
		var t *store.Task
		f.s.View(func(rt store.ReadTx) { t = rt.GetTask(id) })
		if t != nil && cond(t) {
			return t
		}
		select {
		case <-events:
		case <-deadline:
			f.t.Fatalf("task %s: timed out waiting for %s (now %+v)", id, desc, t)
		}
	}
}

func TestPreassignedAndPreempted(t *testing.T) {
	f := newFixture(t)
	f.node("n1", nil)
	f.node("n2", func(n *store.Node) { n.Status.State = swarm.NodeStateDown })
	f.update(func(tx store.Tx) error {
		s := &store.Service{}
		s.ID = "g"
		s.Spec.Mode.Global = &swarm.GlobalService{}
		return tx.Create(s)
	})
	f.task("on-n1", "g", "n1", swarm.TaskStateRunning, nil)
	f.task("on-n2", "g", "n2", swarm.TaskStateRunning, nil)
	f.task("stop", "g", "", swarm.TaskStateShutdown, nil)

	got := f.wait("on-n1", "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned })
	if got.NodeID != "n1" || got.Status.Message != orchestrator.MsgAssigned {
		t.Fatalf("%+v", got.Status)
	}
	f.wait("on-n2", "explained", func(t *store.Task) bool {
		return t.Status.State == swarm.TaskStatePending && t.Status.Err == "1 node not available for new tasks"
	})
	f.wait("stop", "shut down unplaced", func(t *store.Task) bool {
		return t.Status.State == swarm.TaskStateShutdown && t.NodeID == "" && t.Status.Message == orchestrator.MsgPreempted
	})
	// The node coming back lets its task through.
	f.update(func(tx store.Tx) error {
		n := tx.GetNode("n2").Copy()
		n.Status.State = swarm.NodeStateReady
		return tx.Update(n)
	})
	f.wait("on-n2", "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned && t.NodeID == "n2" })
}

func TestReadyDesiredTasksAreScheduled(t *testing.T) {
	// Replacements waiting out a restart delay (desired READY) are placed
	// and prepared meanwhile.
	f := newFixture(t)
	f.node("n1", nil)
	f.task("t1", "svc", "", swarm.TaskStateReady, nil)
	f.wait("t1", "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned })
}

func TestPlatformFilter(t *testing.T) {
	f := newFixture(t)
	f.node("arm", func(n *store.Node) { n.Description.Platform.Architecture = "arm64" })
	f.node("x86", func(n *store.Node) { n.Description.Platform.Architecture = "x86_64" })
	f.task("t1", "svc", "", swarm.TaskStateRunning, func(t *store.Task) {
		t.Spec.Placement = &swarm.Placement{Platforms: []swarm.Platform{{OS: "linux", Architecture: "amd64"}}}
	})
	if got := f.wait("t1", "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned }); got.NodeID != "x86" {
		t.Fatalf("placed on %s", got.NodeID)
	}
	f.task("t2", "svc", "", swarm.TaskStateRunning, func(t *store.Task) {
		t.Spec.Placement = &swarm.Placement{Platforms: []swarm.Platform{{OS: "windows"}}}
	})
	f.wait("t2", "explained", func(t *store.Task) bool {
		return t.Status.Err == "no suitable node (unsupported platform on 2 nodes)"
	})
}

func TestFaultyNodeLast(t *testing.T) {
	// A node where a service version failed 5 times within 5 minutes is
	// tried last for it.
	f := newFixture(t)
	f.node("a", nil)
	f.node("b", nil)
	for i := 0; i < 5; i++ {
		id := fmt.Sprint("fail", i)
		f.task(id, "svc", "", swarm.TaskStateRunning, nil)
		got := f.wait(id, "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned })
		if got.NodeID != "a" {
			// Put it on a: fail it there.
			f.update(func(tx store.Tx) error {
				c := tx.GetTask(id).Copy()
				c.NodeID = "a"
				return tx.Update(c)
			})
		}
		f.update(func(tx store.Tx) error {
			c := tx.GetTask(id).Copy()
			c.Status.State = swarm.TaskStateFailed
			return tx.Update(c)
		})
	}
	// Node b now holds no task of the service and a none either: without
	// the failures "a" (first by ID) would win.
	f.task("next", "svc", "", swarm.TaskStateRunning, nil)
	if got := f.wait("next", "assigned", func(t *store.Task) bool { return t.Status.State == swarm.TaskStateAssigned }); got.NodeID != "b" {
		t.Fatalf("placed on faulty node %s", got.NodeID)
	}
}

func TestHostPortsOfSpecVersion(t *testing.T) {
	svc := &store.Service{SpecVersion: 7}
	svc.Spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{PublishedPort: 80, PublishMode: swarm.PortConfigPublishModeHost}}}
	svc.History = []store.SpecVersion{{Version: 3, Spec: swarm.ServiceSpec{EndpointSpec: &swarm.EndpointSpec{Ports: []swarm.PortConfig{
		{PublishedPort: 81, PublishMode: swarm.PortConfigPublishModeHost, Protocol: "udp"},
		{PublishedPort: 82, PublishMode: swarm.PortConfigPublishModeIngress},
	}}}}}
	if got := fmt.Sprint(hostPortsOf(svc, 7)); got != "[{tcp 80}]" {
		t.Fatalf("current: %s", got)
	}
	if got := fmt.Sprint(hostPortsOf(svc, 3)); got != "[{udp 81}]" {
		t.Fatalf("old version: %s", got)
	}
}
