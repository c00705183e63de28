package harness

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/internal/testutil"
)

func image(t *store.Task) string { return t.Spec.ContainerSpec.Image }

func countImage(ts []*store.Task, img string) int {
	n := 0
	for _, t := range ts {
		if image(t) == img {
			n++
		}
	}
	return n
}

// waitStatus waits for the service's update state (and message prefix).
func waitStatus(h *Harness, id string, st swarm.UpdateState, msgPrefix string) *swarm.UpdateStatus {
	h.T.Helper()
	var got *swarm.UpdateStatus
	h.WaitFor(fmt.Sprintf("update status %s %q", st, msgPrefix), func(rt store.ReadTx) bool {
		s := rt.GetService(id)
		got = s.UpdateStatus
		return got != nil && got.State == st && strings.HasPrefix(got.Message, msgPrefix)
	})
	return got
}

// counter follows a service's running and live task counts through an
// update, from the store's events (so no transient state is missed).
type counter struct {
	h                   *Harness
	mu                  sync.Mutex
	tasks               map[string]*store.Task
	minRunning, maxLive int
	seen                uint64 // index of the last event handled
	stop                func()
	done                chan struct{}
}

func watchCounts(h *Harness, id string) *counter {
	c := &counter{h: h, tasks: map[string]*store.Task{}, minRunning: 1 << 30, done: make(chan struct{})}
	events, cancel := h.Store.ViewAndWatch(func(rt store.ReadTx) {
		for _, t := range rt.FindTasks(store.ByServiceID(id)) {
			c.tasks[t.ID] = t
		}
	})
	c.stop = cancel
	go func() {
		defer close(c.done)
		for ev := range events {
			c.mu.Lock()
			if t, ok := ev.Object.(*store.Task); ok && t.ServiceID == id {
				if ev.Op == store.OpDelete {
					delete(c.tasks, t.ID)
				} else {
					c.tasks[t.ID] = t
				}
				var ts []*store.Task
				for _, t := range c.tasks {
					ts = append(ts, t)
				}
				c.minRunning = min(c.minRunning, len(Running(ts)))
				c.maxLive = max(c.maxLive, len(Live(ts)))
			}
			c.seen = ev.Index
			c.mu.Unlock()
		}
	}()
	return c
}

// result waits until every change so far was seen, then reports.
func (c *counter) result() (int, int) {
	last := c.h.Store.LastIndex()
	testutil.Eventually(c.h.T, Timeout, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.seen >= last
	}, "counter caught up")
	c.stop()
	<-c.done
	return c.minRunning, c.maxLive
}

// statuses records every UpdateStatus a service goes through.
type statuses struct {
	mu   sync.Mutex
	seen []string // "state: message"
	stop func()
	done chan struct{}
}

func watchStatuses(h *Harness, id string) *statuses {
	s := &statuses{done: make(chan struct{})}
	events, cancel := h.Store.Watch(store.KindService)
	s.stop = cancel
	go func() {
		defer close(s.done)
		for ev := range events {
			svc := ev.Object.(*store.Service)
			if svc.ID != id || svc.UpdateStatus == nil {
				continue
			}
			st := fmt.Sprintf("%s: %s", svc.UpdateStatus.State, svc.UpdateStatus.Message)
			s.mu.Lock()
			if len(s.seen) == 0 || s.seen[len(s.seen)-1] != st {
				s.seen = append(s.seen, st)
			}
			s.mu.Unlock()
		}
	}()
	return s
}

// expect checks the recorded states (each a prefix of state: message).
func (s *statuses) expect(t *testing.T, want ...string) {
	t.Helper()
	testutil.Eventually(t, Timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.seen) >= len(want)
	}, "%d update states", len(want))
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := len(s.seen) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(s.seen[i], want[i])
	}
	if !ok {
		t.Fatalf("update states %q, want %q", s.seen, want)
	}
}

