package dispatcher

import (
	"reflect"
	"testing"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
)

func ingressSvc(id, name string, ports ...swarm.PortConfig) *store.Service {
	s := mkService(id, name)
	s.Endpoint.Ports = ports
	return s
}

func ingressPort(proto network.IPProtocol, published, target uint32) swarm.PortConfig {
	return swarm.PortConfig{Protocol: proto, PublishedPort: published, TargetPort: target, PublishMode: swarm.PortConfigPublishModeIngress}
}

// servingTask is a running task whose container publishes target ports on
// node ports (target → node port).
func servingTask(id, svc, node string, ports map[uint32]uint32, proto network.IPProtocol) *store.Task {
	t := mkTask(id, svc, node, 1, swarm.TaskStateRunning)
	for target, np := range ports {
		t.Status.PortStatus.Ports = append(t.Status.PortStatus.Ports,
			swarm.PortConfig{Protocol: proto, TargetPort: target, PublishedPort: np, PublishMode: swarm.PortConfigPublishModeIngress})
	}
	return t
}

func readyNode(id, addr string) *store.Node {
	n := mkNode(id, swarm.NodeStateReady)
	n.Status.Addr = addr
	return n
}

func ep(node, task, addr string, port uint32) wire.IngressEndpoint {
	return wire.IngressEndpoint{NodeID: node, TaskID: task, Addr: addr, Port: port}
}

