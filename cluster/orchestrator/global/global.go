// Package global is the orchestrator of global services: one task per
// node, as swarmkit's. Every node that is not down or drained and satisfies
// the service's constraints gets a task (created with its NodeID, which the
// scheduler then confirms against the node's resources and ports); a paused
// node keeps its task but gets no new one; a drained, down or removed node
// loses its task (shut down, or removed with the node), as does a node
// whose labels stop satisfying the constraints. Tasks that end are
// restarted in place per the restart policy; spec changes roll out through
// the update supervisor.
package global

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

type service struct {
	*store.Service
	constraints []constraint.Constraint
	badSpec     bool
}

func (s *service) fits(n *store.Node) bool {
	if s.badSpec || !constraint.NodeMatches(s.constraints, n) {
		return false
	}
	if p := s.Spec.TaskTemplate.Placement; p != nil {
		return constraint.PlatformMatches(p.Platforms, n)
	}
	return true
}

// Orchestrator reconciles global services. Leader-only component.
type Orchestrator struct {
	store *store.Store
	cfg   Config
	clock clock.Clock
	log   *slog.Logger

	restarts *restart.Supervisor
	updater  *update.Supervisor

	// nodes that may hold tasks: not down, not drained.
	nodes    map[string]*store.Node
	services map[string]*service

	reconcile     map[string]bool // services
	reconcileNode map[string]bool
	restart       map[string]bool // tasks
}

// New returns a global orchestrator over s.
func New(s *store.Store, cfg Config) *Orchestrator {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Orchestrator{store: s, cfg: cfg, clock: clock.OrReal(cfg.Clock), log: log.With("component", "global-orchestrator")}
}

// Run orchestrates until ctx ends.
func (g *Orchestrator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	g.restarts = restart.New(g.store, restart.Config{Clock: g.clock, Logger: g.log, TaskTimeout: g.cfg.RestartTaskTimeout})
	g.restarts.Start(ctx)
	g.updater = update.New(g.store, g.restarts, update.Config{Clock: g.clock, Logger: g.log})
	defer func() {
		cancel()
		g.updater.Stop()
		g.restarts.Wait()
	}()

	var tasks []*store.Task
	events, unwatch := g.store.ViewAndWatch(func(rt store.ReadTx) {
		g.load(rt)
		tasks = rt.FindTasks(store.All())
	}, store.KindService, store.KindTask, store.KindNode)
	defer unwatch()
	var mine []*store.Task
	for _, t := range tasks {
		if g.services[t.ServiceID] != nil {
			mine = append(mine, t)
		}
	}
	g.restarts.Recover(mine, func(string) bool { return true })
	g.restarts.ResumeDelays(mine)

	return orchestrator.Loop(ctx, events, g.tick, g.handle)
}

func (g *Orchestrator) load(rt store.ReadTx) {
	g.nodes = map[string]*store.Node{}
	g.services = map[string]*service{}
	g.reconcile, g.reconcileNode, g.restart = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, n := range rt.FindNodes(store.All()) {
		g.setNode(n)
	}
	for _, s := range rt.FindServices(store.All()) {
		if orchestrator.IsGlobal(s) {
			g.setService(s)
			g.reconcile[s.ID] = true
		}
	}
	for _, t := range rt.FindTasks(store.All()) {
		if g.services[t.ServiceID] != nil && orchestrator.Runnable(t) && orchestrator.Terminal(t.Status.State) {
			g.restart[t.ID] = true
		}
	}
}

func (g *Orchestrator) setNode(n *store.Node) {
	if n.Spec.Availability == swarm.NodeAvailabilityDrain || n.Status.State == swarm.NodeStateDown {
		delete(g.nodes, n.ID)
		return
	}
	g.nodes[n.ID] = n
}

func (g *Orchestrator) setService(s *store.Service) {
	gs := &service{Service: s}
	if p := s.Spec.TaskTemplate.Placement; p != nil && len(p.Constraints) > 0 {
		cs, err := constraint.Parse(p.Constraints)
		gs.constraints, gs.badSpec = cs, err != nil
	}
	g.services[s.ID] = gs
}

