// Package taskreaper deletes tasks nobody needs any more, as swarmkit's task
// reaper: beyond the cluster's TaskHistoryRetentionLimit (default 5) tasks
// per slot (replicated) or per node (global), the oldest ended ones go;
// tasks marked REMOVE (scaled down, service deleted) go once they have
// stopped or if they never reached a node.
//
// It also gives up on tasks of nodes that stay down: after OrphanTimeout
// (swarmkit's 24h by default) the tasks a down node still ran are marked
// ORPHANED, which makes them history like any ended task.
package taskreaper

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
)

// DefaultOrphanTimeout is how long a node stays down before its tasks are
// orphaned (swarmkit's value).
const DefaultOrphanTimeout = 24 * time.Hour

// Config configures the reaper.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// OrphanTimeout: 0 means DefaultOrphanTimeout; negative disables
	// orphaning (if the dispatcher does it).
	OrphanTimeout time.Duration
}

type instance struct {
	service string
	slot    int
	node    string
}

func instanceOf(t *store.Task) instance {
	if t.Slot != 0 {
		return instance{service: t.ServiceID, slot: t.Slot}
	}
	return instance{service: t.ServiceID, node: t.NodeID}
}

// Reaper is the task reaper. Leader-only component.
type Reaper struct {
	store  *store.Store
	clock  clock.Clock
	log    *slog.Logger
	orphan time.Duration

	limit     int64
	dirty     map[instance]bool
	cleanup   map[string]bool
	downSince map[string]time.Time
	timer     clock.Timer
	timerAt   time.Time
}

// New returns a reaper over s.
func New(s *store.Store, cfg Config) *Reaper {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	o := cfg.OrphanTimeout
	if o == 0 {
		o = DefaultOrphanTimeout
	}
	return &Reaper{store: s, clock: clock.OrReal(cfg.Clock), log: log.With("component", "task-reaper"), orphan: o}
}

// reapable: ended, or told to stop before it ever reached a node.
func reapable(t *store.Task) bool {
	return orchestrator.Terminal(t.Status.State) ||
		(orchestrator.Before(t.Status.State, swarm.TaskStateAssigned) && !orchestrator.Runnable(t))
}

// Run reaps until ctx ends.
func (r *Reaper) Run(ctx context.Context) error {
	events, cancel := r.store.ViewAndWatch(r.load, store.KindTask, store.KindCluster, store.KindNode, store.KindService)
	defer cancel()
	defer func() {
		if r.timer != nil {
			r.timer.Stop()
		}
	}()
	for {
		r.tick(ctx)
		r.arm()
		var fire <-chan time.Time
		if r.timer != nil {
			fire = r.timer.C()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-fire:
			r.timer = nil
			r.orphanTasks(ctx)
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			r.handle(ev)
		}
		for i, drained := 0, false; !drained && i < 10000; i++ {
			select {
			case ev, ok := <-events:
				if !ok {
					return nil
				}
				r.handle(ev)
			default:
				drained = true
			}
		}
	}
}

func (r *Reaper) load(rt store.ReadTx) {
	r.limit = orchestrator.HistoryLimit(rt.GetCluster())
	r.dirty, r.cleanup = map[instance]bool{}, map[string]bool{}
	if r.downSince == nil {
		r.downSince = map[string]time.Time{}
	}
	now := r.clock.Now()
	down := map[string]bool{}
	for _, n := range rt.FindNodes(store.All()) {
		if n.Status.State == swarm.NodeStateDown {
			down[n.ID] = true
			if _, ok := r.downSince[n.ID]; !ok {
				r.downSince[n.ID] = now // we only know it is down from now
			}
		}
	}
	for id := range r.downSince {
		if !down[id] {
			delete(r.downSince, id)
		}
	}
	for _, t := range rt.FindTasks(store.All()) {
		if t.DesiredState == swarm.TaskStateRemove && reapable(t) {
			r.cleanup[t.ID] = true
			continue
		}
		if rt.GetService(t.ServiceID) == nil {
			if reapable(t) {
				r.cleanup[t.ID] = true
			}
			continue
		}
		r.dirty[instanceOf(t)] = true
	}
}

