package exec

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// runner drives one task. Its goroutine loops: take one step toward the
// desired state, report, and sleep until something changes (a new
// assignment, a container event, removal).
type runner struct {
	e  *Executor
	id string

	mu          sync.Mutex
	a           wire.Assignment
	status      swarm.TaskStatus
	containerID string
	ports       []swarm.PortConfig // what the container publishes, once started
	removed     bool
	opCancel    context.CancelFunc // interrupts a long preparation

	wake chan struct{}
}

func newRunner(e *Executor, a wire.Assignment) *runner {
	return &runner{e: e, id: a.Task.ID, a: a, status: a.Task.Status, wake: make(chan struct{}, 1)}
}

func (r *runner) signal() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func shutdownWanted(a wire.Assignment) bool {
	return wire.Rank(a.Task.DesiredState) > wire.Rank(swarm.TaskStateRunning)
}

// update takes a newer assignment of the task.
func (r *runner) update(a wire.Assignment) {
	r.mu.Lock()
	if a.Service.Name == "" {
		a.Service = r.a.Service
	}
	r.a = a
	var report *swarm.TaskStatus
	switch store, own := wire.Rank(a.Task.Status.State), wire.Rank(r.status.State); {
	case store > own:
		// A manager moved the task on (e.g. ORPHANED): that is final.
		r.status = a.Task.Status
	case own > store:
		// Our report may have been lost with the old leader: say it again.
		st := r.status
		report = &st
	}
	if shutdownWanted(a) && r.opCancel != nil {
		r.opCancel()
	}
	r.mu.Unlock()
	if report != nil {
		r.e.cfg.Report(r.id, *report)
	}
	r.signal()
}

func (r *runner) remove() {
	r.mu.Lock()
	r.removed = true
	if r.opCancel != nil {
		r.opCancel()
	}
	r.mu.Unlock()
	r.signal()
}

func (r *runner) run(ctx context.Context) {
	defer r.e.wg.Done()
	for ctx.Err() == nil {
		r.mu.Lock()
		removed := r.removed
		r.mu.Unlock()
		if removed {
			r.teardown(ctx)
			r.e.forget(r)
			return
		}
		wait, err := r.step(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.e.log.Warn("task step failed, retrying", "task", r.id, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-r.wake:
			case <-time.After(r.e.cfg.RetryDelay):
			}
			continue
		}
		if wait {
			select {
			case <-ctx.Done():
			case <-r.wake:
			}
		}
	}
}

// transition moves the task forward and reports it. States never go back:
// a manager may have moved the task on meanwhile.
func (r *runner) transition(st swarm.TaskState, msg, errText string, cs *swarm.ContainerStatus) {
	r.mu.Lock()
	if wire.Rank(st) <= wire.Rank(r.status.State) {
		r.mu.Unlock()
		return
	}
	if cs == nil {
		cs = r.status.ContainerStatus
	}
	if errText == "" && wire.Rank(st) > wire.Rank(swarm.TaskStateRunning) {
		errText = r.status.Err
	}
	next := swarm.TaskStatus{
		Timestamp:       r.e.cfg.Now(),
		State:           st,
		Message:         msg,
		Err:             errText,
		ContainerStatus: cs,
		PortStatus:      r.status.PortStatus,
	}
	if st == swarm.TaskStateRunning {
		next.PortStatus = swarm.PortStatus{Ports: r.ports}
	}
	r.status = next
	r.mu.Unlock()
	r.e.cfg.Report(r.id, next)
}

// fail ends the task on a fatal error: REJECTED before it started,
// FAILED after (swarmkit's rule).
func (r *runner) fail(cur swarm.TaskStatus, err error) {
	st := swarm.TaskStateFailed
	if wire.Rank(cur.State) < wire.Rank(swarm.TaskStateStarting) {
		st = swarm.TaskStateRejected
	}
	r.e.log.Info("task failed", "task", r.id, "state", st, "err", err)
	r.transition(st, cur.Message, err.Error(), nil)
}

