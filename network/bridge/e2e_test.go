package bridge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/netns"
	"github.com/shoal/shoal/network/nft"
)

// Test kernel objects are named shbrb<tag>... (bridge tests) so parallel
// packages' tests (shbrn..., shbrs...) never match our leak checks.
const e2ePrefix = "shbrb"

type e2eEnv struct {
	t       testing.TB
	tag     string
	dir     string
	cfg     Config
	subnet  netip.Prefix
	outside *netns.NS  // a namespace standing for "the outside world"
	hostOut netip.Addr // this host's address on the outside link
	outIP   netip.Addr // the outside namespace's address
	cleanup bool       // manager cleanup registered
}

// requireE2E skips unless root with the tools the tests drive.
func requireE2E(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "nft", "nsenter", "busybox", "ip")
}

// freeSubnet picks 10.<a>.<n>.0/<bits> not overlapping any route here.
func freeSubnet(t testing.TB, second byte, bits int) netip.Prefix {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, second, byte(16 + rand.IntN(230)), 0}), bits).Masked()
		clash := false
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			if rp, ok := prefixOf(r.Dst); ok && rp.Bits() > 0 && rp.Overlaps(p) {
				clash = true
			}
		}
		if !clash {
			return p
		}
	}
	t.Fatal("no free test subnet")
	return netip.Prefix{}
}

// newE2EEnv prepares names, a bridge subnet and an "outside" namespace
// linked to the host, and registers cleanup that also checks for leaks.
func newE2EEnv(t testing.TB, withOutside bool) *e2eEnv { return newE2EEnvBits(t, withOutside, 24) }

func newE2EEnvBits(t testing.TB, withOutside bool, bits int) *e2eEnv {
	t.Helper()
	tag := fmt.Sprintf("%04x", rand.IntN(0x10000))
	e := &e2eEnv{t: t, tag: tag, dir: t.TempDir()}
	e.subnet = freeSubnet(t, 213, bits)
	gw := e.subnet.Addr().Next()
	e.cfg = Config{
		BridgeName: e2ePrefix + tag,
		CIDR:       netip.PrefixFrom(gw, bits).String(),
		NftTable:   "shbr_b" + tag,
		StateDir:   filepath.Join(e.dir, "state"),
		VethPrefix: e2ePrefix + tag,
	}
	t.Cleanup(func() { e.checkNoLeaks() })
	if withOutside {
		e.makeOutside()
	}
	return e
}

func (e *e2eEnv) makeOutside() {
	t := e.t
	p := freeSubnet(t, 214, 30)
	e.hostOut, e.outIP = p.Addr().Next(), p.Addr().Next().Next()
	if err := netns.PrepareDir(filepath.Join(e.dir, "ns")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.RemoveDir(filepath.Join(e.dir, "ns")) })
	ns, err := netns.Create(filepath.Join(e.dir, "ns", "outside"))
	if err != nil {
		t.Fatal(err)
	}
	e.outside = ns
	t.Cleanup(func() { ns.Close() })
	hostName := e2ePrefix + e.tag + "o"
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, Flags: net.FlagUp},
		PeerName: "out0", PeerNamespace: netlink.NsFd(ns.Fd())}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(hostName); err == nil {
			_ = netlink.LinkDel(l)
		}
	})
	l, err := netlink.LinkByName(hostName)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(e.hostOut, 30))}); err != nil {
		t.Fatal(err)
	}
	h, err := ns.Netlink()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	o, err := h.LinkByName("out0")
	if err != nil {
		t.Fatal(err)
	}
	// No route back to the container subnet: only masquerade lets answers
	// find their way.
	if err := h.AddrAdd(o, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(e.outIP, 30))}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(o); err != nil {
		t.Fatal(err)
	}
}