func TestRollingUpdate(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	spec := Spec("web", 9)
	spec.TaskTemplate.ContainerSpec.Image = "v1"
	id := h.CreateService(spec)
	h.WaitRunning(id, 9)
	states := watchStatuses(h, id)
	defer states.stop()

	h.UpdateService(id, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "v2"
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 3, Delay: 10 * time.Second, Monitor: 5 * time.Second,
			FailureAction: swarm.UpdateFailureActionPause, Order: swarm.UpdateOrderStopFirst}
	})
	st := waitStatus(h, id, swarm.UpdateStateUpdating, "update in progress")
	if st.StartedAt == nil || !st.StartedAt.Equal(h.Clock.Now()) {
		t.Fatalf("started at %v", st.StartedAt)
	}
	for batch := 1; batch <= 3; batch++ {
		h.WaitFor(fmt.Sprintf("batch %d updated", batch), func(rt store.ReadTx) bool {
			ts := rt.FindTasks(store.ByServiceID(id))
			run := Running(ts)
			return len(run) == 9 && len(Live(ts)) == 9 && countImage(run, "v2") == 3*batch
		})
		// Each worker waits the delay after its slot.
		h.WaitTimer(10*time.Second, 3)
		if s := h.Service(id).UpdateStatus; s.State != swarm.UpdateStateUpdating {
			t.Fatalf("status during update: %+v", s)
		}
		h.Clock.Advance(10 * time.Second)
	}
	h.WaitTimer(5*time.Second, 1) // monitor period after the last slot
	h.Clock.Advance(5 * time.Second)
	st = waitStatus(h, id, swarm.UpdateStateCompleted, "update completed")
	if st.CompletedAt == nil {
		t.Fatal("no completion time")
	}
	states.expect(t, "updating: update in progress", "completed: update completed")
	for _, task := range h.Tasks(id) {
		if orchestrator.Runnable(task) && image(task) != "v2" {
			t.Fatalf("old task left: %+v", task)
		}
	}
}

func TestUpdateOrder(t *testing.T) {
	for _, order := range []swarm.UpdateOrder{swarm.UpdateOrderStopFirst, swarm.UpdateOrderStartFirst} {
		t.Run(string(order), func(t *testing.T) {
			h := New(t)
			addNodes(h, 3)
			h.StartAll()
			id := h.CreateService(Spec("web", 3))
			h.WaitRunning(id, 3)
			c := watchCounts(h, id)
			h.UpdateService(id, func(s *swarm.ServiceSpec) {
				s.TaskTemplate.ContainerSpec.Image = "v2"
				s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Order: order}
			})
			h.WaitFor("all updated", func(rt store.ReadTx) bool {
				ts := rt.FindTasks(store.ByServiceID(id))
				run := Running(ts)
				return countImage(run, "v2") == 3 && len(run) == 3 && len(Live(ts)) == 3
			})
			h.WaitTimer(orchestrator.DefaultMonitor, 1)
			h.Clock.Advance(orchestrator.DefaultMonitor)
			waitStatus(h, id, swarm.UpdateStateCompleted, "update completed")
			minRunning, maxLive := c.result()
			if order == swarm.UpdateOrderStartFirst && (minRunning < 3 || maxLive != 4) {
				t.Fatalf("start-first: min running %d, max live %d", minRunning, maxLive)
			}
			if order == swarm.UpdateOrderStopFirst && (minRunning != 2 || maxLive != 3) {
				t.Fatalf("stop-first: min running %d, max live %d", minRunning, maxLive)
			}
		})
	}
}

