package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/network/ingress"
)

// Ingress is this node's share of the routing mesh (network/ingress.Mesh):
// it makes the node answer on every published port, forwarding to ports'
// backends.
type Ingress interface {
	Sync(ports []ingress.Port) error
}

// ingressState is the routing mesh's table as the sessions sent it (the
// agent's table): every published port of the cluster with its endpoints.
// It survives sessions; a new session's full table replaces it.
type ingressState struct {
	mu    sync.Mutex
	ports map[wire.IngressKey]wire.IngressPort
	known bool // a full table arrived: until then the node's mesh is left as it is
	gen   uint64
	// notify wakes the loop that programs the node.
	notify chan struct{}
}

func newIngressState() *ingressState {
	return &ingressState{ports: map[wire.IngressKey]wire.IngressPort{}, notify: make(chan struct{}, 1)}
}

func (s *ingressState) signal() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// apply takes a MsgIngress.
func (s *ingressState) apply(in wire.Ingress) {
	s.mu.Lock()
	if in.Full {
		clear(s.ports)
		s.known = true
	}
	for _, p := range in.Ports {
		s.ports[p.IngressKey] = p
	}
	for _, k := range in.Removed {
		delete(s.ports, k)
	}
	s.gen++
	s.mu.Unlock()
	s.signal()
}

// reset empties the table (the node left the cluster).
func (s *ingressState) reset() { s.apply(wire.Ingress{Full: true}) }

// owner names the service publishing proto/port through the mesh.
func (s *ingressState) owner(proto string, port uint32) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.ports[wire.IngressKey{Protocol: network.IPProtocol(proto), PublishedPort: port}]
	if !ok {
		return "", false
	}
	if p.ServiceName != "" {
		return p.ServiceName, true
	}
	return p.ServiceID, true
}

func (s *ingressState) snapshot() (ports []wire.IngressPort, known bool, gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ports = make([]wire.IngressPort, 0, len(s.ports))
	for _, p := range s.ports {
		ports = append(ports, p)
	}
	return ports, s.known, s.gen
}

// ingressLoop programs the node's mesh whenever the table changes,
// retrying until it succeeds.
func (a *Agent) ingressLoop(ctx context.Context) {
	st := a.ing
	retry := a.cfg.RetryDelay
	if retry <= 0 {
		retry = time.Second
	}
	var done uint64 // generation programmed
	failing := false
	for {
		if failing {
			select {
			case <-ctx.Done():
				return
			case <-st.notify:
			case <-time.After(retry):
			}
		} else {
			select {
			case <-ctx.Done():
				return
			case <-st.notify:
			}
		}
		ports, known, gen := st.snapshot()
		if !known || (gen == done && !failing) {
			continue
		}
		mesh, err := a.meshPorts(ctx, ports)
		if serr := a.cfg.Ingress.Sync(mesh); serr != nil {
			err = errors.Join(err, serr)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				a.log.Warn("routing mesh not fully programmed, retrying", "err", err)
			}
			failing = true
			continue
		}
		if failing {
			a.log.Info("routing mesh programmed")
		}
		failing, done = false, gen
	}
}

// meshPorts turns the table into the node's DNAT targets: another node's
// task is reached at that node's address and the node port the task is
// published on; a task of this node at its container's own address (NAT
// happens once per hook, so this node's own node port would not work).
// Endpoints that cannot be resolved are left out and reported, so the
// caller retries; the rest is programmed meanwhile.
func (a *Agent) meshPorts(ctx context.Context, table []wire.IngressPort) ([]ingress.Port, error) {
	var errs []error
	out := make([]ingress.Port, 0, len(table))
	for _, p := range table {
		proto, ok := meshProto(p.Protocol)
		if !ok || p.PublishedPort == 0 || p.PublishedPort > 65535 || p.TargetPort == 0 || p.TargetPort > 65535 {
			// Nothing to retry: the mesh carries tcp and udp only (the
			// tasks of such a port are rejected and say why).
			a.log.Debug("ingress port left out of the routing mesh", "port", p.PublishedPort, "protocol", p.Protocol)
			continue
		}
		mp := ingress.Port{Key: ingress.Key{Proto: proto, Port: uint16(p.PublishedPort)}, Service: p.ServiceName}
		if mp.Service == "" {
			mp.Service = p.ServiceID
		}
		for _, ep := range p.Endpoints {
			if ep.NodeID == a.cfg.NodeID && a.cfg.NodeID != "" {
				ip, err := a.exec.TaskAddr(ctx, ep.TaskID)
				if err != nil {
					errs = append(errs, fmt.Errorf("local backend of %s: %w", mp.Key, err))
					continue
				}
				mp.Backends = append(mp.Backends, netip.AddrPortFrom(ip, uint16(p.TargetPort)))
				continue
			}
			addr, err := netip.ParseAddr(ep.Addr)
			if err != nil || !addr.Unmap().Is4() || ep.Port == 0 || ep.Port > 65535 {
				errs = append(errs, fmt.Errorf("backend %s:%d of %s: not an IPv4 address and port", ep.Addr, ep.Port, mp.Key))
				continue
			}
			mp.Backends = append(mp.Backends, netip.AddrPortFrom(addr.Unmap(), uint16(ep.Port)))
		}
		out = append(out, mp)
	}
	slices.SortFunc(out, func(x, y ingress.Port) int {
		if x.Proto != y.Proto {
			if x.Proto < y.Proto {
				return -1
			}
			return 1
		}
		return int(x.Port) - int(y.Port)
	})
	return out, errors.Join(errs...)
}

func meshProto(p network.IPProtocol) (string, bool) {
	switch p {
	case "tcp", "":
		return ingress.ProtoTCP, true
	case "udp":
		return ingress.ProtoUDP, true
	}
	return "", false
}