// newManager starts a manager on the env and cleans it up with the test.
func (e *e2eEnv) newManager() *Manager {
	e.t.Helper()
	m, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if e.cleanup {
		return m
	}
	e.cleanup = true
	e.t.Cleanup(func() {
		// A fresh manager adopts whatever the test left, then removes it.
		mm, err := New(e.cfg)
		if err != nil {
			e.t.Errorf("cleanup: %v", err)
			return
		}
		if err := mm.Cleanup(); err != nil {
			e.t.Errorf("cleanup: %v", err)
		}
	})
	return m
}

// checkNoLeaks fails the test if a link, table or mount of this env remains.
func (e *e2eEnv) checkNoLeaks() {
	t := e.t
	out, _ := exec.Command("ip", "-o", "link").CombinedOutput()
	if strings.Contains(string(out), e2ePrefix+e.tag) {
		t.Errorf("links left behind:\n%s", out)
	}
	out, _ = exec.Command("nft", "list", "tables").CombinedOutput()
	if strings.Contains(string(out), e.cfg.NftTable) {
		t.Errorf("nftables table left behind:\n%s", out)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.dir) {
		t.Errorf("mounts left behind under %s", e.dir)
	}
}

// spawn runs a command in a namespace until the test ends.
func spawn(t testing.TB, nsPath string, env []string, args ...string) *bufio.Reader {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=" + nsPath, "--"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return bufio.NewReader(stdout)
}

// spawnHelper runs one of TestMain's helper servers in a namespace and
// waits until it listens.
func spawnHelper(t testing.TB, nsPath, helper, addr string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r := spawn(t, nsPath, []string{"SHBR_HELPER=" + helper, "SHBR_ADDR=" + addr}, self)
	line, err := r.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper %s: %q, %v", helper, line, err)
	}
}

// spawnHTTPD serves body on port 80 in the namespace with busybox httpd.
func spawnHTTPD(t testing.TB, nsPath, body string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	spawn(t, nsPath, nil, "busybox", "httpd", "-f", "-p", "80", "-h", dir)
}

// run runs a command in a namespace and returns its output.
func run(nsPath string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + nsPath, "--"}, args...)...).CombinedOutput()
	return string(out), err
}

