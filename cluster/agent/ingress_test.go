package agent_test

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent"
	"github.com/shoal/shoal/cluster/agent/exec/exectest"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/ingress"
)

// fakeMesh records what the agent programs. The real mesh has its own
// end-to-end test (network/ingress) and the lab test (test/e2e).
type fakeMesh struct {
	mu    sync.Mutex
	last  []ingress.Port
	syncs int
}

func (m *fakeMesh) Sync(ports []ingress.Port) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = slices.Clone(ports)
	m.syncs++
	return nil
}

// backends renders the programmed table: "8080/tcp web: a b" with the
// backends sorted.
func (m *fakeMesh) table() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, p := range m.last {
		var bs []string
		for _, b := range p.Backends {
			bs = append(bs, b.String())
		}
		slices.Sort(bs)
		out = append(out, fmt.Sprintf("%s %s: %v", p.Key, p.Service, bs))
	}
	return out
}

func ingressService(id, name string, published, target uint32) *store.Service {
	s := mkService(id, name)
	s.Endpoint.Ports = []swarm.PortConfig{{Protocol: network.TCP, TargetPort: target, PublishedPort: published, PublishMode: swarm.PortConfigPublishModeIngress}}
	return s
}

// TestAgentProgramsRoutingMesh runs two agents against one dispatcher:
// each node's mesh reaches the other node's task through that node's
// address and the task's node port, and its own task at the container's
// address; changes follow; a host-mode port the mesh holds is refused.
func TestAgentProgramsRoutingMesh(t *testing.T) {
	s := newStore(t, 5e9, mkNode("n1"), mkNode("n2"), ingressService("s1", "web", 8080, 80),
		mkTask("t1", "s1", "n1", 1), mkTask("t2", "s1", "n2", 2))
	m := newManager(t, s, false, nil)
	m.run()
	meshes := map[string]*fakeMesh{"n1": {}, "n2": {}}
	addrs := map[string]string{"n1": "192.0.2.1", "n2": "192.0.2.2"}
	nodes := map[string]*node{}
	for _, id := range []string{"n1", "n2"} {
		nodes[id] = startAgent(t, id, plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages("busybox:latest"),
			func(c *agent.Config) { c.Addr, c.Ingress = addrs[id], meshes[id] })
	}
	t1 := waitTask(t, s, "t1", swarm.TaskStateRunning)
	t2 := waitTask(t, s, "t2", swarm.TaskStateRunning)
	nodePort := func(tk *store.Task) uint32 {
		t.Helper()
		ps := tk.Status.PortStatus.Ports
		if len(ps) != 1 || ps[0].PublishMode != swarm.PortConfigPublishModeIngress || ps[0].TargetPort != 80 || ps[0].PublishedPort < 32768 {
			t.Fatalf("task %s port status %+v", tk.ID, ps)
		}
		return ps[0].PublishedPort
	}
	ctrIP := func(n *node, task string) netip.Addr {
		c, ok := n.eng.ByTask(task)
		if !ok {
			t.Fatalf("no container for %s", task)
		}
		return c.IP
	}
	remote1 := fmt.Sprintf("192.0.2.1:%d", nodePort(t1))
	remote2 := fmt.Sprintf("192.0.2.2:%d", nodePort(t2))
	local1 := netip.AddrPortFrom(ctrIP(nodes["n1"], "t1"), 80).String()
	local2 := netip.AddrPortFrom(ctrIP(nodes["n2"], "t2"), 80).String()
	waitMesh := func(id string, want ...string) {
		t.Helper()
		testutil.Eventually(t, wait, func() bool { return reflect.DeepEqual(meshes[id].table(), want) },
			"%s mesh %v, want %v", id, meshes[id].table(), want)
	}
	waitMesh("n1", fmt.Sprintf("8080/tcp web: %v", sorted(local1, remote2)))
	waitMesh("n2", fmt.Sprintf("8080/tcp web: %v", sorted(local2, remote1)))
	if tab := nodes["n2"].a.IngressTable(); len(tab) != 1 || len(tab[0].Endpoints) != 2 || tab[0].ServiceName != "web" {
		t.Fatalf("agent table %+v", tab)
	}

	// A host-mode task asking for the mesh's port is refused, clearly.
	update(t, s, func(tx store.Tx) error {
		svc := mkService("s2", "hostport")
		svc.Endpoint.Ports = []swarm.PortConfig{{Protocol: network.TCP, TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost}}
		if err := tx.Create(svc); err != nil {
			return err
		}
		return tx.Create(mkTask("t3", "s2", "n1", 1))
	})
	t3 := waitTask(t, s, "t3", swarm.TaskStateRejected)
	if t3.Status.Err != "host-mode port 8080/tcp is already published through the ingress routing mesh by service web" {
		t.Fatalf("t3 error %q", t3.Status.Err)
	}

	// A task stops: every node drops it.
	setDesired(t, s, "t2", swarm.TaskStateShutdown)
	waitMesh("n1", fmt.Sprintf("8080/tcp web: %v", []string{local1}))
	waitMesh("n2", fmt.Sprintf("8080/tcp web: %v", []string{remote1}))

	// The service goes: the meshes are emptied.
	update(t, s, func(tx store.Tx) error { return tx.Delete(store.KindService, "s1") })
	waitMesh("n1")
	waitMesh("n2")
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// TestAgentMeshRemovedWithNode: a node removed from the cluster stops
// answering for the cluster's ports.
func TestAgentMeshRemovedWithNode(t *testing.T) {
	s := newStore(t, 5e9, mkNode("n1"), mkNode("n2"), ingressService("s1", "web", 8080, 80), mkTask("t2", "s1", "n2", 1))
	m := newManager(t, s, false, nil)
	m.run()
	mesh := &fakeMesh{}
	startAgent(t, "n2", plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages("busybox:latest"),
		func(c *agent.Config) { c.Addr = "192.0.2.2" })
	startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages(),
		func(c *agent.Config) { c.Addr, c.Ingress = "192.0.2.1", mesh })
	tk := waitTask(t, s, "t2", swarm.TaskStateRunning)
	want := []string{fmt.Sprintf("8080/tcp web: [192.0.2.2:%d]", tk.Status.PortStatus.Ports[0].PublishedPort)}
	testutil.Eventually(t, wait, func() bool { return reflect.DeepEqual(mesh.table(), want) }, "mesh %v", mesh.table())
	update(t, s, func(tx store.Tx) error { return tx.Delete(store.KindNode, "n1") })
	testutil.Eventually(t, wait, func() bool { return len(mesh.table()) == 0 }, "mesh of a removed node %v", mesh.table())
}
