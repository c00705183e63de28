package ingress

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/netns"
	"github.com/shoal/shoal/network/nft"
)

// Test kernel objects are named shing<tag>...; everything lives in
// namespaces the test creates, which take their links and tables with
// them.
const e2ePrefix = "shing"

// topo is a node running the mesh (nsN), a remote node (nsB, also the
// client) and a "container" on the node (nsL):
//
//	nsB 10.x.y.2 ── 10.x.y.1 nsN 10.x.z.1 ── 10.x.z.2 nsL
type topo struct {
	t              *testing.T
	tag            string
	table          string
	node, remote   *netns.NS
	local          *netns.NS
	nodeIP, remIP  netip.Addr
	localIP        netip.Addr
	nodeCtrSideIP  netip.Addr
	remotePort     uint16 // the remote node's "ephemeral port" for the task
	remoteUDPPort  uint16
	localPort      uint16 // the container's port
	localUDPPort   uint16
	published      uint16
	publishedUDP   uint16
	remoteBackend  netip.AddrPort
	localBackend   netip.AddrPort
	remoteUBackend netip.AddrPort
	localUBackend  netip.AddrPort
}

func newTopo(t *testing.T) *topo {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "nft")
	tag := fmt.Sprintf("%04x", rand.IntN(0x10000))
	dir := t.TempDir()
	if err := netns.PrepareDir(filepath.Join(dir, "ns")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.RemoveDir(filepath.Join(dir, "ns")) })
	mk := func(name string) *netns.NS {
		ns, err := netns.Create(filepath.Join(dir, "ns", name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ns.Close() })
		return ns
	}
	a, b := byte(16+rand.IntN(200)), byte(rand.IntN(250))
	tp := &topo{t: t, tag: tag, table: "shing_" + tag,
		node: mk("node"), remote: mk("remote"), local: mk("local"),
		nodeIP: netip.AddrFrom4([4]byte{10, a, b, 1}), remIP: netip.AddrFrom4([4]byte{10, a, b, 2}),
		nodeCtrSideIP: netip.AddrFrom4([4]byte{10, a, b + 1, 1}), localIP: netip.AddrFrom4([4]byte{10, a, b + 1, 2}),
		remotePort: 31000, remoteUDPPort: 31001, localPort: 80, localUDPPort: 53,
		published: 8080, publishedUDP: 5353,
	}
	tp.remoteBackend = netip.AddrPortFrom(tp.remIP, tp.remotePort)
	tp.localBackend = netip.AddrPortFrom(tp.localIP, tp.localPort)
	tp.remoteUBackend = netip.AddrPortFrom(tp.remIP, tp.remoteUDPPort)
	tp.localUBackend = netip.AddrPortFrom(tp.localIP, tp.localUDPPort)
	tp.link(tp.node, tp.nodeIP, tp.remote, tp.remIP, "b")
	tp.link(tp.node, tp.nodeCtrSideIP, tp.local, tp.localIP, "l")
	// The servers: each answers with who it is.
	tp.serveTCP(tp.remote, tp.remoteBackend, "remote")
	tp.serveTCP(tp.local, tp.localBackend, "local")
	tp.serveUDP(tp.remote, tp.remoteUBackend, "remote")
	tp.serveUDP(tp.local, tp.localUBackend, "local")
	return tp
}

// link joins two namespaces with a veth pair on a /24.
func (tp *topo) link(a *netns.NS, aIP netip.Addr, b *netns.NS, bIP netip.Addr, suffix string) {
	t := tp.t
	t.Helper()
	ha, err := a.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := b.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	an, bn := e2ePrefix+tp.tag+suffix+"a", e2ePrefix+tp.tag+suffix+"b"
	if err := ha.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: an}, PeerName: bn, PeerNamespace: netlink.NsFd(b.Fd())}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []struct {
		h  *netlink.Handle
		n  string
		ip netip.Addr
	}{{ha, an, aIP}, {hb, bn, bIP}} {
		l, err := x.h.LinkByName(x.n)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: x.ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := x.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

func (tp *topo) serveTCP(ns *netns.NS, addr netip.AddrPort, name string) {
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp4", addr.String()); return }); err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, name)
			c.Close()
		}
	}()
}

func (tp *topo) serveUDP(ns *netns.NS, addr netip.AddrPort, name string) {
	var c net.PacketConn
	if err := ns.Do(func() (err error) { c, err = net.ListenPacket("udp4", addr.String()); return }); err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo([]byte(name), from)
		}
	}()
}

