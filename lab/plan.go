package lab

import (
	"net/netip"

	"github.com/shoal/shoal/errdefs"
)

// DefaultSubnet is the lab network when none is given. It stays clear of
// the daemons' node bridge (172.18.0.0/16) and of swarm's default overlay
// pool's first networks (10.0.x.0/24).
const DefaultSubnet = "10.99.0.0/24"

// nodeBridgeNet is shoald's default --bip network, which lives inside every
// node: the lab network must not overlap it or nodes could not route.
var nodeBridgeNet = netip.MustParsePrefix("172.18.0.0/16")

// Role of a node in the swarm.
const (
	RoleManager = "manager"
	RoleWorker  = "worker"
)

// addrPlan is the lab's address and role plan.
type addrPlan struct {
	Subnet   netip.Prefix
	BridgeIP netip.Addr // the host side of the lab network
	Nodes    []nodePlan
}

type nodePlan struct {
	Name  string
	Index int
	IP    netip.Addr
	Role  string // "" without swarm
}

// planAddrs assigns the bridge the subnet's first address and node i the
// address nodeIPOffset+i; the first `managers` nodes are managers.
func planAddrs(subnet string, nodes, managers int, swarm bool) (addrPlan, error) {
	var p addrPlan
	if nodes < 1 || nodes > maxNodes {
		return p, errdefs.InvalidParameter("invalid node count %d: want 1 to %d", nodes, maxNodes)
	}
	if swarm && (managers < 1 || managers > nodes) {
		return p, errdefs.InvalidParameter("invalid manager count %d: want 1 to %d (the node count)", managers, nodes)
	}
	pfx, err := netip.ParsePrefix(subnet)
	if err != nil || !pfx.Addr().Is4() {
		return p, errdefs.InvalidParameter("invalid subnet %q: want an IPv4 CIDR such as %s", subnet, DefaultSubnet)
	}
	pfx = pfx.Masked()
	if pfx.Overlaps(nodeBridgeNet) {
		return p, errdefs.InvalidParameter("subnet %s overlaps the nodes' own bridge network %s", pfx, nodeBridgeNet)
	}
	if pfx.Addr().IsLoopback() || pfx.Addr().IsMulticast() || pfx.Addr().IsUnspecified() {
		return p, errdefs.InvalidParameter("subnet %s is not usable for a lab network", pfx)
	}
	// The highest node address must stay below the broadcast address.
	hostBits := 32 - pfx.Bits()
	if hostBits >= 31 || nodeIPOffset+nodes >= (1<<hostBits)-1 {
		return p, errdefs.InvalidParameter("subnet %s is too small for %d nodes (node addresses start at .%d)", pfx, nodes, nodeIPOffset+1)
	}
	p.Subnet = pfx
	p.BridgeIP = addrAt(pfx, 1)
	for i := 1; i <= nodes; i++ {
		np := nodePlan{Name: NodeName(i), Index: i, IP: addrAt(pfx, nodeIPOffset+i)}
		if swarm {
			np.Role = RoleWorker
			if i <= managers {
				np.Role = RoleManager
			}
		}
		p.Nodes = append(p.Nodes, np)
	}
	return p, nil
}

// addrAt returns the n-th address of an IPv4 prefix.
func addrAt(p netip.Prefix, n int) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