func (g *Orchestrator) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		g.store.View(g.load)
		return
	}
	switch ev.Kind {
	case store.KindService:
		s := ev.Object.(*store.Service)
		if !orchestrator.IsGlobal(s) {
			return
		}
		if ev.Op == store.OpDelete {
			delete(g.services, s.ID)
			delete(g.reconcile, s.ID)
			g.updater.Cancel(s.ID)
			g.restarts.ClearService(s.ID)
			var tasks []*store.Task
			g.store.View(func(rt store.ReadTx) { tasks = rt.FindTasks(store.ByServiceID(s.ID)) })
			g.setDesired(context.Background(), tasks, swarm.TaskStateRemove)
			return
		}
		g.setService(s)
		g.reconcile[s.ID] = true
	case store.KindNode:
		n := ev.Object.(*store.Node)
		if ev.Op == store.OpDelete {
			delete(g.nodes, n.ID)
			var tasks []*store.Task
			g.store.View(func(rt store.ReadTx) { tasks = rt.FindTasks(store.ByNodeID(n.ID)) })
			g.setDesired(context.Background(), g.own(tasks), swarm.TaskStateRemove)
			return
		}
		g.setNode(n)
		if old, _ := ev.Old.(*store.Node); ev.Op == store.OpCreate || orchestrator.PlacementChanged(old, n) {
			g.reconcileNode[n.ID] = true
		}
	case store.KindTask:
		t := ev.Object.(*store.Task)
		if ev.Op == store.OpDelete {
			g.restarts.Cancel(t.ID)
			if g.services[t.ServiceID] != nil && orchestrator.Runnable(t) && t.NodeID != "" {
				g.reconcileNode[t.NodeID] = true
			}
			return
		}
		if g.services[t.ServiceID] != nil && orchestrator.Runnable(t) && orchestrator.Terminal(t.Status.State) {
			g.restart[t.ID] = true
		}
	}
}

// own keeps the tasks of global services.
func (g *Orchestrator) own(tasks []*store.Task) []*store.Task {
	out := tasks[:0:0]
	for _, t := range tasks {
		if g.services[t.ServiceID] != nil {
			out = append(out, t)
		}
	}
	return out
}

func (g *Orchestrator) tick(ctx context.Context) {
	if len(g.restart) > 0 {
		g.restartTasks(ctx)
	}
	if len(g.reconcile) > 0 {
		ids := make([]string, 0, len(g.reconcile))
		for id := range g.reconcile {
			ids = append(ids, id)
		}
		clear(g.reconcile)
		sort.Strings(ids)
		g.reconcileServices(ctx, ids)
	}
	if len(g.reconcileNode) > 0 {
		ids := make([]string, 0, len(g.reconcileNode))
		for id := range g.reconcileNode {
			ids = append(ids, id)
		}
		clear(g.reconcileNode)
		sort.Strings(ids)
		for _, id := range ids {
			g.reconcileOneNode(ctx, id)
		}
	}
}

// reconcileServices gives each service one task on every node that may run
// it, and takes it away from the others.
func (g *Orchestrator) reconcileServices(ctx context.Context, ids []string) {
	byNode := map[string]map[string]orchestrator.Slot{} // service → node → tasks
	g.store.View(func(rt store.ReadTx) {
		for _, id := range ids {
			s := g.services[id]
			if s == nil {
				continue
			}
			m := map[string]orchestrator.Slot{}
			for _, t := range rt.FindTasks(store.ByServiceID(id)) {
				m[t.NodeID] = append(m[t.NodeID], t)
			}
			byNode[id] = m
		}
	})
	nodeIDs := make([]string, 0, len(g.nodes))
	for id := range g.nodes {
		nodeIDs = append(nodeIDs, id)
	}
	sort.Strings(nodeIDs)
	now := g.clock.Now()
	for _, id := range ids {
		s := g.services[id]
		tasksOn := byNode[id]
		if s == nil || tasksOn == nil {
			continue
		}
		var (
			create   []*store.Task
			shutdown []*store.Task
			updates  []orchestrator.Slot
		)
		for _, nid := range nodeIDs {
			n := g.nodes[nid]
			live := g.restarts.UpdatableTasksInSlot(tasksOn[nid], s.Service)
			delete(tasksOn, nid)
			if !s.fits(n) {
				shutdown = append(shutdown, live...)
				continue
			}
			if n.Spec.Availability == swarm.NodeAvailabilityPause {
				continue // keep what runs, add nothing
			}
			if len(live) == 0 {
				create = append(create, orchestrator.NewTask(s.Service, 0, nid, now))
			} else {
				updates = append(updates, live)
			}
		}
		// Nodes drained, down or gone lose their tasks.
		for _, ts := range tasksOn {
			for _, t := range ts {
				if orchestrator.Runnable(t) {
					shutdown = append(shutdown, t)
				}
			}
		}
		g.setDesired(ctx, shutdown, swarm.TaskStateShutdown)
		g.create(ctx, create)
		if len(updates) > 0 {
			g.updater.Update(ctx, s.Service, updates)
		}
	}
}

