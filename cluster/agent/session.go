package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// notLeaderError sends the agent to the leader.
type notLeaderError struct{ leader string }

func (e *notLeaderError) Error() string { return "not the leader; leader is " + e.leader }

var (
	errDescriptionChanged = errors.New("node description changed")
	errBadStream          = errors.New("session stream did not start with a session message")
)

// requestTimeout bounds heartbeat and status requests.
const requestTimeout = 10 * time.Second

func (a *Agent) url(addr, path string) string { return a.cfg.Scheme + "://" + addr + path }

// post sends v as JSON and decodes the answer into out (if not nil).
func (a *Agent) post(ctx context.Context, addr, path string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url(addr, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return errdefs.Wrap(errdefs.KindUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return readError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// readError turns an error answer into a typed error.
func readError(resp *http.Response) error {
	var we wire.Error
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(b, &we) != nil || we.Message == "" {
		we.Message = fmt.Sprintf("dispatcher answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	switch we.Code {
	case wire.CodeNotLeader:
		if we.Leader != "" {
			return &notLeaderError{leader: we.Leader}
		}
		return errdefs.Unavailable("%s", we.Message)
	case wire.CodeSessionInvalid:
		return errdefs.Conflict("%s", we.Message)
	case wire.CodeNodeNotFound:
		return errdefs.NotFound("%s", we.Message)
	case wire.CodeForbidden:
		return errdefs.Forbidden("%s", we.Message)
	case wire.CodeUnauthorized:
		return errdefs.Unauthorized("%s", we.Message)
	case wire.CodeInvalid:
		return errdefs.InvalidParameter("%s", we.Message)
	case wire.CodeLogsGone:
		return errdefs.Wrap(errdefs.KindNotFound, errGone)
	case wire.CodeConflict:
		return errdefs.Conflict("%s", we.Message)
	}
	if resp.StatusCode >= 500 {
		return errdefs.Unavailable("%s", we.Message)
	}
	return errdefs.System("%s", we.Message)
}

// session runs one session with the manager at addr until it fails.
// established reports that the dispatcher accepted it.
func (a *Agent) session(ctx context.Context, addr string) (established bool, err error) {
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	desc := a.cfg.Description()
	body, err := json.Marshal(wire.SessionRequest{Description: desc, Addr: a.cfg.Addr})
	if err != nil {
		return false, err
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, a.url(addr, wire.PathSession), bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return false, errdefs.Wrap(errdefs.KindUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		err := readError(resp)
		if errdefs.IsNotFound(err) {
			a.nodeRemoved(wire.Notice{Kind: wire.NoticeNodeRemoved, Message: err.Error()})
		}
		return false, err
	}
	dec := json.NewDecoder(resp.Body)
	var first wire.Message
	if err := dec.Decode(&first); err != nil {
		return false, err
	}
	if first.Type != wire.MsgSession || first.SessionID == "" {
		return false, errBadStream
	}
	sid := first.SessionID
	var period atomic.Int64
	period.Store(int64(first.HeartbeatPeriod))
	a.mu.Lock()
	a.connected, a.sessionID = addr, sid
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.connected, a.sessionID = "", ""
		a.mu.Unlock()
	}()
	a.log.Info("session established", "manager", addr)
	pubs := newPublishers(a, sctx, addr)
	defer func() {
		cancel(nil) // log publishers stop with the session
		pubs.wait()
	}()
	if err := a.handle(first, &period, pubs); err != nil {
		return true, err
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		a.heartbeat(sctx, cancel, addr, sid, &period, desc)
	}()
	go func() {
		defer wg.Done()
		a.report(sctx, cancel, addr, sid)
	}()
	for {
		var m wire.Message
		if err = dec.Decode(&m); err != nil {
			break
		}
		if err = a.handle(m, &period, pubs); err != nil {
			break
		}
	}
	if cause := context.Cause(sctx); cause != nil {
		err = cause // the heartbeat or reporter ended the session
	}
	cancel(err)
	wg.Wait()
	return true, err
}

func (a *Agent) handle(m wire.Message, period *atomic.Int64, pubs *publishers) error {
	switch m.Type {
	case wire.MsgSession:
		if m.HeartbeatPeriod > 0 {
			period.Store(int64(m.HeartbeatPeriod))
		}
		if len(m.Managers) > 0 {
			a.setManagers(m.Managers)
		}
		if m.Node != nil && a.cfg.OnNode != nil {
			a.cfg.OnNode(m.Node)
		}
	case wire.MsgAssignments:
		if m.Assignments == nil {
			return nil
		}
		as := *m.Assignments
		if a.cfg.NodeID != "" {
			mine := as.Tasks[:0:0]
			for _, t := range as.Tasks {
				if t.Task.NodeID == a.cfg.NodeID {
					mine = append(mine, t)
				} else {
					a.log.Warn("ignoring a task assigned to another node", "task", t.Task.ID, "node", t.Task.NodeID)
				}
			}
			as.Tasks = mine
		}
		return a.exec.Apply(as)
	case wire.MsgNotice:
		if m.Notice != nil && m.Notice.Kind == wire.NoticeNodeRemoved {
			a.nodeRemoved(*m.Notice)
		} else if m.Notice != nil && a.cfg.OnNotice != nil {
			a.cfg.OnNotice(*m.Notice)
		}
	case wire.MsgIngress:
		if m.Ingress != nil {
			a.ing.apply(*m.Ingress)
		}
	case wire.MsgLogs:
		if m.Logs != nil {
			pubs.handle(*m.Logs)
		}
	}
	return nil
}

// nodeRemoved: the cluster no longer knows this node, so it no longer
// answers for the cluster's published ports.
func (a *Agent) nodeRemoved(n wire.Notice) {
	a.ing.reset()
	if a.cfg.OnNotice != nil {
		a.cfg.OnNotice(n)
	}
}

// heartbeat keeps the session alive; a failed heartbeat ends the session.
func (a *Agent) heartbeat(ctx context.Context, end context.CancelCauseFunc, addr, sid string, period *atomic.Int64, desc swarm.NodeDescription) {
	for {
		p := time.Duration(period.Load())
		if p <= 0 {
			p = 5 * time.Second
		}
		if !sleep(ctx, p) {
			return
		}
		if !reflect.DeepEqual(desc, a.cfg.Description()) {
			end(errDescriptionChanged)
			return
		}
		var resp wire.HeartbeatResponse
		if err := a.post(ctx, addr, wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: sid}, &resp); err != nil {
			end(fmt.Errorf("heartbeat: %w", err))
			return
		}
		if resp.Period > 0 {
			period.Store(int64(resp.Period))
		}
	}
}

// report sends status changes in batches. Reports that could not be sent
// wait for the next session.
func (a *Agent) report(ctx context.Context, end context.CancelCauseFunc, addr, sid string) {
	a.rep.signal() // leftovers of the previous session
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.rep.notify:
		}
		if !a.rep.gather(ctx, a.cfg.ReportDelay, a.cfg.UrgentDelay) {
			return
		}
		batch := a.rep.take()
		if len(batch) == 0 {
			continue
		}
		req := wire.StatusRequest{SessionID: sid, Updates: make([]wire.TaskStatusUpdate, 0, len(batch))}
		for id, st := range batch {
			req.Updates = append(req.Updates, wire.TaskStatusUpdate{TaskID: id, Status: st})
		}
		err := a.post(ctx, addr, wire.PathStatus, req, nil)
		switch {
		case err == nil:
		case errdefs.IsForbidden(err) || errdefs.IsInvalidParameter(err):
			// Not ours to report (reassigned, or a bug): dropping is all
			// we can do.
			a.log.Warn("dispatcher refused status reports", "err", err)
		default:
			a.rep.putBack(batch)
			end(fmt.Errorf("status report: %w", err))
			return
		}
	}
}

// reporter holds status changes not yet sent, the newest per task.
type reporter struct {
	mu      sync.Mutex
	pending map[string]swarm.TaskStatus
	notify  chan struct{}
	urgent  chan struct{} // a pending status is RUNNING or final
}

func newReporter() *reporter {
	return &reporter{pending: map[string]swarm.TaskStatus{}, notify: make(chan struct{}, 1), urgent: make(chan struct{}, 1)}
}

// gather waits until a batch is worth sending: delay after the first
// change, or urgent after an urgent one. False if ctx ended.
func (r *reporter) gather(ctx context.Context, delay, urgent time.Duration) bool {
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		// Taken with this batch: a leftover signal would send the next
		// one early for nothing.
		select {
		case <-r.urgent:
		default:
		}
		return true
	case <-r.urgent:
		return sleep(ctx, urgent)
	}
}

func (r *reporter) signal() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *reporter) add(id string, st swarm.TaskStatus) {
	r.mu.Lock()
	if prev, ok := r.pending[id]; !ok || wire.Rank(prev.State) <= wire.Rank(st.State) {
		r.pending[id] = st
	}
	r.mu.Unlock()
	r.signal()
	if wire.Urgent(st.State) {
		select {
		case r.urgent <- struct{}{}:
		default:
		}
	}
}

func (r *reporter) take() map[string]swarm.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pending
	r.pending = map[string]swarm.TaskStatus{}
	return out
}

func (r *reporter) putBack(batch map[string]swarm.TaskStatus) {
	r.mu.Lock()
	for id, st := range batch {
		if prev, ok := r.pending[id]; !ok || wire.Rank(prev.State) < wire.Rank(st.State) {
			r.pending[id] = st
		}
	}
	r.mu.Unlock()
}