// step takes one step. wait: nothing to do until woken. err: a temporary
// failure to retry.
func (r *runner) step(ctx context.Context) (wait bool, err error) {
	r.mu.Lock()
	a, cur, cid := r.a, r.status, r.containerID
	r.mu.Unlock()
	e := r.e

	switch {
	case wire.Terminal(cur.State):
		// Nothing may run for a finished task (e.g. a node back from
		// DOWN whose tasks were replaced meanwhile), and its secrets go.
		e.removePayloads(r.id)
		if cid != "" {
			if err := e.stopIfRunning(ctx, cid, graceOf(a)); err != nil && temporary(err) {
				return false, err
			}
		}
		return true, nil

	case shutdownWanted(a):
		cs, err := r.shutdown(ctx, a, cid)
		if err != nil {
			if temporary(err) || ctx.Err() != nil {
				return false, err
			}
			r.fail(cur, err)
			return false, nil
		}
		r.transition(swarm.TaskStateShutdown, "shutdown", "", cs)
		return false, nil
	}

	switch cur.State {
	case swarm.TaskStateAccepted:
		r.transition(swarm.TaskStatePreparing, "preparing", "", nil)
	case swarm.TaskStatePreparing:
		opCtx, cancel := context.WithCancel(ctx)
		r.mu.Lock()
		r.opCancel = cancel
		interrupted := r.removed || shutdownWanted(r.a)
		r.mu.Unlock()
		if interrupted {
			cancel()
		}
		id, err := r.prepare(opCtx, a, cid)
		interrupted = opCtx.Err() != nil
		r.mu.Lock()
		r.opCancel = nil
		r.mu.Unlock()
		cancel()
		if err != nil {
			if ctx.Err() != nil || temporary(err) {
				return false, err
			}
			if interrupted {
				return false, nil // interrupted: shutdown or removal next
			}
			r.fail(cur, err)
			return false, nil
		}
		r.transition(swarm.TaskStateReady, "prepared", "", &swarm.ContainerStatus{ContainerID: id})
	case swarm.TaskStateReady:
		if wire.Rank(a.Task.DesiredState) < wire.Rank(swarm.TaskStateRunning) {
			return true, nil // prepared, held until told to run
		}
		r.transition(swarm.TaskStateStarting, "starting", "", nil)
	case swarm.TaskStateStarting:
		cs, err := r.start(ctx, cid)
		if err != nil {
			if temporary(err) || ctx.Err() != nil {
				return false, err
			}
			r.fail(cur, err)
			return false, nil
		}
		r.transition(swarm.TaskStateRunning, "started", "", cs)
	case swarm.TaskStateRunning:
		return r.watchRunning(ctx, a, cur, cid)
	default:
		if wire.Rank(cur.State) < wire.Rank(swarm.TaskStateAccepted) {
			r.transition(swarm.TaskStateAccepted, "accepted", "", nil)
			return false, nil
		}
		return true, nil
	}
	return false, nil
}

// watchRunning waits for the container to exit and reports how it ended.
func (r *runner) watchRunning(ctx context.Context, a wire.Assignment, cur swarm.TaskStatus, cid string) (bool, error) {
	if cid == "" {
		r.fail(cur, errdefs.NotFound("No such container: %s", TaskName(a)))
		return false, nil
	}
	c, err := r.e.cfg.Engine.Inspect(ctx, cid)
	if errdefs.IsNotFound(err) {
		r.fail(cur, errdefs.NotFound("No such container: %s", cid))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if c.Running {
		return true, nil
	}
	cs := &swarm.ContainerStatus{ContainerID: cid, PID: 0, ExitCode: c.ExitCode}
	if c.ExitCode == 0 {
		r.transition(swarm.TaskStateComplete, "finished", "", cs)
		return false, nil
	}
	r.transition(swarm.TaskStateFailed, cur.Message, exitError(c.ExitCode), cs)
	return false, nil
}

// prepare makes sure the image is there and the container exists.
func (r *runner) prepare(ctx context.Context, a wire.Assignment, cid string) (string, error) {
	e := r.e
	spec, err := Translate(a, e.cfg.Node())
	if err != nil {
		return "", err
	}
	if err := checkHostPorts(a.Service.Ports, e.cfg.IngressOwner); err != nil {
		return "", err
	}
	mounts, files, err := payloads(a, e.cfg.PayloadDir)
	if err != nil {
		return "", err
	}
	if err := writePayloads(files); err != nil {
		return "", err
	}
	spec.HostConfig.Mounts = append(spec.HostConfig.Mounts, mounts...)
	if cid != "" {
		_, err := e.cfg.Engine.Inspect(ctx, cid)
		if err == nil {
			return cid, nil // adopted after a restart
		}
		if !errdefs.IsNotFound(err) {
			return "", err
		}
	}
	if err := r.ensureImage(ctx, a, spec.Config.Image); err != nil {
		return "", err
	}
	id, err := e.cfg.Engine.Create(ctx, spec.Name, spec.Config, spec.HostConfig, spec.Networking)
	if errdefs.IsConflict(err) {
		// Our name is taken: most likely our own container from a run
		// that crashed before recording it.
		id, err = r.findOwn(ctx)
	}
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	r.containerID = id
	r.mu.Unlock()
	e.setContainer(r, id)
	return id, nil
}

func (r *runner) findOwn(ctx context.Context) (string, error) {
	list, err := r.e.cfg.Engine.List(ctx, LabelTaskID)
	if err != nil {
		return "", err
	}
	for _, c := range list {
		if c.Labels[LabelTaskID] == r.id {
			return c.ID, nil
		}
	}
	return "", errdefs.Conflict("container name of task %s is used by another container", r.id)
}

// ensureImage pulls the image if the node does not have it.
func (r *runner) ensureImage(ctx context.Context, a wire.Assignment, ref string) error {
	images := r.e.cfg.Images
	ok, err := images.Has(ctx, ref)
	if err != nil {
		return err
	}
	if ok {
		return nil
	}
	auth, err := decodeAuth(a.Service.RegistryAuth)
	if err != nil {
		return err
	}
	err = images.Pull(ctx, ref, auth, io.Discard)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errdefs.IsNotFound(err):
		return errdefs.NotFound("No such image: %s", ref)
	case temporary(err):
		// A registry that is down is the task's failure, not a reason
		// to hold the task forever: the orchestrator retries elsewhere.
		return errdefs.System("pulling image %s: %v", ref, err)
	}
	return err
}

