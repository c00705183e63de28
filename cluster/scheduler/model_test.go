package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
)

// driver runs a scheduler synchronously on the test goroutine, so the test
// can look at its model between steps.
type driver struct {
	t      *testing.T
	s      *store.Store
	sch    *Scheduler
	events <-chan store.Event
	marks  int
}

const markerID = "zz-marker"

func newDriver(t *testing.T, s *store.Store) *driver {
	sch := New(s, Config{Clock: clock.NewFake(time.Unix(0, 0)), Logger: slog.New(slog.DiscardHandler)})
	events, cancel := s.ViewAndWatch(sch.load, store.KindTask, store.KindNode, store.KindService)
	t.Cleanup(cancel)
	return &driver{t: t, s: s, sch: sch, events: events}
}

// settle hands the scheduler every event so far and runs passes until it
// has nothing left to do. A marker service written last tells when every
// earlier event has been handled.
func (d *driver) settle() {
	d.t.Helper()
	for round := 0; ; round++ {
		if round > 50 {
			d.t.Fatal("the scheduler never settles")
		}
		d.marks++
		mark := d.marks
		err := d.s.Update(context.Background(), func(tx store.Tx) error {
			m := tx.GetService(markerID)
			if m == nil {
				m = &store.Service{}
				m.ID = markerID
				m.Spec.Name = markerID
				m.Spec.Labels = map[string]string{"mark": fmt.Sprint(mark)}
				return tx.Create(m)
			}
			m = m.Copy()
			m.Spec.Labels = map[string]string{"mark": fmt.Sprint(mark)}
			return tx.Update(m)
		})
		if err != nil {
			d.t.Fatal(err)
		}
		for done := false; !done; {
			select {
			case ev := <-d.events:
				d.sch.handle(ev)
				if svc, ok := ev.Object.(*store.Service); ok && svc.ID == markerID && svc.Spec.Labels["mark"] == fmt.Sprint(mark) {
					done = true
				}
			case <-time.After(10 * time.Second):
				d.t.Fatal("marker event never came")
			}
		}
		if !d.sch.dirty {
			return
		}
		d.sch.tick(context.Background())
	}
}

// check compares the scheduler's model with the store: what every node
// holds, which tasks it tracks and in which queue, and that no node is
// over its resources.
func (d *driver) check() {
	d.t.Helper()
	sch := d.sch
	type totals struct {
		cpu, mem int64
		active   int
		bySvc    map[string]int
		ports    map[hostPort]int
	}
	want := map[string]*totals{}
	d.s.View(func(rt store.ReadTx) {
		stored := map[string]bool{}
		for _, t := range rt.FindTasks(store.All()) {
			stored[t.ID] = true
			u, holds := useOf(t, rt.GetService(t.ServiceID))
			ti := sch.tasks[t.ID]
			if holds {
				w := want[u.node]
				if w == nil {
					w = &totals{bySvc: map[string]int{}, ports: map[hostPort]int{}}
					want[u.node] = w
				}
				w.cpu += u.cpu
				w.mem += u.mem
				if u.active {
					w.active++
					w.bySvc[u.svc]++
				}
				for _, p := range u.ports {
					w.ports[p]++
				}
				if ti == nil || !ti.holds || !ti.u.equal(&u) {
					d.t.Fatalf("task %s holds %+v on %s, the model has %+v", t.ID, u, u.node, ti)
				}
			}
			switch {
			case t.Status.State == swarm.TaskStatePending:
				if ti == nil || ti.t != t {
					d.t.Fatalf("pending task %s not tracked at its stored version", t.ID)
				}
				switch {
				case !orchestrator.Runnable(t):
					d.t.Fatalf("task %s told to stop is still pending after settling", t.ID)
				case t.NodeID != "":
					if ti.q != qPreassigned || sch.preassigned[t.ID] != ti {
						d.t.Fatalf("preassigned task %s in queue %d", t.ID, ti.q)
					}
				default:
					if ti.q != qGroup || ti.g.key != keyOf(t) || sch.groups[ti.g.key] != ti.g || ti.g.list[ti.gi] != ti {
						d.t.Fatalf("pending task %s not in its group (queue %d)", t.ID, ti.q)
					}
				}
			case !holds && ti != nil:
				d.t.Fatalf("task %s (%s) neither waits nor holds, but is tracked: %+v", t.ID, t.Status.State, ti)
			}
		}
		for id := range sch.tasks {
			if !stored[id] {
				d.t.Fatalf("tracked task %s is not in the store", id)
			}
		}
	})
	for k, g := range sch.groups {
		if len(g.list) == 0 || g.key != k {
			d.t.Fatalf("group %v: %d tasks, key %v", k, len(g.list), g.key)
		}
		for i, ti := range g.list {
			if ti.g != g || ti.gi != i || ti.q != qGroup {
				d.t.Fatalf("group %v entry %d points elsewhere", k, i)
			}
		}
	}
	// What tasks hold on nodes the scheduler does not know sits in
	// ghosts, to be taken over when the node (re)joins.
	for id, w := range want {
		if sch.nodes[id] == nil && sch.ghosts[id] == nil && (w.cpu != 0 || w.mem != 0 || w.active != 0 || len(w.ports) != 0) {
			d.t.Fatalf("tasks hold %+v on unknown node %s, and no ghost counts it", w, id)
		}
	}
	for id, g := range sch.ghosts {
		w := want[id]
		if w == nil {
			w = &totals{}
		}
		if sch.nodes[id] != nil || g.cpuUsed != w.cpu || g.memUsed != w.mem || g.active != w.active {
			d.t.Fatalf("ghost of %s: cpu %d mem %d active %d; store says %+v", id, g.cpuUsed, g.memUsed, g.active, w)
		}
	}
	if len(sch.list) != len(sch.nodes) {
		d.t.Fatalf("%d nodes listed, %d known", len(sch.list), len(sch.nodes))
	}
	for i, n := range sch.list {
		if n.li != i || sch.nodes[n.id] != n {
			d.t.Fatalf("node list entry %d is off", i)
		}
		w := want[n.id]
		if w == nil {
			w = &totals{}
		}
		if n.cpuUsed != w.cpu || n.memUsed != w.mem || n.active != w.active ||
			!maps.Equal(n.bySvc, w.bySvc) && len(n.bySvc)+len(w.bySvc) > 0 ||
			!maps.Equal(n.ports, w.ports) && len(n.ports)+len(w.ports) > 0 {
			d.t.Fatalf("node %s: model cpu %d mem %d active %d svc %v ports %v; store says %+v",
				n.id, n.cpuUsed, n.memUsed, n.active, n.bySvc, n.ports, w)
		}
		if n.cpuUsed > n.cpuTotal || n.memUsed > n.memTotal {
			d.t.Fatalf("node %s over its resources: cpu %d/%d mem %d/%d", n.id, n.cpuUsed, n.cpuTotal, n.memUsed, n.memTotal)
		}
		for p, c := range n.ports {
			if c > 1 {
				d.t.Fatalf("node %s: %d tasks hold host port %v", n.id, c, p)
			}
		}
		if n.bySvc["s2"] > 2 {
			d.t.Fatalf("node %s runs %d tasks of s2 (max 2 per node)", n.id, n.bySvc["s2"])
		}
	}
}

