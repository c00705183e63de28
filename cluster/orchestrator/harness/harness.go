// Package harness runs the leader-side pipeline (orchestrators, allocator,
// scheduler, task reaper) in-process over a store, with a fake clock and a
// fake agent that plays the nodes' part (ASSIGNED → RUNNING, stop on
// SHUTDOWN), so tests can build a cluster, act on it and wait for the
// tasks to settle. It is for tests only.
package harness

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/allocator"
	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/orchestrator/global"
	"github.com/shoal/shoal/cluster/orchestrator/replicated"
	"github.com/shoal/shoal/cluster/orchestrator/taskreaper"
	"github.com/shoal/shoal/cluster/scheduler"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/internal/testutil"
)

// Timeout bounds every wait.
const Timeout = 10 * time.Second

// Harness is a store with the leader components running on it.
type Harness struct {
	T     testing.TB
	Store *store.Store
	Clock *clock.Fake
	Agent *Agent

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a harness with a store holding a cluster object. Nothing
// runs until Start.
func New(t testing.TB) *Harness {
	h := &Harness{T: t, Store: store.New(), Clock: clock.NewFake(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC))}
	h.Store.SetClock(h.Clock.Now)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	t.Cleanup(h.Stop)
	h.update(func(tx store.Tx) error {
		c := &store.Cluster{}
		c.ID = "cluster"
		c.Spec.Name = "default"
		return tx.Create(c)
	})
	h.Agent = &Agent{h: h, fail: map[string]bool{}}
	return h
}

// Start runs the components plus the fake agent.
func (h *Harness) Start(cs ...orchestrator.Component) {
	for _, c := range append(cs, h.Agent) {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			if err := c.Run(h.ctx); err != nil {
				h.T.Errorf("component %T: %v", c, err)
			}
		}()
	}
}

// StartAll runs the whole pipeline: replicated and global orchestrators,
// allocator, scheduler, task reaper.
func (h *Harness) StartAll() {
	c, log := h.Clock, slog.New(slog.NewTextHandler(io.Discard, nil))
	h.Start(
		replicated.New(h.Store, replicated.Config{Clock: c, Logger: log}),
		global.New(h.Store, global.Config{Clock: c, Logger: log}),
		allocator.New(h.Store, allocator.Config{Clock: c, Logger: log}),
		scheduler.New(h.Store, scheduler.Config{Clock: c, Logger: log}),
		taskreaper.New(h.Store, taskreaper.Config{Clock: c, Logger: log}),
	)
}

// Stop stops everything and waits.
func (h *Harness) Stop() {
	h.cancel()
	h.wg.Wait()
}

// Failover stops every component and starts fresh ones, as when another
// manager becomes leader: all they know is what the store holds.
func (h *Harness) Failover() {
	h.Stop()
	h.ctx, h.cancel = context.WithCancel(context.Background())
	h.StartAll()
}

func (h *Harness) update(fn func(tx store.Tx) error) {
	h.T.Helper()
	if err := h.Store.Update(context.Background(), fn); err != nil {
		h.T.Fatal(err)
	}
}

// NodeOpt adjusts a new node.
type NodeOpt func(*store.Node)

// Labels sets node labels.
func Labels(kv ...string) NodeOpt {
	return func(n *store.Node) {
		n.Spec.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Spec.Labels[kv[i]] = kv[i+1]
		}
	}
}

// EngineLabels sets engine labels.
func EngineLabels(kv ...string) NodeOpt {
	return func(n *store.Node) {
		n.Description.Engine.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			n.Description.Engine.Labels[kv[i]] = kv[i+1]
		}
	}
}

// Manager makes the node a manager.
func Manager(n *store.Node) { n.Spec.Role = swarm.NodeRoleManager }

// Resources sets what the node offers (CPUs, bytes).
func Resources(cpus float64, mem int64) NodeOpt {
	return func(n *store.Node) {
		n.Description.Resources = swarm.Resources{NanoCPUs: int64(cpus * 1e9), MemoryBytes: mem}
	}
}