// reconcileOneNode brings one node in line with every global service.
func (g *Orchestrator) reconcileOneNode(ctx context.Context, nodeID string) {
	var tasks []*store.Task
	g.store.View(func(rt store.ReadTx) { tasks = g.own(rt.FindTasks(store.ByNodeID(nodeID))) })
	n := g.nodes[nodeID]
	if n == nil {
		// Drained or down: its tasks stop (they are not moved anywhere).
		var live []*store.Task
		for _, t := range tasks {
			if orchestrator.Runnable(t) {
				live = append(live, t)
			}
		}
		g.setDesired(ctx, live, swarm.TaskStateShutdown)
		return
	}
	bySvc := map[string]orchestrator.Slot{}
	for _, t := range tasks {
		bySvc[t.ServiceID] = append(bySvc[t.ServiceID], t)
	}
	ids := make([]string, 0, len(g.services))
	for id := range g.services {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var create, shutdown []*store.Task
	now := g.clock.Now()
	for _, id := range ids {
		s := g.services[id]
		live := g.restarts.UpdatableTasksInSlot(bySvc[id], s.Service)
		if !s.fits(n) {
			shutdown = append(shutdown, live...)
			continue
		}
		if n.Spec.Availability == swarm.NodeAvailabilityPause {
			continue
		}
		// Not a rolling update (swarmkit): a node that comes back with an
		// outdated task gets it replaced at once.
		var clean, dirty []*store.Task
		for _, t := range live {
			if orchestrator.IsTaskDirty(s.Service, t, n) {
				dirty = append(dirty, t)
			} else {
				clean = append(clean, t)
			}
		}
		if len(clean) == 0 {
			create = append(create, orchestrator.NewTask(s.Service, 0, nodeID, now))
		} else {
			dirty = append(dirty, clean[1:]...)
		}
		for _, t := range dirty {
			if orchestrator.Runnable(t) {
				shutdown = append(shutdown, t)
			}
		}
	}
	g.setDesired(ctx, shutdown, swarm.TaskStateShutdown)
	g.create(ctx, create)
}

// restartTasks restarts ended tasks in place, or just shuts them down where
// their node no longer takes the service.
func (g *Orchestrator) restartTasks(ctx context.Context) {
	ids := make([]string, 0, len(g.restart))
	for id := range g.restart {
		ids = append(ids, id)
	}
	clear(g.restart)
	plans := map[string]*restart.Plan{}
	err := g.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			if err := b.Update(func(tx store.Tx) error {
				delete(plans, id)
				t := tx.GetTask(id)
				if t == nil || !orchestrator.Runnable(t) {
					return nil
				}
				s := g.services[t.ServiceID]
				svc := tx.GetService(t.ServiceID)
				if s == nil || svc == nil {
					return nil
				}
				n := g.nodes[t.NodeID]
				if n == nil || n.Spec.Availability == swarm.NodeAvailabilityPause || !s.fits(n) {
					c := t.Copy()
					c.DesiredState = swarm.TaskStateShutdown
					return tx.Update(c)
				}
				p, err := g.restarts.Restart(tx, svc, t)
				if err != nil {
					return err
				}
				plans[id] = p
				return nil
			}); err != nil {
				g.log.Warn("restarting task failed", "task", id, "err", err)
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		g.log.Warn("restart batch incomplete", "err", err)
	}
	list := make([]*restart.Plan, 0, len(plans))
	for _, p := range plans {
		list = append(list, p)
	}
	g.restarts.Commit(list)
}

func (g *Orchestrator) setDesired(ctx context.Context, tasks []*store.Task, state swarm.TaskState) {
	if len(tasks) == 0 {
		return
	}
	err := g.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			id := t.ID
			if err := b.Update(func(tx store.Tx) error {
				t := tx.GetTask(id)
				if t == nil || !orchestrator.Before(t.DesiredState, state) {
					return nil
				}
				c := t.Copy()
				c.DesiredState = state
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		g.log.Warn("changing desired state failed", "state", state, "err", err)
	}
}

func (g *Orchestrator) create(ctx context.Context, tasks []*store.Task) {
	if len(tasks) == 0 {
		return
	}
	err := g.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			if err := b.Update(func(tx store.Tx) error {
				if tx.GetService(t.ServiceID) == nil {
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
		g.log.Warn("creating tasks failed", "err", err)
	}
}
