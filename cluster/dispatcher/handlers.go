package dispatcher

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

const (
	maxSessionBody = 1 << 20
	maxStatusBody  = 32 << 20
	// writeTimeout bounds one write to a session stream, so a dead peer
	// cannot pin the handler.
	writeTimeout = 30 * time.Second
)

// Docker's text when there is no leader.
const msgNoLeader = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."

func writeError(w http.ResponseWriter, status int, e wire.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}

// admit checks leadership and the caller's identity.
func (d *Dispatcher) admit(w http.ResponseWriter, r *http.Request) (string, bool) {
	isLeader, leader := d.cfg.Leader()
	if !isLeader {
		if leader != "" {
			writeError(w, http.StatusMisdirectedRequest, wire.Error{Code: wire.CodeNotLeader, Leader: leader,
				Message: "this manager is not the leader; the leader is " + leader})
		} else {
			writeError(w, http.StatusServiceUnavailable, wire.Error{Code: wire.CodeNoLeader, Message: msgNoLeader})
		}
		return "", false
	}
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	if !running {
		writeError(w, http.StatusServiceUnavailable, wire.Error{Code: wire.CodeUnavailable, Message: "dispatcher is not running yet"})
		return "", false
	}
	if d.cfg.Identity == nil {
		writeError(w, http.StatusUnauthorized, wire.Error{Code: wire.CodeUnauthorized, Message: "no way to authenticate callers"})
		return "", false
	}
	nodeID, _, err := d.cfg.Identity(r)
	if err != nil || nodeID == "" {
		msg := "caller has no node identity"
		if err != nil {
			msg = err.Error()
		}
		writeError(w, http.StatusUnauthorized, wire.Error{Code: wire.CodeUnauthorized, Message: msg})
		return "", false
	}
	return nodeID, true
}

func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit)).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, wire.Error{Code: wire.CodeInvalid, Message: "bad request body: " + err.Error()})
		return false
	}
	return true
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// advertised is the node's address for Node.Status.Addr: an IP, no port.
func advertised(req wire.SessionRequest, r *http.Request) string {
	if req.Addr == "" {
		return remoteIP(r)
	}
	if host, _, err := net.SplitHostPort(req.Addr); err == nil {
		return host
	}
	return req.Addr
}

func (d *Dispatcher) handleSession(w http.ResponseWriter, r *http.Request) {
	nodeID, ok := d.admit(w, r)
	if !ok {
		return
	}
	var req wire.SessionRequest
	if !decode(w, r, maxSessionBody, &req) {
		return
	}
	// Read the body to its end: over HTTP/1.1 the server only notices a
	// peer that went away (and cancels r.Context()) once the body is
	// consumed. Over h2 the stream reset does it.
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxSessionBody))
	reg := &regReq{nodeID: nodeID, req: req, addr: advertised(req, r), reply: make(chan regResult, 1)}
	d.mu.Lock()
	regs, runCtx := d.regs, d.runCtx
	d.mu.Unlock()
	select {
	case regs <- reg:
	case <-runCtx.Done():
		writeError(w, http.StatusServiceUnavailable, wire.Error{Code: wire.CodeUnavailable, Message: "dispatcher stopped"})
		return
	case <-r.Context().Done():
		return
	}
	res := <-reg.reply
	if res.err != nil {
		if errdefs.IsNotFound(res.err) {
			writeError(w, http.StatusNotFound, wire.Error{Code: wire.CodeNodeNotFound, Message: res.err.Error()})
		} else {
			writeError(w, http.StatusInternalServerError, wire.Error{Code: wire.CodeInternal, Message: res.err.Error()})
		}
		return
	}
	s := res.s
	defer d.endSession(s)
	d.log.Debug("session opened", "node", nodeID, "session", s.id)

	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", wire.ContentTypeStream)
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	send := func(msgs []wire.Message) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for i := range msgs {
			if err := enc.Encode(&msgs[i]); err != nil {
				return false
			}
		}
		if rc.Flush() != nil {
			return false
		}
		// The deadline bounds this write only: left armed, it would
		// reset an idle stream (HTTP/2 does) 30 s later.
		_ = rc.SetWriteDeadline(time.Time{})
		return true
	}
	if !send(res.initial) {
		return
	}
	batch := time.NewTimer(d.cfg.BatchDelay)
	batch.Stop()
	for {
		select {
		case <-s.notify:
		case <-s.done:
			send(s.drain()) // last words (e.g. node removed)
			return
		case <-r.Context().Done():
			return
		}
		// Let changes accumulate a little: one message per burst.
		batch.Reset(d.cfg.BatchDelay)
		select {
		case <-batch.C:
		case <-s.done:
			send(s.drain())
			return
		case <-r.Context().Done():
			return
		}
		if msgs := s.drain(); len(msgs) > 0 && !send(msgs) {
			return
		}
	}
}

