// Package scheduler places PENDING tasks on nodes (PENDING → ASSIGNED), as
// swarmkit's scheduler does: filters (node ready and active, resource
// reservations, constraints, platform, host-mode ports, max replicas per
// node), then placement preferences (spread over label values), then the
// least loaded node (fewest tasks of the service, then fewest tasks). It
// never places a task on a node without room; a task that fits nowhere
// stays PENDING with Status.Err saying why ("no suitable node (insufficient
// resources on 3 nodes)") and is tried again when something changes.
//
// Tasks of one service spec version are scheduled together: the filters run
// once per node for the group and a heap hands out nodes, so placing n tasks
// on m nodes costs O(m + n log m). The scheduler works from an in-memory
// model kept current by store events and writes its decisions in batches.
package scheduler

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Config configures the scheduler.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// MaxBatchDelay bounds how long a stream of events is gathered before
	// a scheduling pass (default 50ms). A pass also runs whenever no more
	// events are queued.
	MaxBatchDelay time.Duration
}

// groupKey identifies tasks with the same spec: one service, one spec
// version.
type groupKey struct {
	svc     string
	version uint64
}

func keyOf(t *store.Task) groupKey { return groupKey{t.ServiceID, t.SpecVersion} }

// group is the unassigned tasks of one groupKey.
type group struct {
	key   groupKey
	seq   uint64 // creation order: older groups are served first
	tasks map[string]*store.Task
	// changed: tasks were added since the last pass. failedEpoch: the
	// capacity epoch at which a pass last left tasks unplaced; until
	// either moves, another pass would fail the same way.
	changed     bool
	failedEpoch uint64
}

// Scheduler assigns tasks to nodes. It is a leader-only component.
type Scheduler struct {
	store    *store.Store
	clock    clock.Clock
	log      *slog.Logger
	maxDelay time.Duration

	nodes    map[string]*nodeInfo
	order    []*nodeInfo // by node ID; rebuilt when nodes come and go
	ordered  bool
	services map[string]*store.Service
	uses     map[string]*use // what each task on a node holds

	groups      map[groupKey]*group
	preassigned map[string]*store.Task // PENDING with NodeID set (global services)
	preempt     map[string]*store.Task // PENDING but told to stop
	// written is the version each task had when we last wrote it; events
	// no newer than that predate our write and are skipped.
	written map[string]uint64

	// epoch counts changes that may make an unplaceable task placeable:
	// node changes and resources released by tasks.
	epoch    uint64
	preEpoch uint64 // epoch of the last preassigned pass
	preDirty bool
	seq      uint64
	dirty    bool
}

// New returns a scheduler over s.
func New(s *store.Store, cfg Config) *Scheduler {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d := cfg.MaxBatchDelay
	if d <= 0 {
		d = 50 * time.Millisecond
	}
	sch := &Scheduler{store: s, clock: clock.OrReal(cfg.Clock), log: log.With("component", "scheduler"), maxDelay: d}
	sch.clear()
	return sch
}

func (s *Scheduler) clear() {
	s.nodes = map[string]*nodeInfo{}
	s.order = nil
	s.ordered = false
	s.services = map[string]*store.Service{}
	s.uses = map[string]*use{}
	s.groups = map[groupKey]*group{}
	s.preassigned = map[string]*store.Task{}
	s.preempt = map[string]*store.Task{}
	s.written = map[string]uint64{}
	s.epoch++
	s.preDirty = true
	s.dirty = true
}

// Run schedules until ctx ends: one full pass over the store, then passes
// driven by task, node and service events.
func (s *Scheduler) Run(ctx context.Context) error {
	events, cancel := s.store.ViewAndWatch(s.load, store.KindTask, store.KindNode, store.KindService)
	defer cancel()
	for {
		if s.dirty {
			s.tick(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			s.handle(ev)
		}
		// Gather what is already queued (bounded in time) so one pass and
		// one batch of writes cover a burst of changes.
		deadline := time.Now().Add(s.maxDelay)
	drain:
		for i := 1; ; i++ {
			select {
			case ev, ok := <-events:
				if !ok {
					return nil
				}
				s.handle(ev)
				if i%256 == 0 && time.Now().After(deadline) {
					break drain
				}
			default:
				break drain
			}
		}
	}
}

func (s *Scheduler) load(rt store.ReadTx) {
	s.clear()
	for _, n := range rt.FindNodes(store.All()) {
		s.nodes[n.ID] = newNodeInfo(n)
	}
	for _, svc := range rt.FindServices(store.All()) {
		s.services[svc.ID] = svc
	}
	for _, t := range rt.FindTasks(store.All()) {
		s.track(t)
	}
}

func (s *Scheduler) reload() {
	s.store.View(s.load)
}

func (s *Scheduler) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		s.reload()
		return
	}
	switch ev.Kind {
	case store.KindNode:
		s.handleNode(ev)
	case store.KindService:
		if ev.Op == store.OpDelete {
			delete(s.services, ev.Object.GetID())
		} else {
			s.services[ev.Object.GetID()] = ev.Object.(*store.Service)
		}
	case store.KindTask:
		t := ev.Object.(*store.Task)
		if ev.Op == store.OpDelete {
			s.untrack(t)
			delete(s.written, t.ID)
			return
		}
		// Skip events older than our own writes, which follow them.
		if u := s.uses[t.ID]; u != nil && t.Meta.Version.Index <= u.version {
			return
		}
		if v, ok := s.written[t.ID]; ok {
			if t.Meta.Version.Index <= v {
				return
			}
			delete(s.written, t.ID)
		}
		if old, ok := ev.Old.(*store.Task); ok && t.NodeID != "" && !orchestrator.Terminal(old.Status.State) &&
			(t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected) {
			if n := s.nodes[t.NodeID]; n != nil {
				n.recordFailure(keyOf(t), s.clock.Now())
			}
		}
		s.track(t)
	}
}

