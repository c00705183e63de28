package bridge

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/shoal/shoal/errdefs"
)

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func TestIPAMAllocate(t *testing.T) {
	tests := []struct {
		name    string
		subnet  string
		gateway string
		want    []netip.Addr // in order, then exhaustion
	}{
		{"gateway first", "10.0.0.0/29", "10.0.0.1", addrs("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6")},
		{"gateway in the middle", "10.0.0.0/29", "10.0.0.3", addrs("10.0.0.1", "10.0.0.2", "10.0.0.4", "10.0.0.5", "10.0.0.6")},
		{"gateway last", "10.0.0.0/30", "10.0.0.2", addrs("10.0.0.1")},
		{"unaligned subnet", "192.168.7.9/28", "192.168.7.1", addrs(
			"192.168.7.2", "192.168.7.3", "192.168.7.4", "192.168.7.5", "192.168.7.6", "192.168.7.7", "192.168.7.8",
			"192.168.7.9", "192.168.7.10", "192.168.7.11", "192.168.7.12", "192.168.7.13", "192.168.7.14")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newIPAM(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gateway))
			for i, want := range tt.want {
				got, err := p.Allocate("c" + want.String())
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				if got != want {
					t.Fatalf("allocation %d: got %s, want %s", i, got, want)
				}
			}
			_, err := p.Allocate("one-too-many")
			if !errdefs.IsUnavailable(err) {
				t.Fatalf("exhausted pool: want Unavailable, got %v", err)
			}
			if p.InUse() != len(tt.want) {
				t.Fatalf("in use %d, want %d", p.InUse(), len(tt.want))
			}
		})
	}
}

func TestIPAMReleaseIsNotReusedAtOnce(t *testing.T) {
	p := newIPAM(netip.MustParsePrefix("10.0.0.0/29"), netip.MustParseAddr("10.0.0.1"))
	a, _ := p.Allocate("a") // .2
	b, _ := p.Allocate("b") // .3
	p.Release(a)
	c, _ := p.Allocate("c")
	if c == a || c == b {
		t.Fatalf("got %s right after releasing %s", c, a)
	}
	// Once the cursor wraps, the released address is handed out again.
	var got []netip.Addr
	for {
		x, err := p.Allocate("x")
		if err != nil {
			break
		}
		got = append(got, x)
	}
	if len(got) == 0 || got[len(got)-1] != a {
		t.Fatalf("after wrap got %v, want to end with %s", got, a)
	}
	p.Release(netip.MustParseAddr("10.0.0.200")) // not ours: no-op
}

func TestIPAMReserve(t *testing.T) {
	p := newIPAM(netip.MustParsePrefix("10.0.0.0/24"), netip.MustParseAddr("10.0.0.1"))
	tests := []struct {
		addr, owner string
		check       func(error) bool
	}{
		{"10.0.0.5", "a", func(err error) bool { return err == nil }},
		{"10.0.0.5", "a", func(err error) bool { return err == nil }}, // same owner again
		{"10.0.0.5", "b", errdefs.IsConflict},
		{"10.0.0.1", "b", errdefs.IsInvalidParameter},   // gateway
		{"10.0.0.0", "b", errdefs.IsInvalidParameter},   // network
		{"10.0.0.255", "b", errdefs.IsInvalidParameter}, // broadcast
		{"10.0.1.5", "b", errdefs.IsInvalidParameter},   // outside
	}
	for _, tt := range tests {
		if err := p.Reserve(netip.MustParseAddr(tt.addr), tt.owner); !tt.check(err) {
			t.Errorf("Reserve(%s, %s) = %v", tt.addr, tt.owner, err)
		}
	}
	for range 10 {
		if a, _ := p.Allocate("n"); a == netip.MustParseAddr("10.0.0.5") {
			t.Fatal("reserved address handed out")
		}
	}
}

