package bridge

import (
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

var (
	any4 = netip.IPv4Unspecified()
	lo4  = netip.MustParseAddr("127.0.0.1")
)

func TestParsePortBindings(t *testing.T) {
	p := network.MustParsePort
	tests := []struct {
		name string
		in   network.PortMap
		want []portRequest
	}{
		{"nothing", nil, nil},
		{"exposed but not published", network.PortMap{p("80/tcp"): nil}, nil},
		{"ephemeral", network.PortMap{p("80/tcp"): {{}}},
			[]portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: any4}}},
		{"ephemeral zero", network.PortMap{p("80/tcp"): {{HostPort: "0"}}},
			[]portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: any4}}},
		{"fixed", network.PortMap{p("80"): {{HostPort: "8080"}}},
			[]portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 8080, HostHi: 8080}}},
		{"range and host ip", network.PortMap{p("53/udp"): {{HostIP: lo4, HostPort: "5300-5310"}}},
			[]portRequest{{Proto: "udp", ContainerPort: 53, HostIP: lo4, HostLo: 5300, HostHi: 5310}}},
		{"explicit 0.0.0.0", network.PortMap{p("80/tcp"): {{HostIP: any4, HostPort: "1"}}},
			[]portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 1, HostHi: 1}}},
		{"v4-mapped host ip", network.PortMap{p("80/tcp"): {{HostIP: netip.MustParseAddr("::ffff:127.0.0.1"), HostPort: "1"}}},
			[]portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: lo4, HostLo: 1, HostHi: 1}}},
		{"sorted and deduplicated", network.PortMap{
			p("81/udp"): {{HostPort: "2"}},
			p("81/tcp"): {{HostPort: "3"}, {HostPort: "3"}},
			p("80/tcp"): {{HostPort: "1"}},
		}, []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 1, HostHi: 1},
			{Proto: "tcp", ContainerPort: 81, HostIP: any4, HostLo: 3, HostHi: 3},
			{Proto: "udp", ContainerPort: 81, HostIP: any4, HostLo: 2, HostHi: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePortBindings(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParsePortBindingsInvalid(t *testing.T) {
	p := network.MustParsePort
	tests := []struct {
		name string
		in   network.PortMap
	}{
		{"not a number", network.PortMap{p("80/tcp"): {{HostPort: "http"}}}},
		{"too big", network.PortMap{p("80/tcp"): {{HostPort: "70000"}}}},
		{"negative", network.PortMap{p("80/tcp"): {{HostPort: "-1"}}}},
		{"reversed range", network.PortMap{p("80/tcp"): {{HostPort: "9000-8000"}}}},
		{"range from zero", network.PortMap{p("80/tcp"): {{HostPort: "0-10"}}}},
		{"half range", network.PortMap{p("80/tcp"): {{HostPort: "8000-"}}}},
		{"ipv6 host ip", network.PortMap{p("80/tcp"): {{HostIP: netip.MustParseAddr("::1"), HostPort: "80"}}}},
		{"sctp", network.PortMap{p("80/sctp"): {{HostPort: "80"}}}},
		{"container port 0", network.PortMap{p("0/tcp"): {{HostPort: "80"}}}},
		{"zero port value", network.PortMap{network.Port{}: {{HostPort: "80"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePortBindings(tt.in)
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("want InvalidParameter, got %v", err)
			}
		})
	}
}

func TestPortTableConflict(t *testing.T) {
	tbl := newPortTable()
	tbl.add(portMapping{Proto: "tcp", HostIP: any4, HostPort: 8080}, "a")
	tbl.add(portMapping{Proto: "tcp", HostIP: lo4, HostPort: 9090}, "b")
	other := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		proto string
		ip    netip.Addr
		port  uint16
		owner string // "" = free
	}{
		{"tcp", any4, 8080, "a"},
		{"tcp", lo4, 8080, "a"}, // a wildcard holds every address
		{"udp", any4, 8080, ""}, // other protocol
		{"tcp", any4, 8081, ""},
		{"tcp", lo4, 9090, "b"},
		{"tcp", any4, 9090, "b"}, // a wildcard needs every address
		{"tcp", other, 9090, ""}, // another address
	}
	for _, tt := range tests {
		owner, taken := tbl.conflict(tt.proto, tt.ip, tt.port)
		if owner != tt.owner || taken != (tt.owner != "") {
			t.Errorf("conflict(%s %s:%d) = %q %v, want %q", tt.proto, tt.ip, tt.port, owner, taken, tt.owner)
		}
	}
	tbl.remove(portMapping{Proto: "tcp", HostIP: any4, HostPort: 8080}, "a")
	if _, taken := tbl.conflict("tcp", any4, 8080); taken {
		t.Fatal("removed binding still conflicts")
	}
}

// fakeReserver stands in for host sockets in unit tests (the real one is
// tested below and end to end). It applies the kernel's bind rules.
type fakeReserver struct {
	held      map[portKey][]netip.Addr
	hostBusy  map[uint16]bool // ports a "host process" holds
	notLocal  map[netip.Addr]bool
	ephemeral uint16
}

type fakeHold struct {
	r  *fakeReserver
	k  portKey
	ip netip.Addr
}

func (h fakeHold) Close() error {
	l := h.r.held[h.k]
	for i, ip := range l {
		if ip == h.ip {
			h.r.held[h.k] = append(l[:i], l[i+1:]...)
			break
		}
	}
	return nil
}

func newFakeReserver() *fakeReserver {
	return &fakeReserver{held: map[portKey][]netip.Addr{}, hostBusy: map[uint16]bool{}, notLocal: map[netip.Addr]bool{}, ephemeral: 40000}
}

func (r *fakeReserver) Reserve(proto string, ip netip.Addr, port uint16) (reservation, uint16, error) {
	if r.notLocal[ip] {
		return nil, 0, unix.EADDRNOTAVAIL
	}
	if port == 0 {
		r.ephemeral++
		port = r.ephemeral
	}
	k := portKey{proto, port}
	if r.hostBusy[port] {
		return nil, 0, errPortInUse
	}
	for _, h := range r.held[k] {
		if h == ip || h.IsUnspecified() || ip.IsUnspecified() {
			return nil, 0, errPortInUse
		}
	}
	r.held[k] = append(r.held[k], ip)
	return fakeHold{r: r, k: k, ip: ip}, port, nil
}

func (r *fakeReserver) count() int {
	n := 0
	for _, l := range r.held {
		n += len(l)
	}
	return n
}

func TestPortAllocate(t *testing.T) {
	tbl := newPortTable()
	res := newFakeReserver()
	res.hostBusy[7000] = true
	res.notLocal[netip.MustParseAddr("192.0.2.9")] = true

	// a: fixed 8080, ephemeral udp, and a range whose first port the
	// request's own wildcard 8080 already takes.
	maps, held, err := tbl.allocate("a", []portRequest{
		{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 8080, HostHi: 8080},
		{Proto: "udp", ContainerPort: 53, HostIP: any4},
		{Proto: "tcp", ContainerPort: 443, HostIP: lo4, HostLo: 8080, HostHi: 8090},
	}, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 3 || res.count() != 3 {
		t.Fatalf("%d reservations returned, %d held", len(held), res.count())
	}
	want := []portMapping{
		{Proto: "tcp", HostIP: any4, HostPort: 8080, ContainerPort: 80},
		{Proto: "udp", HostIP: any4, HostPort: 40001, ContainerPort: 53},
		{Proto: "tcp", HostIP: lo4, HostPort: 8081, ContainerPort: 443},
	}
	if !reflect.DeepEqual(maps, want) {
		t.Fatalf("got %+v\nwant %+v", maps, want)
	}

	tests := []struct {
		name    string
		req     []portRequest
		check   func(error) bool
		message string
	}{
		{"taken by another container", []portRequest{
			{Proto: "tcp", ContainerPort: 9000, HostIP: any4},
			{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 8080, HostHi: 8080},
		}, errdefs.IsConflict, "Bind for 0.0.0.0:8080 failed: port is already allocated"},
		{"specific address under a wildcard", []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: lo4, HostLo: 8080, HostHi: 8080},
		}, errdefs.IsConflict, "Bind for 127.0.0.1:8080 failed: port is already allocated"},
		{"twice in one request", []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 9100, HostHi: 9100},
			{Proto: "tcp", ContainerPort: 81, HostIP: any4, HostLo: 9100, HostHi: 9100},
		}, errdefs.IsConflict, "Bind for 0.0.0.0:9100 failed: port is already allocated"},
		{"range exhausted", []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 8080, HostHi: 8081},
		}, errdefs.IsConflict, "Bind for 0.0.0.0:8080-8081 failed: all ports are allocated"},
		{"held by a host process", []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: any4, HostLo: 7000, HostHi: 7000},
		}, errdefs.IsConflict, "failed to bind host port 0.0.0.0:7000/tcp: address already in use"},
		{"not a host address", []portRequest{
			{Proto: "tcp", ContainerPort: 80, HostIP: netip.MustParseAddr("192.0.2.9"), HostLo: 7001, HostHi: 7001},
		}, errdefs.IsInvalidParameter, "failed to bind host port 192.0.2.9:7001/tcp: 192.0.2.9 is not an address of this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fmt.Sprint(tbl.byPort)
			heldBefore := res.count()
			_, _, err := tbl.allocate("b", tt.req, res)
			if !tt.check(err) || err.Error() != tt.message {
				t.Fatalf("got %v, want %q", err, tt.message)
			}
			if fmt.Sprint(tbl.byPort) != before || res.count() != heldBefore {
				t.Fatalf("failed allocation left state: %v (was %v), %d held (was %d)",
					tbl.byPort, before, res.count(), heldBefore)
			}
		})
	}
}