func TestUpdateFailureActions(t *testing.T) {
	tests := []struct {
		action swarm.FailureAction
		state  swarm.UpdateState
		msg    string
	}{
		{swarm.UpdateFailureActionPause, swarm.UpdateStatePaused, "update paused due to failure or early termination of task "},
		{swarm.UpdateFailureActionRollback, swarm.UpdateStateRollbackCompleted, "rollback completed"},
		{swarm.UpdateFailureActionContinue, swarm.UpdateStateCompleted, "update completed"},
	}
	for _, tc := range tests {
		t.Run(string(tc.action), func(t *testing.T) {
			h := New(t)
			addNodes(h, 2)
			h.Agent.FailImage("bad", true)
			h.StartAll()
			spec := Spec("web", 4)
			spec.TaskTemplate.ContainerSpec.Image = "v1"
			spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: 0, Monitor: time.Second}
			// Restarts of failed tasks wait long enough not to mix with
			// the update's own timers.
			spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Delay: dur(time.Hour)}
			id := h.CreateService(spec)
			h.WaitRunning(id, 4)
			states := watchStatuses(h, id)
			defer states.stop()
			h.UpdateService(id, func(s *swarm.ServiceSpec) {
				s.TaskTemplate.ContainerSpec.Image = "bad"
				s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Monitor: 5 * time.Second, FailureAction: tc.action}
			})
			switch tc.action {
			case swarm.UpdateFailureActionPause:
				st := waitStatus(h, id, tc.state, tc.msg)
				// Only the first slot was touched.
				if n := countImage(Live(h.Tasks(id)), "v1"); n != 3 {
					t.Fatalf("%d v1 tasks left (status %+v)\n%s", n, st, h.Dump())
				}
				states.expect(t, "updating: update in progress", "paused: update paused due to failure or early termination of task ")
			case swarm.UpdateFailureActionRollback:
				// (The rollback may be over at once: only the failed slot
				// differs, and it may already be restarting on the old spec.)
				h.WaitFor("rollback started", func(rt store.ReadTx) bool {
					st := rt.GetService(id).UpdateStatus
					return st != nil && (st.State == swarm.UpdateStateRollbackCompleted ||
						st.State == swarm.UpdateStateRollbackStarted && strings.HasPrefix(st.Message, "update rolled back due to failure or early termination of task "))
				})
				if img := h.Service(id).Spec.TaskTemplate.ContainerSpec.Image; img != "v1" {
					t.Fatalf("spec not rolled back: %s", img)
				}
				// The failed slot is either rolled back by the updater or
				// restarted with the old spec (after its restart delay).
				h.WaitFor("rolled back tasks", func(rt store.ReadTx) bool {
					live := Live(rt.FindTasks(store.ByServiceID(id)))
					return len(live) == 4 && countImage(live, "v1") == 4 && len(Running(live)) >= 3
				})
				testutil.Eventually(t, Timeout, func() bool {
					if st := h.Service(id).UpdateStatus; st.State == tc.state {
						return true
					}
					for _, p := range h.Clock.Pending() {
						if p == time.Second { // RollbackConfig's monitor
							return true
						}
					}
					return false
				}, "rollback done or monitoring")
				h.Clock.Advance(time.Second)
				waitStatus(h, id, tc.state, tc.msg)
				states.expect(t, "updating: update in progress",
					"rollback_started: update rolled back due to failure or early termination of task ",
					"rollback_completed: rollback completed")
			case swarm.UpdateFailureActionContinue:
				// Every slot gets the failing image; restarts wait out
				// their delay meanwhile.
				h.WaitFor("all slots updated", func(rt store.ReadTx) bool {
					n := 0
					for _, t := range rt.FindTasks(store.ByServiceID(id)) {
						if image(t) == "bad" && t.Status.State == swarm.TaskStateFailed {
							n++
						}
					}
					return n >= 4
				})
				h.WaitTimer(5*time.Second, 1)
				h.Clock.Advance(5 * time.Second)
				waitStatus(h, id, tc.state, tc.msg)
				states.expect(t, "updating: update in progress", "completed: update completed")
			}
		})
	}
}

