// Package update carries out rolling updates and rollbacks, as swarmkit's
// updater: when a service's spec changes, the slots whose tasks are dirty
// are replaced, Parallelism at a time, waiting Delay between them, in
// stop-first or start-first order; a new task that fails within Monitor of
// starting counts as a failure, and past MaxFailureRatio the FailureAction
// pauses the update, rolls it back (to PreviousSpec, with RollbackConfig),
// or carries on. Service.UpdateStatus follows docker's states and messages.
//
// The same machinery moves tasks for the Shoal rebalancing extension
// (Rebalance): same spec, always start-first, no UpdateStatus.
package update

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/orchestrator/clock"
	"github.com/shoal/shoal/cluster/orchestrator/restart"
	"github.com/shoal/shoal/cluster/store"
)

// UpdateStatus messages (swarmkit's).
const (
	MsgUpdating          = "update in progress"
	MsgCompleted         = "update completed"
	MsgRollbackCompleted = "rollback completed"
)

// Config configures a supervisor.
type Config struct {
	Clock  clock.Clock
	Logger *slog.Logger
}

// Supervisor runs at most one update per service.
type Supervisor struct {
	store    *store.Store
	restarts *restart.Supervisor
	clock    clock.Clock
	log      *slog.Logger

	mu      sync.Mutex
	updates map[string]*Updater
	wg      sync.WaitGroup
}

// New returns an update supervisor using restarts for delayed starts.
func New(s *store.Store, restarts *restart.Supervisor, cfg Config) *Supervisor {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Supervisor{store: s, restarts: restarts, clock: clock.OrReal(cfg.Clock), log: log, updates: map[string]*Updater{}}
}

// Update brings the given slots of svc (each the tasks of one replica or
// node) to svc's spec, in the background. An update already working towards
// the same spec carries on; one towards another spec is cancelled first.
func (u *Supervisor) Update(ctx context.Context, svc *store.Service, slots []orchestrator.Slot) {
	u.start(ctx, svc, slots, false)
}

// Rebalance replaces the tasks of the given slots with identical ones,
// start-first and paced by the service's UpdateConfig, so the scheduler
// can place them on less loaded nodes. It does nothing while an update or
// another rebalance of the service has work to do.
func (u *Supervisor) Rebalance(ctx context.Context, svc *store.Service, slots []orchestrator.Slot) {
	u.start(ctx, svc, slots, true)
}

func (u *Supervisor) start(ctx context.Context, svc *store.Service, slots []orchestrator.Slot, rebalance bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if cur, ok := u.updates[svc.ID]; ok {
		if rebalance && (cur.rebalance || cur.working.Load()) {
			return // an update moves tasks anyway; never two at once
		}
		if !cur.rebalance && reflect.DeepEqual(cur.svc.Spec, svc.Spec) {
			return // already working towards this spec
		}
		cur.cancel()
	}
	up := &Updater{sup: u, svc: svc, rebalance: rebalance, stop: make(chan struct{}), done: make(chan struct{}),
		started: map[string]time.Time{}, waiters: map[string]chan *store.Task{}, signal: make(chan struct{}, 1)}
	u.updates[svc.ID] = up
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		up.run(ctx, slots)
		u.mu.Lock()
		if u.updates[svc.ID] == up {
			delete(u.updates, svc.ID)
		}
		u.mu.Unlock()
	}()
}

// Cancel stops the update of a service (deleted, say).
func (u *Supervisor) Cancel(serviceID string) {
	u.mu.Lock()
	cur := u.updates[serviceID]
	u.mu.Unlock()
	if cur != nil {
		cur.cancel()
	}
}

