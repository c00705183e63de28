package harness

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
)

func TestRebalanceOnNodeJoin(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 6)
	spec.Labels[orchestrator.RebalanceLabel] = "true"
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Delay: 2 * time.Second}
	id := h.CreateService(spec)
	plain := h.CreateService(Spec("plain", 6))
	h.WaitRunning(id, 6)
	h.WaitRunning(plain, 6)
	c := watchCounts(h, id)

	h.AddNode("node3")
	// One task at a time, start-first, 2s apart.
	h.WaitFor("first task moved", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		return PerNode(Running(ts))["node3"] == 1 && len(Live(ts)) == 6
	})
	h.WaitTimer(2*time.Second, 1)
	if n := PerNode(Running(h.Tasks(id)))["node3"]; n != 1 {
		t.Fatalf("parallelism ignored: %d on node3", n)
	}
	h.Clock.Advance(2 * time.Second)
	ts := h.WaitRunning(id, 6)
	h.WaitFor("second task moved", func(rt store.ReadTx) bool {
		ts = Running(rt.FindTasks(store.ByServiceID(id)))
		return PerNode(ts)["node3"] == 2 && len(ts) == 6
	})
	checkSpread(t, ts, []string{"node1", "node2", "node3"})
	if minRunning, maxLive := c.result(); minRunning < 6 || maxLive > 7 {
		t.Fatalf("rebalancing dropped below the replica count: min running %d, max live %d", minRunning, maxLive)
	}
	// Services without the label stay where they are (docker's way).
	if n := PerNode(Running(h.Tasks(plain)))["node3"]; n != 0 {
		t.Fatalf("unlabelled service moved %d tasks", n)
	}
}

func TestRebalanceOnNodeReturn(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 4)
	spec.Labels[orchestrator.RebalanceLabel] = "true"
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2}
	id := h.CreateService(spec)
	h.WaitRunning(id, 4)
	h.SetAvailability("node2", swarm.NodeAvailabilityDrain)
	h.WaitRunning(id, 4, "node2")
	h.SetAvailability("node2", swarm.NodeAvailabilityActive)
	h.WaitFor("tasks back on node2", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		per := PerNode(Running(ts))
		return per["node1"] == 2 && per["node2"] == 2 && len(Live(ts)) == 4
	})
}
