// Package replicated is the orchestrator of replicated services: it keeps
// slots 1..Replicas filled with tasks, as swarmkit's. Scaling up fills the
// lowest free slots; scaling down removes the slots on the nodes with the
// most tasks of the service (non-running first, then the highest slots),
// with desired state REMOVE so the reaper deletes them. A task that ends or
// whose node goes down, is drained, is removed or stops satisfying its
// constraints is shut down and replaced per the restart policy. Spec
// changes roll out through the update supervisor; deleting a service marks
// its tasks REMOVE.
//
// Shoal extension: services labelled com.shoal.rebalance=true get tasks
// moved onto a node that joins or becomes available again, from the most
// loaded nodes (start-first, at the pace of the service's UpdateConfig).
package replicated

import (
	"context"
	"log/slog"
	"sort"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/constraint"
	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/orchestrator/restart"
	"github.com/shoal/shoal/cluster/orchestrator/update"
	"github.com/shoal/shoal/cluster/store"
)

// Config configures the orchestrator.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// RestartTaskTimeout bounds how long a replacement waits for the task
	// it replaces to stop (default 1m).
	RestartTaskTimeout time.Duration
}

// Orchestrator reconciles replicated services. Leader-only component.
type Orchestrator struct {
	store *store.Store
	cfg   Config
	clock clock.Clock
	log   *slog.Logger

	restarts *restart.Supervisor
	updater  *update.Supervisor

	reconcile map[string]bool        // services to reconcile
	restart   map[string]bool        // tasks to check for restart
	rebalance bool                   // a node became available
	nodes     map[string]*store.Node // current nodes
}

// New returns a replicated orchestrator over s.
func New(s *store.Store, cfg Config) *Orchestrator {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Orchestrator{store: s, cfg: cfg, clock: clock.OrReal(cfg.Clock), log: log.With("component", "replicated-orchestrator")}
}

// Run orchestrates until ctx ends.
func (o *Orchestrator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	o.restarts = restart.New(o.store, restart.Config{Clock: o.clock, Logger: o.log, TaskTimeout: o.cfg.RestartTaskTimeout})
	o.restarts.Start(ctx)
	o.updater = update.New(o.store, o.restarts, update.Config{Clock: o.clock, Logger: o.log})
	defer func() {
		cancel()
		o.updater.Stop()
		o.restarts.Wait()
	}()
	o.reconcile, o.restart, o.nodes = map[string]bool{}, map[string]bool{}, map[string]*store.Node{}

	var tasks []*store.Task
	global := map[string]bool{}
	events, unwatch := o.store.ViewAndWatch(func(rt store.ReadTx) {
		o.init(rt)
		tasks = rt.FindTasks(store.All())
		for _, s := range rt.FindServices(store.All()) {
			global[s.ID] = orchestrator.IsGlobal(s)
		}
	}, store.KindService, store.KindTask, store.KindNode)
	defer unwatch()
	var mine []*store.Task
	for _, t := range tasks {
		if _, known := global[t.ServiceID]; known && !global[t.ServiceID] {
			mine = append(mine, t)
		}
	}
	o.restarts.Recover(mine, func(string) bool { return false })
	o.restarts.ResumeDelays(mine)

	return orchestrator.Loop(ctx, events, o.tick, o.handle)
}

// init queues everything a previous leader may have left unfinished.
func (o *Orchestrator) init(rt store.ReadTx) {
	for _, n := range rt.FindNodes(store.All()) {
		o.nodes[n.ID] = n
	}
	for _, s := range rt.FindServices(store.All()) {
		if orchestrator.IsReplicated(s) {
			o.reconcile[s.ID] = true
		}
	}
	for _, t := range rt.FindTasks(store.All()) {
		if orchestrator.Runnable(t) && (orchestrator.Terminal(t.Status.State) || t.NodeID != "") {
			o.restart[t.ID] = true // restartTasks checks each
		}
	}
}

func eligible(n *store.Node) bool {
	return n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive
}