// Stop cancels every update and waits for them.
func (u *Supervisor) Stop() {
	u.mu.Lock()
	for _, up := range u.updates {
		up.cancelAsync()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// Updater is one running update.
type Updater struct {
	sup       *Supervisor
	svc       *store.Service
	rebalance bool
	working   atomic.Bool // found tasks to replace (else it is about to end)
	stop      chan struct{}
	stopOnce  sync.Once
	done      chan struct{}

	mu sync.Mutex
	// started: tasks this update created, with when they reached RUNNING
	// (zero until then); their early failures count against the update.
	started map[string]time.Time
	waiters map[string]chan *store.Task // tasks whose start a worker awaits
	failed  []*store.Task               // failures not yet looked at
	signal  chan struct{}               // something was added to failed
}

func (up *Updater) cancelAsync() { up.stopOnce.Do(func() { close(up.stop) }) }

func (up *Updater) cancel() {
	up.cancelAsync()
	<-up.done
}

func (up *Updater) stopped() bool {
	select {
	case <-up.stop:
		return true
	default:
		return false
	}
}

// watch feeds task events of the service to the update: starts of the
// tasks workers wait for, and ends of the tasks the update created.
func (up *Updater) watch(ctx context.Context, events <-chan store.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-up.stop:
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Kind != store.KindTask {
				continue
			}
			t := ev.Object.(*store.Task)
			if t.ServiceID != up.svc.ID {
				continue
			}
			up.mu.Lock()
			if ev.Op == store.OpDelete {
				if w, ok := up.waiters[t.ID]; ok {
					delete(up.waiters, t.ID)
					close(w)
				}
				up.mu.Unlock()
				continue
			}
			running := orchestrator.Rank(t.Status.State) >= orchestrator.Rank(swarm.TaskStateRunning)
			if at, ok := up.started[t.ID]; ok && at.IsZero() && t.Status.State == swarm.TaskStateRunning {
				up.started[t.ID] = up.sup.clock.Now()
			}
			// A failure is recorded before the worker waiting on the task
			// hears of it, so it is seen before the next slot is handed out.
			if _, ours := up.started[t.ID]; ours && orchestrator.Terminal(t.Status.State) {
				if old, ok := ev.Old.(*store.Task); !ok || !orchestrator.Terminal(old.Status.State) {
					up.failed = append(up.failed, t)
					select {
					case up.signal <- struct{}{}:
					default:
					}
				}
			}
			if w, ok := up.waiters[t.ID]; ok && running {
				delete(up.waiters, t.ID)
				w <- t
				close(w)
			}
			up.mu.Unlock()
		}
	}
}

func (up *Updater) takeFailures() []*store.Task {
	up.mu.Lock()
	defer up.mu.Unlock()
	f := up.failed
	up.failed = nil
	return f
}

func (up *Updater) isDirty(t *store.Task) bool {
	if up.rebalance {
		return true
	}
	var n *store.Node
	if t.NodeID != "" {
		up.sup.store.View(func(rt store.ReadTx) { n = rt.GetNode(t.NodeID) })
	}
	return orchestrator.IsTaskDirty(up.svc, t, n)
}

func (up *Updater) slotDirty(s orchestrator.Slot) bool {
	return len(s) > 1 || (len(s) == 1 && up.isDirty(s[0]))
}