func (s *Scheduler) handleNode(ev store.Event) {
	id := ev.Object.GetID()
	if old, ok := ev.Old.(*store.Node); ok && ev.Op == store.OpUpdate && s.nodes[id] != nil &&
		!orchestrator.PlacementChanged(old, ev.Object.(*store.Node)) {
		s.nodes[id].node = ev.Object.(*store.Node)
		return
	}
	s.epoch++
	s.dirty = true
	switch ev.Op {
	case store.OpDelete:
		if ni := s.nodes[id]; ni != nil && s.ordered {
			s.order = slices.Delete(s.order, ni.rank, ni.rank+1)
			s.renumber(ni.rank)
		}
		delete(s.nodes, id)
	case store.OpCreate, store.OpUpdate:
		n := ev.Object.(*store.Node)
		if ni := s.nodes[id]; ni != nil {
			ni.setNode(n)
			return
		}
		ni := newNodeInfo(n)
		s.nodes[id] = ni
		if s.ordered {
			// Keep the ID order without sorting everything again.
			i, _ := slices.BinarySearchFunc(s.order, id, func(n *nodeInfo, id string) int { return strings.Compare(n.id, id) })
			s.order = slices.Insert(s.order, i, ni)
			s.renumber(i)
		}
		// Tasks may name a node before we hear of it (or after it was
		// deleted and re-added): count what they hold.
		for _, u := range s.uses {
			if u.node == id {
				ni.add(u)
			}
		}
	}
}

// track updates the model for the current version of a task.
func (s *Scheduler) track(t *store.Task) {
	nu := useOf(t, s.services[t.ServiceID])
	ou := s.uses[t.ID]
	if ou == nil || nu == nil || !ou.equal(nu) {
		if ou != nil {
			s.release(t.ID, ou)
		}
		if nu != nil {
			s.uses[t.ID] = nu
			if n := s.nodes[nu.node]; n != nil {
				n.add(nu)
			}
		}
	}
	s.classify(t)
}

func (s *Scheduler) release(id string, u *use) {
	delete(s.uses, id)
	if n := s.nodes[u.node]; n != nil {
		n.remove(u)
	}
	s.epoch++
	s.dirty = true
}

func (s *Scheduler) untrack(t *store.Task) {
	if u := s.uses[t.ID]; u != nil {
		s.release(t.ID, u)
	}
	s.unqueue(t.ID, t)
}

// classify puts a task in the queue it belongs to now.
func (s *Scheduler) classify(t *store.Task) {
	if t.Status.State != swarm.TaskStatePending {
		s.unqueue(t.ID, t)
		return
	}
	switch {
	case !orchestrator.Runnable(t):
		s.unqueue(t.ID, t)
		s.preempt[t.ID] = t
		s.dirty = true
	case t.NodeID != "":
		s.unqueue(t.ID, t)
		if _, ok := s.preassigned[t.ID]; !ok {
			s.preDirty = true
			s.dirty = true
		}
		s.preassigned[t.ID] = t
	default:
		delete(s.preassigned, t.ID)
		delete(s.preempt, t.ID)
		k := keyOf(t)
		g := s.groups[k]
		if g == nil {
			s.seq++
			g = &group{key: k, seq: s.seq, tasks: map[string]*store.Task{}}
			s.groups[k] = g
		}
		if _, ok := g.tasks[t.ID]; !ok {
			g.changed = true
			s.dirty = true
		}
		g.tasks[t.ID] = t
	}
}