// flakyProposer loses some proposals whole (as Raft without a leader
// does) and makes some writes lose their race: before applying, it bumps
// one of the proposal's tasks.
type flakyProposer struct {
	s     *store.Store
	rng   *rand.Rand
	local store.LocalProposer
	on    bool
}

var errNoLeader = errors.New("no leader")

func (p *flakyProposer) Propose(ctx context.Context, groups []store.Group) ([]error, error) {
	if _, marker := groups[0][0].Object.(*store.Service); p.on && !marker {
		switch p.rng.Intn(6) {
		case 0:
			return nil, errNoLeader
		case 1:
			a := groups[p.rng.Intn(len(groups))][0]
			if t, ok := a.Object.(*store.Task); ok && a.Op == store.OpUpdate {
				var cur *store.Task
				p.s.View(func(rt store.ReadTx) { cur = rt.GetTask(t.ID) })
				if cur != nil {
					c := cur.Copy()
					c.Annotations.Labels = map[string]string{"raced": "yes"}
					p.local.Propose(ctx, []store.Group{{{Op: store.OpUpdate, Object: c}}})
				}
			}
		}
	}
	return p.local.Propose(ctx, groups)
}

// TestModelMatchesStore runs random cluster changes, some writes failing,
// and checks after each step that the scheduler's model matches the store.
func TestModelMatchesStore(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, seed) })
	}
}