func (up *Updater) run(ctx context.Context, slots []orchestrator.Slot) {
	defer close(up.done)
	svc := up.svc
	st := svc.UpdateStatus
	if !up.rebalance && st != nil && (st.State == swarm.UpdateStatePaused || st.State == swarm.UpdateStateRollbackPaused) {
		return // paused until the next spec change
	}
	var dirty []orchestrator.Slot
	for _, s := range slots {
		if up.slotDirty(s) {
			dirty = append(dirty, s)
		}
	}
	if len(dirty) > 0 {
		up.working.Store(true)
	}
	if len(dirty) == 0 {
		if !up.rebalance && st != nil && (st.State == swarm.UpdateStateUpdating || st.State == swarm.UpdateStateRollbackStarted) {
			up.complete(ctx)
		}
		return
	}
	rollingBack := st != nil && st.State == swarm.UpdateStateRollbackStarted
	cfg := orchestrator.UpdateConfig(&svc.Spec, rollingBack)
	if up.rebalance {
		cfg.Order = swarm.UpdateOrderStartFirst
		cfg.FailureAction = swarm.UpdateFailureActionContinue
	} else if st == nil {
		up.begin(ctx)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events, unwatch := up.sup.store.Watch(store.KindTask)
	defer unwatch()
	go up.watch(ctx, events)

	parallelism := int(cfg.Parallelism)
	if parallelism == 0 || parallelism > len(dirty) {
		parallelism = len(dirty)
	}
	// Workers ask for slots; failures are looked at before each answer.
	requests := make(chan chan orchestrator.Slot)
	var wg sync.WaitGroup
	for i := 0; i < parallelism; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			up.worker(ctx, requests, cfg)
		}()
	}
	workersDone := make(chan struct{})

	stopped := false
	seen := map[string]bool{}
	failures := 0
	// failure applies the failure action; true when the update stops.
	failure := func(t *store.Task) bool {
		if seen[t.ID] || cfg.FailureAction == swarm.UpdateFailureActionContinue {
			return false
		}
		up.mu.Lock()
		at, ours := up.started[t.ID]
		up.mu.Unlock()
		if !ours || (!at.IsZero() && up.sup.clock.Now().Sub(at) > cfg.Monitor) {
			return false
		}
		seen[t.ID] = true
		failures++
		if float32(failures)/float32(len(dirty)) <= cfg.MaxFailureRatio {
			return false
		}
		switch {
		case cfg.FailureAction == swarm.UpdateFailureActionRollback && !rollingBack:
			up.rollback(ctx, fmt.Sprintf("update rolled back due to failure or early termination of task %s", t.ID))
		case rollingBack:
			up.pause(ctx, fmt.Sprintf("rollback paused due to failure or early termination of task %s", t.ID))
		default:
			up.pause(ctx, fmt.Sprintf("update paused due to failure or early termination of task %s", t.ID))
		}
		return true
	}
	checkFailures := func() bool {
		for _, t := range up.takeFailures() {
			if failure(t) {
				// Workers stop waiting for their tasks: the update is
				// over (paused or rolled back).
				up.cancelAsync()
				return true
			}
		}
		return false
	}

	next := 0
