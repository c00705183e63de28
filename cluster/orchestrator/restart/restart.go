// Package restart is the restart supervisor the orchestrators share, after
// swarmkit's: when a task ends (or must leave its node) it is shut down
// (desired state SHUTDOWN) and, if the service's restart policy allows, a
// replacement is created in the same slot (or on the same node, for global
// services) with desired state READY: it is scheduled and prepared at once,
// but told to run (desired RUNNING) only after the restart delay and once
// the old task has stopped. Restart attempts are counted per slot (per node
// for global services) and per spec version, within the policy's window.
package restart

import (
	"container/list"
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/store"
)

// DefaultTaskTimeout is how long a delayed start waits for the task it
// replaces to stop before starting anyway (swarmkit's one minute).
const DefaultTaskTimeout = time.Minute

// Config configures a supervisor.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
	// TaskTimeout bounds the wait for an old task to stop (default 1m).
	TaskTimeout time.Duration
}

// instance is what restart attempts are counted by.
type instance struct {
	service string
	slot    int    // replicated
	node    string // global
}

type restartInfo struct {
	specVersion uint64
	total       uint64
	times       *list.List // of time.Time, when the policy has a window
}

type delayed struct {
	cancel func()
	done   chan struct{}
	waiter bool // a restart of this task waits for the delay to pass
}

// Supervisor starts replacements and delays their start.
type Supervisor struct {
	store   *store.Store
	clock   clock.Clock
	log     *slog.Logger
	timeout time.Duration

	mu      sync.Mutex
	ctx     context.Context
	delays  map[string]*delayed // by the ID of the task waiting to start
	history map[instance]*restartInfo
	// Delayed starts waiting for an old task to stop, by task and node.
	waitTask map[string][]chan struct{}
	waitNode map[string][]chan struct{}
	wg       sync.WaitGroup
}

// New returns a supervisor. Start it before use.
func New(s *store.Store, cfg Config) *Supervisor {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	to := cfg.TaskTimeout
	if to <= 0 {
		to = DefaultTaskTimeout
	}
	return &Supervisor{
		store: s, clock: clock.OrReal(cfg.Clock), log: log, timeout: to,
		ctx:      context.Background(),
		delays:   map[string]*delayed{},
		history:  map[instance]*restartInfo{},
		waitTask: map[string][]chan struct{}{},
		waitNode: map[string][]chan struct{}{},
	}
}

// Start watches the store for the stops delayed starts wait on. When ctx
// ends every delayed start is abandoned; Wait waits for that.
func (r *Supervisor) Start(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.mu.Unlock()
	events, cancel := r.store.Watch(store.KindTask, store.KindNode)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				r.observe(ev)
			}
		}
	}()
}

// Wait waits for the goroutines of a supervisor whose Start context ended.
func (r *Supervisor) Wait() { r.wg.Wait() }

func (r *Supervisor) observe(ev store.Event) {
	if ev.Op == store.OpReset {
		// Everything may have changed: let every waiter re-check.
		r.mu.Lock()
		for id, ws := range r.waitTask {
			notifyAll(ws)
			delete(r.waitTask, id)
		}
		for id, ws := range r.waitNode {
			notifyAll(ws)
			delete(r.waitNode, id)
		}
		r.mu.Unlock()
		return
	}
	id := ev.Object.GetID()
	var stopped bool
	switch ev.Kind {
	case store.KindTask:
		t := ev.Object.(*store.Task)
		stopped = ev.Op == store.OpDelete || orchestrator.Terminal(t.Status.State)
		if stopped {
			r.mu.Lock()
			ws := r.waitTask[id]
			delete(r.waitTask, id)
			r.mu.Unlock()
			notifyAll(ws)
		}
	case store.KindNode:
		n := ev.Object.(*store.Node)
		if ev.Op == store.OpDelete || n.Status.State == swarm.NodeStateDown {
			r.mu.Lock()
			ws := r.waitNode[id]
			delete(r.waitNode, id)
			r.mu.Unlock()
			notifyAll(ws)
		}
	}
}

