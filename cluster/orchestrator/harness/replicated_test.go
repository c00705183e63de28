package harness

import (
	"fmt"
	"sort"
	"testing"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
)

func addNodes(h *Harness, n int, opts ...NodeOpt) {
	for i := 1; i <= n; i++ {
		h.AddNode(fmt.Sprintf("node%d", i), opts...)
	}
}

func slots(ts []*store.Task) []int {
	var out []int
	for _, t := range ts {
		out = append(out, t.Slot)
	}
	sort.Ints(out)
	return out
}

func checkSpread(t *testing.T, ts []*store.Task, nodes []string) {
	t.Helper()
	per := PerNode(ts)
	lo, hi := len(ts), 0
	for _, n := range nodes {
		lo, hi = min(lo, per[n]), max(hi, per[n])
	}
	if hi-lo > 1 {
		t.Fatalf("uneven spread over %v: %v", nodes, per)
	}
	for n := range per {
		found := false
		for _, x := range nodes {
			found = found || x == n
		}
		if !found {
			t.Fatalf("task on unexpected node %s: %v", n, per)
		}
	}
}

func TestReplicatedCreateScale(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	id := h.CreateService(Spec("web", 6))
	ts := h.WaitRunning(id, 6)
	if got := slots(ts); fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Fatalf("slots %v", got)
	}
	checkSpread(t, ts, []string{"node1", "node2", "node3"})
	for _, task := range ts {
		if len(task.ID) != 25 || task.Annotations.Name != "" || task.SpecVersion != h.Service(id).SpecVersion ||
			task.Spec.ContainerSpec.Image != "busybox" {
			t.Fatalf("bad task %+v", task)
		}
	}

	h.UpdateService(id, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 9 })
	ts = h.WaitRunning(id, 9)
	if got := slots(ts); fmt.Sprint(got) != "[1 2 3 4 5 6 7 8 9]" {
		t.Fatalf("slots after scale up %v", got)
	}
	checkSpread(t, ts, []string{"node1", "node2", "node3"})

	h.UpdateService(id, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 3 })
	ts = h.WaitRunning(id, 3)
	checkSpread(t, ts, []string{"node1", "node2", "node3"})
	// Scaled-down tasks are marked REMOVE and reaped once stopped.
	h.WaitFor("removed tasks reaped", func(rt store.ReadTx) bool {
		return len(rt.FindTasks(store.ByServiceID(id))) == 3
	})
}

func TestScaleDownPrefersLoadedNodes(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	id := h.CreateService(Spec("web", 4))
	h.WaitRunning(id, 4)
	// A third node joins: no task moves (docker's behaviour), so scaling
	// to 3 must take one from node1 or node2, leaving 2+1... and scaling
	// to 2 must leave one per node.
	h.AddNode("node3")
	h.UpdateService(id, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 2 })
	ts := h.WaitRunning(id, 2)
	if per := PerNode(ts); per["node1"] != 1 || per["node2"] != 1 {
		t.Fatalf("scale down left %v", per)
	}
}

func TestDrainReplacesTasks(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	id := h.CreateService(Spec("web", 6))
	h.WaitRunning(id, 6)
	h.SetAvailability("node2", swarm.NodeAvailabilityDrain)
	ts := h.WaitRunning(id, 6, "node2")
	checkSpread(t, ts, []string{"node1", "node3"})
	if got := slots(ts); fmt.Sprint(got) != "[1 2 3 4 5 6]" {
		t.Fatalf("slots %v", got)
	}
	// The drained node's tasks were shut down, not left running.
	for _, task := range h.Tasks(id) {
		if task.NodeID == "node2" && (task.DesiredState != swarm.TaskStateShutdown || task.Status.State != swarm.TaskStateShutdown) {
			t.Fatalf("task on drained node: %+v", task.Status)
		}
	}
}

func TestPauseKeepsTasksPlacesNothing(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	id := h.CreateService(Spec("web", 2))
	h.WaitRunning(id, 2)
	h.SetAvailability("node1", swarm.NodeAvailabilityPause)
	h.SetAvailability("node2", swarm.NodeAvailabilityPause)
	h.UpdateService(id, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 3 })
	h.WaitFor("new task pending with reason", func(rt store.ReadTx) bool {
		for _, t := range rt.FindTasks(store.ByServiceID(id)) {
			if t.Status.State == swarm.TaskStatePending && t.Status.Err == "no suitable node (2 nodes not available for new tasks)" {
				return true
			}
		}
		return false
	})
	if n := len(Running(h.Tasks(id))); n != 2 {
		t.Fatalf("paused nodes lost tasks: %d running", n)
	}
	h.SetAvailability("node2", swarm.NodeAvailabilityActive)
	ts := h.WaitRunning(id, 3)
	if PerNode(ts)["node2"] != 2 {
		t.Fatalf("new task not on the reactivated node: %v", PerNode(ts))
	}
}

func TestNodeDownTasksReplaced(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	id := h.CreateService(Spec("web", 3))
	h.WaitRunning(id, 3)
	h.SetNodeState("node1", swarm.NodeStateDown)
	// A lost node's tasks are replaced at once: no restart delay (the
	// tasks did not fail, their node did). No clock advance needed.
	ts := h.WaitRunning(id, 3, "node1")
	checkSpread(t, ts, []string{"node2", "node3"})
	for _, task := range h.Tasks(id) {
		if task.NodeID == "node1" && task.DesiredState != swarm.TaskStateShutdown {
			t.Fatalf("task on down node still desired %s", task.DesiredState)
		}
	}
}

func TestServiceDeleteRemovesTasks(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	id := h.CreateService(Spec("web", 4))
	h.WaitRunning(id, 4)
	h.RemoveService(id)
	h.WaitFor("all tasks gone", func(rt store.ReadTx) bool {
		return len(rt.FindTasks(store.ByServiceID(id))) == 0
	})
}