// AddNode creates a ready, active worker node with hostname id (4 CPUs,
// 8 GiB unless set).
func (h *Harness) AddNode(id string, opts ...NodeOpt) {
	h.T.Helper()
	n := &store.Node{}
	n.ID = id
	n.Spec.Role = swarm.NodeRoleWorker
	n.Spec.Availability = swarm.NodeAvailabilityActive
	n.Status.State = swarm.NodeStateReady
	n.Description.Hostname = id
	n.Description.Platform = swarm.Platform{OS: "linux", Architecture: "x86_64"}
	n.Description.Resources = swarm.Resources{NanoCPUs: 4e9, MemoryBytes: 8 << 30}
	for _, o := range opts {
		o(n)
	}
	h.update(func(tx store.Tx) error { return tx.Create(n) })
}

// UpdateNode changes a node.
func (h *Harness) UpdateNode(id string, fn func(*store.Node)) {
	h.T.Helper()
	h.update(func(tx store.Tx) error {
		n := tx.GetNode(id)
		if n == nil {
			return fmt.Errorf("no node %s", id)
		}
		c := n.Copy()
		fn(c)
		return tx.Update(c)
	})
}

// SetAvailability sets a node's availability.
func (h *Harness) SetAvailability(id string, a swarm.NodeAvailability) {
	h.T.Helper()
	h.UpdateNode(id, func(n *store.Node) { n.Spec.Availability = a })
}

// SetNodeState sets a node's status (what the dispatcher does on missed
// heartbeats); the fake agent stops reporting for down nodes.
func (h *Harness) SetNodeState(id string, st swarm.NodeState) {
	h.T.Helper()
	h.UpdateNode(id, func(n *store.Node) { n.Status.State = st })
}

// RemoveNode deletes a node.
func (h *Harness) RemoveNode(id string) {
	h.T.Helper()
	h.update(func(tx store.Tx) error { return tx.Delete(store.KindNode, id) })
}

// Spec returns a service spec with a busybox container and n replicas
// (n < 0: global).
func Spec(name string, n int) swarm.ServiceSpec {
	s := swarm.ServiceSpec{}
	s.Name = name
	s.Labels = map[string]string{}
	s.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	if n < 0 {
		s.Mode.Global = &swarm.GlobalService{}
	} else {
		r := uint64(n)
		s.Mode.Replicated = &swarm.ReplicatedService{Replicas: &r}
	}
	return s
}

// CreateService creates a service; its ID is its name.
func (h *Harness) CreateService(spec swarm.ServiceSpec) string {
	h.T.Helper()
	svc := &store.Service{}
	svc.ID = spec.Name
	svc.Spec = spec
	h.update(func(tx store.Tx) error { return tx.Create(svc) })
	return svc.ID
}

// UpdateService changes a service's spec as the control API does: the old
// spec becomes PreviousSpec, the update status resets and the store stamps
// a new spec version.
func (h *Harness) UpdateService(id string, fn func(*swarm.ServiceSpec)) {
	h.T.Helper()
	h.update(func(tx store.Tx) error {
		cur := tx.GetService(id)
		c := cur.Copy()
		prev := cur.Spec
		c.Spec = store.Clone(cur.Spec)
		fn(&c.Spec)
		c.PreviousSpec = &prev
		c.UpdateStatus = nil
		c.SpecVersion = 0
		return tx.Update(c)
	})
}

// Rollback swaps in the previous spec as docker's `service rollback`.
func (h *Harness) Rollback(id string) {
	h.T.Helper()
	now := h.Clock.Now()
	h.update(func(tx store.Tx) error {
		cur := tx.GetService(id)
		c := cur.Copy()
		prev := cur.Spec
		c.Spec = *cur.PreviousSpec
		c.PreviousSpec = &prev
		c.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateRollbackStarted, StartedAt: &now, Message: "manually requested rollback"}
		c.SpecVersion = 0
		return tx.Update(c)
	})
}

// RemoveService deletes a service.
func (h *Harness) RemoveService(id string) {
	h.T.Helper()
	h.update(func(tx store.Tx) error { return tx.Delete(store.KindService, id) })
}

// SetHistoryLimit sets the cluster's task history retention limit.
func (h *Harness) SetHistoryLimit(n int64) {
	h.T.Helper()
	h.update(func(tx store.Tx) error {
		c := tx.GetCluster().Copy()
		c.Spec.Orchestration.TaskHistoryRetentionLimit = &n
		return tx.Update(c)
	})
}