func runModel(t *testing.T, seed int64) {
	rng := rand.New(rand.NewSource(seed))
	s := store.New()
	fp := &flakyProposer{s: s, rng: rng, local: *store.NewLocalProposer(s)}
	s.SetProposer(fp)
	ctx := context.Background()
	must := func(fn func(tx store.Tx) error) {
		t.Helper()
		fp.on = false
		defer func() { fp.on = true }()
		if err := s.Update(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	// Three services: one reserving a CPU, one publishing host port 80,
	// one at most 2 per node.
	must(func(tx store.Tx) error {
		for i := 0; i < 3; i++ {
			svc := &store.Service{SpecVersion: 1}
			svc.ID = fmt.Sprint("s", i)
			svc.Spec.Name = svc.ID
			if i == 1 {
				svc.Endpoint.Ports = []swarm.PortConfig{{PublishedPort: 80, PublishMode: swarm.PortConfigPublishModeHost}}
			}
			if err := tx.Create(svc); err != nil {
				return err
			}
		}
		return nil
	})
	d := newDriver(t, s)
	nodeIDs := []string{"na", "nb", "nc", "nd", "ne"}
	taskN := 0
	randTask := func(tx store.Tx, want func(*store.Task) bool) *store.Task {
		ts := tx.FindTasks(store.All())
		rng.Shuffle(len(ts), func(i, j int) { ts[i], ts[j] = ts[j], ts[i] })
		for _, t := range ts {
			if want(t) {
				return t.Copy()
			}
		}
		return nil
	}
	for step := 0; step < 300; step++ {
		op := rng.Intn(10)
		must(func(tx store.Tx) error {
			switch op {
			case 0, 1: // a node joins, or comes back
				id := nodeIDs[rng.Intn(len(nodeIDs))]
				n := tx.GetNode(id)
				if n == nil {
					n = &store.Node{}
					n.ID = id
				} else {
					n = n.Copy()
				}
				n.Spec.Availability = swarm.NodeAvailabilityActive
				n.Status.State = swarm.NodeStateReady
				n.Description.Resources = swarm.Resources{NanoCPUs: 3e9, MemoryBytes: 3 << 30}
				if tx.GetNode(id) == nil {
					return tx.Create(n)
				}
				return tx.Update(n)
			case 2: // a node drains, goes down or leaves
				id := nodeIDs[rng.Intn(len(nodeIDs))]
				n := tx.GetNode(id)
				if n == nil {
					return nil
				}
				switch rng.Intn(3) {
				case 0:
					return tx.Delete(store.KindNode, id)
				case 1:
					n = n.Copy()
					n.Spec.Availability = swarm.NodeAvailabilityDrain
				default:
					n = n.Copy()
					n.Status.State = swarm.NodeStateDown
				}
				return tx.Update(n)
			case 3, 4, 5: // new tasks
				for i := rng.Intn(6); i >= 0; i-- {
					taskN++
					tk := &store.Task{SpecVersion: 1}
					tk.ID = fmt.Sprintf("t%03d", taskN)
					tk.ServiceID = fmt.Sprint("s", rng.Intn(3))
					tk.DesiredState = swarm.TaskStateRunning
					tk.Status.State = swarm.TaskStatePending
					switch tk.ServiceID {
					case "s0":
						tk.Spec.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{NanoCPUs: 1e9}}
					case "s2":
						tk.Spec.Placement = &swarm.Placement{MaxReplicas: 2}
					}
					if rng.Intn(5) == 0 {
						tk.NodeID = nodeIDs[rng.Intn(len(nodeIDs))] // a global service's task
					}
					if err := tx.Create(tk); err != nil {
						return err
					}
				}
				return nil
			case 6: // an agent moves a task on
				tk := randTask(tx, func(t *store.Task) bool {
					return t.NodeID != "" && orchestrator.Rank(t.Status.State) >= orchestrator.Rank(swarm.TaskStateAssigned) && !orchestrator.Terminal(t.Status.State)
				})
				if tk == nil {
					return nil
				}
				if tk.Status.State == swarm.TaskStateAssigned {
					tk.Status.State = swarm.TaskStateRunning
				} else {
					tk.Status.State = []swarm.TaskState{swarm.TaskStateComplete, swarm.TaskStateFailed}[rng.Intn(2)]
				}
				return tx.Update(tk)
			case 7: // an orchestrator stops or removes a task
				tk := randTask(tx, func(t *store.Task) bool { return !orchestrator.Terminal(t.Status.State) })
				if tk == nil {
					return nil
				}
				if rng.Intn(2) == 0 {
					return tx.Delete(store.KindTask, tk.ID)
				}
				tk.DesiredState = swarm.TaskStateShutdown
				return tx.Update(tk)
			case 8: // a pending task moves to a newer spec
				tk := randTask(tx, func(t *store.Task) bool { return t.Status.State == swarm.TaskStatePending })
				if tk == nil {
					return nil
				}
				tk.SpecVersion++
				return tx.Update(tk)
			default: // finished tasks are cleaned up
				for _, tk := range tx.FindTasks(store.All()) {
					if orchestrator.Terminal(tk.Status.State) && rng.Intn(2) == 0 {
						if err := tx.Delete(store.KindTask, tk.ID); err != nil {
							return err
						}
					}
				}
				return nil
			}
		})
		fp.on = true
		d.settle()
		fp.on = false
		d.settle() // writes lost by a failed proposal are retried
		d.check()
	}
	// The run must have exercised the model: tasks placed and holding.
	held := 0
	for _, ti := range d.sch.tasks {
		if ti.holds {
			held++
		}
	}
	if held == 0 || taskN < 100 {
		t.Fatalf("only %d tasks made, %d holding", taskN, held)
	}
}
