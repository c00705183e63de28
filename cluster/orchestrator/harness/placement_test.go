package harness

import (
	"fmt"
	"testing"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
)

// pendingErr waits until some task of the service is pending with err.
func pendingErr(h *Harness, id, err string) {
	h.T.Helper()
	waitPlaced(h, id, -1, err)
}

// waitPlaced waits until running tasks of the service run (-1: any number)
// and the others are pending with err.
func waitPlaced(h *Harness, id string, running int, err string) {
	h.T.Helper()
	h.WaitFor(fmt.Sprintf("%d running, others pending: %s", running, err), func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		pending := 0
		for _, t := range ts {
			if t.Status.State == swarm.TaskStatePending && t.Status.Err == err {
				pending++
			}
		}
		if running < 0 {
			return pending > 0
		}
		return pending > 0 && len(Running(ts)) == running && pending+running == len(Live(ts))
	})
}

func TestConstraints(t *testing.T) {
	tests := []struct {
		name        string
		constraints []string
		want        []string // nodes allowed
	}{
		{"node label", []string{"node.labels.zone==east"}, []string{"e1", "e2"}},
		{"manager role", []string{"node.role==manager"}, []string{"m1"}},
		{"hostname not", []string{"node.hostname!=e1"}, []string{"e2", "w1", "m1"}},
		{"engine label", []string{"engine.labels.disk==ssd"}, []string{"w1"}},
		{"combined", []string{"node.labels.zone!=east", "node.role!=manager"}, []string{"w1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(t)
			h.AddNode("e1", Labels("zone", "east"))
			h.AddNode("e2", Labels("zone", "east"))
			h.AddNode("w1", Labels("zone", "west"), EngineLabels("disk", "ssd"))
			h.AddNode("m1", Manager)
			h.StartAll()
			spec := Spec("web", 6)
			spec.TaskTemplate.Placement = &swarm.Placement{Constraints: tc.constraints}
			id := h.CreateService(spec)
			ts := h.WaitRunning(id, 6)
			checkSpread(t, ts, tc.want)
		})
	}
}

func TestConstraintUnsatisfiable(t *testing.T) {
	h := New(t)
	h.AddNode("n1", Labels("zone", "west"))
	h.AddNode("n2", Labels("zone", "west"))
	h.StartAll()
	spec := Spec("web", 1)
	spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.labels.zone==east"}}
	id := h.CreateService(spec)
	pendingErr(h, id, "no suitable node (scheduling constraints not satisfied on 2 nodes)")
	// A node gaining the label takes the task.
	h.UpdateNode("n2", func(n *store.Node) { n.Spec.Labels = map[string]string{"zone": "east"} })
	ts := h.WaitRunning(id, 1)
	if ts[0].NodeID != "n2" {
		t.Fatalf("placed on %s", ts[0].NodeID)
	}
	// And losing it moves the task away (nowhere to go: pending).
	h.UpdateNode("n2", func(n *store.Node) { n.Spec.Labels = map[string]string{"zone": "west"} })
	h.WaitFor("task shut down on n2", func(rt store.ReadTx) bool {
		for _, t := range rt.FindTasks(store.ByServiceID(id)) {
			if t.NodeID == "n2" && t.Status.State == swarm.TaskStateShutdown {
				return true
			}
		}
		return false
	})
	pendingErr(h, id, "no suitable node (scheduling constraints not satisfied on 2 nodes)")
}

func TestPlacementPreferenceSpread(t *testing.T) {
	h := New(t)
	// Zone a has 1 node, zone b has 3: spreading over zones puts half the
	// tasks on the lone node.
	h.AddNode("a1", Labels("zone", "a"))
	h.AddNode("b1", Labels("zone", "b"))
	h.AddNode("b2", Labels("zone", "b"))
	h.AddNode("b3", Labels("zone", "b"))
	h.StartAll()
	spec := Spec("web", 6)
	spec.TaskTemplate.Placement = &swarm.Placement{Preferences: []swarm.PlacementPreference{
		{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.zone"}}}}
	id := h.CreateService(spec)
	ts := h.WaitRunning(id, 6)
	per := PerNode(ts)
	if per["a1"] != 3 || per["b1"] != 1 || per["b2"] != 1 || per["b3"] != 1 {
		t.Fatalf("spread %v", per)
	}
}

func TestMaxReplicasPerNode(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 5)
	spec.TaskTemplate.Placement = &swarm.Placement{MaxReplicas: 2}
	id := h.CreateService(spec)
	waitPlaced(h, id, 4, "no suitable node (max replicas per node limit exceed)")
	if per := PerNode(Running(h.Tasks(id))); per["node1"] != 2 || per["node2"] != 2 {
		t.Fatalf("per node %v", per)
	}
	h.AddNode("node3")
	ts := h.WaitRunning(id, 5)
	if PerNode(ts)["node3"] != 1 {
		t.Fatalf("per node %v", PerNode(ts))
	}
}

func TestReservations(t *testing.T) {
	h := New(t)
	h.AddNode("n1", Resources(2, 4<<30))
	h.AddNode("n2", Resources(2, 4<<30))
	h.AddNode("n3", Resources(2, 4<<30))
	h.StartAll()

	big := Spec("big", 1)
	big.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{MemoryBytes: 16 << 30}}
	bigID := h.CreateService(big)
	pendingErr(h, bigID, "no suitable node (insufficient resources on 3 nodes)")

	// 3 GiB each: one per node, the fourth waits.
	mid := Spec("mid", 4)
	mid.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{MemoryBytes: 3 << 30}}
	midID := h.CreateService(mid)
	waitPlaced(h, midID, 3, "no suitable node (insufficient resources on 3 nodes)")
	if per := PerNode(Running(h.Tasks(midID))); len(per) != 3 {
		t.Fatalf("not one per node: %v", per)
	}
	// Freed resources are used at once.
	h.UpdateService(midID, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 2 })
	h.WaitRunning(midID, 2)
	h.UpdateService(bigID, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Resources.Reservations.MemoryBytes = 4 << 30
	})
	ts := h.WaitRunning(bigID, 1)
	for _, m := range Running(h.Tasks(midID)) {
		if m.NodeID == ts[0].NodeID {
			t.Fatalf("big task placed on a node with a mid task: %s", m.NodeID)
		}
	}
}

