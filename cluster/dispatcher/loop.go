package dispatcher

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// loop is the run loop's state: a cache of the store kept by one watch.
// Only the run goroutine touches it (load runs inside the store's View).
type loop struct {
	d        *Dispatcher
	nodes    map[string]*store.Node
	services map[string]*store.Service
	tasks    map[string]*store.Task            // tasks with a node
	byNode   map[string]map[string]*store.Task // node ID → task ID → task
	bySvc    map[string]map[string]*store.Task // service ID → task ID → task (tasks with a node)
	secrets  map[string]*store.Secret
	configs  map[string]*store.Config
	cluster  *store.Cluster
	ingress  *ingressTable
}

func newLoop(d *Dispatcher) *loop { return &loop{d: d} }

// load fills the cache from a snapshot. It runs inside View: no store calls.
func (l *loop) load(rt store.ReadTx) {
	l.nodes = map[string]*store.Node{}
	l.services = map[string]*store.Service{}
	l.tasks = map[string]*store.Task{}
	l.byNode = map[string]map[string]*store.Task{}
	l.bySvc = map[string]map[string]*store.Task{}
	l.ingress = newIngressTable()
	for _, n := range rt.FindNodes(store.All()) {
		l.nodes[n.ID] = n
	}
	for _, s := range rt.FindServices(store.All()) {
		l.services[s.ID] = s
		if len(ingressPorts(s)) > 0 {
			l.ingress.mark(s.ID)
		}
	}
	l.secrets = map[string]*store.Secret{}
	for _, s := range rt.FindSecrets(store.All()) {
		l.secrets[s.ID] = s
	}
	l.configs = map[string]*store.Config{}
	for _, c := range rt.FindConfigs(store.All()) {
		l.configs[c.ID] = c
	}
	for _, t := range rt.FindTasks(store.All()) {
		l.putTask(t)
	}
	l.cluster = rt.GetCluster()
}

func (l *loop) putTask(t *store.Task) {
	if t.NodeID == "" {
		return
	}
	l.tasks[t.ID] = t
	m := l.byNode[t.NodeID]
	if m == nil {
		m = map[string]*store.Task{}
		l.byNode[t.NodeID] = m
	}
	m[t.ID] = t
	ms := l.bySvc[t.ServiceID]
	if ms == nil {
		ms = map[string]*store.Task{}
		l.bySvc[t.ServiceID] = ms
	}
	ms[t.ID] = t
}

func (l *loop) dropTask(t *store.Task) {
	delete(l.tasks, t.ID)
	if m := l.byNode[t.NodeID]; m != nil {
		delete(m, t.ID)
		if len(m) == 0 {
			delete(l.byNode, t.NodeID)
		}
	}
	if m := l.bySvc[t.ServiceID]; m != nil {
		delete(m, t.ID)
		if len(m) == 0 {
			delete(l.bySvc, t.ServiceID)
		}
	}
}

// period is the heartbeat period of the cluster spec.
func (l *loop) period() time.Duration {
	if l.cluster != nil && l.cluster.Spec.Dispatcher.HeartbeatPeriod > 0 {
		return l.cluster.Spec.Dispatcher.HeartbeatPeriod
	}
	return DefaultHeartbeatPeriod
}

// storeManagers lists the managers' addresses, leader first.
func (l *loop) storeManagers() []string {
	var leader string
	var out []string
	for _, n := range l.nodes {
		ms := n.ManagerStatus
		if ms == nil || ms.Addr == "" {
			continue
		}
		if ms.Leader {
			leader = ms.Addr
			continue
		}
		out = append(out, ms.Addr)
	}
	slices.Sort(out)
	if leader != "" {
		out = append([]string{leader}, out...)
	}
	return out
}

var errWatchClosed = errors.New("dispatcher: store watch closed")

