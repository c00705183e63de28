package bridge

import (
	"net/netip"

	"github.com/shoal/shoal/errdefs"
)

// ipam hands out IPv4 addresses of one subnet. Its allocations are the
// endpoints' addresses, persisted with them; the Manager serialises access.
type ipam struct {
	Subnet  netip.Prefix
	Gateway netip.Addr
	Owners  map[netip.Addr]string // address → container ID
	// Last is the most recently handed-out address. Allocation continues
	// after it, so a released address is not reused at once (a peer's ARP
	// cache may still point at the old owner's MAC).
	Last netip.Addr
}

func newIPAM(subnet netip.Prefix, gateway netip.Addr) *ipam {
	return &ipam{Subnet: subnet.Masked(), Gateway: gateway, Owners: map[netip.Addr]string{}}
}

// broadcast is the subnet's last address.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// usable reports whether a may be given to a container.
func (p *ipam) usable(a netip.Addr) bool {
	return p.Subnet.Contains(a) && a != p.Subnet.Addr() && a != broadcast(p.Subnet) && a != p.Gateway
}

// Allocate gives owner the next free address.
func (p *ipam) Allocate(owner string) (netip.Addr, error) {
	if p.Owners == nil {
		p.Owners = map[netip.Addr]string{}
	}
	first := p.Subnet.Addr().Next()
	last := broadcast(p.Subnet).Prev()
	start := first
	if p.Last.IsValid() && p.Subnet.Contains(p.Last) && p.Last.Less(last) {
		start = p.Last.Next()
	}
	a := start
	for {
		if _, taken := p.Owners[a]; !taken && p.usable(a) {
			p.Owners[a] = owner
			p.Last = a
			return a, nil
		}
		if a == last {
			a = first
		} else {
			a = a.Next()
		}
		if a == start {
			return netip.Addr{}, errdefs.Unavailable("no available IPv4 addresses on network bridge (subnet %s): all %d addresses are in use", p.Subnet, len(p.Owners))
		}
	}
}

// Reserve records a specific address for owner (used when re-adopting).
func (p *ipam) Reserve(a netip.Addr, owner string) error {
	if !p.usable(a) {
		return errdefs.InvalidParameter("address %s is not usable in subnet %s", a, p.Subnet)
	}
	if o, taken := p.Owners[a]; taken && o != owner {
		return errdefs.Conflict("address %s is already in use", a)
	}
	if p.Owners == nil {
		p.Owners = map[netip.Addr]string{}
	}
	p.Owners[a] = owner
	return nil
}

// Release frees a. Releasing a free address is a no-op.
func (p *ipam) Release(a netip.Addr) { delete(p.Owners, a) }

// InUse is the number of allocated addresses.
func (p *ipam) InUse() int { return len(p.Owners) }