func TestManualRollback(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	spec := Spec("web", 4)
	spec.TaskTemplate.ContainerSpec.Image = "v1"
	spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 0}
	spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: 2, Delay: 3 * time.Second}
	id := h.CreateService(spec)
	h.WaitRunning(id, 4)
	h.UpdateService(id, func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "v2" })
	h.WaitFor("all on v2", func(rt store.ReadTx) bool {
		return countImage(Running(rt.FindTasks(store.ByServiceID(id))), "v2") == 4
	})
	h.WaitTimer(orchestrator.DefaultMonitor, 1)
	h.Clock.Advance(orchestrator.DefaultMonitor)
	waitStatus(h, id, swarm.UpdateStateCompleted, "update completed")

	states := watchStatuses(h, id)
	defer states.stop()
	h.Rollback(id)
	// RollbackConfig: two at a time, 3s apart.
	h.WaitFor("first two rolled back", func(rt store.ReadTx) bool {
		return countImage(Running(rt.FindTasks(store.ByServiceID(id))), "v1") == 2
	})
	h.WaitTimer(3*time.Second, 2)
	if n := countImage(Running(h.Tasks(id)), "v1"); n != 2 {
		t.Fatalf("rollback ignored parallelism: %d on v1", n)
	}
	if st := h.Service(id).UpdateStatus; st.State != swarm.UpdateStateRollbackStarted {
		t.Fatalf("status %+v", st)
	}
	h.Clock.Advance(3 * time.Second)
	h.WaitFor("all rolled back", func(rt store.ReadTx) bool {
		return countImage(Running(rt.FindTasks(store.ByServiceID(id))), "v1") == 4
	})
	h.WaitTimer(3*time.Second, 2)
	h.Clock.Advance(3 * time.Second)
	h.WaitTimer(orchestrator.DefaultMonitor, 1)
	h.Clock.Advance(orchestrator.DefaultMonitor)
	waitStatus(h, id, swarm.UpdateStateRollbackCompleted, "rollback completed")
	states.expect(t, "rollback_started: manually requested rollback", "rollback_completed: rollback completed")
}

func TestUpdateNonTaskChangeRestartsNothing(t *testing.T) {
	h := New(t)
	addNodes(h, 2)
	h.StartAll()
	id := h.CreateService(Spec("web", 2))
	before := h.WaitRunning(id, 2)
	h.UpdateService(id, func(s *swarm.ServiceSpec) { s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2} })
	h.WaitRunning(h.CreateService(Spec("marker", 1)), 1)
	after := h.WaitRunning(id, 2)
	for i := range before {
		if before[i].ID != after[i].ID {
			t.Fatal("a task was replaced for an UpdateConfig change")
		}
		if orchestrator.IsTaskDirty(h.Service(id), after[i], nil) {
			t.Fatal("task reported dirty")
		}
	}
}

func TestGlobalRollingUpdate(t *testing.T) {
	h := New(t)
	addNodes(h, 3)
	h.StartAll()
	spec := Spec("agent", -1)
	spec.TaskTemplate.ContainerSpec.Image = "v1"
	id := h.CreateService(spec)
	h.WaitRunning(id, 3)
	h.UpdateService(id, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.ContainerSpec.Image = "v2"
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Delay: time.Second}
	})
	for i := 1; i <= 3; i++ {
		h.WaitFor(fmt.Sprintf("%d nodes updated", i), func(rt store.ReadTx) bool {
			run := Running(rt.FindTasks(store.ByServiceID(id)))
			return len(run) == 3 && countImage(run, "v2") == i
		})
		h.WaitTimer(time.Second, 1)
		h.Clock.Advance(time.Second)
	}
	h.WaitTimer(orchestrator.DefaultMonitor, 1)
	h.Clock.Advance(orchestrator.DefaultMonitor)
	waitStatus(h, id, swarm.UpdateStateCompleted, "update completed")
	if per := PerNode(Running(h.Tasks(id))); len(per) != 3 {
		t.Fatalf("per node %v", per)
	}
}
