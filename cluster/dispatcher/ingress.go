package dispatcher

import (
	"cmp"
	"reflect"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
)

// ingressTable is the routing mesh's table: for every ingress published
// port, the endpoints (node address, node-local port) of the owning
// service's serving tasks. The run loop owns it. Store events only mark
// services dirty; flush recomputes them once per tick, so a burst of task
// changes costs one pass over each touched service and one message per
// session.
type ingressTable struct {
	ports map[wire.IngressKey]*wire.IngressPort // as last sent
	bySvc map[string][]wire.IngressKey          // service ID → its keys in ports
	dirty map[string]bool                       // service IDs to recompute
}

func newIngressTable() *ingressTable {
	return &ingressTable{
		ports: map[wire.IngressKey]*wire.IngressPort{},
		bySvc: map[string][]wire.IngressKey{},
		dirty: map[string]bool{},
	}
}

func (g *ingressTable) mark(serviceID string) { g.dirty[serviceID] = true }

// ingressPorts lists the ingress-mode published ports of svc (the control
// API has given each a published number).
func ingressPorts(svc *store.Service) []swarm.PortConfig {
	if svc == nil {
		return nil
	}
	var out []swarm.PortConfig
	for _, p := range svc.Endpoint.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeIngress && p.PublishedPort != 0 && p.TargetPort != 0 {
			if p.Protocol == "" {
				p.Protocol = network.TCP
			}
			out = append(out, p)
		}
	}
	return out
}

// serving reports tasks that take ingress traffic: running, meant to keep
// running, and publishing something through the mesh.
func serving(t *store.Task) bool {
	if t == nil || t.NodeID == "" || t.Status.State != swarm.TaskStateRunning ||
		wire.Rank(t.DesiredState) > wire.Rank(swarm.TaskStateRunning) {
		return false
	}
	for _, p := range t.Status.PortStatus.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			return true
		}
	}
	return false
}

// ingressChanged reports whether a task change can change the table.
func ingressChanged(old, cur *store.Task) bool {
	so, sc := serving(old), serving(cur)
	if so != sc {
		return true
	}
	if !sc {
		return false
	}
	return old.NodeID != cur.NodeID || !reflect.DeepEqual(old.Status.PortStatus, cur.Status.PortStatus)
}

// nodeUsable: traffic may be sent to the node's tasks. A DOWN node's
// tasks are being replaced; sending them traffic only makes requests hang.
func nodeUsable(n *store.Node) bool {
	return n != nil && n.Status.Addr != "" &&
		(n.Status.State == swarm.NodeStateReady || n.Status.State == swarm.NodeStateUnknown)
}

// nodeIngressChanged reports node changes that move its tasks in or out of
// the table.
func nodeIngressChanged(old, cur *store.Node) bool {
	if nodeUsable(old) != nodeUsable(cur) {
		return true
	}
	return nodeUsable(cur) && old.Status.Addr != cur.Status.Addr
}

// endpointOf is t's endpoint for the target port, if t publishes it.
func endpointOf(t *store.Task, n *store.Node, target uint32, proto network.IPProtocol) (wire.IngressEndpoint, bool) {
	for _, p := range t.Status.PortStatus.Ports {
		pp := p.Protocol
		if pp == "" {
			pp = network.TCP
		}
		if p.PublishMode == swarm.PortConfigPublishModeIngress && p.TargetPort == target && pp == proto && p.PublishedPort != 0 {
			return wire.IngressEndpoint{NodeID: n.ID, TaskID: t.ID, Addr: n.Status.Addr, Port: p.PublishedPort}, true
		}
	}
	return wire.IngressEndpoint{}, false
}

// computeIngress builds svc's ports from its tasks and their nodes.
func computeIngress(svc *store.Service, tasks map[string]*store.Task, nodes map[string]*store.Node) []wire.IngressPort {
	ports := ingressPorts(svc)
	if len(ports) == 0 {
		return nil
	}
	out := make([]wire.IngressPort, 0, len(ports))
	for _, p := range ports {
		ip := wire.IngressPort{
			IngressKey:  wire.IngressKey{Protocol: p.Protocol, PublishedPort: p.PublishedPort},
			TargetPort:  p.TargetPort,
			ServiceID:   svc.ID,
			ServiceName: svc.Spec.Name,
		}
		for _, t := range tasks {
			if !serving(t) {
				continue
			}
			n := nodes[t.NodeID]
			if !nodeUsable(n) {
				continue
			}
			if ep, ok := endpointOf(t, n, p.TargetPort, p.Protocol); ok {
				ip.Endpoints = append(ip.Endpoints, ep)
			}
		}
		slices.SortFunc(ip.Endpoints, compareEndpoints)
		out = append(out, ip)
	}
	return out
}

func compareEndpoints(a, b wire.IngressEndpoint) int {
	return cmp.Or(strings.Compare(a.Addr, b.Addr), cmp.Compare(a.Port, b.Port), strings.Compare(a.TaskID, b.TaskID))
}

func compareKeys(a, b wire.IngressKey) int {
	return cmp.Or(strings.Compare(string(a.Protocol), string(b.Protocol)), cmp.Compare(a.PublishedPort, b.PublishedPort))
}

// flush recomputes the dirty services and returns what changed: ports
// added or whose content changed, and ports gone.
func (g *ingressTable) flush(services map[string]*store.Service, bySvc map[string]map[string]*store.Task, nodes map[string]*store.Node) ([]wire.IngressPort, []wire.IngressKey) {
	if len(g.dirty) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(g.dirty))
	for id := range g.dirty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	clear(g.dirty)
	// Take every dirty service's ports out first, then put the new ones
	// in: a port that moves from one service to another in the same
	// batch is a change, not a removal.
	before := map[wire.IngressKey]*wire.IngressPort{}
	for _, id := range ids {
		for _, k := range g.bySvc[id] {
			if _, ok := before[k]; !ok {
				before[k] = g.ports[k]
			}
			delete(g.ports, k)
		}
		delete(g.bySvc, id)
	}
	for _, id := range ids {
		for _, p := range computeIngress(services[id], bySvc[id], nodes) {
			if _, ok := before[p.IngressKey]; !ok {
				before[p.IngressKey] = g.ports[p.IngressKey]
			}
			g.ports[p.IngressKey] = &p
			g.bySvc[id] = append(g.bySvc[id], p.IngressKey)
		}
	}
	var changed []wire.IngressPort
	var removed []wire.IngressKey
	for k, old := range before {
		cur := g.ports[k]
		switch {
		case cur == nil && old != nil:
			removed = append(removed, k)
		case cur != nil && (old == nil || !reflect.DeepEqual(*old, *cur)):
			changed = append(changed, *cur)
		}
	}
	slices.SortFunc(changed, func(a, b wire.IngressPort) int { return compareKeys(a.IngressKey, b.IngressKey) })
	slices.SortFunc(removed, compareKeys)
	return changed, removed
}

// full is the whole table, sorted.
func (g *ingressTable) full() []wire.IngressPort {
	out := make([]wire.IngressPort, 0, len(g.ports))
	for _, p := range g.ports {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b wire.IngressPort) int { return compareKeys(a.IngressKey, b.IngressKey) })
	return out
}
