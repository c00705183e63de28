package bridge

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/network"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// portRequest is one published port as asked: docker's PortMap entry
// normalised. HostLo == HostHi == 0 asks for an ephemeral port; HostLo < HostHi
// asks for any free port of that range.
type portRequest struct {
	Proto         string     `json:"Proto"` // "tcp" or "udp"
	ContainerPort uint16     `json:"ContainerPort"`
	HostIP        netip.Addr `json:"HostIP"` // 0.0.0.0 = every host address
	HostLo        uint16     `json:"HostLo"`
	HostHi        uint16     `json:"HostHi"`
}

// portMapping is one published port as programmed.
type portMapping struct {
	Proto         string     `json:"Proto"`
	HostIP        netip.Addr `json:"HostIP"` // 0.0.0.0 = every host address
	HostPort      uint16     `json:"HostPort"`
	ContainerPort uint16     `json:"ContainerPort"`
}

func (m portMapping) hostString() string {
	return netip.AddrPortFrom(m.HostIP, m.HostPort).String()
}

func protoNumber(proto string) uint8 {
	if proto == "udp" {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// parsePortBindings validates and normalises a PortMap, sorted so that
// allocation (and its errors) are deterministic.
func parsePortBindings(pm network.PortMap) ([]portRequest, error) {
	var out []portRequest
	for port, bindings := range pm {
		if !port.IsValid() {
			return nil, errdefs.InvalidParameter("invalid container port %q", port.String())
		}
		proto := string(port.Proto())
		if proto != "tcp" && proto != "udp" {
			return nil, errdefs.InvalidParameter("publishing %s ports is not supported (only tcp and udp)", proto)
		}
		if port.Num() == 0 {
			return nil, errdefs.InvalidParameter("invalid container port 0/%s", proto)
		}
		for _, b := range bindings {
			r := portRequest{Proto: proto, ContainerPort: port.Num(), HostIP: netip.IPv4Unspecified()}
			if b.HostIP.IsValid() {
				ip := b.HostIP.Unmap()
				if !ip.Is4() {
					return nil, errdefs.InvalidParameter("invalid host IP %s for port %s: IPv6 port bindings are not supported", b.HostIP, port)
				}
				r.HostIP = ip
			}
			lo, hi, err := parseHostPort(b.HostPort)
			if err != nil {
				return nil, errdefs.InvalidParameter("invalid host port %q for %s: %v", b.HostPort, port, err)
			}
			r.HostLo, r.HostHi = lo, hi
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b portRequest) int {
		return cmp.Or(
			cmp.Compare(a.ContainerPort, b.ContainerPort),
			strings.Compare(a.Proto, b.Proto),
			a.HostIP.Compare(b.HostIP),
			cmp.Compare(a.HostLo, b.HostLo),
			cmp.Compare(a.HostHi, b.HostHi),
		)
	})
	return slices.Compact(out), nil
}

// parseHostPort reads "", "0", "8080" or "8000-8010".
func parseHostPort(s string) (lo, hi uint16, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	lo, err = parsePortNum(a)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err = parsePortNum(b)
	if err != nil {
		return 0, 0, err
	}
	if lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("invalid port range %s", s)
	}
	return lo, hi, nil
}

func parsePortNum(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("not a port number: %q", s)
	}
	return uint16(n), nil
}

// portKey identifies a published host port.
type portKey struct {
	proto string
	port  uint16
}

// portTable records which container owns which host ports, to refuse a
// second publication before anything is programmed.
type portTable struct {
	byPort map[portKey][]portOwner
}

type portOwner struct {
	ip    netip.Addr // 0.0.0.0 = every address
	owner string
}

func newPortTable() *portTable { return &portTable{byPort: map[portKey][]portOwner{}} }

// conflict returns the owner that already holds proto/ip:port, if any. A
// wildcard binding clashes with every address, as a socket bound to 0.0.0.0
// would.
func (t *portTable) conflict(proto string, ip netip.Addr, port uint16) (string, bool) {
	for _, o := range t.byPort[portKey{proto, port}] {
		if o.ip == ip || o.ip.IsUnspecified() || ip.IsUnspecified() {
			return o.owner, true
		}
	}
	return "", false
}

func (t *portTable) add(m portMapping, owner string) {
	k := portKey{m.Proto, m.HostPort}
	t.byPort[k] = append(t.byPort[k], portOwner{m.HostIP, owner})
}

func (t *portTable) remove(m portMapping, owner string) {
	k := portKey{m.Proto, m.HostPort}
	t.byPort[k] = slices.DeleteFunc(t.byPort[k], func(o portOwner) bool {
		return o.ip == m.HostIP && o.owner == owner
	})
	if len(t.byPort[k]) == 0 {
		delete(t.byPort, k)
	}
}