var httpClient = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpGet(url string) (string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// eventuallyGet waits until url answers want (servers start asynchronously).
func eventuallyGet(t testing.TB, url, want string) {
	t.Helper()
	var got string
	var err error
	testutil.Eventually(t, 10*time.Second, func() bool {
		got, err = httpGet(url)
		return err == nil && got == want
	}, "GET %s: want %q, got %q, %v", url, want, &got, &err)
}

func udpRoundTrip(addr string, msg string) (string, error) {
	c, err := net.Dial("udp4", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func hostPort(t testing.TB, a *Attachment, port string) string {
	t.Helper()
	bs := a.Ports[network.MustParsePort(port)]
	if len(bs) == 0 {
		t.Fatalf("no binding for %s in %v", port, a.Ports)
	}
	return bs[0].HostPort
}

// freeTCPPort finds a port no socket on this host holds right now.
func freeTCPPort(t testing.TB) string {
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func linkNames(t testing.TB, prefix string) []string {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func mapComments(t testing.TB, m *Manager) []string {
	t.Helper()
	c, err := nft.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []string
	for _, s := range []*nftables.Set{m.layout.pubAddr, m.layout.pubAny} {
		els, err := c.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range els {
			out = append(out, e.Comment)
		}
	}
	return out
}

func TestE2EBridge(t *testing.T) {
	requireE2E(t)
	e := newE2EEnv(t, true)
	m := e.newManager()
	ctx := context.Background()
	gw := m.Gateway()

	fixed := freeTCPPort(t)
	c1, err := m.Attach(ctx, AttachRequest{ContainerID: "c1-" + e.tag, Name: "/web", PortBindings: network.PortMap{
		network.MustParsePort("80/tcp"): {{HostPort: fixed}},
		network.MustParsePort("81/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}},
		network.MustParsePort("53/udp"): {{HostPort: "0"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c2, err := m.Attach(ctx, AttachRequest{ContainerID: "c2-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	if c1.IPAddress == c2.IPAddress || !m.Subnet().Contains(c1.IPAddress) || c1.Gateway != gw || c1.PrefixLen != 24 {
		t.Fatalf("bad addressing: %+v %+v", c1, c2)
	}
	if c1.MacAddress != macFromIP(c1.IPAddress).String() {
		t.Fatalf("mac %s for %s", c1.MacAddress, c1.IPAddress)
	}
	spawnHTTPD(t, c1.NetNSPath, "c1")
	spawnHelper(t, c1.NetNSPath, "udp-echo", ":53")
	// busybox httpd can only listen on one port; 81 is the whoami helper.
	spawnHelper(t, c1.NetNSPath, "whoami", ":81")
	spawnHelper(t, e.outside.Path(), "whoami", ":8000")

	t.Run("container reaches gateway", func(t *testing.T) {
		if out, err := run(c1.NetNSPath, "busybox", "ping", "-c1", "-W2", gw.String()); err != nil {
			t.Fatalf("ping: %v\n%s", err, out)
		}
	})
	t.Run("container to container", func(t *testing.T) {
		var out string
		testutil.Eventually(t, 10*time.Second, func() bool {
			out, err = run(c2.NetNSPath, "busybox", "wget", "-q", "-O", "-", "http://"+c1.IPAddress.String()+"/")
			return err == nil && out == "c1"
		}, "wget c2→c1: %q", &out)
	})
	t.Run("published port from host loopback", func(t *testing.T) {
		eventuallyGet(t, "http://127.0.0.1:"+fixed+"/", "c1")
	})
	t.Run("published port via bridge address", func(t *testing.T) {
		eventuallyGet(t, "http://"+gw.String()+":"+fixed+"/", "c1")
	})
	t.Run("port bound to 127.0.0.1 only", func(t *testing.T) {
		hp := hostPort(t, c1, "81/tcp")
		// Loopback connections are masqueraded to the bridge address.
		eventuallyGet(t, "http://127.0.0.1:"+hp+"/", gw.String())
		if _, err := httpGet("http://" + gw.String() + ":" + hp + "/"); err == nil {
			t.Fatal("a port bound to 127.0.0.1 answered on the bridge address")
		}
	})
	t.Run("published udp port", func(t *testing.T) {
		hp := hostPort(t, c1, "53/udp")
		var got string
		testutil.Eventually(t, 10*time.Second, func() bool {
			got, err = udpRoundTrip("127.0.0.1:"+hp, "ping")
			return err == nil && got == "echo:ping"
		}, "udp 127.0.0.1:%s: %q %v", hp, &got, &err)
	})
	t.Run("published port from outside", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:%s/", e.hostOut, fixed)
		out, err := run(e.outside.Path(), "busybox", "wget", "-q", "-O", "-", url)
		if err != nil || out != "c1" {
			t.Fatalf("wget from outside: %q %v", out, err)
		}
	})
	t.Run("egress is masqueraded", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:8000/", e.outIP)
		out, err := run(c1.NetNSPath, "busybox", "wget", "-q", "-O", "-", url)
		if err != nil || out != e.hostOut.String() {
			t.Fatalf("outside saw %q (want the host's %s), err %v", out, e.hostOut, err)
		}
	})
	t.Run("hairpin to own published port", func(t *testing.T) {
		url := fmt.Sprintf("http://%s:%s/", gw, fixed)
		out, err := run(c1.NetNSPath, "busybox", "wget", "-q", "-O", "-", url)
		if err != nil || out != "c1" {
			t.Fatalf("hairpin: %q %v", out, err)
		}
	})
	t.Run("duplicate port is a conflict and leaves nothing", func(t *testing.T) {
		linksBefore := linkNames(t, e.cfg.VethPrefix)
		elsBefore := len(mapComments(t, m))
		id := "c3-" + e.tag
		_, err := m.Attach(ctx, AttachRequest{ContainerID: id, PortBindings: network.PortMap{
			network.MustParsePort("8080/tcp"): {{HostPort: ""}},
			network.MustParsePort("80/tcp"):   {{HostPort: fixed}},
		}})
		if !errdefs.IsConflict(err) {
			t.Fatalf("want conflict, got %v", err)
		}
		want := "Bind for 0.0.0.0:" + fixed + " failed: port is already allocated"
		if err.Error() != want {
			t.Fatalf("message %q, want %q", err, want)
		}
		if _, err := os.Stat(filepath.Join(e.cfg.StateDir, "netns", id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("netns file left: %v", err)
		}
		if got := linkNames(t, e.cfg.VethPrefix); len(got) != len(linksBefore) {
			t.Fatalf("links %v, before %v", got, linksBefore)
		}
		if got := len(mapComments(t, m)); got != elsBefore {
			t.Fatalf("%d map elements, before %d", got, elsBefore)
		}
		if m.Inspect().Containers[id].EndpointID != "" || m.st.IPAM.InUse() != 2 {
			t.Fatalf("state changed: %d addresses in use", m.st.IPAM.InUse())
		}
	})
	t.Run("a port held by a host process is a conflict", func(t *testing.T) {
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		busy := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
		_, err = m.Attach(ctx, AttachRequest{ContainerID: "c4-" + e.tag, PortBindings: network.PortMap{
			network.MustParsePort("80/tcp"): {{HostPort: busy}},
		}})
		if !errdefs.IsConflict(err) {
			t.Fatalf("want conflict, got %v", err)
		}
	})
	t.Run("inspect", func(t *testing.T) {
		n := m.Inspect()
		if n.Name != "bridge" || n.Driver != "bridge" || len(n.IPAM.Config) != 1 ||
			n.IPAM.Config[0].Subnet != e.subnet || n.IPAM.Config[0].Gateway != gw {
			t.Fatalf("inspect: %+v", n.Network)
		}
		ep := n.Containers["c1-"+e.tag]
		if ep.Name != "web" || ep.IPv4Address != netip.PrefixFrom(c1.IPAddress, 24) || ep.MacAddress.String() != c1.MacAddress {
			t.Fatalf("endpoint: %+v", ep)
		}
	})

	// Daemon restart: the old manager goes away without touching the
	// kernel; a new one adopts the bridge, table and endpoints.
	m.Close()
	m = e.newManager()
	t.Run("restart keeps published ports", func(t *testing.T) {
		eventuallyGet(t, "http://127.0.0.1:"+fixed+"/", "c1")
		if got, err := udpRoundTrip("127.0.0.1:"+hostPort(t, c1, "53/udp"), "again"); err != nil || got != "echo:again" {
			t.Fatalf("udp after restart: %q %v", got, err)
		}
		out, err := run(c2.NetNSPath, "busybox", "wget", "-q", "-O", "-", "http://"+c1.IPAddress.String()+"/")
		if err != nil || out != "c1" {
			t.Fatalf("c2→c1 after restart: %q %v", out, err)
		}
	})
	t.Run("restart keeps attachments", func(t *testing.T) {
		again, err := m.Attach(ctx, AttachRequest{ContainerID: "c1-" + e.tag, Name: "web", PortBindings: network.PortMap{
			network.MustParsePort("80/tcp"): {{HostPort: fixed}},
			network.MustParsePort("81/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1")}},
			network.MustParsePort("53/udp"): {{HostPort: "0"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		if again.IPAddress != c1.IPAddress || again.NetNSPath != c1.NetNSPath || hostPort(t, again, "53/udp") != hostPort(t, c1, "53/udp") {
			t.Fatalf("re-attach gave %+v, first %+v", again, c1)
		}
		c5, err := m.Attach(ctx, AttachRequest{ContainerID: "c5-" + e.tag})
		if err != nil {
			t.Fatal(err)
		}
		if c5.IPAddress == c1.IPAddress || c5.IPAddress == c2.IPAddress {
			t.Fatalf("address %s handed out twice", c5.IPAddress)
		}
		// The fixed port is still owned by c1 in the adopted state.
		_, err = m.Attach(ctx, AttachRequest{ContainerID: "c6-" + e.tag, PortBindings: network.PortMap{
			network.MustParsePort("80/tcp"): {{HostPort: fixed}},
		}})
		if !errdefs.IsConflict(err) {
			t.Fatalf("want conflict after restart, got %v", err)
		}
	})
	t.Run("detach removes everything", func(t *testing.T) {
		id := "c1-" + e.tag
		veth := m.st.Endpoints[id].Veth
		if err := m.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, func() bool {
			return !slices.Contains(mapComments(t, m), id)
		}, "map element of detached container left")
		// The veth goes with its namespace, asynchronously.
		testutil.Eventually(t, 5*time.Second, func() bool {
			_, err := netlink.LinkByName(veth)
			return err != nil
		}, "veth %s left", veth)
		if _, err := os.Stat(c1.NetNSPath); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("netns file left: %v", err)
		}
		if _, err := httpGet("http://127.0.0.1:" + fixed + "/"); err == nil {
			t.Fatal("published port still answers after detach")
		}
		// The host port is free again.
		l, err := net.Listen("tcp4", "0.0.0.0:"+fixed)
		if err != nil {
			t.Fatalf("port not released: %v", err)
		}
		l.Close()
		if err := m.Detach(ctx, id); err != nil {
			t.Fatalf("second detach: %v", err)
		}
		if err := m.Detach(ctx, "never-attached"); err != nil {
			t.Fatalf("unknown detach: %v", err)
		}
	})
	t.Run("port republished right after detach", func(t *testing.T) {
		port := freeTCPPort(t)
		pm := network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: port}}}
		for i, id := range []string{"r1-" + e.tag, "r2-" + e.tag} {
			a, err := m.Attach(ctx, AttachRequest{ContainerID: id, PortBindings: pm})
			if err != nil {
				t.Fatalf("attach %d: %v", i, err)
			}
			spawnHTTPD(t, a.NetNSPath, id)
			eventuallyGet(t, "http://127.0.0.1:"+port+"/", id)
			if i == 0 {
				// No wait: the next Attach must carry the queued deletion.
				if err := m.Detach(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	t.Run("modes", func(t *testing.T) {
		h, err := m.Attach(ctx, AttachRequest{ContainerID: "h-" + e.tag, Mode: "host",
			PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "1"}}}})
		if err != nil || h.NetNSPath != "" || h.Ports != nil {
			t.Fatalf("host mode: %+v %v", h, err)
		}
		n, err := m.Attach(ctx, AttachRequest{ContainerID: "n-" + e.tag, Mode: "none"})
		if err != nil || n.IPAddress.IsValid() {
			t.Fatalf("none mode: %+v %v", n, err)
		}
		out, err := run(n.NetNSPath, "ip", "-o", "link")
		if err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 || !strings.Contains(out, "lo:") || !strings.Contains(out, "UP") {
			t.Fatalf("none mode links: %q %v", out, err)
		}
		if err := m.Detach(ctx, "n-"+e.tag); err != nil || netns.IsPinned(n.NetNSPath) {
			t.Fatalf("detach none: %v", err)
		}
		if _, err := m.Attach(ctx, AttachRequest{ContainerID: "x-" + e.tag, Mode: "macvlan"}); !errdefs.IsInvalidParameter(err) {
			t.Fatalf("unknown mode: %v", err)
		}
	})
}

// TestE2EAdoptCleansOrphans: leftovers of an Attach interrupted by a crash
// (a veth on the bridge and a netns file nobody claims) go on restart.
func TestE2EAdoptCleansOrphans(t *testing.T) {
	requireE2E(t)
	e := newE2EEnv(t, false)
	m := e.newManager()
	a, err := m.Attach(context.Background(), AttachRequest{ContainerID: "keep-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	orphanNS := filepath.Join(e.cfg.StateDir, "netns", "orphan")
	ns, err := netns.Create(orphanNS)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	br, err := netlink.LinkByName(e.cfg.BridgeName)
	if err != nil {
		t.Fatal(err)
	}
	orphan := e.cfg.VethPrefix + "zz"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: orphan, MasterIndex: br.Attrs().Index},
		PeerName: orphan + "p"}); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = e.newManager()
	if _, err := netlink.LinkByName(orphan); err == nil {
		t.Fatal("orphaned veth survived adoption")
	}
	if netns.IsPinned(orphanNS) {
		t.Fatal("orphaned netns survived adoption")
	}
	if !netns.IsPinned(a.NetNSPath) || m.st.Endpoints["keep-"+e.tag] == nil {
		t.Fatal("live endpoint lost on adoption")
	}
	// An endpoint whose namespace vanished (the state dir outlived it) is
	// forgotten, its veth removed and its address freed.
	veth := m.st.Endpoints["keep-"+e.tag].Veth
	if err := netns.Remove(a.NetNSPath); err != nil {
		t.Fatal(err)
	}
	m.Close()
	m = e.newManager()
	if len(m.st.Endpoints) != 0 || m.st.IPAM.InUse() != 0 {
		t.Fatalf("stale endpoint kept: %+v", m.st.Endpoints)
	}
	if _, err := netlink.LinkByName(veth); err == nil {
		t.Fatalf("veth %s of a vanished endpoint kept", veth)
	}
}

// BenchmarkAttachDetach measures the hot path: a bridge-mode container with
// one published port, attached and detached.
func BenchmarkAttachDetach(b *testing.B) {
	requireE2E(b)
	e := newE2EEnv(b, false)
	m := e.newManager()
	ctx := context.Background()
	pm := network.PortMap{network.MustParsePort("80/tcp"): {{}}}
	i := 0
	for b.Loop() {
		id := "bench-" + strconv.Itoa(i)
		i++
		if _, err := m.Attach(ctx, AttachRequest{ContainerID: id, PortBindings: pm}); err != nil {
			b.Fatal(err)
		}
		if err := m.Detach(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDetach is Detach alone, as its caller waits for it, and then
// the background deletion of all the map elements it queued.
func BenchmarkDetach(b *testing.B) {
	requireE2E(b)
	e := newE2EEnvBits(b, false, 20)
	m := e.newManager()
	ctx := context.Background()
	pm := network.PortMap{network.MustParsePort("80/tcp"): {{}}}
	for i := range b.N {
		if _, err := m.Attach(ctx, AttachRequest{ContainerID: "bench-" + strconv.Itoa(i), PortBindings: pm}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if err := m.Detach(ctx, "bench-"+strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	start := time.Now()
	m.unpub.flush()
	b.ReportMetric(float64(time.Since(start).Microseconds()), "µs-unpublish-all")
}

// BenchmarkAttach is Attach alone.
func BenchmarkAttach(b *testing.B) {
	requireE2E(b)
	e := newE2EEnvBits(b, false, 20)
	m := e.newManager()
	ctx := context.Background()
	pm := network.PortMap{network.MustParsePort("80/tcp"): {{}}}
	var ids []string
	b.Cleanup(func() {
		for _, id := range ids {
			_ = m.Detach(ctx, id)
		}
	})
	i := 0
	for b.Loop() {
		id := "bench-" + strconv.Itoa(i)
		i++
		ids = append(ids, id)
		if _, err := m.Attach(ctx, AttachRequest{ContainerID: id, PortBindings: pm}); err != nil {
			b.Fatal(err)
		}
	}
}