dispatch:
	for next < len(dirty) {
		select {
		case <-up.stop:
			stopped = true
			break dispatch
		case <-ctx.Done():
			stopped = true
			break dispatch
		case <-up.signal:
			if checkFailures() {
				stopped = true
				break dispatch
			}
		case reply := <-requests:
			if checkFailures() {
				stopped = true
				close(reply)
				break dispatch
			}
			reply <- dirty[next]
			next++
		}
	}
	// Tell the workers there is no more work.
	go func() {
		for {
			select {
			case reply := <-requests:
				close(reply)
			case <-workersDone:
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(workersDone)
	}()
	// Failures while the last slots finish still count.
wait:
	for {
		select {
		case <-workersDone:
			break wait
		case <-up.signal:
			if !stopped && checkFailures() {
				stopped = true
			}
		}
	}
	if !stopped && !up.stopped() {
		// Keep watching the new tasks for one more monitor period.
		timer := up.sup.clock.NewTimer(cfg.Monitor)
		defer timer.Stop()
	monitor:
		for {
			if checkFailures() {
				stopped = true
				break
			}
			select {
			case <-up.stop:
				stopped = true
				break monitor
			case <-ctx.Done():
				stopped = true
				break monitor
			case <-timer.C():
				stopped = checkFailures()
				break monitor
			case <-up.signal:
			}
		}
	}
	if !stopped && !up.stopped() && !up.rebalance {
		up.complete(ctx)
	}
}

// worker updates the slots it is given, waiting Delay after each.
func (up *Updater) worker(ctx context.Context, requests chan<- chan orchestrator.Slot, cfg swarm.UpdateConfig) {
	for {
		reply := make(chan orchestrator.Slot, 1)
		select {
		case requests <- reply:
		case <-ctx.Done():
			return
		}
		s, ok := <-reply
		if !ok || up.stopped() {
			return
		}
		var running, clean *store.Task
		if !up.rebalance {
			for _, t := range s {
				if up.isDirty(t) {
					continue
				}
				if t.DesiredState == swarm.TaskStateRunning {
					running = t
					break
				}
				if orchestrator.Before(t.DesiredState, swarm.TaskStateRunning) {
					clean = t
				}
			}
		}
		var err error
		switch {
		case running != nil:
			err = up.useExisting(ctx, s, running)
		case clean != nil:
			err = up.useExisting(ctx, s, clean)
		default:
			node := ""
			if orchestrator.IsGlobal(up.svc) {
				node = s[0].NodeID
			}
			nt := orchestrator.NewTask(up.svc, s[0].Slot, node, up.sup.clock.Now())
			nt.DesiredState = swarm.TaskStateReady
			err = up.replace(ctx, s, nt, cfg.Order)
		}
		if err != nil && ctx.Err() == nil {
			up.sup.log.Warn("updating a slot failed", "service", up.svc.ID, "err", err)
		}
		if cfg.Delay > 0 {
			t := up.sup.clock.NewTimer(cfg.Delay)
			select {
			case <-t.C():
			case <-up.stop:
				t.Stop()
			case <-ctx.Done():
				t.Stop()
			}
		}
	}
}

// replace creates nt in the slot and retires the slot's old tasks: before
// nt starts (stop-first) or once it runs (start-first).
func (up *Updater) replace(ctx context.Context, s orchestrator.Slot, nt *store.Task, order swarm.UpdateOrder) error {
	w := make(chan *store.Task, 1)
	up.mu.Lock()
	up.started[nt.ID] = time.Time{}
	up.waiters[nt.ID] = w
	up.mu.Unlock()
	defer func() {
		up.mu.Lock()
		delete(up.waiters, nt.ID)
		up.mu.Unlock()
	}()

	startFirst := order == swarm.UpdateOrderStartFirst
	var old *store.Task
	err := up.sup.store.Update(ctx, func(tx store.Tx) error {
		old = nil
		if tx.GetService(up.svc.ID) == nil {
			return fmt.Errorf("service %s was deleted", up.svc.ID)
		}
		if !startFirst {
			var err error
			if old, err = shutdown(tx, s); err != nil {
				return err
			}
		}
		return tx.Create(nt)
	})
	if err != nil {
		return err
	}
	var ready <-chan struct{}
	if startFirst {
		ready = up.sup.restarts.DelayStart(nil, nt.ID, 0, false)
	} else {
		ready = up.sup.restarts.DelayStart(old, nt.ID, 0, true)
	}
	select {
	case <-ready:
	case <-up.stop:
		return nil
	case <-ctx.Done():
		return nil
	}
	var t *store.Task
	select {
	case t = <-w:
	case <-up.stop:
		return nil
	case <-ctx.Done():
		return nil
	}
	if t == nil || !startFirst || t.Status.State != swarm.TaskStateRunning {
		return nil // deleted, or failed: the old tasks stay (start-first)
	}
	return up.sup.store.Update(ctx, func(tx store.Tx) error {
		_, err := shutdown(tx, s)
		return err
	})
}

// useExisting keeps an up-to-date task of the slot, retiring the others and
// starting it if it waits.
func (up *Updater) useExisting(ctx context.Context, s orchestrator.Slot, keep *store.Task) error {
	var others orchestrator.Slot
	for _, t := range s {
		if t != keep {
			others = append(others, t)
		}
	}
	if len(others) == 0 && keep.DesiredState == swarm.TaskStateRunning {
		return nil
	}
	var old *store.Task
	err := up.sup.store.Update(ctx, func(tx store.Tx) error {
		var err error
		old, err = shutdown(tx, others)
		return err
	})
	if err != nil {
		return err
	}
	if keep.DesiredState != swarm.TaskStateRunning {
		select {
		case <-up.sup.restarts.DelayStart(old, keep.ID, 0, true):
		case <-up.stop:
		case <-ctx.Done():
		}
	}
	return nil
}

// shutdown tells the slot's tasks that are still meant to run to stop, and
// returns one of them.
func shutdown(tx store.Tx, s orchestrator.Slot) (*store.Task, error) {
	var one *store.Task
	for _, o := range s {
		t := tx.GetTask(o.ID)
		if t == nil || !orchestrator.Runnable(t) {
			continue
		}
		c := t.Copy()
		c.DesiredState = swarm.TaskStateShutdown
		if err := tx.Update(c); err != nil {
			return nil, err
		}
		one = t
	}
	return one, nil
}

func (up *Updater) begin(ctx context.Context) {
	now := up.sup.clock.Now()
	up.setStatus(ctx, func(svc *store.Service) bool {
		if svc.UpdateStatus != nil {
			return false
		}
		svc.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateUpdating, StartedAt: &now, Message: MsgUpdating}
		return true
	})
}