func notifyAll(ws []chan struct{}) {
	for _, w := range ws {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Plan is a restart decided inside a store transaction. Commit it after the
// transaction was written.
type Plan struct {
	Old      *store.Task
	New      *store.Task // nil: the task was only shut down
	delay    time.Duration
	waitStop bool
	// after is set when the old task was itself still waiting for its
	// delayed start: the restart happens once that delay has passed.
	after *delayed
}

// Restart shuts t down in tx and, if the restart policy allows, creates its
// replacement. The returned plan (never nil without error) must be passed to
// Commit once tx is written.
func (r *Supervisor) Restart(tx store.Tx, svc *store.Service, t *store.Task) (*Plan, error) {
	// A task still in its own restart delay is restarted only when that
	// delay is over, so a task failing at once cannot spin (swarmkit).
	r.mu.Lock()
	if d, ok := r.delays[t.ID]; ok {
		if d.waiter {
			r.mu.Unlock()
			return &Plan{Old: t}, nil
		}
		r.mu.Unlock()
		return &Plan{Old: t, after: d}, nil
	}
	r.mu.Unlock()
	if !orchestrator.Runnable(t) {
		return &Plan{Old: t}, nil
	}
	c := t.Copy()
	c.DesiredState = swarm.TaskStateShutdown
	if err := tx.Update(c); err != nil {
		return nil, err
	}
	p := &Plan{Old: c}
	if !r.ShouldRestart(t, svc) {
		return p, nil
	}
	var nt *store.Task
	switch {
	case orchestrator.IsReplicated(svc):
		nt = orchestrator.NewTask(svc, t.Slot, "", r.clock.Now())
	case orchestrator.IsGlobal(svc):
		nt = orchestrator.NewTask(svc, 0, t.NodeID, r.clock.Now())
	default:
		return p, nil
	}
	nt.DesiredState = swarm.TaskStateReady
	n := tx.GetNode(t.NodeID)
	// The restart delay keeps a crashing task from spinning. A task whose
	// node was drained (the user moved it) or went down (the task did not
	// fail; its host did) is replaced at once: a lost node should cost no
	// more than its detection.
	if n != nil && n.Spec.Availability != swarm.NodeAvailabilityDrain && n.Status.State != swarm.NodeStateDown {
		p.delay = orchestrator.RestartDelay(t)
	}
	// Wait for the old task to stop unless it has, or cannot report it.
	p.waitStop = !orchestrator.Terminal(t.Status.State) && t.NodeID != "" && n != nil && n.Status.State != swarm.NodeStateDown
	if err := tx.Create(nt); err != nil {
		return nil, err
	}
	p.New = nt
	return p, nil
}

// Commit carries out plans whose transaction was written: it records the
// restarts and arms the delayed starts. Plans whose replacement is not in
// the store (their write was lost) are dropped.
func (r *Supervisor) Commit(plans []*Plan) {
	if len(plans) == 0 {
		return
	}
	exists := map[string]bool{}
	r.store.View(func(rt store.ReadTx) {
		for _, p := range plans {
			if p.New != nil {
				exists[p.New.ID] = rt.GetTask(p.New.ID) != nil
			}
		}
	})
	for _, p := range plans {
		switch {
		case p.after != nil:
			r.restartAfter(p.Old.ID, p.after)
		case p.New != nil && exists[p.New.ID]:
			r.record(p.New)
			r.DelayStart(p.Old, p.New.ID, p.delay, p.waitStop)
		}
	}
}

// restartAfter restarts task id once its own delayed start is over.
func (r *Supervisor) restartAfter(id string, d *delayed) {
	r.mu.Lock()
	if d.waiter {
		r.mu.Unlock()
		return
	}
	d.waiter = true
	ctx := r.ctx
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		select {
		case <-d.done:
		case <-ctx.Done():
			return
		}
		var plan *Plan
		err := r.store.Update(ctx, func(tx store.Tx) error {
			plan = nil
			t := tx.GetTask(id)
			if t == nil || !orchestrator.Runnable(t) {
				return nil
			}
			svc := tx.GetService(t.ServiceID)
			if svc == nil {
				return nil
			}
			var err error
			plan, err = r.Restart(tx, svc, t)
			return err
		})
		if err != nil {
			r.log.Warn("restarting task after its delay failed", "task", id, "err", err)
			return
		}
		if plan != nil {
			r.Commit([]*Plan{plan})
		}
	}()
}

// ShouldRestart applies the restart policy to a task that ended (or must
// leave its node).
func (r *Supervisor) ShouldRestart(t *store.Task, svc *store.Service) bool {
	switch orchestrator.RestartCondition(t) {
	case swarm.RestartPolicyConditionNone:
		return false
	case swarm.RestartPolicyConditionOnFailure:
		if t.Status.State == swarm.TaskStateComplete {
			return false
		}
	}
	p := t.Spec.RestartPolicy
	if p == nil || p.MaxAttempts == nil || *p.MaxAttempts == 0 {
		return true
	}
	max := *p.MaxAttempts
	r.mu.Lock()
	defer r.mu.Unlock()
	info := r.history[instanceOf(t, svc)]
	if info == nil || info.specVersion != t.SpecVersion {
		return true
	}
	if p.Window == nil || *p.Window == 0 || info.times == nil {
		return info.total < max
	}
	// Count restarts in the window that ends when this task ended.
	ended := t.Status.Timestamp
	lookback := ended.Add(-*p.Window)
	n := uint64(0)
	var next *list.Element
	for e := info.times.Front(); e != nil; e = next {
		next = e.Next()
		at := e.Value.(time.Time)
		if !at.After(lookback) {
			info.times.Remove(e) // too old for any later question too
			continue
		}
		if at.Before(ended) || at.Equal(ended) {
			n++
		}
	}
	return n < max
}

func instanceOf(t *store.Task, svc *store.Service) instance {
	if orchestrator.IsGlobal(svc) {
		return instance{service: t.ServiceID, node: t.NodeID}
	}
	return instance{service: t.ServiceID, slot: t.Slot}
}

// record counts a restart of the instance nt replaces.
func (r *Supervisor) record(nt *store.Task) {
	r.recordAt(nt, r.clock.Now())
}

func (r *Supervisor) recordAt(nt *store.Task, at time.Time) {
	p := nt.Spec.RestartPolicy
	if p == nil || p.MaxAttempts == nil || *p.MaxAttempts == 0 {
		return // unlimited: nothing to count
	}
	inst := instance{service: nt.ServiceID, slot: nt.Slot, node: nt.NodeID}
	if nt.Slot != 0 {
		inst.node = ""
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info := r.history[inst]
	if info == nil || info.specVersion != nt.SpecVersion {
		// Failures of an older spec do not count against the new one.
		info = &restartInfo{specVersion: nt.SpecVersion}
		r.history[inst] = info
	}
	info.total++
	if p.Window != nil && *p.Window != 0 {
		if info.times == nil {
			info.times = list.New()
		}
		info.times.PushBack(at)
	}
}

// Recover rebuilds restart counts from the tasks in the store after a
// leader change: in each instance, every task of the newest spec version
// but the first was a restart.
func (r *Supervisor) Recover(tasks []*store.Task, isGlobal func(serviceID string) bool) {
	byInst := map[instance][]*store.Task{}
	for _, t := range tasks {
		inst := instance{service: t.ServiceID, slot: t.Slot}
		if isGlobal(t.ServiceID) {
			inst = instance{service: t.ServiceID, node: t.NodeID}
		}
		byInst[inst] = append(byInst[inst], t)
	}
	for _, ts := range byInst {
		var max uint64
		for _, t := range ts {
			if t.SpecVersion > max {
				max = t.SpecVersion
			}
		}
		var cur []*store.Task
		for _, t := range ts {
			if t.SpecVersion == max {
				cur = append(cur, t)
			}
		}
		sort.Slice(cur, func(i, j int) bool { return cur[i].CreatedAt.Before(cur[j].CreatedAt) })
		for i := 1; i < len(cur); i++ {
			r.recordAt(cur[i], cur[i].CreatedAt)
		}
	}
}

// ResumeDelays re-arms the delayed starts of tasks a previous leader left
// waiting (desired READY): the rest of their restart delay, then (as
// before) once the other unfinished task of their slot or node has
// stopped.
func (r *Supervisor) ResumeDelays(tasks []*store.Task) {
	now := r.clock.Now()
	type key struct {
		svc  string
		slot int
		node string
	}
	keyOf := func(t *store.Task) key {
		if t.Slot != 0 {
			return key{t.ServiceID, t.Slot, ""}
		}
		return key{t.ServiceID, 0, t.NodeID}
	}
	unfinished := map[key][]*store.Task{}
	for _, t := range tasks {
		if !orchestrator.Terminal(t.Status.State) {
			unfinished[keyOf(t)] = append(unfinished[keyOf(t)], t)
		}
	}
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateReady || orchestrator.Terminal(t.Status.State) {
			continue
		}
		d := orchestrator.RestartDelay(t)
		if left := t.Status.Timestamp.Add(d).Sub(now); left < d {
			d = left
		}
		if d < 0 {
			d = 0
		}
		var old *store.Task
		for _, o := range unfinished[keyOf(t)] {
			if o.ID != t.ID && !orchestrator.Runnable(o) {
				old = o
			}
		}
		r.DelayStart(old, t.ID, d, old != nil)
	}
}

// UpdatableTasksInSlot returns the tasks of a slot the orchestrator and
// updater manage: the ones meant to run, or else the latest one if it ended
// for good (no restart due), so a rolling update still replaces it. A
// rollback always gets an empty answer for such slots, to converge.
func (r *Supervisor) UpdatableTasksInSlot(slot orchestrator.Slot, svc *store.Service) orchestrator.Slot {
	var out orchestrator.Slot
	for _, t := range slot {
		if orchestrator.Runnable(t) {
			out = append(out, t)
		}
	}
	if len(out) > 0 || len(slot) == 0 {
		return out
	}
	if svc.UpdateStatus != nil && svc.UpdateStatus.State == swarm.UpdateStateRollbackStarted {
		return nil
	}
	latest := slot[0]
	for _, t := range slot[1:] {
		if t.CreatedAt.After(latest.CreatedAt) {
			latest = t
		}
	}
	if latest.DesiredState == swarm.TaskStateRemove || !orchestrator.Terminal(latest.Status.State) {
		return nil
	}
	if !r.ShouldRestart(latest, svc) {
		return orchestrator.Slot{latest}
	}
	return nil
}

// DelayStart moves task newID to desired RUNNING after delay and, with
// waitStop, once old has stopped (or its node is down or gone, or the task
// timeout passed). The channel closes when that is done or abandoned.
func (r *Supervisor) DelayStart(old *store.Task, newID string, delay time.Duration, waitStop bool) <-chan struct{} {
	r.mu.Lock()
	for {
		d, ok := r.delays[newID]
		if !ok {
			break
		}
		d.cancel()
		r.mu.Unlock()
		<-d.done
		r.mu.Lock()
	}
	ctx, cancel := context.WithCancel(r.ctx)
	d := &delayed{cancel: cancel, done: make(chan struct{})}
	r.delays[newID] = d
	r.wg.Add(1)
	r.mu.Unlock()

	go func() {
		defer func() {
			cancel()
			r.mu.Lock()
			if r.delays[newID] == d {
				delete(r.delays, newID)
			}
			r.mu.Unlock()
			close(d.done)
			r.wg.Done()
		}()
		if delay > 0 {
			t := r.clock.NewTimer(delay)
			select {
			case <-t.C():
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		if waitStop && old != nil && !r.waitStopped(ctx, old) {
			return
		}
		err := r.store.Update(ctx, func(tx store.Tx) error { return StartNow(tx, newID) })
		if err != nil && ctx.Err() == nil {
			r.log.Warn("starting delayed task failed", "task", newID, "err", err)
		}
	}()
	return d.done
}

// waitStopped waits for old to stop; false if ctx ended first.
func (r *Supervisor) waitStopped(ctx context.Context, old *store.Task) bool {
	w := make(chan struct{}, 1)
	r.mu.Lock()
	r.waitTask[old.ID] = append(r.waitTask[old.ID], w)
	if old.NodeID != "" {
		r.waitNode[old.NodeID] = append(r.waitNode[old.NodeID], w)
	}
	r.mu.Unlock()
	defer r.unwait(old, w)
	// Registered first, then checked: a stop is either seen here or
	// notified.
	stopped := false
	r.store.View(func(rt store.ReadTx) {
		t := rt.GetTask(old.ID)
		n := rt.GetNode(old.NodeID)
		stopped = t == nil || orchestrator.Terminal(t.Status.State) || old.NodeID == "" || n == nil || n.Status.State == swarm.NodeStateDown
	})
	if stopped {
		return true
	}
	timer := r.clock.NewTimer(r.timeout)
	defer timer.Stop()
	select {
	case <-w:
	case <-timer.C():
	case <-ctx.Done():
		return false
	}
	return true
}

func (r *Supervisor) unwait(old *store.Task, w chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waitTask[old.ID] = without(r.waitTask[old.ID], w)
	if len(r.waitTask[old.ID]) == 0 {
		delete(r.waitTask, old.ID)
	}
	if old.NodeID != "" {
		r.waitNode[old.NodeID] = without(r.waitNode[old.NodeID], w)
		if len(r.waitNode[old.NodeID]) == 0 {
			delete(r.waitNode, old.NodeID)
		}
	}
}

func without(ws []chan struct{}, w chan struct{}) []chan struct{} {
	out := ws[:0]
	for _, x := range ws {
		if x != w {
			out = append(out, x)
		}
	}
	return out
}

// StartNow tells a waiting task to run (desired READY → RUNNING).
func StartNow(tx store.Tx, id string) error {
	t := tx.GetTask(id)
	if t == nil || orchestrator.Rank(t.DesiredState) >= orchestrator.Rank(swarm.TaskStateRunning) {
		return nil
	}
	c := t.Copy()
	c.DesiredState = swarm.TaskStateRunning
	return tx.Update(c)
}

// Cancel abandons the delayed start of a task (deleted, say).
func (r *Supervisor) Cancel(id string) {
	r.mu.Lock()
	d, ok := r.delays[id]
	r.mu.Unlock()
	if ok {
		d.cancel()
		<-d.done
	}
}

// ClearService forgets the restart counts of a deleted service.
func (r *Supervisor) ClearService(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for inst := range r.history {
		if inst.service == id {
			delete(r.history, inst)
		}
	}
}