// portReserver holds a host port so that nothing else on the host can bind it
// while a container publishes it (docker's proxy did that as a side effect).
// Port 0 asks the kernel for a free ephemeral port.
type portReserver interface {
	Reserve(proto string, ip netip.Addr, port uint16) (reservation, uint16, error)
}

type reservation interface{ Close() error }

// errPortInUse means a host socket already holds the port.
var errPortInUse = errors.New("address already in use")

func allocatedError(r portRequest, port uint16) error {
	return errdefs.Conflict("Bind for %s failed: port is already allocated",
		netip.AddrPortFrom(r.HostIP, port))
}

// allocate picks a host port for every request, all or nothing: on error no
// reservation is held and t is unchanged.
func (t *portTable) allocate(owner string, reqs []portRequest, res portReserver) ([]portMapping, []reservation, error) {
	var (
		maps  []portMapping
		held  []reservation
		fails error
	)
	rollback := func() {
		for _, h := range held {
			_ = h.Close()
		}
		for _, m := range maps {
			t.remove(m, owner)
		}
	}
	for _, r := range reqs {
		m, h, err := t.allocateOne(r, res)
		if err != nil {
			fails = err
			break
		}
		// Record at once so later requests of the same container see it.
		t.add(m, owner)
		maps = append(maps, m)
		held = append(held, h)
	}
	if fails != nil {
		rollback()
		return nil, nil, fails
	}
	return maps, held, nil
}

// maxEphemeralTries bounds retries when the kernel offers a port that our
// table still records (only possible if a reservation was lost).
const maxEphemeralTries = 16

func (t *portTable) allocateOne(r portRequest, res portReserver) (portMapping, reservation, error) {
	m := portMapping{Proto: r.Proto, HostIP: r.HostIP, ContainerPort: r.ContainerPort}
	switch {
	case r.HostLo == 0:
		for range maxEphemeralTries {
			h, port, err := res.Reserve(r.Proto, r.HostIP, 0)
			if err != nil {
				return m, nil, bindError(r, 0, err)
			}
			if _, taken := t.conflict(r.Proto, r.HostIP, port); taken {
				_ = h.Close()
				continue
			}
			m.HostPort = port
			return m, h, nil
		}
		return m, nil, errdefs.Unavailable("no free ephemeral %s port on %s", r.Proto, r.HostIP)
	default:
		var last error
		for p := uint32(r.HostLo); p <= uint32(r.HostHi); p++ {
			port := uint16(p)
			if _, taken := t.conflict(r.Proto, r.HostIP, port); taken {
				last = allocatedError(r, port)
				continue
			}
			h, _, err := res.Reserve(r.Proto, r.HostIP, port)
			if err != nil {
				last = bindError(r, port, err)
				continue
			}
			m.HostPort = port
			return m, h, nil
		}
		if r.HostLo != r.HostHi {
			return m, nil, errdefs.Conflict("Bind for %s:%d-%d failed: all ports are allocated", r.HostIP, r.HostLo, r.HostHi)
		}
		return m, nil, last
	}
}

func bindError(r portRequest, port uint16, err error) error {
	addr := netip.AddrPortFrom(r.HostIP, port)
	switch {
	case errors.Is(err, errPortInUse):
		return errdefs.Conflict("failed to bind host port %s/%s: address already in use", addr, r.Proto)
	case errors.Is(err, unix.EADDRNOTAVAIL):
		return errdefs.InvalidParameter("failed to bind host port %s/%s: %s is not an address of this host", addr, r.Proto, r.HostIP)
	}
	return errdefs.Wrapf(errdefs.KindSystem, err, "failed to bind host port %s/%s", addr, r.Proto)
}

// toPortMap renders mappings the way docker reports them.
func toPortMap(maps []portMapping) network.PortMap {
	if len(maps) == 0 {
		return nil
	}
	pm := network.PortMap{}
	for _, m := range maps {
		p, _ := network.PortFrom(m.ContainerPort, network.IPProtocol(m.Proto))
		pm[p] = append(pm[p], network.PortBinding{HostIP: m.HostIP, HostPort: strconv.Itoa(int(m.HostPort))})
	}
	return pm
}

// socketReserver reserves ports by binding (not listening on) a socket.
// Incoming connections never reach it: the DNAT in prerouting/output rewrites
// them before socket lookup.
type socketReserver struct{}

type fdReservation int

func (f fdReservation) Close() error { return unix.Close(int(f)) }

func (socketReserver) Reserve(proto string, ip netip.Addr, port uint16) (reservation, uint16, error) {
	typ := unix.SOCK_STREAM
	if proto == "udp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, 0, err
	}
	sa := &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, 0, errPortInUse
		}
		return nil, 0, err
	}
	got, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return nil, 0, err
	}
	return fdReservation(fd), uint16(got.(*unix.SockaddrInet4).Port), nil
}