// decodeAuth decodes an X-Registry-Auth value (base64url JSON).
func decodeAuth(s string) (*registry.AuthConfig, error) {
	if s == "" {
		return nil, nil
	}
	raw, err := base64.URLEncoding.DecodeString(s)
	if err != nil {
		if raw, err = base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")); err != nil {
			return nil, errdefs.InvalidParameter("invalid registry credentials: %v", err)
		}
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(raw, &ac); err != nil {
		return nil, errdefs.InvalidParameter("invalid registry credentials: %v", err)
	}
	return &ac, nil
}

// start starts the container unless it ran already (then the RUNNING step
// finds out how it ended).
func (r *runner) start(ctx context.Context, cid string) (*swarm.ContainerStatus, error) {
	e := r.e
	if cid == "" {
		return nil, errdefs.NotFound("No such container for task %s", r.id)
	}
	c, err := e.cfg.Engine.Inspect(ctx, cid)
	if errdefs.IsNotFound(err) {
		return nil, errdefs.NotFound("No such container: %s", cid)
	}
	if err != nil {
		return nil, err
	}
	if !c.Running && (c.Status == container.StateCreated || c.Status == "") {
		if err := e.cfg.Engine.Start(ctx, cid); err != nil {
			return nil, err
		}
		if c, err = e.cfg.Engine.Inspect(ctx, cid); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	r.mu.Lock()
	r.ports = publishedPorts(r.a.Service.Ports, c.Ports)
	r.mu.Unlock()
	return &swarm.ContainerStatus{ContainerID: cid, PID: c.Pid}, nil
}

// shutdown stops the container, if any, and says how it ended.
func (r *runner) shutdown(ctx context.Context, a wire.Assignment, cid string) (*swarm.ContainerStatus, error) {
	e := r.e
	if cid == "" {
		return nil, nil
	}
	if err := e.stopIfRunning(ctx, cid, graceOf(a)); err != nil {
		return nil, err
	}
	c, err := e.cfg.Engine.Inspect(ctx, cid)
	if errdefs.IsNotFound(err) {
		return &swarm.ContainerStatus{ContainerID: cid}, nil
	}
	if err != nil {
		return nil, err
	}
	return &swarm.ContainerStatus{ContainerID: cid, ExitCode: c.ExitCode}, nil
}

// teardown stops and removes the container of a task that is gone.
func (r *runner) teardown(ctx context.Context) {
	r.mu.Lock()
	a, cid := r.a, r.containerID
	r.mu.Unlock()
	defer r.e.removePayloads(r.id)
	if cid == "" {
		return
	}
	if err := r.e.destroy(ctx, cid, graceOf(a)); err != nil && !errors.Is(err, context.Canceled) {
		r.e.log.Warn("removing task container", "task", r.id, "container", cid, "err", err)
	}
}

func graceOf(a wire.Assignment) *int {
	g := StopGracePeriod(a)
	return &g
}
