package bridge

import (
	"context"
	"net/netip"
	"testing"

	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/errdefs"
)

func TestParseGatewayCIDR(t *testing.T) {
	tests := []struct {
		in      string
		subnet  string
		gateway string // "" = invalid
	}{
		{"172.18.0.1/16", "172.18.0.0/16", "172.18.0.1"},
		{"10.1.2.254/24", "10.1.2.0/24", "10.1.2.254"},
		{"10.0.0.1/30", "10.0.0.0/30", "10.0.0.1"},
		{"10.0.0.1/31", "", ""},         // no room for containers
		{"10.0.0.0/24", "", ""},         // network address
		{"10.0.0.255/24", "", ""},       // broadcast
		{"fd00::1/64", "", ""},          // IPv6
		{"172.18.0.1", "", ""},          // no prefix
		{"not-an-address", "", ""},      //
		{"300.1.1.1/16", "", ""},        //
		{"172.18.0.1/16/2", "", ""},     //
		{"", "", ""},                    //
		{"172.18.0.1/33", "", ""},       //
		{"172.18.0.1/-1", "", ""},       //
		{"::ffff:10.0.0.1/120", "", ""}, // mapped, not plain IPv4
	}
	for _, tt := range tests {
		subnet, gw, err := parseGatewayCIDR(tt.in)
		if tt.gateway == "" {
			if !errdefs.IsInvalidParameter(err) {
				t.Errorf("%q: want InvalidParameter, got %v (%s %s)", tt.in, err, subnet, gw)
			}
			continue
		}
		if err != nil || subnet != netip.MustParsePrefix(tt.subnet) || gw != netip.MustParseAddr(tt.gateway) {
			t.Errorf("%q: got %s %s %v", tt.in, subnet, gw, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"long bridge name", func(c *Config) { c.BridgeName = "abcdefghijklmnop" }, false},
		{"slash in name", func(c *Config) { c.BridgeName = "a/b" }, false},
		{"long veth prefix", func(c *Config) { c.VethPrefix = "abcdefghijk" }, false},
		{"tiny mtu", func(c *Config) { c.MTU = 10 }, false},
	}
	for _, tt := range tests {
		c := Config{}
		tt.mod(&c)
		c.defaults()
		err := c.validate()
		if (err == nil) != tt.ok || (err != nil && !errdefs.IsInvalidParameter(err)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	c := Config{}
	c.defaults()
	if c.BridgeName != "shoal0" || c.CIDR != "172.18.0.1/16" || c.NftTable != "shoal" || c.MTU != 1500 || c.VethPrefix != "veth" {
		t.Errorf("defaults %+v", c)
	}
}

func TestParseMode(t *testing.T) {
	tests := map[string]string{
		"": ModeBridge, "default": ModeBridge, "bridge": ModeBridge, "host": ModeHost, "none": ModeNone,
		"container:abc": "", "overlay": "", "Bridge": "",
	}
	for in, want := range tests {
		got, err := parseMode(in)
		if want == "" {
			if !errdefs.IsInvalidParameter(err) {
				t.Errorf("%q: want InvalidParameter, got %q %v", in, got, err)
			}
			continue
		}
		if got != want || err != nil {
			t.Errorf("%q: got %q %v", in, got, err)
		}
	}
}

func TestMACFromIP(t *testing.T) {
	tests := map[string]string{
		"172.18.0.2":      "02:42:ac:12:00:02",
		"10.0.255.254":    "02:42:0a:00:ff:fe",
		"192.168.100.200": "02:42:c0:a8:64:c8",
	}
	for ip, want := range tests {
		if got := macFromIP(netip.MustParseAddr(ip)).String(); got != want {
			t.Errorf("%s: got %s, want %s", ip, got, want)
		}
	}
	m := randomMAC()
	if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
		t.Errorf("random MAC %s is not a local unicast address", m)
	}
}

// Bad requests are refused before the manager touches anything, so a zero
// Manager (no kernel state) is enough to check them.
func TestAttachRejectsBadRequests(t *testing.T) {
	var m Manager
	tests := []struct {
		name string
		req  AttachRequest
	}{
		{"empty id", AttachRequest{}},
		{"path in id", AttachRequest{ContainerID: "../etc"}},
		{"slash in id", AttachRequest{ContainerID: "a/b"}},
		{"unknown mode", AttachRequest{ContainerID: "c", Mode: "macvlan"}},
		{"bad port", AttachRequest{ContainerID: "c", PortBindings: network.PortMap{
			network.MustParsePort("80/tcp"): {{HostPort: "eighty"}}}}},
	}
	for _, tt := range tests {
		_, err := m.Attach(context.Background(), tt.req)
		if !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s: want InvalidParameter, got %v", tt.name, err)
		}
	}
	// Host mode needs nothing from the manager, and ignores ports.
	a, err := m.Attach(context.Background(), AttachRequest{ContainerID: "c", Mode: "host",
		PortBindings: network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "80"}}}})
	if err != nil || a.NetNSPath != "" || a.Ports != nil {
		t.Errorf("host mode: %+v %v", a, err)
	}
}

func TestDerivedID(t *testing.T) {
	a, b := derivedID("x", "host"), derivedID("x", "none")
	if len(a) != 64 || a == b || a != derivedID("x", "host") {
		t.Fatalf("ids %s %s", a, b)
	}
}

func TestInspectAndNetworks(t *testing.T) {
	subnet, gw := netip.MustParsePrefix("172.18.0.0/16"), netip.MustParseAddr("172.18.0.1")
	cfg := Config{}
	cfg.defaults()
	m := &Manager{cfg: cfg, subnet: subnet, gateway: gw, st: newState(subnet, gw)}
	ip := netip.MustParseAddr("172.18.0.2")
	m.st.Endpoints["c1"] = &endpoint{ContainerID: "c1", Name: "web", EndpointID: "e1", Mode: ModeBridge, IP: ip, MAC: macFromIP(ip).String()}
	m.st.Endpoints["c2"] = &endpoint{ContainerID: "c2", Mode: ModeNone}

	n := m.Inspect()
	if n.Name != "bridge" || n.Driver != "bridge" || n.Scope != "local" || n.ID != m.st.NetworkID || !n.EnableIPv4 {
		t.Fatalf("network %+v", n.Network)
	}
	if len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet != subnet || n.IPAM.Config[0].Gateway != gw {
		t.Fatalf("ipam %+v", n.IPAM)
	}
	if n.Options["com.docker.network.bridge.name"] != "shoal0" {
		t.Fatalf("options %v", n.Options)
	}
	if len(n.Containers) != 1 {
		t.Fatalf("containers %v", n.Containers)
	}
	ep := n.Containers["c1"]
	if ep.Name != "web" || ep.EndpointID != "e1" || ep.IPv4Address != netip.MustParsePrefix("172.18.0.2/16") || ep.MacAddress.String() != "02:42:ac:12:00:02" {
		t.Fatalf("endpoint %+v", ep)
	}

	ns := m.Networks()
	if len(ns) != 3 || ns[0].Name != "bridge" || ns[1].Name != "host" || ns[1].Driver != "host" || ns[2].Name != "none" || ns[2].Driver != "null" {
		t.Fatalf("networks %+v", ns)
	}
	if ns[1].ID == ns[2].ID || ns[1].ID == ns[0].ID || len(ns[1].ID) != 64 {
		t.Fatalf("ids %s %s %s", ns[0].ID, ns[1].ID, ns[2].ID)
	}
}