// unqueue drops a task from the queues.
func (s *Scheduler) unqueue(id string, t *store.Task) {
	delete(s.preassigned, id)
	delete(s.preempt, id)
	if g := s.groups[keyOf(t)]; g != nil {
		s.dropFromGroup(g, id)
	}
}

func (s *Scheduler) dropFromGroup(g *group, id string) {
	delete(g.tasks, id)
	if len(g.tasks) == 0 {
		delete(s.groups, g.key)
	}
}

func (s *Scheduler) rank() {
	if s.ordered {
		return
	}
	// Sort on the IDs' first 8 bytes as an integer (IDs are random, so
	// that almost always decides), falling back to the whole ID.
	type keyed struct {
		key uint64
		n   *nodeInfo
	}
	ks := make([]keyed, 0, len(s.nodes))
	for _, n := range s.nodes {
		var b [8]byte
		copy(b[:], n.id)
		ks = append(ks, keyed{binary.BigEndian.Uint64(b[:]), n})
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if a.key != b.key {
			return cmp.Compare(a.key, b.key)
		}
		return strings.Compare(a.n.id, b.n.id)
	})
	s.order = s.order[:0]
	for _, k := range ks {
		s.order = append(s.order, k.n)
	}
	s.renumber(0)
	s.ordered = true
}

func (s *Scheduler) renumber(from int) {
	for i := from; i < len(s.order); i++ {
		s.order[i].rank = i
	}
}

// decision is one write of a pass.
type decision struct {
	task    *store.Task // the version the decision was made on
	id      string
	node    string // assign to this node
	err     string // or: record why the task cannot be placed
	preempt bool   // or: the task was told to stop before placement
	version uint64 // version the task had when written (0: not written)
}

// tick is one scheduling pass.
func (s *Scheduler) tick(ctx context.Context) {
	s.dirty = false
	s.rank()
	now := s.clock.Now()
	n := len(s.preempt) + len(s.preassigned)
	for _, g := range s.groups {
		n += len(g.tasks)
	}
	ds := make([]decision, 0, n)
	for id, t := range s.preempt {
		ds = append(ds, decision{task: t, id: id, preempt: true})
	}
	clear(s.preempt)
	if s.preDirty || s.preEpoch != s.epoch {
		s.preDirty = false
		ds = s.schedulePreassigned(ds)
		s.preEpoch = s.epoch
	}
	groups := make([]*group, 0, len(s.groups))
	for _, g := range s.groups {
		if g.changed || g.failedEpoch != s.epoch {
			groups = append(groups, g)
		}
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].seq < groups[j].seq })
	for _, g := range groups {
		ds = s.scheduleGroup(g, now, ds)
	}
	if len(ds) > 0 {
		s.apply(ctx, ds, now)
	}
}

// schedulePreassigned confirms tasks whose node was chosen by the global
// orchestrator, if that node can take them.
func (s *Scheduler) schedulePreassigned(ds []decision) []decision {
	filters := map[groupKey]*filter{}
	for id, t := range s.preassigned {
		k := keyOf(t)
		f := filters[k]
		if f == nil {
			f = newFilter(t, hostPortsOf(s.services[t.ServiceID], t.SpecVersion))
			filters[k] = f
		}
		n := s.nodes[t.NodeID]
		if n == nil {
			continue // the global orchestrator removes tasks of deleted nodes
		}
		if r := f.check(n); r >= 0 {
			var counts [nFilters]int
			counts[r] = 1
			if msg := explain(&counts); t.Status.Err != msg {
				ds = append(ds, decision{task: t, id: id, err: msg})
			}
			continue
		}
		s.reserve(t, n, f)
		delete(s.preassigned, id)
		ds = append(ds, decision{task: t, id: id, node: n.id})
	}
	return ds
}

// growUses makes room for n more uses at once: a big pass then does not
// pay for the map growing step by step.
func (s *Scheduler) growUses(n int) {
	if n < 1024 || n < len(s.uses) {
		return
	}
	m := make(map[string]*use, len(s.uses)+n)
	for k, v := range s.uses {
		m[k] = v
	}
	s.uses = m
}

// reserve books a decided placement in the model before it is written.
// The use remembers the task version decided on: events up to it predate
// the write and are skipped.
func (s *Scheduler) reserve(t *store.Task, n *nodeInfo, f *filter) {
	u := &use{node: n.id, svc: f.svc, cpu: f.cpu, mem: f.mem, ports: f.ports, active: true, version: t.Meta.Version.Index}
	n.add(u)
	s.uses[t.ID] = u
}