// SessionLossGrace is how long a node whose session stream broke has to
// open a new one before it is DOWN. A live agent reconnects within a few
// hundred milliseconds; a host that died closed its connections (or, if it
// vanished silently, the heartbeat deadline catches it). Waiting the full
// heartbeat grace (3 periods, 15 s by default, as docker) would make every
// node failure cost that long.
const SessionLossGrace = 2 * time.Second

// endSession forgets s when its stream ends. The node stays as it is for a
// short grace, so a quick reconnect does not flap it.
func (d *Dispatcher) endSession(s *session) {
	s.close()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sessions[s.nodeID] == s {
		delete(d.sessions, s.nodeID)
	}
	if ln := d.live[s.nodeID]; ln != nil && ln.sessionID == s.id {
		ln.sessionID = ""
		if !d.running || d.runCtx == nil || d.runCtx.Err() != nil {
			return // not leading: the next leader grants its own grace
		}
		if until := d.cfg.Now().Add(SessionLossGrace); until.Before(ln.deadline) {
			ln.deadline = until
		}
	}
}

// checkSession reports whether id is nodeID's live session.
func (d *Dispatcher) checkSession(w http.ResponseWriter, nodeID, id string) bool {
	d.mu.Lock()
	ln := d.live[nodeID]
	ok := ln != nil && ln.sessionID != "" && ln.sessionID == id
	d.mu.Unlock()
	if !ok {
		writeError(w, http.StatusConflict, wire.Error{Code: wire.CodeSessionInvalid, Message: "session invalid: open a new session"})
	}
	return ok
}

func (d *Dispatcher) handleHeartbeat(w http.ResponseWriter, r *http.Request) {
	nodeID, ok := d.admit(w, r)
	if !ok {
		return
	}
	var req wire.HeartbeatRequest
	if !decode(w, r, maxSessionBody, &req) {
		return
	}
	d.mu.Lock()
	ln := d.live[nodeID]
	valid := ln != nil && ln.sessionID != "" && ln.sessionID == req.SessionID
	period := d.period
	if valid {
		ln.deadline = d.cfg.Now().Add(period * GraceMultiplier)
	}
	d.mu.Unlock()
	if !valid {
		writeError(w, http.StatusConflict, wire.Error{Code: wire.CodeSessionInvalid, Message: "session invalid: open a new session"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(wire.HeartbeatResponse{Period: period})
}

func (d *Dispatcher) handleStatus(w http.ResponseWriter, r *http.Request) {
	nodeID, ok := d.admit(w, r)
	if !ok {
		return
	}
	var req wire.StatusRequest
	if !decode(w, r, maxStatusBody, &req) {
		return
	}
	if !d.checkSession(w, nodeID, req.SessionID) {
		return
	}
	for _, u := range req.Updates {
		if !wire.AgentState(u.Status.State) {
			writeError(w, http.StatusBadRequest, wire.Error{Code: wire.CodeInvalid,
				Message: "task " + u.TaskID + ": an agent cannot report state " + string(u.Status.State)})
			return
		}
	}
	var foreign string
	d.s.View(func(rt store.ReadTx) {
		for _, u := range req.Updates {
			if t := rt.GetTask(u.TaskID); t != nil && t.NodeID != nodeID {
				foreign = u.TaskID
				return
			}
		}
	})
	if foreign != "" {
		writeError(w, http.StatusForbidden, wire.Error{Code: wire.CodeForbidden,
			Message: "cannot update task " + foreign + ": not assigned to this node"})
		return
	}
	now := d.cfg.Now()
	urgent := false
	d.wmu.Lock()
	for _, u := range req.Updates {
		st := u.Status
		if st.Timestamp.IsZero() {
			st.Timestamp = now
		}
		if prev, ok := d.taskUpdates[u.TaskID]; ok && wire.Rank(prev.status.State) > wire.Rank(st.State) {
			continue
		}
		d.taskUpdates[u.TaskID] = pendingStatus{nodeID: nodeID, status: st}
		urgent = urgent || wire.Urgent(st.State)
	}
	d.wmu.Unlock()
	// Passing states wait for the tick (and merge); RUNNING and stops,
	// which orchestrators wait for, are written after BatchDelay.
	if urgent {
		d.kickWriter()
	}
	w.WriteHeader(http.StatusNoContent)
}

// dropNodeUpdate forgets queued writes for a removed node.
func (d *Dispatcher) dropNodeUpdate(id string) {
	d.wmu.Lock()
	delete(d.nodeUpdates, id)
	d.wmu.Unlock()
}
