package harness

import (
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
)

func dur(d time.Duration) *time.Duration { return &d }
func u64(v uint64) *uint64               { return &v }

// slotStates counts a slot's tasks by observed state, and its live tasks.
func slotStates(rt store.ReadTx, svc string, slot int) (map[swarm.TaskState]int, int) {
	m := map[swarm.TaskState]int{}
	live := 0
	for _, t := range rt.FindTasks(store.BySlot(svc, slot)) {
		m[t.Status.State]++
		if t.DesiredState == swarm.TaskStateRunning || t.DesiredState == swarm.TaskStateReady {
			live++
		}
	}
	return m, live
}

func TestRestartOnFailureMaxAttempts(t *testing.T) {
	h := New(t)
	addNodes(h, 1)
	h.Agent.FailImage("bad", true)
	h.StartAll()
	spec := Spec("job", 1)
	spec.TaskTemplate.ContainerSpec.Image = "bad"
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{
		Condition: swarm.RestartPolicyConditionOnFailure, Delay: dur(10 * time.Second), MaxAttempts: u64(2)}
	id := h.CreateService(spec)
	for failed := 1; failed <= 2; failed++ {
		h.WaitFor(fmt.Sprintf("%d failed, replacement waiting", failed), func(rt store.ReadTx) bool {
			m, live := slotStates(rt, id, 1)
			return m[swarm.TaskStateFailed] == failed && m[swarm.TaskStateReady] == 1 && live == 1
		})
		// The replacement is prepared but not started until the delay.
		h.WaitTimer(10*time.Second, 1)
		h.Clock.Advance(10 * time.Second)
	}
	h.WaitFor("3 failed, no more restarts", func(rt store.ReadTx) bool {
		m, live := slotStates(rt, id, 1)
		return m[swarm.TaskStateFailed] == 3 && live == 0
	})
	for _, p := range h.Clock.Pending() {
		if p == 10*time.Second {
			t.Fatal("a restart was scheduled past max attempts")
		}
	}
	// A spec change starts counting again.
	h.Agent.FailImage("bad", false)
	h.UpdateService(id, func(s *swarm.ServiceSpec) { s.TaskTemplate.ForceUpdate++ })
	h.WaitRunning(id, 1)
}

func TestRestartConditions(t *testing.T) {
	tests := []struct {
		cond    swarm.RestartPolicyCondition
		end     swarm.TaskState
		exit    int
		restart bool
	}{
		{swarm.RestartPolicyConditionAny, swarm.TaskStateComplete, 0, true},
		{swarm.RestartPolicyConditionAny, swarm.TaskStateFailed, 1, true},
		{swarm.RestartPolicyConditionOnFailure, swarm.TaskStateComplete, 0, false},
		{swarm.RestartPolicyConditionOnFailure, swarm.TaskStateFailed, 1, true},
		{swarm.RestartPolicyConditionNone, swarm.TaskStateFailed, 1, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s", tc.cond, tc.end), func(t *testing.T) {
			h := New(t)
			addNodes(h, 1)
			h.StartAll()
			spec := Spec("job", 1)
			spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: tc.cond, Delay: dur(0)}
			id := h.CreateService(spec)
			ts := h.WaitRunning(id, 1)
			h.EndTask(ts[0].ID, tc.end, tc.exit)
			if tc.restart {
				h.WaitFor("restarted", func(rt store.ReadTx) bool {
					return len(Running(rt.FindTasks(store.ByServiceID(id)))) == 1 &&
						len(rt.FindTasks(store.ByServiceID(id))) == 2
				})
				return
			}
			h.WaitFor("shut down, not restarted", func(rt store.ReadTx) bool {
				t := rt.GetTask(ts[0].ID)
				return t.DesiredState == swarm.TaskStateShutdown
			})
			// The slot stays taken by the ended task: nothing replaces it
			// when the service is reconciled again.
			// (Another service created after the change shows the
			// orchestrator has processed it.)
			h.UpdateService(id, func(s *swarm.ServiceSpec) { s.Labels["x"] = "y" })
			h.WaitRunning(h.CreateService(Spec("marker", 1)), 1)
			if n := len(h.Tasks(id)); n != 1 {
				t.Fatalf("%d tasks:\n%s", n, h.Dump())
			}
			// A rolling update does replace it (swarmkit's "updatable").
			h.UpdateService(id, func(s *swarm.ServiceSpec) { s.TaskTemplate.ForceUpdate++ })
			h.WaitRunning(id, 1)
		})
	}
}

func TestRestartWindow(t *testing.T) {
	h := New(t)
	addNodes(h, 1)
	h.StartAll()
	spec := Spec("job", 1)
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{
		Condition: swarm.RestartPolicyConditionAny, Delay: dur(0), MaxAttempts: u64(1), Window: dur(time.Minute)}
	id := h.CreateService(spec)
	fail := func() {
		ts := h.WaitRunning(id, 1)
		h.EndTask(ts[0].ID, swarm.TaskStateFailed, 1)
	}
	fail() // restart 1, at t=0
	h.WaitRunning(id, 1)
	h.Clock.Advance(61 * time.Second)
	fail() // the window holds no restart: restart again, at t=61s
	h.WaitFor("second restart running", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		return len(ts) == 3 && len(Running(ts)) == 1
	})
	fail() // one restart in the window already: no more
	h.WaitFor("given up", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		return len(ts) == 3 && len(Live(ts)) == 0
	})
}