// The allocations persist as the endpoints' addresses and come back on load.
func TestIPAMPersistence(t *testing.T) {
	dir := t.TempDir()
	subnet, gw := netip.MustParsePrefix("10.9.0.0/24"), netip.MustParseAddr("10.9.0.1")
	st := newState(subnet, gw)
	if err := st.saveNetwork(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c"} {
		ip, err := st.IPAM.Allocate(id)
		if err != nil {
			t.Fatal(err)
		}
		ep := &endpoint{ContainerID: id, Mode: ModeBridge, IP: ip, MAC: macFromIP(ip).String(),
			Ports: []portMapping{{Proto: "tcp", HostIP: netip.IPv4Unspecified(), HostPort: 8080, ContainerPort: 80}}}
		st.Endpoints[id] = ep
		if err := saveEndpoint(dir, ep); err != nil {
			t.Fatal(err)
		}
	}
	// Release b as Detach does.
	st.IPAM.Release(st.Endpoints["b"].IP)
	if err := removeEndpoint(dir, "b"); err != nil {
		t.Fatal(err)
	}
	if err := removeEndpoint(dir, "b"); err != nil {
		t.Fatalf("removing twice: %v", err)
	}

	got, err := loadState(dir, func(p string, err error) { t.Errorf("bad %s: %v", p, err) })
	if err != nil {
		t.Fatal(err)
	}
	if got.NetworkID != st.NetworkID || got.Subnet != subnet || got.Gateway != gw || !got.Created.Equal(st.Created) {
		t.Fatalf("network: %+v, want %+v", got.networkFile, st.networkFile)
	}
	if len(got.Endpoints) != 2 || got.IPAM.InUse() != 2 {
		t.Fatalf("endpoints %v, in use %d", got.Endpoints, got.IPAM.InUse())
	}
	for _, id := range []string{"a", "c"} {
		if got.IPAM.Owners[st.Endpoints[id].IP] != id {
			t.Fatalf("owner of %s: %q", st.Endpoints[id].IP, got.IPAM.Owners[st.Endpoints[id].IP])
		}
		if g, w := got.Endpoints[id].Ports, st.Endpoints[id].Ports; len(g) != 1 || g[0] != w[0] {
			t.Fatalf("ports %v, want %v", g, w)
		}
	}
	// Allocation continues after the highest address in use, so b's
	// released address is not handed out at once.
	next, _ := got.IPAM.Allocate("d")
	if next != netip.MustParseAddr("10.9.0.5") {
		t.Fatalf("next allocation %s, want 10.9.0.5", next)
	}
}

func TestLoadStateSkipsBadEndpoints(t *testing.T) {
	dir := t.TempDir()
	st := newState(netip.MustParsePrefix("10.9.0.0/24"), netip.MustParseAddr("10.9.0.1"))
	if err := st.saveNetwork(dir); err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr("10.9.0.7")
	for _, ep := range []*endpoint{
		{ContainerID: "good", Mode: ModeBridge, IP: ip},
		{ContainerID: "dup", Mode: ModeBridge, IP: ip},                                  // same address
		{ContainerID: "gateway", Mode: ModeBridge, IP: netip.MustParseAddr("10.9.0.1")}, // unusable
		{ContainerID: "none", Mode: ModeNone},
	} {
		if err := saveEndpoint(dir, ep); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(endpointsDir(dir), "torn.json"), []byte(`{"Contai`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(endpointsDir(dir), "renamed.json"), []byte(`{"ContainerID":"other"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var bad []string
	got, err := loadState(dir, func(p string, _ error) { bad = append(bad, filepath.Base(p)) })
	if err != nil {
		t.Fatal(err)
	}
	// dup or good wins the address depending on directory order; exactly
	// one of them must be refused.
	if len(bad) != 4 || len(got.Endpoints) != 2 || got.Endpoints["none"] == nil {
		t.Fatalf("bad %v, endpoints %v", bad, got.Endpoints)
	}
	if got.IPAM.InUse() != 1 {
		t.Fatalf("in use %d", got.IPAM.InUse())
	}
}

func TestLoadStateMissingAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	st, err := loadState(dir, nil)
	if st != nil || err != nil {
		t.Fatalf("empty dir: %v %v", st, err)
	}
	if err := os.WriteFile(networkPath(dir), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir, nil); err == nil {
		t.Fatal("corrupt network file accepted")
	}
	if err := os.WriteFile(networkPath(dir), []byte(`{"Version":99}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadState(dir, nil); err == nil {
		t.Fatal("unknown version accepted")
	}
}
