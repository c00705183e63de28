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
// model kept current by store events and writes its decisions in batches,
// each task its own compare-and-set (store.Batch.UpdateObjects).
//
// A million tasks make every cache miss count (~300ns on the project
// machine): the model keeps one record per task (one lookup per event),
// queues are slices walked in the order tasks were loaded (the store lists
// them in insertion order, roughly their order in memory), and nodes are
// walked in a list, not a map.
package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"sort"
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

// queue says which queue a task waits in.
type queue uint8

const (
	qNone        queue = iota
	qGroup             // unassigned: placed with its group
	qPreassigned       // PENDING with NodeID set (global services)
	qPreempt           // PENDING but told to stop
)

// taskInfo is everything the scheduler keeps about one task, so that an
// event costs one lookup by task ID. A task is tracked while it waits in a
// queue, holds something on a node, or has a write of ours pending.
type taskInfo struct {
	t     *store.Task // the latest version seen
	u     use         // what it holds on its node, when holds
	holds bool
	q     queue
	g     *group // for qGroup
	gi    int    // index in g.list
	// written: the version a write of ours (an error message, a
	// preemption) was decided on; events up to it predate the write.
	written uint64
}

func (ti *taskInfo) idle() bool { return !ti.holds && ti.q == qNone && ti.written == 0 }