// Ephemeral allocation skips a port the kernel offers but our books still
// give to someone (a reservation lost across a restart).
func TestPortAllocateEphemeralSkipsBookedPort(t *testing.T) {
	tbl := newPortTable()
	res := newFakeReserver()
	tbl.add(portMapping{Proto: "tcp", HostIP: any4, HostPort: res.ephemeral + 1}, "lost")
	maps, _, err := tbl.allocate("a", []portRequest{{Proto: "tcp", ContainerPort: 80, HostIP: any4}}, res)
	if err != nil {
		t.Fatal(err)
	}
	if maps[0].HostPort != res.ephemeral {
		t.Fatalf("got %d, want %d", maps[0].HostPort, res.ephemeral)
	}
	if res.count() != 1 {
		t.Fatalf("%d reservations held, want 1", res.count())
	}
}

// The real reserver binds sockets; no root needed.
func TestSocketReserver(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			var r socketReserver
			h, port, err := r.Reserve(proto, lo4, 0)
			if err != nil {
				t.Fatal(err)
			}
			if port == 0 {
				t.Fatal("no port")
			}
			if _, _, err := r.Reserve(proto, lo4, port); err != errPortInUse {
				t.Fatalf("second reservation: %v", err)
			}
			if _, _, err := r.Reserve(proto, any4, port); err != errPortInUse {
				t.Fatalf("wildcard over a held address: %v", err)
			}
			if err := h.Close(); err != nil {
				t.Fatal(err)
			}
			h2, _, err := r.Reserve(proto, lo4, port)
			if err != nil {
				t.Fatalf("after release: %v", err)
			}
			h2.Close()
			if _, _, err := r.Reserve(proto, netip.MustParseAddr("192.0.2.9"), 0); err == nil {
				t.Fatal("bound a non-local address")
			}
		})
	}
}

func TestToPortMap(t *testing.T) {
	got := toPortMap([]portMapping{
		{Proto: "tcp", HostIP: any4, HostPort: 8080, ContainerPort: 80},
		{Proto: "tcp", HostIP: lo4, HostPort: 8081, ContainerPort: 80},
		{Proto: "udp", HostIP: any4, HostPort: 5353, ContainerPort: 53},
	})
	want := network.PortMap{
		network.MustParsePort("80/tcp"): {{HostIP: any4, HostPort: "8080"}, {HostIP: lo4, HostPort: "8081"}},
		network.MustParsePort("53/udp"): {{HostIP: any4, HostPort: "5353"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if toPortMap(nil) != nil {
		t.Fatal("no mappings must give a nil map")
	}
}