func (up *Updater) pause(ctx context.Context, msg string) {
	up.setStatus(ctx, func(svc *store.Service) bool {
		if svc.UpdateStatus == nil {
			return false // the spec changed since: not ours to pause
		}
		st := *svc.UpdateStatus
		if st.State == swarm.UpdateStateRollbackStarted {
			st.State = swarm.UpdateStateRollbackPaused
		} else {
			st.State = swarm.UpdateStatePaused
		}
		st.Message = msg
		svc.UpdateStatus = &st
		return true
	})
}

// rollback swaps in the previous spec, as swarmkit does; the orchestrator
// then rolls the tasks back with RollbackConfig.
func (up *Updater) rollback(ctx context.Context, msg string) {
	up.setStatus(ctx, func(svc *store.Service) bool {
		if svc.UpdateStatus == nil || svc.PreviousSpec == nil {
			if svc.PreviousSpec == nil {
				up.sup.log.Warn("cannot roll back: no previous spec", "service", svc.ID)
			}
			return false
		}
		st := *svc.UpdateStatus
		st.State = swarm.UpdateStateRollbackStarted
		st.Message = msg
		svc.UpdateStatus = &st
		svc.Spec = *svc.PreviousSpec
		svc.PreviousSpec = nil
		svc.SpecVersion = 0 // the store stamps the new spec version
		return true
	})
}

func (up *Updater) complete(ctx context.Context) {
	now := up.sup.clock.Now()
	up.setStatus(ctx, func(svc *store.Service) bool {
		if svc.UpdateStatus == nil {
			return false
		}
		st := *svc.UpdateStatus
		if st.State == swarm.UpdateStateRollbackStarted {
			st.State = swarm.UpdateStateRollbackCompleted
			st.Message = MsgRollbackCompleted
		} else {
			st.State = swarm.UpdateStateCompleted
			st.Message = MsgCompleted
		}
		st.CompletedAt = &now
		svc.UpdateStatus = &st
		return true
	})
}

// setStatus changes the stored service with fn, only while its spec is the
// one this update works towards.
func (up *Updater) setStatus(ctx context.Context, fn func(*store.Service) bool) {
	err := up.sup.store.Update(ctx, func(tx store.Tx) error {
		cur := tx.GetService(up.svc.ID)
		if cur == nil || cur.SpecVersion != up.svc.SpecVersion {
			return nil
		}
		c := cur.Copy()
		if !fn(c) {
			return nil
		}
		return tx.Update(c)
	})
	if err != nil && ctx.Err() == nil {
		up.sup.log.Warn("updating service update status failed", "service", up.svc.ID, "err", err)
	}
}