func (o *Orchestrator) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		o.store.View(o.init)
		return
	}
	switch ev.Kind {
	case store.KindService:
		svc := ev.Object.(*store.Service)
		if !orchestrator.IsReplicated(svc) {
			return
		}
		if ev.Op == store.OpDelete {
			o.updater.Cancel(svc.ID)
			o.restarts.ClearService(svc.ID)
			o.removeServiceTasks(svc.ID)
			delete(o.reconcile, svc.ID)
			return
		}
		o.reconcile[svc.ID] = true
	case store.KindNode:
		n := ev.Object.(*store.Node)
		if ev.Op == store.OpDelete {
			delete(o.nodes, n.ID)
			o.restartNodeTasks(n.ID)
			return
		}
		old := o.nodes[n.ID]
		o.nodes[n.ID] = n
		if (old == nil || !eligible(old)) && eligible(n) {
			o.rebalance = true
		}
		// Down, drained, or labels changed under constraints: check the
		// node's tasks.
		if orchestrator.PlacementChanged(old, n) {
			o.restartNodeTasks(n.ID)
		}
	case store.KindTask:
		t := ev.Object.(*store.Task)
		if ev.Op == store.OpDelete {
			o.restarts.Cancel(t.ID)
			if orchestrator.Runnable(t) {
				o.reconcile[t.ServiceID] = true
			}
			return
		}
		if !orchestrator.Runnable(t) {
			return
		}
		// Constraints are checked on node events: a task's own never
		// change, and the scheduler placed it where they held.
		if orchestrator.Terminal(t.Status.State) || (t.NodeID != "" && orchestrator.InvalidNode(o.nodes[t.NodeID])) {
			o.restart[t.ID] = true
		}
	}
}

func (o *Orchestrator) restartNodeTasks(nodeID string) {
	o.store.View(func(rt store.ReadTx) {
		for _, t := range rt.FindTasks(store.ByNodeID(nodeID)) {
			if orchestrator.Runnable(t) {
				o.restart[t.ID] = true
			}
		}
	})
}

// removeServiceTasks marks every task of a deleted service REMOVE.
func (o *Orchestrator) removeServiceTasks(serviceID string) {
	var tasks []*store.Task
	o.store.View(func(rt store.ReadTx) { tasks = rt.FindTasks(store.ByServiceID(serviceID)) })
	setRemove(context.Background(), o.store, o.log, tasks)
}

