// Package allocator is the pipeline stage between the orchestrators and the
// scheduler: it gives every NEW task what it needs before it can be placed
// (network attachments, through a pluggable TaskNetworks) and moves it to
// PENDING ("pending task scheduling"). A task the allocator cannot serve yet
// stays NEW with Status.Err saying why, and is retried when networks or
// services change.
package allocator

import (
	"context"
	"log/slog"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
)

// TaskNetworks allocates a task's network attachments (addresses on its
// service's networks). Implemented by the network engineer's allocator.
type TaskNetworks interface {
	// Allocate fills t.NetworksAttachments (t is a private copy); rt reads
	// the networks. An error leaves the task NEW and is shown in its status.
	// It may be called again for a task whose write was lost to a race, so
	// it must be idempotent per task ID.
	Allocate(rt store.ReadTx, svc *store.Service, t *store.Task) error
	// Release frees what Allocate took for a task that has ended or was
	// deleted.
	Release(t *store.Task)
}

// Config configures the allocator.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// Networks allocates network attachments; nil when tasks need none.
	Networks TaskNetworks
}

// Allocator moves tasks from NEW to PENDING.
type Allocator struct {
	store *store.Store
	clock clock.Clock
	log   *slog.Logger
	nets  TaskNetworks

	todo      map[string]struct{} // NEW tasks to allocate
	failed    map[string]struct{} // NEW tasks whose allocation failed
	allocated map[string]bool     // tasks holding network resources
}

// New returns an allocator over s.
func New(s *store.Store, cfg Config) *Allocator {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Allocator{
		store:     s,
		clock:     clock.OrReal(cfg.Clock),
		log:       log.With("component", "allocator"),
		nets:      cfg.Networks,
		todo:      map[string]struct{}{},
		failed:    map[string]struct{}{},
		allocated: map[string]bool{},
	}
}

// Run allocates until ctx ends.
func (a *Allocator) Run(ctx context.Context) error {
	events, cancel := a.store.ViewAndWatch(func(rt store.ReadTx) {
		for _, t := range rt.FindTasks(store.ByTaskState(string(swarm.TaskStateNew))) {
			a.todo[t.ID] = struct{}{}
		}
		if a.nets != nil {
			for _, t := range rt.FindTasks(store.All()) {
				if len(t.NetworksAttachments) > 0 && !orchestrator.Terminal(t.Status.State) {
					a.allocated[t.ID] = true
				}
			}
		}
	}, store.KindTask, store.KindNetwork, store.KindService)
	defer cancel()
	return orchestrator.Loop(ctx, events, a.tick, a.handle)
}

func (a *Allocator) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		// The state was replaced from a snapshot.
		a.reset()
		return
	}
	switch ev.Kind {
	case store.KindNetwork, store.KindService:
		// Something a failed allocation may have waited for.
		for id := range a.failed {
			a.todo[id] = struct{}{}
		}
		clear(a.failed)
	case store.KindTask:
		t := ev.Object.(*store.Task)
		if ev.Op == store.OpDelete || orchestrator.Terminal(t.Status.State) {
			delete(a.todo, t.ID)
			delete(a.failed, t.ID)
			if a.allocated[t.ID] {
				delete(a.allocated, t.ID)
				a.nets.Release(t)
			}
			return
		}
		if t.Status.State == swarm.TaskStateNew {
			if _, bad := a.failed[t.ID]; !bad || ev.Op == store.OpCreate {
				a.todo[t.ID] = struct{}{}
			}
		} else {
			delete(a.todo, t.ID)
			delete(a.failed, t.ID)
		}
	}
}

func (a *Allocator) reset() {
	clear(a.todo)
	clear(a.failed)
	a.store.View(func(rt store.ReadTx) {
		for _, t := range rt.FindTasks(store.ByTaskState(string(swarm.TaskStateNew))) {
			a.todo[t.ID] = struct{}{}
		}
	})
}

// tick allocates the queued tasks in one batch.
func (a *Allocator) tick(ctx context.Context) {
	if len(a.todo) == 0 {
		return
	}
	ids := make([]string, 0, len(a.todo))
	for id := range a.todo {
		ids = append(ids, id)
	}
	clear(a.todo)
	now := a.clock.Now()
	var newlyFailed []string
	var allocated []string
	err := a.store.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			err := b.Update(func(tx store.Tx) error {
				t := tx.GetTask(id)
				if t == nil || t.Status.State != swarm.TaskStateNew {
					return nil
				}
				c := t.Copy()
				if !orchestrator.Runnable(t) {
					// Meant to stop before it ever got anywhere: nothing
					// will run it, so nothing else would end it.
					c.Status = swarm.TaskStatus{State: swarm.TaskStateShutdown, Timestamp: now, Message: orchestrator.MsgPreempted}
					return tx.Update(c)
				}
				if a.nets != nil {
					svc := tx.GetService(t.ServiceID)
					if svc == nil {
						return nil // the reaper removes tasks of deleted services
					}
					if err := a.nets.Allocate(tx, svc, c); err != nil {
						newlyFailed = append(newlyFailed, id)
						if c.Status.Err == err.Error() {
							return nil
						}
						c = t.Copy()
						c.Status.Err = err.Error()
						c.Status.Timestamp = now
						return tx.Update(c)
					}
					allocated = append(allocated, id)
				}
				c.Status = swarm.TaskStatus{State: swarm.TaskStatePending, Timestamp: now, Message: orchestrator.MsgPending}
				return tx.Update(c)
			})
			if err != nil {
				a.log.Warn("allocating task failed", "task", id, "err", err)
			}
		}
		return nil
	})
	for _, id := range newlyFailed {
		a.failed[id] = struct{}{}
	}
	for _, id := range allocated {
		a.allocated[id] = true
	}
	if err != nil && ctx.Err() == nil {
		// Lost races are retried: whatever is still NEW comes back.
		a.log.Debug("allocation batch incomplete", "err", err)
		a.reset()
	}
}