func (l *loop) run(ctx context.Context, events <-chan store.Event, regs <-chan *regReq) error {
	tick := time.NewTicker(l.d.cfg.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errWatchClosed
			}
			l.handle(ev)
		case r := <-regs:
			l.register(r)
		case <-tick.C:
			if l.d.cfg.Managers != nil {
				l.setManagers(l.d.cfg.Managers())
			}
			l.flushIngress()
		}
	}
}

func (l *loop) handle(ev store.Event) {
	if ev.Op == store.OpReset {
		// The state was replaced wholesale: rebuild and make every agent
		// start over with a full assignment set.
		l.d.s.View(l.load)
		l.d.mu.Lock()
		for id, s := range l.d.sessions {
			s.close()
			delete(l.d.sessions, id)
		}
		l.d.mu.Unlock()
		l.clusterChanged()
		return
	}
	switch ev.Kind {
	case store.KindTask:
		l.taskEvent(ev)
	case store.KindNode:
		l.nodeEvent(ev)
	case store.KindService:
		id := ev.Object.GetID()
		if len(ingressPorts(l.services[id])) > 0 || len(ingressPorts(ev.Object.(*store.Service))) > 0 {
			l.ingress.mark(id)
		}
		if ev.Op == store.OpDelete {
			delete(l.services, id)
		} else {
			l.services[id] = ev.Object.(*store.Service)
		}
	case store.KindSecret:
		if ev.Op == store.OpDelete {
			delete(l.secrets, ev.Object.GetID())
		} else {
			l.secrets[ev.Object.GetID()] = ev.Object.(*store.Secret)
		}
	case store.KindConfig:
		if ev.Op == store.OpDelete {
			delete(l.configs, ev.Object.GetID())
		} else {
			l.configs[ev.Object.GetID()] = ev.Object.(*store.Config)
		}
	case store.KindCluster:
		if ev.Op == store.OpDelete {
			l.cluster = nil
		} else {
			l.cluster = ev.Object.(*store.Cluster)
		}
		l.clusterChanged()
	}
}

func (l *loop) taskEvent(ev store.Event) {
	t := ev.Object.(*store.Task)
	cached := l.tasks[t.ID]
	if ev.Op == store.OpDelete {
		if cached == nil {
			return
		}
		if serving(cached) {
			l.ingress.mark(cached.ServiceID)
		}
		l.dropTask(cached)
		l.withSession(cached.NodeID, func(s *session) { s.remove(t.ID) })
		return
	}
	if cached != nil && cached.Meta.Version.Index >= t.Meta.Version.Index {
		return // already seen (events overlapping a reload)
	}
	if ingressChanged(cached, t) {
		l.ingress.mark(t.ServiceID)
	}
	if cached != nil {
		l.dropTask(cached)
		if cached.NodeID != t.NodeID {
			l.withSession(cached.NodeID, func(s *session) { s.remove(t.ID) })
		}
	}
	l.putTask(t)
	if t.NodeID != "" {
		l.withSession(t.NodeID, func(s *session) { s.offer(t, l.assignment) })
	}
}

func (l *loop) nodeEvent(ev store.Event) {
	n := ev.Object.(*store.Node)
	id := n.ID
	if old := l.nodes[id]; ev.Op == store.OpDelete || old == nil || nodeIngressChanged(old, n) {
		for _, t := range l.byNode[id] {
			if serving(t) {
				l.ingress.mark(t.ServiceID)
			}
		}
	}
	if ev.Op == store.OpDelete {
		delete(l.nodes, id)
		l.d.mu.Lock()
		if s := l.d.sessions[id]; s != nil {
			s.queueNotice(wire.Notice{Kind: wire.NoticeNodeRemoved, Message: "node removed from the cluster"})
			s.close()
			delete(l.d.sessions, id)
		}
		delete(l.d.live, id)
		delete(l.d.down, id)
		l.d.mu.Unlock()
		l.d.dropNodeUpdate(id)
	} else {
		l.nodes[id] = n
		l.d.mu.Lock()
		if s := l.d.sessions[id]; s != nil {
			s.nodeChanged(n, l.d.period, l.d.managers)
		}
		l.d.mu.Unlock()
	}
	if l.d.cfg.Managers == nil && managerChanged(ev) {
		l.setManagers(l.storeManagers())
	}
}