func setRemove(ctx context.Context, s *store.Store, log *slog.Logger, tasks []*store.Task) {
	if len(tasks) == 0 {
		return
	}
	err := s.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			id := t.ID
			if err := b.Update(func(tx store.Tx) error {
				t := tx.GetTask(id)
				if t == nil || t.DesiredState == swarm.TaskStateRemove {
					return nil
				}
				c := t.Copy()
				c.DesiredState = swarm.TaskStateRemove
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		log.Warn("marking tasks for removal failed", "err", err)
	}
}

func (o *Orchestrator) tick(ctx context.Context) {
	if len(o.restart) > 0 {
		o.restartTasks(ctx)
	}
	if len(o.reconcile) > 0 {
		ids := make([]string, 0, len(o.reconcile))
		for id := range o.reconcile {
			ids = append(ids, id)
		}
		clear(o.reconcile)
		sort.Strings(ids)
		for _, id := range ids {
			o.reconcileService(ctx, id)
		}
	}
	if o.rebalance {
		o.rebalance = false
		o.rebalanceAll(ctx)
	}
}

// restartTasks shuts down and replaces the queued tasks that ended or must
// leave their node.
func (o *Orchestrator) restartTasks(ctx context.Context) {
	ids := make([]string, 0, len(o.restart))
	for id := range o.restart {
		ids = append(ids, id)
	}
	clear(o.restart)
	plans := map[string]*restart.Plan{}
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			if err := b.Update(func(tx store.Tx) error {
				delete(plans, id)
				t := tx.GetTask(id)
				if t == nil || !orchestrator.Runnable(t) {
					return nil
				}
				svc := tx.GetService(t.ServiceID)
				if !orchestrator.IsReplicated(svc) {
					return nil
				}
				if !orchestrator.Terminal(t.Status.State) && !mustLeave(t, tx.GetNode(t.NodeID)) {
					return nil
				}
				p, err := o.restarts.Restart(tx, svc, t)
				if err != nil {
					return err
				}
				plans[id] = p
				return nil
			}); err != nil {
				o.log.Warn("restarting task failed", "task", id, "err", err)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		o.log.Warn("restart batch incomplete", "err", err)
	}
	list := make([]*restart.Plan, 0, len(plans))
	for _, p := range plans {
		list = append(list, p)
	}
	o.restarts.Commit(list)
}

// mustLeave reports a task on a node it cannot stay on: gone, down,
// drained, or no longer satisfying the task's constraints (swarmkit's
// constraint enforcer).
func mustLeave(t *store.Task, n *store.Node) bool {
	if t.NodeID == "" {
		return false
	}
	if orchestrator.InvalidNode(n) {
		return true
	}
	if p := t.Spec.Placement; p != nil && len(p.Constraints) > 0 {
		cs, err := constraint.Parse(p.Constraints)
		if err == nil && !constraint.NodeMatches(cs, n) {
			return true
		}
	}
	return false
}

// reconcileService matches a service's slots to its replica count.
func (o *Orchestrator) reconcileService(ctx context.Context, id string) {
	var (
		svc   *store.Service
		tasks []*store.Task
	)
	o.store.View(func(rt store.ReadTx) {
		svc = rt.GetService(id)
		if svc != nil {
			tasks = rt.FindTasks(store.ByServiceID(id))
		}
	})
	if !orchestrator.IsReplicated(svc) {
		return
	}
	bySlot := map[int]orchestrator.Slot{}
	for _, t := range tasks {
		bySlot[t.Slot] = append(bySlot[t.Slot], t)
	}
	occupied := map[int]orchestrator.Slot{}
	dead := map[int]orchestrator.Slot{}
	for n, ts := range bySlot {
		if up := o.restarts.UpdatableTasksInSlot(ts, svc); len(up) > 0 {
			occupied[n] = up
		} else {
			dead[n] = ts
		}
	}
	want, _ := svc.Replicas()
	var remove []*store.Task
	switch {
	case int(want) > len(occupied):
		o.updater.Update(ctx, svc, slotList(occupied))
		var create []*store.Task
		now := o.clock.Now()
		for n, missing := 1, int(want)-len(occupied); missing > 0; n++ {
			if _, ok := occupied[n]; ok {
				continue
			}
			delete(dead, n) // reused: its history stays
			create = append(create, orchestrator.NewTask(svc, n, "", now))
			missing--
		}
		o.createTasks(ctx, svc.ID, create)
	case int(want) < len(occupied):
		keep, drop := scaleDown(occupied, int(want))
		o.updater.Update(ctx, svc, keep)
		for _, s := range drop {
			remove = append(remove, bySlot[s[0].Slot]...)
		}
	default:
		o.updater.Update(ctx, svc, slotList(occupied))
	}
	for _, s := range dead {
		for _, t := range s {
			if t.DesiredState != swarm.TaskStateRemove {
				remove = append(remove, t)
			}
		}
	}
	setRemove(ctx, o.store, o.log, remove)
}

func slotList(m map[int]orchestrator.Slot) []orchestrator.Slot {
	nums := make([]int, 0, len(m))
	for n := range m {
		nums = append(nums, n)
	}
	sort.Ints(nums)
	out := make([]orchestrator.Slot, len(nums))
	for i, n := range nums {
		out[i] = m[n]
	}
	return out
}

// scaleDown picks the slots to keep: running tasks before others, and of
// those, the ones that are the fewest copies of the service on their node;
// removed first are unplaced tasks, then the highest slots.
func scaleDown(occupied map[int]orchestrator.Slot, want int) (keep, drop []orchestrator.Slot) {
	type cand struct {
		s       orchestrator.Slot
		num     int
		node    string
		running bool
		index   int
	}
	cs := make([]*cand, 0, len(occupied))
	for n, s := range occupied {
		c := &cand{s: s, num: n}
		if len(s) == 1 {
			c.node = s[0].NodeID
			c.running = s[0].Status.State == swarm.TaskStateRunning
		}
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].running != cs[j].running {
			return cs[i].running
		}
		return cs[i].num < cs[j].num
	})
	perNode := map[string]int{}
	for _, c := range cs {
		if c.node == "" {
			c.index = int(^uint(0) >> 1) // unplaced: first to go
			continue
		}
		perNode[c.node]++
		c.index = perNode[c.node]
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].index != cs[j].index {
			return cs[i].index < cs[j].index
		}
		return cs[i].num < cs[j].num
	})
	for i, c := range cs {
		if i < want {
			keep = append(keep, c.s)
		} else {
			drop = append(drop, c.s)
		}
	}
	return keep, drop
}

