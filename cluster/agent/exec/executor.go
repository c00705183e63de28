package exec

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// Config wires an executor.
type Config struct {
	Engine Engine
	Images ImagePuller
	// Node describes this node; templates use its hostname and platform.
	Node func() swarm.NodeDescription
	// Report receives every task status change. It must not block long.
	Report func(taskID string, st swarm.TaskStatus)
	Log    *slog.Logger
	// RetryDelay paces retries after temporary engine errors. Default 1 s.
	RetryDelay time.Duration
	// Now is the clock for status timestamps. Default time.Now.
	Now func() time.Time
	// PayloadDir holds the secret and config files bound into task
	// containers; put it on a tmpfs (e.g. /run/shoal/swarm/payloads).
	// Empty: tasks that use secrets or configs are rejected.
	PayloadDir string
	// IngressOwner names the service holding an ingress published port
	// (the routing mesh's table); tasks asking for it in host mode are
	// rejected. Nil: no check.
	IngressOwner IngressOwner
}

// Executor runs the tasks assigned to this node. One goroutine per task
// drives its container; one more follows the engine's events.
type Executor struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	ctx     context.Context
	runners map[string]*runner   // by task ID
	byCtr   map[string]*runner   // by container ID
	adopted map[string]Container // task containers found at start, not yet claimed
	strays  []Container          // duplicates found at start
	synced  bool                 // a full assignment set was applied
	wg      sync.WaitGroup
}

// New returns an executor; Start it before applying assignments.
func New(cfg Config) *Executor {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Node == nil {
		cfg.Node = func() swarm.NodeDescription { return swarm.NodeDescription{} }
	}
	if cfg.Report == nil {
		cfg.Report = func(string, swarm.TaskStatus) {}
	}
	return &Executor{
		cfg:     cfg,
		log:     cfg.Log.With("component", "executor"),
		runners: map[string]*runner{},
		byCtr:   map[string]*runner{},
		adopted: map[string]Container{},
	}
}

// Start subscribes to engine events and finds the task containers already
// on the node (a restart): they are adopted by the tasks still assigned and
// removed otherwise, once the first full assignment set arrives. Work stops
// when ctx ends; containers keep running.
func (e *Executor) Start(ctx context.Context) error {
	// Subscribe before listing so no exit falls in between.
	events, err := e.cfg.Engine.Events(ctx)
	if err != nil {
		return err
	}
	list, err := e.cfg.Engine.List(ctx, LabelTaskID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.ctx = ctx
	for _, c := range list {
		id := c.Labels[LabelTaskID]
		if prev, ok := e.adopted[id]; ok {
			// Two containers for one task (a crash between create and
			// bookkeeping): keep the running one.
			if !prev.Running && c.Running {
				prev, c = c, prev
			}
			e.adopted[id] = prev
			e.strays = append(e.strays, c)
			continue
		}
		e.adopted[id] = c
	}
	e.mu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.watch(ctx, events)
	}()
	return nil
}

// Wait returns once every goroutine has stopped (after Start's ctx ended).
func (e *Executor) Wait() { e.wg.Wait() }

// watch wakes the runner of every container an event is about. If the
// stream breaks it resubscribes and wakes everyone, since exits may have
// been missed.
func (e *Executor) watch(ctx context.Context, events <-chan Event) {
	for {
		for events != nil {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					events = nil
					break
				}
				e.mu.Lock()
				r := e.byCtr[ev.ID]
				e.mu.Unlock()
				if r != nil {
					r.signal()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.cfg.RetryDelay):
		}
		var err error
		if events, err = e.cfg.Engine.Events(ctx); err != nil {
			e.log.Warn("engine events", "err", err)
			events = nil
			continue
		}
		e.mu.Lock()
		for _, r := range e.runners {
			r.signal()
		}
		e.mu.Unlock()
	}
}

// ErrNotStarted is returned by Apply before Start.
var ErrNotStarted = errdefs.Unavailable("executor: not started")