func TestMultiServiceContention(t *testing.T) {
	h := New(t)
	h.AddNode("n1", Resources(4, 8<<30))
	h.AddNode("n2", Resources(4, 8<<30))
	h.StartAll()
	mk := func(name string, n int, cpus int64) string {
		s := Spec(name, n)
		s.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{NanoCPUs: cpus * 1e9}}
		return h.CreateService(s)
	}
	a := mk("a", 3, 2) // 6 of 8 CPUs
	h.WaitRunning(a, 3)
	b := mk("b", 3, 1) // only 2 fit
	waitPlaced(h, b, 2, "no suitable node (insufficient resources on 2 nodes)")
	if n := len(Running(h.Tasks(b))); n != 2 {
		t.Fatalf("b running %d", n)
	}
	// Never over-commit: per node, reservations within capacity.
	var all []*store.Task
	all = append(all, Running(h.Tasks(a))...)
	all = append(all, Running(h.Tasks(b))...)
	used := map[string]int64{}
	for _, t := range all {
		used[t.NodeID] += t.Spec.Resources.Reservations.NanoCPUs
	}
	for n, u := range used {
		if u > 4e9 {
			t.Fatalf("node %s over-committed: %d", n, u)
		}
	}
	h.RemoveService(a)
	h.WaitRunning(b, 3)
}

func TestHostModePorts(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 3)
	spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
		Protocol: network.TCP, TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}}}
	id := h.CreateService(spec)
	waitPlaced(h, id, 2, "no suitable node (host-mode port already in use on 2 nodes)")
	if per := PerNode(Running(h.Tasks(id))); per["node1"] != 1 || per["node2"] != 1 {
		t.Fatalf("per node %v", per)
	}
	// Another protocol on the same port does not clash.
	udp := Spec("dns", 2)
	udp.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{
		Protocol: network.UDP, TargetPort: 53, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}}}
	h.WaitRunning(h.CreateService(udp), 2)
}

func TestGlobalService(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	id := h.CreateService(Spec("agent", -1))
	ts := h.WaitRunning(id, 3)
	if per := PerNode(ts); len(per) != 3 {
		t.Fatalf("per node %v", per)
	}
	for _, task := range ts {
		if task.Slot != 0 {
			t.Fatalf("global task with slot %d", task.Slot)
		}
	}
	h.AddNode("node4")
	h.WaitRunning(id, 4)
	h.SetAvailability("node2", swarm.NodeAvailabilityDrain)
	h.WaitRunning(id, 3, "node2")
	h.SetAvailability("node3", swarm.NodeAvailabilityPause)
	h.AddNode("node5")
	h.WaitRunning(id, 4) // node3 keeps its task, node5 gets one
	h.RemoveNode("node4")
	h.WaitRunning(id, 3, "node4")
	h.SetAvailability("node2", swarm.NodeAvailabilityActive)
	h.WaitRunning(id, 4)
}

func TestGlobalConstraints(t *testing.T) {
	h := New(t)
	h.AddNode("n1", Labels("gpu", "yes"))
	h.AddNode("n2")
	h.StartAll()
	spec := Spec("gpu", -1)
	spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.labels.gpu==yes"}}
	id := h.CreateService(spec)
	ts := h.WaitRunning(id, 1)
	if ts[0].NodeID != "n1" {
		t.Fatalf("on %s", ts[0].NodeID)
	}
	h.UpdateNode("n2", func(n *store.Node) { n.Spec.Labels = map[string]string{"gpu": "yes"} })
	h.WaitRunning(id, 2)
	h.UpdateNode("n1", func(n *store.Node) { n.Spec.Labels = nil })
	h.WaitRunning(id, 1, "n1")
}

func TestGlobalInsufficientResources(t *testing.T) {
	h := New(t)
	h.AddNode("small", Resources(1, 1<<30))
	h.AddNode("large", Resources(8, 16<<30))
	h.StartAll()
	spec := Spec("agent", -1)
	spec.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{MemoryBytes: 2 << 30}}
	id := h.CreateService(spec)
	waitPlaced(h, id, 1, "insufficient resources on 1 node")
	if ts := Running(h.Tasks(id)); ts[0].NodeID != "large" {
		t.Fatalf("on %s", ts[0].NodeID)
	}
}

func TestScaleDownRemovesPendingFirst(t *testing.T) {
	h := New(t)
	h.AddNode("n1", Resources(2, 4<<30))
	h.StartAll()
	spec := Spec("web", 3)
	spec.TaskTemplate.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{NanoCPUs: 1e9}}
	id := h.CreateService(spec)
	waitPlaced(h, id, 2, "no suitable node (insufficient resources on 1 node)")
	h.UpdateService(id, func(s *swarm.ServiceSpec) { *s.Mode.Replicated.Replicas = 2 })
	// The unplaced task goes, the running ones stay, and it is deleted
	// at once (it never reached a node).
	h.WaitFor("pending task deleted", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		return len(ts) == 2 && len(Running(ts)) == 2
	})
}
