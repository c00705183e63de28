package bridge

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/shoal/shoal/network/nft"
)

// The nftables table (family ip) the manager owns:
//
//	map pub_addr  { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//	map pub_any   { type inet_proto . inet_service : ipv4_addr . inet_service }
//	chain prerouting  { nat prerouting dstnat;  fib daddr type local jump published }
//	chain output      { nat output dstnat;      fib daddr type local jump published }
//	chain published   { dnat ip to ip daddr . meta l4proto . th dport map @pub_addr
//	                    dnat ip to meta l4proto . th dport map @pub_any }
//	chain postrouting { nat postrouting srcnat;
//	                    ip saddr SUBNET oifname != BR masquerade            # egress
//	                    ip saddr 127.0.0.0/8 oifname BR masquerade          # host 127.0.0.1 → published port
//	                    ct status dnat ip saddr SUBNET oifname BR masquerade }  # hairpin
//	chain forward     { filter forward; policy accept;
//	                    iifname BR accept
//	                    oifname BR ct state established,related accept
//	                    oifname BR ct status dnat accept
//	                    oifname BR drop }
//
// The rules never change after New: a published port is one map element
// (commented with the container ID), so Attach and Detach add and delete
// elements by key in O(1) instead of editing rules.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPublished   = "published"
	chainPostrouting = "postrouting"
	chainForward     = "forward"
	setPubAddr       = "pub_addr"
	setPubAny        = "pub_any"
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// layout is the table's objects, built from configuration alone.
type layout struct {
	table   *nftables.Table
	chains  []*nftables.Chain
	pubAddr *nftables.Set
	pubAny  *nftables.Set
	rules   []*nftables.Rule
}

func newLayout(tableName, bridge string, subnet netip.Prefix) *layout {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName}
	accept := nftables.ChainPolicyAccept
	pre := &nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest}
	out := &nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest}
	pub := &nftables.Chain{Name: chainPublished, Table: t}
	post := &nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource}
	fwd := &nftables.Chain{Name: chainForward, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}

	target := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	l := &layout{
		table:  t,
		chains: []*nftables.Chain{pre, out, pub, post, fwd},
		pubAddr: &nftables.Set{Table: t, Name: setPubAddr, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
			DataType: target, Comment: "published ports bound to one host address"},
		pubAny: &nftables.Set{Table: t, Name: setPubAny, IsMap: true, Concatenation: true,
			KeyType:  nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService),
			DataType: target, Comment: "published ports bound to every host address"},
	}
	rule := func(c *nftables.Chain, comment string, e []expr.Any) {
		l.rules = append(l.rules, &nftables.Rule{Table: t, Chain: c, Exprs: e, UserData: nft.Comment(comment)})
	}
	// Published ports: from outside (prerouting) and from the host itself
	// (output), for any destination address that is this host's.
	rule(pre, "published ports", nft.Then(nft.FibDaddrLocal(), nft.Jump(chainPublished)))
	rule(out, "published ports, from the host", nft.Then(nft.FibDaddrLocal(), nft.Jump(chainPublished)))
	rule(pub, "host-address bindings", []expr.Any{
		nft.LoadIPv4Daddr(nft.Reg32(0)), nft.LoadL4Proto(nft.Reg32(1)), nft.LoadTHDport(nft.Reg32(2)),
		nft.MapLookup(l.pubAddr), nft.DNATIPv4Regs(),
	})
	rule(pub, "wildcard bindings", []expr.Any{
		nft.LoadL4Proto(nft.Reg32(0)), nft.LoadTHDport(nft.Reg32(1)),
		nft.MapLookup(l.pubAny), nft.DNATIPv4Regs(),
	})
	rule(post, "egress", nft.Then(nft.Exprs(nft.IPv4Saddr(subnet), nft.OIFName(bridge, true)), nft.Masquerade()))
	// A host connection to 127.0.0.1:PORT keeps its loopback source after
	// the DNAT; route_localnet lets it out on the bridge and this gives it
	// an address the container can answer.
	rule(post, "host loopback to published port", nft.Then(nft.Exprs(nft.IPv4Saddr(loopbackNet), nft.OIFName(bridge, false)), nft.Masquerade()))
	// A container reaching a published port (its own or a neighbour's) via a
	// host address: without SNAT the answer would go straight back over the
	// bridge, bypassing the reverse DNAT.
	rule(post, "hairpin", nft.Then(nft.Exprs(nft.CtStatusAny(nft.CtStatusDNAT), nft.IPv4Saddr(subnet), nft.OIFName(bridge, false)), nft.Masquerade()))
	rule(fwd, "from containers", nft.Then(nft.IIFName(bridge, false), nft.Accept()))
	rule(fwd, "replies to containers", nft.Then(nft.Exprs(nft.OIFName(bridge, false), nft.CtStateAny(nft.CtStateEstablished|nft.CtStateRelated)), nft.Accept()))
	rule(fwd, "to published ports", nft.Then(nft.Exprs(nft.OIFName(bridge, false), nft.CtStatusAny(nft.CtStatusDNAT)), nft.Accept()))
	rule(fwd, "nothing else reaches containers", nft.Then(nft.OIFName(bridge, false), nft.Drop()))
	return l
}

// element is a published port's map entry: which map, key and DNAT target.
func (l *layout) element(m portMapping, ip netip.Addr, containerID string) (*nftables.Set, nftables.SetElement) {
	val := nft.Concat(nft.IPv4(ip), nft.Port(m.ContainerPort))
	if m.HostIP.IsUnspecified() {
		return l.pubAny, nftables.SetElement{
			Key:     nft.Concat(nft.Proto(protoNumber(m.Proto)), nft.Port(m.HostPort)),
			Val:     val,
			Comment: containerID,
		}
	}
	return l.pubAddr, nftables.SetElement{
		Key:     nft.Concat(nft.IPv4(m.HostIP), nft.Proto(protoNumber(m.Proto)), nft.Port(m.HostPort)),
		Val:     val,
		Comment: containerID,
	}
}

// elements groups an endpoint's map entries by map.
func (l *layout) elements(ep *endpoint) map[*nftables.Set][]nftables.SetElement {
	out := map[*nftables.Set][]nftables.SetElement{}
	for _, m := range ep.Ports {
		s, e := l.element(m, ep.IP, ep.ContainerID)
		out[s] = append(out[s], e)
	}
	return out
}

// build queues the whole table, with the published ports of eps, on b.
func (l *layout) build(b *nftables.Conn, eps map[string]*endpoint) error {
	for _, c := range l.chains {
		b.AddChain(c)
	}
	all := map[*nftables.Set][]nftables.SetElement{}
	for _, ep := range eps {
		for s, els := range l.elements(ep) {
			all[s] = append(all[s], els...)
		}
	}
	for _, s := range []*nftables.Set{l.pubAddr, l.pubAny} {
		if err := b.AddSet(s, all[s]); err != nil {
			return err
		}
	}
	for _, r := range l.rules {
		b.AddRule(r)
	}
	return nil
}