func TestTaskHistoryLimit(t *testing.T) {
	h := New(t)
	addNodes(h, 1)
	h.SetHistoryLimit(3)
	h.StartAll()
	spec := Spec("job", 1)
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: dur(0)}
	id := h.CreateService(spec)
	for i := 1; i <= 6; i++ {
		ts := h.WaitRunning(id, 1)
		h.EndTask(ts[0].ID, swarm.TaskStateFailed, 1)
		h.WaitFor(fmt.Sprintf("restart %d", i), func(rt store.ReadTx) bool {
			all := rt.FindTasks(store.ByServiceID(id))
			for _, t := range all {
				if t.ID == ts[0].ID && t.DesiredState != swarm.TaskStateShutdown {
					return false
				}
			}
			return len(Running(all)) == 1
		})
	}
	h.WaitFor("history trimmed to 3", func(rt store.ReadTx) bool {
		return len(rt.FindTasks(store.BySlot(id, 1))) == 3
	})
}

func TestOrphanedAfterTimeout(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	id := h.CreateService(Spec("web", 2))
	ts := h.WaitRunning(id, 2)
	var onNode1 string
	for _, task := range ts {
		if task.NodeID == "node1" {
			onNode1 = task.ID
		}
	}
	h.SetNodeState("node1", swarm.NodeStateDown)
	h.WaitTimer(24*time.Hour, 1)
	h.WaitRunning(id, 2, "node1") // replaced at once: no restart delay for a lost node
	h.Clock.Advance(24 * time.Hour)
	h.WaitFor("task orphaned", func(rt store.ReadTx) bool {
		t := rt.GetTask(onNode1)
		return t == nil || t.Status.State == swarm.TaskStateOrphaned
	})
}

func TestFailoverResumesDelaysAndCounts(t *testing.T) {
	h := New(t)
	addNodes(h, 1)
	h.Agent.FailImage("bad", true)
	h.StartAll()
	spec := Spec("job", 1)
	spec.TaskTemplate.ContainerSpec.Image = "bad"
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{
		Condition: swarm.RestartPolicyConditionOnFailure, Delay: dur(10 * time.Second), MaxAttempts: u64(2)}
	id := h.CreateService(spec)
	h.WaitFor("first restart waiting", func(rt store.ReadTx) bool {
		m, live := slotStates(rt, id, 1)
		return m[swarm.TaskStateFailed] == 1 && m[swarm.TaskStateReady] == 1 && live == 1
	})
	h.WaitTimer(10*time.Second, 1)
	h.Clock.Advance(4 * time.Second)
	// A new leader picks the delay up where it was (6s left) and the
	// restart count from the tasks.
	h.Failover()
	h.WaitTimer(6*time.Second, 1)
	h.Clock.Advance(6 * time.Second)
	h.WaitFor("second restart waiting", func(rt store.ReadTx) bool {
		m, live := slotStates(rt, id, 1)
		return m[swarm.TaskStateFailed] == 2 && m[swarm.TaskStateReady] == 1 && live == 1
	})
	h.Failover()
	h.WaitTimer(10*time.Second, 1)
	h.Clock.Advance(10 * time.Second)
	h.WaitFor("given up after 2 restarts", func(rt store.ReadTx) bool {
		m, live := slotStates(rt, id, 1)
		return m[swarm.TaskStateFailed] == 3 && live == 0
	})
}

func TestFailoverResumesRollingUpdate(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 4)
	spec.TaskTemplate.ContainerSpec.Image = "v1"
	id := h.CreateService(spec)
	h.WaitRunning(id, 4)
	h.UpdateService(id, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "v2"
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Delay: time.Minute}
	})
	h.WaitFor("one updated", func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(id))
		return countImage(Running(ts), "v2") == 1 && len(Running(ts)) == 4 && len(Live(ts)) == 4
	})
	h.Failover()
	for i := 2; i <= 4; i++ {
		h.WaitFor(fmt.Sprintf("%d updated", i), func(rt store.ReadTx) bool {
			ts := rt.FindTasks(store.ByServiceID(id))
			return countImage(Running(ts), "v2") == i && len(Live(ts)) == 4
		})
		h.WaitTimer(time.Minute, 1)
		h.Clock.Advance(time.Minute)
	}
	h.WaitTimer(5*time.Second, 1)
	h.Clock.Advance(5 * time.Second)
	h.WaitFor("update completed", func(rt store.ReadTx) bool {
		st := rt.GetService(id).UpdateStatus
		return st != nil && st.State == swarm.UpdateStateCompleted
	})
}