// group is the unassigned tasks of one groupKey.
type group struct {
	key  groupKey
	seq  uint64 // creation order: older groups are served first
	list []*taskInfo
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

	nodes map[string]*nodeInfo
	// list holds the nodes in the order they were loaded or created,
	// which is roughly their order in memory: passes over every node
	// walk it rather than the map (100k nodes read in hash order cost a
	// cache miss each).
	list []*nodeInfo
	// ghosts count what tasks hold on nodes we do not know: not yet (a
	// task event came first) or no longer (deleted, its tasks not yet
	// stopped). A node that joins takes over its ghost, so joining costs
	// nothing per task.
	ghosts   map[string]*nodeInfo
	services map[string]*store.Service
	tasks    map[string]*taskInfo

	groups      map[groupKey]*group
	preassigned map[string]*taskInfo
	preempt     map[string]*taskInfo

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
	s.list = nil
	s.ghosts = map[string]*nodeInfo{}
	s.services = map[string]*store.Service{}
	s.tasks = map[string]*taskInfo{}
	s.groups = map[groupKey]*group{}
	s.preassigned = map[string]*taskInfo{}
	s.preempt = map[string]*taskInfo{}
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

// loadSlab is how many taskInfos a load allocates at once.
const loadSlab = 256

func (s *Scheduler) load(rt store.ReadTx) {
	s.clear()
	nodes := rt.FindNodes(store.All())
	s.nodes = make(map[string]*nodeInfo, len(nodes))
	s.list = make([]*nodeInfo, 0, len(nodes))
	for _, n := range nodes {
		s.addNode(newNodeInfo(n))
	}
	for _, svc := range rt.FindServices(store.All()) {
		s.services[svc.ID] = svc
	}
	tasks := rt.FindTasks(store.All())
	s.tasks = make(map[string]*taskInfo, len(tasks))
	var slab []taskInfo
	for _, t := range tasks {
		if !s.wanted(t) {
			continue
		}
		if len(slab) == 0 {
			slab = make([]taskInfo, loadSlab)
		}
		ti := &slab[0]
		slab = slab[1:]
		s.tasks[t.ID] = ti
		s.track(t, ti)
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
		ti := s.tasks[t.ID]
		if ev.Op == store.OpDelete {
			if ti != nil {
				s.untrack(ti)
			}
			return
		}
		if ti != nil {
			// Skip events older than our own writes, which follow them.
			if ti.holds && t.Meta.Version.Index <= ti.u.version {
				return
			}
			if ti.written != 0 {
				if t.Meta.Version.Index <= ti.written {
					return
				}
				ti.written = 0
			}
		}
		if (t.Status.State == swarm.TaskStateFailed || t.Status.State == swarm.TaskStateRejected) && t.NodeID != "" {
			if old, ok := ev.Old.(*store.Task); ok && !orchestrator.Terminal(old.Status.State) {
				if n := s.nodes[t.NodeID]; n != nil {
					n.recordFailure(keyOf(t), s.clock.Now())
				}
			}
		}
		if ti == nil {
			if !s.wanted(t) {
				return
			}
			ti = &taskInfo{}
			s.tasks[t.ID] = ti
		}
		s.track(t, ti)
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
		ni := s.nodes[id]
		if ni == nil {
			return
		}
		last := len(s.list) - 1
		s.list[ni.li] = s.list[last]
		s.list[ni.li].li = ni.li
		s.list[last] = nil
		s.list = s.list[:last]
		delete(s.nodes, id)
		if !ni.empty() {
			s.ghosts[id] = ni
		}
	case store.OpCreate, store.OpUpdate:
		n := ev.Object.(*store.Node)
		if ni := s.nodes[id]; ni != nil {
			ni.setNode(n)
			return
		}
		// Tasks may name a node before we hear of it (or after it was
		// deleted and re-added): its ghost has counted what they hold.
		ni := s.ghosts[id]
		if ni != nil {
			delete(s.ghosts, id)
			ni.setNode(n)
		} else {
			ni = newNodeInfo(n)
		}
		s.addNode(ni)
	}
}

// holder is the node, or the ghost of it, that counts what tasks hold on
// node id.
func (s *Scheduler) holder(id string) *nodeInfo {
	if n := s.nodes[id]; n != nil {
		return n
	}
	g := s.ghosts[id]
	if g == nil {
		g = &nodeInfo{id: id, key: idKey(id)}
		s.ghosts[id] = g
	}
	return g
}

func (s *Scheduler) addNode(ni *nodeInfo) {
	s.nodes[ni.id] = ni
	ni.li = len(s.list)
	s.list = append(s.list, ni)
}

// wanted reports whether an untracked task needs tracking: it holds
// something on a node or waits to be scheduled.
func (s *Scheduler) wanted(t *store.Task) bool {
	if t.Status.State == swarm.TaskStatePending {
		return true
	}
	_, holds := useOf(t, s.services[t.ServiceID])
	return holds
}

// track updates the model for the current version t of a tracked task.
func (s *Scheduler) track(t *store.Task, ti *taskInfo) {
	ti.t = t
	nu, holds := useOf(t, s.services[t.ServiceID])
	if ti.holds && (!holds || !ti.u.equal(&nu)) {
		s.release(ti)
	}
	if holds && !ti.holds {
		ti.u, ti.holds = nu, true
		s.holder(nu.node).add(&ti.u)
	}
	s.classify(ti)
	if ti.idle() {
		delete(s.tasks, t.ID)
	}
}

// release gives back what ti holds on its node.
func (s *Scheduler) release(ti *taskInfo) {
	if n := s.nodes[ti.u.node]; n != nil {
		n.remove(&ti.u)
	} else if g := s.ghosts[ti.u.node]; g != nil {
		g.remove(&ti.u)
		if g.empty() {
			delete(s.ghosts, g.id)
		}
	}
	ti.u, ti.holds = use{}, false
	s.epoch++
	s.dirty = true
}

func (s *Scheduler) untrack(ti *taskInfo) {
	if ti.holds {
		s.release(ti)
	}
	s.unqueue(ti)
	delete(s.tasks, ti.t.ID)
}

// classify puts a task in the queue it belongs to now.
func (s *Scheduler) classify(ti *taskInfo) {
	t := ti.t
	if t.Status.State != swarm.TaskStatePending {
		s.unqueue(ti)
		return
	}
	switch {
	case !orchestrator.Runnable(t):
		s.unqueue(ti)
		s.preempt[t.ID] = ti
		ti.q = qPreempt
		s.dirty = true
	case t.NodeID != "":
		if ti.q != qPreassigned {
			s.unqueue(ti)
			s.preassigned[t.ID] = ti
			ti.q = qPreassigned
			s.preDirty = true
			s.dirty = true
		}
	default:
		k := keyOf(t)
		if ti.q == qGroup && ti.g.key == k {
			return // a newer version of a task already queued
		}
		s.unqueue(ti)
		g := s.groups[k]
		if g == nil {
			s.seq++
			g = &group{key: k, seq: s.seq}
			s.groups[k] = g
		}
		ti.q, ti.g, ti.gi = qGroup, g, len(g.list)
		g.list = append(g.list, ti)
		g.changed = true
		s.dirty = true
	}
}

// unqueue drops a task from its queue.
func (s *Scheduler) unqueue(ti *taskInfo) {
	switch ti.q {
	case qPreassigned:
		delete(s.preassigned, ti.t.ID)
	case qPreempt:
		delete(s.preempt, ti.t.ID)
	case qGroup:
		g := ti.g
		last := len(g.list) - 1
		if ti.gi != last {
			moved := g.list[last]
			g.list[ti.gi] = moved
			moved.gi = ti.gi
		}
		g.list[last] = nil
		g.list = g.list[:last]
		if last == 0 {
			delete(s.groups, g.key)
		}
		ti.g = nil
	}
	ti.q = qNone
}

// decision is one write of a pass.
type decision struct {
	ti      *taskInfo
	task    *store.Task // the version the decision was made on
	node    string      // assign to this node
	err     string      // or: record why the task cannot be placed
	preempt bool        // or: the task was told to stop before placement
}

// tick is one scheduling pass.
func (s *Scheduler) tick(ctx context.Context) {
	s.dirty = false
	now := s.clock.Now()
	n := len(s.preempt) + len(s.preassigned)
	for _, g := range s.groups {
		n += len(g.list)
	}
	ds := make([]decision, 0, n)
	for _, ti := range s.preempt {
		ds = append(ds, decision{ti: ti, task: ti.t, preempt: true})
		ti.q = qNone
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
	for id, ti := range s.preassigned {
		t := ti.t
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
				ds = append(ds, decision{ti: ti, task: t, err: msg})
			}
			continue
		}
		s.reserve(ti, n, f)
		delete(s.preassigned, id)
		ti.q = qNone
		ds = append(ds, decision{ti: ti, task: t, node: n.id})
	}
	return ds
}