// managerChanged reports node events that can change the manager list
// (most node events are status writes, and the list costs a scan).
func managerChanged(ev store.Event) bool {
	n := ev.Object.(*store.Node)
	if ev.Op != store.OpUpdate || ev.Old == nil {
		return n.ManagerStatus != nil
	}
	old := ev.Old.(*store.Node)
	if (old.ManagerStatus == nil) != (n.ManagerStatus == nil) {
		return true
	}
	return n.ManagerStatus != nil && *n.ManagerStatus != *old.ManagerStatus
}

// clusterChanged applies a new heartbeat period.
func (l *loop) clusterChanged() {
	p := l.period()
	d := l.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if p == d.period {
		return
	}
	old := d.period
	d.period = p
	// Agents learn the new period on their next message; until then keep
	// the longer of both graces so nobody expires in the switch.
	grace := max(old, p) * GraceMultiplier
	until := d.cfg.Now().Add(grace)
	for _, ln := range d.live {
		if ln.deadline.Before(until) {
			ln.deadline = until
		}
	}
	for id, s := range d.sessions {
		s.queueInfo(l.nodes[id], p, d.managers)
	}
}

func (l *loop) setManagers(m []string) {
	d := l.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if slices.Equal(m, d.managers) {
		return
	}
	d.managers = slices.Clone(m)
	for id, s := range d.sessions {
		s.queueInfo(l.nodes[id], d.period, d.managers)
	}
}

func (l *loop) withSession(nodeID string, fn func(*session)) {
	l.d.mu.Lock()
	s := l.d.sessions[nodeID]
	l.d.mu.Unlock()
	if s != nil {
		fn(s)
	}
}

// assignment is what the agent receives for t.
func (l *loop) assignment(t *store.Task) wire.Assignment {
	a := wire.Assignment{Task: t.Task, Service: wire.ServiceInfo{ID: t.ServiceID}}
	// Payloads only for tasks that may still run: a finished task's
	// secrets have no business on the node any more.
	if cs := t.Spec.ContainerSpec; cs != nil && !wire.Terminal(t.Status.State) && !wire.Terminal(t.DesiredState) {
		for _, ref := range cs.Secrets {
			if ref == nil {
				continue
			}
			if sec := l.secrets[ref.SecretID]; sec != nil {
				a.Secrets = append(a.Secrets, wire.Payload{ID: sec.ID, Data: sec.Spec.Data})
			}
		}
		for _, ref := range cs.Configs {
			if ref == nil {
				continue
			}
			if cfg := l.configs[ref.ConfigID]; cfg != nil {
				a.Configs = append(a.Configs, wire.Payload{ID: cfg.ID, Data: cfg.Spec.Data})
			}
		}
	}
	svc := l.services[t.ServiceID]
	if svc == nil {
		return a
	}
	a.Service.Name = svc.Spec.Name
	a.Service.Labels = svc.Spec.Labels
	switch {
	case len(svc.Endpoint.Ports) > 0:
		a.Service.Ports = svc.Endpoint.Ports
	case svc.Spec.EndpointSpec != nil:
		a.Service.Ports = svc.Spec.EndpointSpec.Ports
	}
	if l.d.cfg.RegistryAuth != nil {
		a.Service.RegistryAuth = l.d.cfg.RegistryAuth(svc)
	}
	return a
}

// regReq asks the run loop to open a session.
type regReq struct {
	nodeID string
	req    wire.SessionRequest
	addr   string
	reply  chan regResult
}

type regResult struct {
	s       *session
	initial []wire.Message
	err     error
}