// Apply applies an assignment message: a full set replaces what the node
// runs, an incremental one adds, changes and removes tasks.
func (e *Executor) Apply(as wire.Assignments) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctx == nil {
		return ErrNotStarted
	}
	if as.Full {
		keep := make(map[string]bool, len(as.Tasks))
		for _, a := range as.Tasks {
			keep[a.Task.ID] = true
		}
		for id, r := range e.runners {
			if !keep[id] {
				r.remove()
			}
		}
		for id, c := range e.adopted {
			if !keep[id] {
				e.removeStrayLocked(c)
				delete(e.adopted, id)
			}
		}
		for _, c := range e.strays {
			e.removeStrayLocked(c)
		}
		e.strays = nil
		e.prunePayloads(keep)
		e.synced = true
	} else if !e.synced {
		return errdefs.InvalidParameter("incremental assignments before a full set")
	}
	for _, a := range as.Tasks {
		if r := e.runners[a.Task.ID]; r != nil {
			r.update(a)
			continue
		}
		r := newRunner(e, a)
		if c, ok := e.adopted[a.Task.ID]; ok {
			r.containerID = c.ID
			e.byCtr[c.ID] = r
			delete(e.adopted, a.Task.ID)
		}
		e.runners[a.Task.ID] = r
		e.wg.Add(1)
		go r.run(e.ctx)
	}
	for _, id := range as.Removed {
		if r := e.runners[id]; r != nil {
			r.remove()
		}
		if c, ok := e.adopted[id]; ok {
			e.removeStrayLocked(c)
			delete(e.adopted, id)
		}
	}
	return nil
}

// TaskAddr is the bridge address of a task's running container: where the
// routing mesh sends this node's share of the task's traffic.
func (e *Executor) TaskAddr(ctx context.Context, taskID string) (netip.Addr, error) {
	e.mu.Lock()
	r := e.runners[taskID]
	e.mu.Unlock()
	if r == nil {
		return netip.Addr{}, errdefs.NotFound("task %s does not run on this node", taskID)
	}
	r.mu.Lock()
	cid := r.containerID
	r.mu.Unlock()
	if cid == "" {
		return netip.Addr{}, errdefs.NotFound("task %s has no container yet", taskID)
	}
	c, err := e.cfg.Engine.Inspect(ctx, cid)
	if err != nil {
		return netip.Addr{}, err
	}
	if !c.Running || !c.IP.IsValid() {
		return netip.Addr{}, errdefs.NotFound("container %s of task %s is not running on the bridge", cid, taskID)
	}
	return c.IP, nil
}

// Statuses returns the status of every task the executor runs.
func (e *Executor) Statuses() map[string]swarm.TaskStatus {
	e.mu.Lock()
	rs := make([]*runner, 0, len(e.runners))
	for _, r := range e.runners {
		rs = append(rs, r)
	}
	e.mu.Unlock()
	out := make(map[string]swarm.TaskStatus, len(rs))
	for _, r := range rs {
		r.mu.Lock()
		out[r.id] = r.status
		r.mu.Unlock()
	}
	return out
}

func (e *Executor) setContainer(r *runner, id string) {
	e.mu.Lock()
	e.byCtr[id] = r
	e.mu.Unlock()
}

func (e *Executor) forget(r *runner) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.runners[r.id] == r {
		delete(e.runners, r.id)
	}
	for id, x := range e.byCtr {
		if x == r {
			delete(e.byCtr, id)
		}
	}
}

// removeStrayLocked stops and removes a task container nobody runs.
func (e *Executor) removeStrayLocked(c Container) {
	ctx := e.ctx
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.log.Info("removing container of a task no longer assigned", "container", c.ID, "task", c.Labels[LabelTaskID])
		if err := e.destroy(ctx, c.ID, nil); err != nil {
			e.log.Warn("removing stray task container", "container", c.ID, "err", err)
		}
	}()
}

// destroy stops (if running) and removes a container, retrying temporary
// errors until ctx ends.
func (e *Executor) destroy(ctx context.Context, id string, grace *int) error {
	for {
		err := e.stopIfRunning(ctx, id, grace)
		if err == nil {
			err = e.cfg.Engine.Remove(ctx, id)
			if errdefs.IsNotFound(err) {
				err = nil
			}
		}
		if err == nil || !temporary(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(e.cfg.RetryDelay):
		}
	}
}

// stopIfRunning stops a running container; a missing one is fine. A nil
// grace is the container's own stop timeout.
func (e *Executor) stopIfRunning(ctx context.Context, id string, grace *int) error {
	c, err := e.cfg.Engine.Inspect(ctx, id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if !c.Running {
		return nil
	}
	if err := e.cfg.Engine.Stop(ctx, id, grace); err != nil && !errdefs.IsNotFound(err) {
		return err
	}
	return nil
}

// temporary errors are retried instead of failing the task.
func temporary(err error) bool { return errdefs.IsUnavailable(err) }