func TestComputeIngress(t *testing.T) {
	nodes := map[string]*store.Node{
		"n1":   readyNode("n1", "10.0.0.1"),
		"n2":   readyNode("n2", "10.0.0.2"),
		"down": func() *store.Node { n := readyNode("down", "10.0.0.9"); n.Status.State = swarm.NodeStateDown; return n }(),
	}
	stopping := servingTask("t4", "s1", "n2", map[uint32]uint32{80: 32771}, network.TCP)
	stopping.DesiredState = swarm.TaskStateShutdown
	starting := servingTask("t5", "s1", "n2", map[uint32]uint32{80: 32772}, network.TCP)
	starting.Status.State = swarm.TaskStateStarting
	hostOnly := mkTask("t6", "s1", "n1", 6, swarm.TaskStateRunning)
	hostOnly.Status.PortStatus.Ports = []swarm.PortConfig{{Protocol: network.TCP, TargetPort: 80, PublishedPort: 80, PublishMode: swarm.PortConfigPublishModeHost}}
	tasks := map[string]*store.Task{
		"t1": servingTask("t1", "s1", "n1", map[uint32]uint32{80: 32768, 53: 32769}, network.TCP),
		"t2": servingTask("t2", "s1", "n2", map[uint32]uint32{80: 40000}, network.TCP),
		"t3": servingTask("t3", "s1", "down", map[uint32]uint32{80: 32770}, network.TCP),
		"t4": stopping, "t5": starting, "t6": hostOnly,
	}
	svc := ingressSvc("s1", "web", ingressPort(network.TCP, 8080, 80), ingressPort("", 8443, 80), ingressPort(network.UDP, 5353, 53),
		swarm.PortConfig{Protocol: network.TCP, PublishedPort: 9000, TargetPort: 90, PublishMode: swarm.PortConfigPublishModeHost})
	got := computeIngress(svc, tasks, nodes)
	both := []wire.IngressEndpoint{ep("n1", "t1", "10.0.0.1", 32768), ep("n2", "t2", "10.0.0.2", 40000)}
	want := []wire.IngressPort{
		{IngressKey: wire.IngressKey{Protocol: network.TCP, PublishedPort: 8080}, TargetPort: 80, ServiceID: "s1", ServiceName: "web", Endpoints: both},
		{IngressKey: wire.IngressKey{Protocol: network.TCP, PublishedPort: 8443}, TargetPort: 80, ServiceID: "s1", ServiceName: "web", Endpoints: both},
		// t1 publishes 53 over tcp, not udp: nothing serves it yet.
		{IngressKey: wire.IngressKey{Protocol: network.UDP, PublishedPort: 5353}, TargetPort: 53, ServiceID: "s1", ServiceName: "web"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if computeIngress(mkService("s2", "plain"), tasks, nodes) != nil {
		t.Fatal("a service without ingress ports has a table")
	}
}

func TestIngressTableFlush(t *testing.T) {
	nodes := map[string]*store.Node{"n1": readyNode("n1", "10.0.0.1")}
	services := map[string]*store.Service{"s1": ingressSvc("s1", "web", ingressPort(network.TCP, 8080, 80))}
	bySvc := map[string]map[string]*store.Task{"s1": {"t1": servingTask("t1", "s1", "n1", map[uint32]uint32{80: 32768}, network.TCP)}}
	g := newIngressTable()
	if c, r := g.flush(services, bySvc, nodes); c != nil || r != nil {
		t.Fatal("nothing dirty, yet changes")
	}
	g.mark("s1")
	changed, removed := g.flush(services, bySvc, nodes)
	if len(changed) != 1 || len(changed[0].Endpoints) != 1 || removed != nil {
		t.Fatalf("first flush %+v %+v", changed, removed)
	}
	// Recomputed with no difference: no change to send.
	g.mark("s1")
	if c, r := g.flush(services, bySvc, nodes); c != nil || r != nil {
		t.Fatalf("unchanged service reported %+v %+v", c, r)
	}
	// The port moves to another service in one batch: a change, not a
	// removal.
	services["s1"] = ingressSvc("s1", "web")
	services["s2"] = ingressSvc("s2", "api", ingressPort(network.TCP, 8080, 81))
	g.mark("s1")
	g.mark("s2")
	changed, removed = g.flush(services, bySvc, nodes)
	if len(changed) != 1 || changed[0].ServiceID != "s2" || changed[0].Endpoints != nil || removed != nil {
		t.Fatalf("moved port %+v %+v", changed, removed)
	}
	delete(services, "s2")
	g.mark("s2")
	changed, removed = g.flush(services, bySvc, nodes)
	if changed != nil || !reflect.DeepEqual(removed, []wire.IngressKey{{Protocol: network.TCP, PublishedPort: 8080}}) {
		t.Fatalf("removed service %+v %+v", changed, removed)
	}
	if len(g.full()) != 0 {
		t.Fatalf("table %+v", g.full())
	}
}

func TestIngressChangeDetection(t *testing.T) {
	run := servingTask("t1", "s1", "n1", map[uint32]uint32{80: 32768}, network.TCP)
	moved := run.Copy()
	moved.Status.PortStatus.Ports = []swarm.PortConfig{{Protocol: network.TCP, TargetPort: 80, PublishedPort: 32999, PublishMode: swarm.PortConfigPublishModeIngress}}
	msgOnly := run.Copy()
	msgOnly.Status.Message = "still running"
	stop := run.Copy()
	stop.DesiredState = swarm.TaskStateShutdown
	pending := mkTask("t1", "s1", "", 1, swarm.TaskStatePending)
	tests := []struct {
		name     string
		old, cur *store.Task
		want     bool
	}{
		{"new running task", nil, run, true},
		{"not serving either way", nil, pending, false},
		{"status message only", run, msgOnly, false},
		{"node port changed", run, moved, true},
		{"told to stop", run, stop, true},
	}
	for _, tc := range tests {
		if got := ingressChanged(tc.old, tc.cur); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	ready, down := readyNode("n1", "10.0.0.1"), readyNode("n1", "10.0.0.1")
	down.Status.State = swarm.NodeStateDown
	readdr := readyNode("n1", "10.0.0.7")
	if !nodeIngressChanged(ready, down) || !nodeIngressChanged(ready, readdr) || nodeIngressChanged(down, down) || nodeIngressChanged(ready, ready) {
		t.Fatal("node change detection")
	}
}

// nextIngress skips other messages.
func (s *stream) nextIngress() *wire.Ingress {
	s.t.Helper()
	for {
		m := s.next()
		if m.Type == wire.MsgIngress {
			return m.Ingress
		}
	}
}

// TestIngressMessages: a session starts with the full table, right after
// the full assignments; task and service changes follow as incremental
// messages, a burst as one message, to every node (workers included).
func TestIngressMessages(t *testing.T) {
	e := newEnv(t, func(tx store.Tx) error {
		for _, o := range []store.Object{
			mkNode("n1", swarm.NodeStateDown), mkNode("n2", swarm.NodeStateDown),
			ingressSvc("s1", "web", ingressPort(network.TCP, 8080, 80)),
			mkTask("t1", "s1", "n1", 1, swarm.TaskStateAssigned),
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	s1, _ := e.open("n1", wire.SessionRequest{Addr: "10.0.0.1"})
	if m := s1.next(); m.Type != wire.MsgAssignments || !m.Assignments.Full {
		t.Fatalf("second message %+v", m)
	}
	m := s1.next()
	key := wire.IngressKey{Protocol: network.TCP, PublishedPort: 8080}
	if m.Type != wire.MsgIngress || !m.Ingress.Full || len(m.Ingress.Ports) != 1 || m.Ingress.Ports[0].IngressKey != key ||
		m.Ingress.Ports[0].Endpoints != nil || m.Ingress.Ports[0].TargetPort != 80 {
		t.Fatalf("full table %+v", m)
	}
	s2, _ := e.open("n2", wire.SessionRequest{Addr: "10.0.0.2"})
	if in := s2.nextIngress(); !in.Full || len(in.Ports) != 1 {
		t.Fatalf("n2 full table %+v", in)
	}
	e.waitNode("n1", swarm.NodeStateReady)

	// The agent reports t1 running with its node port: both nodes learn.
	st := swarm.TaskStatus{State: swarm.TaskStateRunning, PortStatus: swarm.PortStatus{Ports: []swarm.PortConfig{
		{Protocol: network.TCP, TargetPort: 80, PublishedPort: 32768, PublishMode: swarm.PortConfigPublishModeIngress}}}}
	if code, we := e.post("n1", wire.PathStatus, wire.StatusRequest{SessionID: s1.id, Updates: []wire.TaskStatusUpdate{{TaskID: "t1", Status: st}}}, nil); code != 204 {
		t.Fatalf("status: %d %+v", code, we)
	}
	want := []wire.IngressEndpoint{ep("n1", "t1", "10.0.0.1", 32768)}
	for _, s := range []*stream{s1, s2} {
		in := s.nextIngress()
		if in.Full || len(in.Ports) != 1 || !reflect.DeepEqual(in.Ports[0].Endpoints, want) {
			t.Fatalf("incremental %+v", in)
		}
	}

	// A second port and a new running task: the table follows.
	e.update(func(tx store.Tx) error {
		svc := tx.GetService("s1").Copy()
		svc.Endpoint.Ports = append(svc.Endpoint.Ports, ingressPort(network.UDP, 5353, 53))
		if err := tx.Update(svc); err != nil {
			return err
		}
		// t2 publishes over udp only: the tcp port is unchanged.
		return tx.Create(servingTask("t2", "s1", "n2", map[uint32]uint32{80: 40000, 53: 40001}, network.UDP))
	})
	udp := wire.IngressKey{Protocol: network.UDP, PublishedPort: 5353}
	for {
		in := s2.nextIngress()
		if len(in.Ports) != 1 || in.Ports[0].IngressKey != udp || in.Removed != nil {
			t.Fatalf("second port %+v", in)
		}
		if reflect.DeepEqual(in.Ports[0].Endpoints, []wire.IngressEndpoint{ep("n2", "t2", "10.0.0.2", 40001)}) {
			break
		}
	}

	// The service goes: removed everywhere.
	e.update(func(tx store.Tx) error { return tx.Delete(store.KindService, "s1") })
	for {
		in := s1.nextIngress()
		if in.Removed == nil {
			continue // the second port's messages
		}
		if !reflect.DeepEqual(in.Removed, []wire.IngressKey{key, udp}) || in.Ports != nil {
			t.Fatalf("removal %+v", in)
		}
		break
	}
}

// TestSessionBatchesIngress: changes queued between two drains go out as
// one message, the latest content of each port winning.
func TestSessionBatchesIngress(t *testing.T) {
	s := newSession("n1")
	a := wire.IngressKey{Protocol: network.TCP, PublishedPort: 8080}
	b := wire.IngressKey{Protocol: network.UDP, PublishedPort: 53}
	c := wire.IngressKey{Protocol: network.TCP, PublishedPort: 9000}
	s.queueIngress([]wire.IngressPort{{IngressKey: a}, {IngressKey: b}}, nil)
	s.queueIngress([]wire.IngressPort{{IngressKey: a, Endpoints: []wire.IngressEndpoint{ep("n2", "t2", "10.0.0.2", 1)}}}, []wire.IngressKey{b, c})
	msgs := s.drain()
	want := wire.Ingress{
		Ports:   []wire.IngressPort{{IngressKey: a, Endpoints: []wire.IngressEndpoint{ep("n2", "t2", "10.0.0.2", 1)}}},
		Removed: []wire.IngressKey{c, b},
	}
	if len(msgs) != 1 || msgs[0].Type != wire.MsgIngress || !reflect.DeepEqual(*msgs[0].Ingress, want) {
		t.Fatalf("drained %+v", msgs)
	}
	if msgs := s.drain(); len(msgs) != 0 {
		t.Fatalf("second drain %+v", msgs)
	}
}