func (o *Orchestrator) createTasks(ctx context.Context, serviceID string, tasks []*store.Task) {
	if len(tasks) == 0 {
		return
	}
	err := o.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			if err := b.Update(func(tx store.Tx) error {
				if tx.GetService(serviceID) == nil {
					return nil
				}
				return tx.Create(t)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		o.log.Warn("creating tasks failed", "service", serviceID, "err", err)
	}
}

// rebalanceAll moves tasks of opted-in services onto nodes that have room
// for them, after a node became available.
func (o *Orchestrator) rebalanceAll(ctx context.Context) {
	type job struct {
		svc   *store.Service
		tasks []*store.Task
	}
	var (
		jobs  []job
		nodes []*store.Node
	)
	o.store.View(func(rt store.ReadTx) {
		for _, svc := range rt.FindServices(store.All()) {
			if orchestrator.IsReplicated(svc) && svc.Spec.Labels[orchestrator.RebalanceLabel] == "true" {
				jobs = append(jobs, job{svc, rt.FindTasks(store.ByServiceID(svc.ID))})
			}
		}
		if len(jobs) > 0 {
			nodes = rt.FindNodes(store.All())
		}
	})
	for _, j := range jobs {
		if moves := planMoves(j.svc, j.tasks, nodes); len(moves) > 0 {
			o.log.Info("rebalancing service", "service", j.svc.ID, "tasks", len(moves))
			o.updater.Rebalance(ctx, j.svc, moves)
		}
	}
}

// planMoves picks the slots to move so the service's tasks spread evenly
// over the nodes that may run them: from the most loaded node to the least
// while they differ by more than one.
func planMoves(svc *store.Service, tasks []*store.Task, nodes []*store.Node) []orchestrator.Slot {
	spec := svc.Spec.TaskTemplate
	var cs []constraint.Constraint
	var platforms []swarm.Platform
	if p := spec.Placement; p != nil {
		var err error
		if cs, err = constraint.Parse(p.Constraints); err != nil {
			return nil
		}
		platforms = p.Platforms
	}
	count := map[string]int{}
	var targets []string
	for _, n := range nodes {
		if eligible(n) && constraint.NodeMatches(cs, n) && constraint.PlatformMatches(platforms, n) {
			count[n.ID] = 0
			targets = append(targets, n.ID)
		}
	}
	if len(targets) < 2 {
		return nil
	}
	sort.Strings(targets)
	bySlot := map[int][]*store.Task{}
	for _, t := range tasks {
		if orchestrator.Runnable(t) {
			bySlot[t.Slot] = append(bySlot[t.Slot], t)
		}
	}
	movable := map[string][]*store.Task{} // by node, highest slot last
	for _, ts := range bySlot {
		for _, t := range ts {
			if _, ok := count[t.NodeID]; ok {
				count[t.NodeID]++
			}
		}
		t := ts[0]
		if len(ts) == 1 && t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning {
			if _, ok := count[t.NodeID]; ok {
				movable[t.NodeID] = append(movable[t.NodeID], t)
			}
		}
	}
	for _, ts := range movable {
		sort.Slice(ts, func(i, j int) bool { return ts[i].Slot < ts[j].Slot })
	}
	var moves []orchestrator.Slot
	for {
		var from, to string
		for _, id := range targets {
			if len(movable[id]) > 0 && (from == "" || count[id] > count[from]) {
				from = id
			}
			if to == "" || count[id] < count[to] {
				to = id
			}
		}
		if from == "" || count[from]-count[to] <= 1 {
			return moves
		}
		ts := movable[from]
		moves = append(moves, orchestrator.Slot{ts[len(ts)-1]})
		movable[from] = ts[:len(ts)-1]
		count[from]--
		count[to]++
	}
}