func (l *loop) register(r *regReq) {
	node := l.nodes[r.nodeID]
	if node == nil {
		r.reply <- regResult{err: errdefs.NotFound("node %s not found", r.nodeID)}
		return
	}
	// Bring the routing mesh's table up to date before the session joins
	// the others: its full table and the increments queued to it later
	// must line up.
	l.flushIngress()
	d := l.d
	s := newSession(r.nodeID)
	full := make([]wire.Assignment, 0, len(l.byNode[r.nodeID]))
	for _, t := range l.byNode[r.nodeID] {
		if assigned(t) {
			s.sent[t.ID] = t
			full = append(full, l.assignment(t))
		}
	}
	slices.SortFunc(full, func(a, b wire.Assignment) int { return strings.Compare(a.Task.ID, b.Task.ID) })
	s.lastNode = node

	d.mu.Lock()
	if old := d.sessions[r.nodeID]; old != nil {
		old.close()
	}
	d.sessions[r.nodeID] = s
	d.live[r.nodeID] = &liveNode{sessionID: s.id, deadline: d.cfg.Now().Add(d.period * GraceMultiplier), everRegistered: true}
	delete(d.down, r.nodeID)
	info := wire.Message{
		Type:            wire.MsgSession,
		SessionID:       s.id,
		HeartbeatPeriod: d.period,
		Managers:        slices.Clone(d.managers),
		Node:            &node.Node,
	}
	d.mu.Unlock()

	desc := r.req.Description
	d.queueNode(r.nodeID, nodeUpdate{state: swarm.NodeStateReady, addr: r.addr, desc: &desc})
	initial := []wire.Message{info}
	if n := roleNotice(node); n != nil {
		s.lastRole = node.Spec.Role
		initial = append(initial, wire.Message{Type: wire.MsgNotice, Notice: n})
	}
	initial = append(initial, wire.Message{Type: wire.MsgAssignments, Assignments: &wire.Assignments{Full: true, Tasks: full}})
	initial = append(initial, wire.Message{Type: wire.MsgIngress, Ingress: &wire.Ingress{Full: true, Ports: l.ingress.full()}})
	r.reply <- regResult{s: s, initial: initial}
}

// flushIngress recomputes the routing mesh's table where it may have
// changed and queues the changes to every session.
func (l *loop) flushIngress() {
	changed, removed := l.ingress.flush(l.services, l.bySvc, l.nodes)
	if len(changed) == 0 && len(removed) == 0 {
		return
	}
	l.d.mu.Lock()
	defer l.d.mu.Unlock()
	for _, s := range l.d.sessions {
		s.queueIngress(changed, removed)
	}
}

// roleNotice tells a node its certificate's role is not its desired role.
func roleNotice(n *store.Node) *wire.Notice {
	if n.CertRole == "" || n.Spec.Role == "" || n.CertRole == n.Spec.Role {
		return nil
	}
	return &wire.Notice{Kind: wire.NoticeRoleChanged, Role: n.Spec.Role,
		Message: "node role changed to " + string(n.Spec.Role) + ": renew the certificate"}
}

// assigned reports tasks the agent should know about.
func assigned(t *store.Task) bool {
	return t.NodeID != "" && wire.Rank(t.Status.State) >= wire.Rank(swarm.TaskStateAssigned)
}

// equalStable compares what the agent acts on: everything but the status
// (which the agent itself reports) and the metadata.
func equalStable(a, b *store.Task) bool {
	if a.DesiredState != b.DesiredState || a.NodeID != b.NodeID || a.SpecVersion != b.SpecVersion {
		return false
	}
	x, y := a.Task, b.Task
	x.Status, y.Status = swarm.TaskStatus{}, swarm.TaskStatus{}
	x.Meta, y.Meta = swarm.Meta{}, swarm.Meta{}
	return reflect.DeepEqual(x, y)
}