// Service reads a service.
func (h *Harness) Service(id string) *store.Service {
	var s *store.Service
	h.Store.View(func(rt store.ReadTx) { s = rt.GetService(id) })
	return s
}

// Tasks reads a service's tasks, by slot then creation.
func (h *Harness) Tasks(service string) []*store.Task {
	var ts []*store.Task
	h.Store.View(func(rt store.ReadTx) { ts = rt.FindTasks(store.ByServiceID(service)) })
	sortTasks(ts)
	return ts
}

func sortTasks(ts []*store.Task) {
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].Slot != ts[j].Slot {
			return ts[i].Slot < ts[j].Slot
		}
		if ts[i].NodeID != ts[j].NodeID {
			return ts[i].NodeID < ts[j].NodeID
		}
		return ts[i].CreatedAt.Before(ts[j].CreatedAt) || (ts[i].CreatedAt.Equal(ts[j].CreatedAt) && ts[i].ID < ts[j].ID)
	})
}

// Running returns the tasks of a service meant to run and running.
func Running(ts []*store.Task) []*store.Task {
	var out []*store.Task
	for _, t := range ts {
		if t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning {
			out = append(out, t)
		}
	}
	return out
}

// Live returns the tasks meant to run (desired RUNNING or READY).
func Live(ts []*store.Task) []*store.Task {
	var out []*store.Task
	for _, t := range ts {
		if orchestrator.Runnable(t) {
			out = append(out, t)
		}
	}
	return out
}

// PerNode counts tasks by node.
func PerNode(ts []*store.Task) map[string]int {
	m := map[string]int{}
	for _, t := range ts {
		m[t.NodeID]++
	}
	return m
}

// WaitFor waits, driven by store events, until cond holds on a snapshot.
func (h *Harness) WaitFor(desc string, cond func(rt store.ReadTx) bool) {
	h.T.Helper()
	events, cancel := h.Store.Watch()
	defer cancel()
	deadline := time.After(Timeout)
	for {
		ok := false
		h.Store.View(func(rt store.ReadTx) { ok = cond(rt) })
		if ok {
			return
		}
		select {
		case <-events:
		case <-deadline:
			h.T.Fatalf("timed out waiting for %s\n%s", desc, h.Dump())
		}
	}
}

// WaitRunning waits until a service has exactly n tasks running (and no
// other task meant to run), none on the given nodes, and returns them.
func (h *Harness) WaitRunning(service string, n int, notOn ...string) []*store.Task {
	h.T.Helper()
	var out []*store.Task
	h.WaitFor(fmt.Sprintf("%d running tasks of %s, none on %v", n, service, notOn), func(rt store.ReadTx) bool {
		ts := rt.FindTasks(store.ByServiceID(service))
		out = Running(ts)
		for _, t := range out {
			for _, node := range notOn {
				if t.NodeID == node {
					return false
				}
			}
		}
		return len(out) == n && len(Live(ts)) == n
	})
	sortTasks(out)
	return out
}

// WaitTimers waits until at least n fake-clock timers are armed, so that
// advancing the clock fires them.
func (h *Harness) WaitTimers(n int) {
	h.T.Helper()
	testutil.Eventually(h.T, Timeout, func() bool { return h.Clock.Timers() >= n },
		"%d timers armed (have %d)", n, h.Clock.Timers())
}

// WaitTimer waits until n fake-clock timers are armed to fire in exactly
// d (restart delays, an update delay or monitor period, ...).
func (h *Harness) WaitTimer(d time.Duration, n int) {
	h.T.Helper()
	testutil.Eventually(h.T, Timeout, func() bool {
		c := 0
		for _, p := range h.Clock.Pending() {
			if p == d {
				c++
			}
		}
		return c >= n
	}, "%d timers due in %v (pending: %v)", n, d, h.Clock.Pending())
}