// reserve books a decided placement in the model before it is written.
// The use remembers the task version decided on: events up to it predate
// the write and are skipped. (A queued task is PENDING, so holds nothing
// yet.)
func (s *Scheduler) reserve(ti *taskInfo, n *nodeInfo, f *filter) {
	ti.u = use{node: n.id, svc: f.svc, cpu: f.cpu, mem: f.mem, ports: f.ports, active: true, version: ti.t.Meta.Version.Index}
	ti.holds = true
	n.add(&ti.u)
}

// scheduleGroup places as many tasks of g as fit, in queue order.
func (s *Scheduler) scheduleGroup(g *group, now time.Time, ds []decision) []decision {
	f := newFilter(g.list[0].t, hostPortsOf(s.services[g.key.svc], g.key.version))
	cands := make([]entry, 0, len(s.list))
	for _, n := range s.list {
		if f.check(n) < 0 {
			cands = append(cands, entry{n: n, faulty: n.recentFailures(g.key, now), svc: n.bySvc[f.svc], total: n.active, key: n.key})
		}
	}
	placed := 0
	if len(cands) > 0 {
		root := buildTree(cands, f.prefs)
		var cur *taskInfo
		p := &placer{f: f, assign: func(n *nodeInfo) {
			s.reserve(cur, n, f)
			cur.q, cur.g = qNone, nil
			ds = append(ds, decision{ti: cur, task: cur.t, node: n.id})
		}}
		for _, ti := range g.list {
			cur = ti
			if !root.placeOne(p) {
				break
			}
			placed++
		}
	}
	if placed == len(g.list) {
		delete(s.groups, g.key)
		return ds
	}
	// The placed ones were the first: the rest move to the front.
	n := copy(g.list, g.list[placed:])
	clear(g.list[n:])
	g.list = g.list[:n]
	for i, ti := range g.list {
		ti.gi = i
	}
	var counts [nFilters]int
	for _, n := range s.list {
		if r := f.check(n); r >= 0 {
			counts[r]++
		}
	}
	msg := "no suitable node"
	if e := explain(&counts); e != "" {
		msg += " (" + e + ")"
	}
	for _, ti := range g.list {
		if ti.t.Status.Err != msg {
			ds = append(ds, decision{ti: ti, task: ti.t, err: msg})
		}
	}
	g.changed = false
	g.failedEpoch = s.epoch
	return ds
}

// writeChunk is how many new task versions are handed to the store at a
// time (each is still its own compare-and-set).
const writeChunk = 1024

// apply writes a pass's decisions, each task on its own: a compare-and-set
// on the version it was decided on. One that changed meanwhile is refused
// alone, and the event of that change corrects the model.
func (s *Scheduler) apply(ctx context.Context, ds []decision, now time.Time) {
	err := s.store.Batch(ctx, func(b *store.Batch) error {
		objs := make([]store.Object, 0, min(writeChunk, len(ds)))
		for i := 0; i < len(ds); i += writeChunk {
			objs = objs[:0]
			for j := i; j < min(i+writeChunk, len(ds)); j++ {
				d := &ds[j]
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
				objs = append(objs, c)
			}
			if err := b.UpdateObjects(objs...); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range ds {
		if d := &ds[i]; d.node == "" {
			// Events up to the version decided on predate the write
			// (or, if it was refused, the change that beat it).
			d.ti.written = d.task.Meta.Version.Index
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

// verify repairs the model after a batch with failed writes. A refused
// write has the event of the change that beat it coming, but a proposal
// that failed as a whole (no leader, context ended) lost its writes without
// any event. A decided task still at the version it was decided on was not
// written: back to the stored task it goes. Tasks that moved on have events
// of their own coming.
func (s *Scheduler) verify(ds []decision) {
	s.store.View(func(rt store.ReadTx) {
		for i := range ds {
			d := &ds[i]
			cur := rt.GetTask(d.task.ID)
			if cur == nil || cur.Meta.Version.Index != d.task.Meta.Version.Index {
				continue
			}
			ti := s.tasks[cur.ID]
			if ti == nil {
				if !s.wanted(cur) {
					continue
				}
				ti = &taskInfo{}
				s.tasks[cur.ID] = ti
			}
			ti.written = 0
			if ti.holds && ti.u.version != 0 {
				s.release(ti)
			}
			s.track(cur, ti)
		}
	})
}