func (r *Reaper) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		r.store.View(r.load)
		return
	}
	switch ev.Kind {
	case store.KindCluster:
		if ev.Op != store.OpDelete {
			if l := orchestrator.HistoryLimit(ev.Object.(*store.Cluster)); l != r.limit {
				r.limit = l
				r.store.View(r.load) // a lower limit applies to every slot
			}
		}
	case store.KindNode:
		n := ev.Object.(*store.Node)
		if ev.Op == store.OpDelete || n.Status.State != swarm.NodeStateDown {
			delete(r.downSince, n.ID)
		} else if _, ok := r.downSince[n.ID]; !ok {
			r.downSince[n.ID] = r.clock.Now()
		}
	case store.KindService:
		if ev.Op == store.OpDelete {
			// Its tasks are marked REMOVE by the orchestrators; the ones
			// that are history already can go now.
			id := ev.Object.GetID()
			r.store.View(func(rt store.ReadTx) {
				for _, t := range rt.FindTasks(store.ByServiceID(id)) {
					if reapable(t) {
						r.cleanup[t.ID] = true
					}
				}
			})
		}
	case store.KindTask:
		if ev.Op == store.OpDelete {
			delete(r.cleanup, ev.Object.GetID())
			return
		}
		t := ev.Object.(*store.Task)
		if reapable(t) && (t.DesiredState == swarm.TaskStateRemove || t.ServiceID == "") {
			r.cleanup[t.ID] = true
			return
		}
		if ev.Op == store.OpCreate {
			r.dirty[instanceOf(t)] = true
			return
		}
		if old, ok := ev.Old.(*store.Task); ok && !reapable(old) && reapable(t) {
			r.dirty[instanceOf(t)] = true
		}
	}
}

func (r *Reaper) tick(ctx context.Context) {
	if len(r.dirty) == 0 && len(r.cleanup) == 0 {
		return
	}
	del := map[string]bool{}
	for id := range r.cleanup {
		del[id] = true
	}
	clear(r.cleanup)
	if r.limit >= 0 && len(r.dirty) > 0 {
		r.store.View(func(rt store.ReadTx) {
			for inst := range r.dirty {
				for _, t := range r.excess(rt, inst) {
					del[t.ID] = true
				}
			}
		})
	}
	clear(r.dirty)
	if len(del) == 0 {
		return
	}
	err := r.store.Batch(ctx, func(b *store.Batch) error {
		for id := range del {
			if err := b.Update(func(tx store.Tx) error {
				t := tx.GetTask(id)
				if t == nil || !reapable(t) {
					return nil
				}
				return tx.Delete(store.KindTask, id)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.log.Debug("reaping tasks incomplete", "err", err)
	}
}

// excess lists the oldest ended tasks of an instance beyond the history
// limit (which counts every task of the instance, as swarmkit's).
func (r *Reaper) excess(rt store.ReadTx, inst instance) []*store.Task {
	if rt.GetService(inst.service) == nil {
		return nil
	}
	var ts []*store.Task
	if inst.slot != 0 {
		ts = rt.FindTasks(store.BySlot(inst.service, inst.slot))
	} else {
		for _, t := range rt.FindTasks(store.ByNodeID(inst.node)) {
			if t.ServiceID == inst.service && t.Slot == 0 {
				ts = append(ts, t)
			}
		}
	}
	if int64(len(ts)) <= r.limit {
		return nil
	}
	orchestrator.SortByTimestamp(ts)
	var out []*store.Task
	keep := int64(len(ts))
	for _, t := range ts {
		if keep <= r.limit {
			break
		}
		if reapable(t) {
			out = append(out, t)
			keep--
		}
	}
	return out
}

// arm sets the timer for the next node to reach the orphan timeout.
func (r *Reaper) arm() {
	if r.orphan < 0 || len(r.downSince) == 0 {
		if r.timer != nil {
			r.timer.Stop()
			r.timer = nil
		}
		return
	}
	var first time.Time
	for _, at := range r.downSince {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	due := first.Add(r.orphan)
	if r.timer != nil && due.Equal(r.timerAt) {
		return
	}
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timerAt = due
	r.timer = r.clock.NewTimer(due.Sub(r.clock.Now()))
}

// orphanTasks marks ORPHANED the unfinished tasks of nodes down for longer
// than the timeout.
func (r *Reaper) orphanTasks(ctx context.Context) {
	now := r.clock.Now()
	var tasks []*store.Task
	r.store.View(func(rt store.ReadTx) {
		for id, at := range r.downSince {
			if now.Sub(at) < r.orphan {
				continue
			}
			delete(r.downSince, id) // done with it until it goes down again
			for _, t := range rt.FindTasks(store.ByNodeID(id)) {
				if !orchestrator.Terminal(t.Status.State) {
					tasks = append(tasks, t)
				}
			}
		}
	})
	if len(tasks) == 0 {
		return
	}
	msg := fmt.Sprintf("task orphaned: node down for more than %s", r.orphan)
	err := r.store.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			id := t.ID
			if err := b.Update(func(tx store.Tx) error {
				t := tx.GetTask(id)
				if t == nil || orchestrator.Terminal(t.Status.State) {
					return nil
				}
				c := t.Copy()
				c.Status = swarm.TaskStatus{State: swarm.TaskStateOrphaned, Timestamp: now, Message: msg}
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil {
		r.log.Warn("orphaning tasks failed", "err", err)
	}
}