// get connects from ns to addr and returns what the server says.
func get(ns *netns.NS, proto string, addr netip.AddrPort) (string, error) {
	var c net.Conn
	d := net.Dialer{Timeout: 2 * time.Second}
	if err := ns.Do(func() (err error) { c, err = d.Dial(proto+"4", addr.String()); return }); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if proto == "udp" {
		if _, err := c.Write([]byte("hi")); err != nil {
			return "", err
		}
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if n > 0 {
		return string(buf[:n]), nil
	}
	return "", err
}

// answers makes n connections and counts who answered.
func (tp *topo) answers(ns *netns.NS, proto string, addr netip.AddrPort, n int) map[string]int {
	tp.t.Helper()
	out := map[string]int{}
	for range n {
		s, err := get(ns, proto, addr)
		if err != nil {
			out["error: "+err.Error()]++
			continue
		}
		out[s]++
	}
	return out
}

func (tp *topo) newMesh() *Mesh {
	tp.t.Helper()
	m, err := New(Config{Table: tp.table, Netns: tp.node})
	if err != nil {
		tp.t.Fatal(err)
	}
	return m
}

func (tp *topo) nftList() string {
	out, err := exec.Command("nsenter", "--net="+tp.node.Path(), "nft", "list", "table", "ip", tp.table).CombinedOutput()
	if err != nil {
		return "nft: " + err.Error() + ": " + string(out)
	}
	return string(out)
}

// TestMeshEndToEnd programs a node's mesh in a namespace and sends real
// traffic through it: from another node (prerouting) and from the node
// itself (output), to a backend on another node (masqueraded, answers
// come back through the node) and to a local container, TCP and UDP; then
// changes, an empty port, a restart and removal.
func TestMeshEndToEnd(t *testing.T) {
	tp := newTopo(t)
	m := tp.newMesh()
	t.Cleanup(func() { _ = m.Remove(); _ = m.Close() })
	tcpPort := Port{Key: Key{ProtoTCP, tp.published}, Service: "web", Backends: []netip.AddrPort{tp.remoteBackend, tp.localBackend}}
	udpPort := Port{Key: Key{ProtoUDP, tp.publishedUDP}, Service: "dns", Backends: []netip.AddrPort{tp.remoteUBackend, tp.localUBackend}}
	if err := m.Sync([]Port{tcpPort, udpPort}); err != nil {
		t.Fatal(err)
	}
	listing := tp.nftList()
	for _, want := range []string{"numgen inc mod 2", "masquerade", "vmap @ports", "ct original proto-dst"} {
		if !strings.Contains(listing, want) {
			t.Fatalf("table lacks %q:\n%s", want, listing)
		}
	}
	pub := netip.AddrPortFrom(tp.nodeIP, tp.published)
	pubU := netip.AddrPortFrom(tp.nodeIP, tp.publishedUDP)
	balanced := func(what string, got map[string]int) {
		t.Helper()
		if len(got) != 2 || got["remote"] == 0 || got["local"] == 0 {
			t.Fatalf("%s: answers %v, want both backends\n%s", what, got, tp.nftList())
		}
	}
	balanced("tcp from another node", tp.answers(tp.remote, "tcp", pub, 6))
	balanced("tcp from the node itself", tp.answers(tp.node, "tcp", pub, 6))
	balanced("udp from another node", tp.answers(tp.remote, "udp", pubU, 6))

	// The ports are the mesh's on the node: nothing else may bind them.
	for _, k := range []Key{tcpPort.Key, udpPort.Key} {
		if !m.Reserved(k) {
			t.Fatalf("%s not reserved", k)
		}
	}
	err := tp.node.Do(func() error {
		l, err := net.Listen("tcp4", fmt.Sprintf(":%d", tp.published))
		if err == nil {
			l.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("binding the published port on the node: %v, want EADDRINUSE", err)
	}
	err = tp.node.Do(func() error {
		l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", tp.published))
		if err == nil {
			l.Close()
		}
		return err
	})
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("binding the published port on 127.0.0.1: %v, want EADDRINUSE", err)
	}
	// localhost answers too, as docker's routing mesh does, over every
	// backend, the remote one included.
	loopback := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), tp.published)
	balanced("tcp to localhost on the node", tp.answers(tp.node, "tcp", loopback, 6))

	// A backend goes: only the other answers.
	tcpPort.Backends = []netip.AddrPort{tp.localBackend}
	if err := m.Sync([]Port{tcpPort, udpPort}); err != nil {
		t.Fatal(err)
	}
	if got := tp.answers(tp.remote, "tcp", pub, 4); got["local"] != 4 {
		t.Fatalf("after removing a backend: %v", got)
	}
	// No backend: refused at once.
	tcpPort.Backends = nil
	if err := m.Sync([]Port{tcpPort, udpPort}); err != nil {
		t.Fatal(err)
	}
	if _, err := get(tp.remote, "tcp", pub); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("port without backends: %v, want connection refused", err)
	}
	if s, err := get(tp.node, "tcp", loopback); err == nil {
		t.Fatalf("localhost answered %q without backends", s)
	}
	tcpPort.Backends = []netip.AddrPort{tp.remoteBackend}
	if err := m.Sync([]Port{tcpPort, udpPort}); err != nil {
		t.Fatal(err)
	}
	if got := tp.answers(tp.remote, "tcp", pub, 3); got["remote"] != 3 {
		t.Fatalf("backend back: %v", got)
	}

	// A daemon restart: the table keeps answering, the new Mesh reserves
	// the ports again at once and rebuilds the table on its first Sync.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	m = tp.newMesh()
	if !m.Reserved(tcpPort.Key) || !m.Reserved(udpPort.Key) {
		t.Fatal("restarted mesh did not reserve the table's ports")
	}
	if got := tp.answers(tp.remote, "tcp", pub, 2); got["remote"] != 2 {
		t.Fatalf("across the restart: %v", got)
	}
	tcpPort.Backends = []netip.AddrPort{tp.remoteBackend, tp.localBackend}
	if err := m.Sync([]Port{tcpPort}); err != nil {
		t.Fatal(err)
	}
	balanced("after the restart", tp.answers(tp.remote, "tcp", pub, 6))
	if m.Reserved(udpPort.Key) {
		t.Fatal("dropped port still reserved")
	}
	if s, err := get(tp.remote, "udp", pubU); err == nil {
		t.Fatalf("removed udp port answered %q", s)
	}

	// Leaving the swarm: nothing left.
	if err := m.Remove(); err != nil {
		t.Fatal(err)
	}
	c, err := nft.Open(tp.node.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ok, err := c.TableExists(m.l.table.Family, tp.table); err != nil || ok {
		t.Fatalf("table still there after Remove (%v)", err)
	}
	if m.Reserved(tcpPort.Key) {
		t.Fatal("port still reserved after Remove")
	}
	if _, err := get(tp.remote, "tcp", pub); err == nil {
		t.Fatal("published port answers after Remove")
	}
}