// Dump renders every task, for failure messages.
func (h *Harness) Dump() string {
	var b strings.Builder
	var ts []*store.Task
	var svcs []*store.Service
	h.Store.View(func(rt store.ReadTx) {
		ts = rt.FindTasks(store.All())
		svcs = rt.FindServices(store.All())
	})
	fmt.Fprintf(&b, "clock %s, timers due in %v\n", h.Clock.Now().Format(time.TimeOnly), h.Clock.Pending())
	for _, s := range svcs {
		fmt.Fprintf(&b, "service %s v%d status=%+v\n", s.ID, s.SpecVersion, s.UpdateStatus)
	}
	sort.Slice(ts, func(i, j int) bool {
		if ts[i].ServiceID != ts[j].ServiceID {
			return ts[i].ServiceID < ts[j].ServiceID
		}
		return ts[i].Slot < ts[j].Slot
	})
	for _, t := range ts {
		fmt.Fprintf(&b, "  %s slot=%d node=%s v%d desired=%s state=%s msg=%q err=%q\n",
			t.ServiceID, t.Slot, t.NodeID, t.SpecVersion, t.DesiredState, t.Status.State, t.Status.Message, t.Status.Err)
	}
	return b.String()
}

// Agent fakes the nodes' agents: assigned tasks meant to run start (or fail,
// for images marked failing), ready-desired tasks are prepared, tasks told
// to stop stop. Tasks on down nodes are left alone.
type Agent struct {
	h    *Harness
	mu   sync.Mutex
	fail map[string]bool // images whose tasks fail on start
}

// FailImage makes tasks of an image fail when they start.
func (a *Agent) FailImage(image string, fail bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail[image] = fail
}

// Run drives tasks until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	events, cancel := a.h.Store.Watch(store.KindTask, store.KindNode)
	defer cancel()
	for {
		a.step(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-events:
		}
		for drained := false; !drained; {
			select {
			case <-events:
			default:
				drained = true
			}
		}
	}
}

func (a *Agent) step(ctx context.Context) {
	a.mu.Lock()
	fail := map[string]bool{}
	for k, v := range a.fail {
		fail[k] = v
	}
	a.mu.Unlock()
	now := a.h.Clock.Now()
	_ = a.h.Store.Batch(ctx, func(b *store.Batch) error {
		var ts []*store.Task
		a.h.Store.View(func(rt store.ReadTx) { ts = rt.FindTasks(store.All()) })
		for _, t := range ts {
			if t.NodeID == "" || orchestrator.Before(t.Status.State, swarm.TaskStateAssigned) || orchestrator.Terminal(t.Status.State) {
				continue
			}
			next := swarm.TaskStatus{Timestamp: now}
			switch {
			case !orchestrator.Runnable(t):
				next.State, next.Message = swarm.TaskStateShutdown, "shutdown"
			case t.DesiredState == swarm.TaskStateReady:
				if t.Status.State == swarm.TaskStateReady {
					continue
				}
				next.State, next.Message = swarm.TaskStateReady, "prepared"
			case t.Status.State == swarm.TaskStateRunning:
				continue
			case t.Spec.ContainerSpec != nil && fail[t.Spec.ContainerSpec.Image]:
				next.State, next.Message, next.Err = swarm.TaskStateFailed, "started", "task: non-zero exit (1)"
				next.ContainerStatus = &swarm.ContainerStatus{ExitCode: 1}
			default:
				next.State, next.Message = swarm.TaskStateRunning, "started"
			}
			id, ver := t.ID, t.Meta.Version
			_ = b.Update(func(tx store.Tx) error {
				cur := tx.GetTask(id)
				if cur == nil || cur.Meta.Version != ver {
					return nil
				}
				// A down node's agent cannot report (read with the task,
				// so a stop ordered because the node went down is seen
				// with the node down).
				if n := tx.GetNode(cur.NodeID); n == nil || n.Status.State == swarm.NodeStateDown {
					return nil
				}
				c := cur.Copy()
				c.Status = next
				return tx.Update(c)
			})
		}
		return nil
	})
}

// EndTask makes a running task end with the given state (FAILED, COMPLETE)
// as its agent would report.
func (h *Harness) EndTask(id string, st swarm.TaskState, exitCode int) {
	h.T.Helper()
	now := h.Clock.Now()
	h.update(func(tx store.Tx) error {
		c := tx.GetTask(id).Copy()
		c.Status = swarm.TaskStatus{State: st, Timestamp: now, Message: "finished",
			ContainerStatus: &swarm.ContainerStatus{ExitCode: exitCode}}
		if st == swarm.TaskStateFailed {
			c.Status.Err = fmt.Sprintf("task: non-zero exit (%d)", exitCode)
		}
		return tx.Update(c)
	})
}