// scheduleGroup places as many tasks of g as fit.
func (s *Scheduler) scheduleGroup(g *group, now time.Time, ds []decision) []decision {
	var rep *store.Task
	for _, t := range g.tasks {
		rep = t
		break
	}
	f := newFilter(rep, hostPortsOf(s.services[g.key.svc], g.key.version))
	cands := make([]entry, 0, len(s.order))
	for _, n := range s.order {
		if f.check(n) < 0 {
			cands = append(cands, entry{n: n, faulty: n.recentFailures(g.key, now), svc: n.bySvc[f.svc], total: n.active})
		}
	}
	if len(cands) > 0 {
		s.growUses(len(g.tasks))
		// One allocation for the group's bookings.
		slab := make([]use, 0, min(len(g.tasks), 4096))
		root := buildTree(cands, f.prefs)
		var cur *store.Task
		p := &placer{f: f, assign: func(n *nodeInfo) {
			if len(slab) == cap(slab) {
				slab = make([]use, 0, cap(slab))
			}
			slab = append(slab, use{node: n.id, svc: f.svc, cpu: f.cpu, mem: f.mem, ports: f.ports, active: true, version: cur.Meta.Version.Index})
			u := &slab[len(slab)-1]
			n.add(u)
			s.uses[cur.ID] = u
			ds = append(ds, decision{task: cur, id: cur.ID, node: n.id})
		}}
		placed := 0
		for _, t := range g.tasks {
			cur = t
			if !root.placeOne(p) {
				break
			}
			placed++
		}
		if placed == len(g.tasks) {
			delete(s.groups, g.key)
			return ds
		}
		for _, d := range ds[len(ds)-placed:] {
			delete(g.tasks, d.id)
		}
	}
	if len(g.tasks) == 0 {
		delete(s.groups, g.key)
		return ds
	}
	var counts [nFilters]int
	for _, n := range s.order {
		if r := f.check(n); r >= 0 {
			counts[r]++
		}
	}
	msg := "no suitable node"
	if e := explain(&counts); e != "" {
		msg += " (" + e + ")"
	}
	for id, t := range g.tasks {
		if t.Status.Err != msg {
			ds = append(ds, decision{task: t, id: id, err: msg})
		}
	}
	g.changed = false
	g.failedEpoch = s.epoch
	return ds
}

// writeChunk is how many decisions share one atomic store group: fewer,
// larger groups cost the store less per task.
const writeChunk = 64

// apply writes a pass's decisions. Each writes the task version it was
// decided on: one that changed meanwhile fails its version check and is
// skipped, and the event of that change corrects the model.
func (s *Scheduler) apply(ctx context.Context, ds []decision, now time.Time) {
	err := s.store.Batch(ctx, func(b *store.Batch) error {
		for i := 0; i < len(ds); i += writeChunk {
			part := ds[i:min(i+writeChunk, len(ds))]
			err := b.Update(func(tx store.Tx) error {
				for j := range part {
					d := &part[j]
					d.version = 0
					c := d.task.Copy()
					switch {
					case d.preempt:
						c.Status = swarm.TaskStatus{State: swarm.TaskStateShutdown, Timestamp: now, Message: orchestrator.MsgPreempted}
					case d.node != "":
						c.NodeID = d.node
						c.Status = swarm.TaskStatus{State: swarm.TaskStateAssigned, Timestamp: now, Message: orchestrator.MsgAssigned}
					default:
						c.Status.Err = d.err
						c.Status.Timestamp = now
					}
					if err := tx.Update(c); err != nil {
						if store.IsSequence(err) || errdefs.IsNotFound(err) {
							continue
						}
						return err
					}
					d.version = d.task.Meta.Version.Index
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	for i := range ds {
		if d := &ds[i]; d.version != 0 && d.node == "" {
			s.written[d.id] = d.version
		}
	}
	if err == nil || ctx.Err() != nil {
		return
	}
	if !errors.Is(err, store.ErrSequence) && !errdefs.IsNotFound(err) {
		s.log.Warn("writing scheduling decisions failed", "err", err)
	}
	s.verify(ds)
}

// verify repairs the model after a batch with failed groups. A group is
// atomic: a lost race on one task loses the writes of the others in its
// group, and those get no event. A decided task still at the version it
// was decided on was not written: back to the stored task it goes. Tasks
// that moved on have events of their own coming.
func (s *Scheduler) verify(ds []decision) {
	s.store.View(func(rt store.ReadTx) {
		for i := range ds {
			d := &ds[i]
			cur := rt.GetTask(d.id)
			if cur == nil || cur.Meta.Version.Index != d.task.Meta.Version.Index {
				continue
			}
			delete(s.written, d.id)
			if u := s.uses[d.id]; u != nil && u.version != 0 {
				s.release(d.id, u)
			}
			s.track(cur)
		}
	})
}
