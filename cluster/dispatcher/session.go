package dispatcher

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
)

// session is one agent connection: what the agent was sent and what is
// queued for its next batch. The run loop fills it, the session's handler
// drains it. Lock order: Dispatcher.mu before session.mu.
type session struct {
	id     string
	nodeID string

	mu       sync.Mutex
	sent     map[string]*store.Task      // tasks the agent has, as last seen
	pending  map[string]*wire.Assignment // changed tasks; nil value = removed
	info     *wire.Message               // pending MsgSession
	notices  []wire.Notice
	logs     []wire.LogsRequest                    // log subscription starts and stops
	ingress  map[wire.IngressKey]*wire.IngressPort // changed ports; nil value = removed
	lastNode *store.Node
	lastRole swarm.NodeRole // role of the last role-changed notice

	notify    chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func newSession(nodeID string) *session {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return &session{
		id:      hex.EncodeToString(b[:]),
		nodeID:  nodeID,
		sent:    map[string]*store.Task{},
		pending: map[string]*wire.Assignment{},
		ingress: map[wire.IngressKey]*wire.IngressPort{},
		notify:  make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
}

func (s *session) close() { s.closeOnce.Do(func() { close(s.done) }) }

func (s *session) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// offer queues t for the agent unless the agent already has it as far as
// it cares (only the status, which the agent reported, changed).
func (s *session) offer(t *store.Task, build func(*store.Task) wire.Assignment) {
	if !assigned(t) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.sent[t.ID]
	s.sent[t.ID] = t
	// Managers set the states up to ASSIGNED, so the agent must hear of
	// those changes even when nothing else moved.
	if prev != nil && wire.Rank(t.Status.State) > wire.Rank(swarm.TaskStateAssigned) && equalStable(prev, t) {
		return
	}
	a := build(t)
	s.pending[t.ID] = &a
	s.signal()
}

func (s *session) remove(taskID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sent[taskID]; !ok {
		return
	}
	delete(s.sent, taskID)
	s.pending[taskID] = nil
	s.signal()
}

// queueInfo queues a MsgSession with the current values.
func (s *session) queueInfo(n *store.Node, period time.Duration, managers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueInfoLocked(n, period, managers)
}

func (s *session) queueInfoLocked(n *store.Node, period time.Duration, managers []string) {
	m := &wire.Message{Type: wire.MsgSession, SessionID: s.id, HeartbeatPeriod: period, Managers: slices.Clone(managers)}
	if n != nil {
		m.Node = &n.Node
	}
	s.info = m
	s.signal()
}

// nodeChanged forwards changes of the node object the agent acts on (role,
// availability, certificate role); not labels or name, and not the status
// the dispatcher itself writes: a cluster busy relabelling nodes would
// otherwise send every agent a message per change.
func (s *session) nodeChanged(n *store.Node, period time.Duration, managers []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.lastNode
	s.lastNode = n
	if prev != nil && prev.CertRole == n.CertRole && prev.Spec.Role == n.Spec.Role && prev.Spec.Availability == n.Spec.Availability {
		return
	}
	s.queueInfoLocked(n, period, managers)
	if nt := roleNotice(n); nt != nil && nt.Role != s.lastRole {
		s.lastRole = nt.Role
		s.notices = append(s.notices, *nt)
	} else if nt == nil {
		s.lastRole = ""
	}
}

func (s *session) queueNotice(n wire.Notice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notices = append(s.notices, n)
	s.signal()
}

// queueLogs asks the agent to publish logs.
func (s *session) queueLogs(r wire.LogsRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, r)
	s.signal()
}

// cancelLogs tells the agent to stop publishing a subscription, or drops
// the request if the agent was not sent it yet.
func (s *session) cancelLogs(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, r := range s.logs {
		if r.SubscriptionID == id && !r.Close {
			s.logs = slices.Delete(s.logs, i, i+1)
			return
		}
	}
	s.logs = append(s.logs, wire.LogsRequest{SubscriptionID: id, Close: true})
	s.signal()
}

// queueIngress queues routing mesh changes; a later change of a port
// replaces an unsent one.
func (s *session) queueIngress(changed []wire.IngressPort, removed []wire.IngressKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range changed {
		s.ingress[changed[i].IngressKey] = &changed[i]
	}
	for _, k := range removed {
		s.ingress[k] = nil
	}
	s.signal()
}

// drain takes everything queued, as messages in the order the agent
// should apply them.
func (s *session) drain() []wire.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []wire.Message
	if s.info != nil {
		out = append(out, *s.info)
		s.info = nil
	}
	for _, n := range s.notices {
		out = append(out, wire.Message{Type: wire.MsgNotice, Notice: &n})
	}
	s.notices = nil
	if len(s.pending) > 0 {
		as := &wire.Assignments{}
		for id, a := range s.pending {
			if a == nil {
				as.Removed = append(as.Removed, id)
			} else {
				as.Tasks = append(as.Tasks, *a)
			}
		}
		slices.Sort(as.Removed)
		slices.SortFunc(as.Tasks, func(a, b wire.Assignment) int { return strings.Compare(a.Task.ID, b.Task.ID) })
		s.pending = map[string]*wire.Assignment{}
		out = append(out, wire.Message{Type: wire.MsgAssignments, Assignments: as})
	}
	if len(s.ingress) > 0 {
		in := &wire.Ingress{}
		for k, p := range s.ingress {
			if p == nil {
				in.Removed = append(in.Removed, k)
			} else {
				in.Ports = append(in.Ports, *p)
			}
		}
		slices.SortFunc(in.Removed, compareKeys)
		slices.SortFunc(in.Ports, func(a, b wire.IngressPort) int { return compareKeys(a.IngressKey, b.IngressKey) })
		s.ingress = map[wire.IngressKey]*wire.IngressPort{}
		out = append(out, wire.Message{Type: wire.MsgIngress, Ingress: in})
	}
	for i := range s.logs {
		out = append(out, wire.Message{Type: wire.MsgLogs, Logs: &s.logs[i]})
	}
	s.logs = nil
	return out
}
