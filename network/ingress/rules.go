package ingress

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/network/nft"
)

// The nftables table (family ip) a Mesh owns, for ports tcp/8080 (two
// backends) and udp/5353 (none yet):
//
//	set published { type inet_proto . inet_service; elements = { tcp . 8080, udp . 5353 } }
//	map ports     { type inet_proto . inet_service : verdict;
//	                elements = { tcp . 8080 : goto port-tcp-8080, udp . 5353 : goto port-udp-5353 } }
//	map backends-tcp-8080 { type integer : ipv4_addr . inet_service;
//	                        elements = { 0 : 10.99.0.3 . 32768, 1 : 172.18.0.5 . 80 } }
//	map backends-udp-5353 { type integer : ipv4_addr . inet_service; }
//	chain prerouting  { nat prerouting priority dstnat - 1;
//	                    fib daddr type local meta l4proto . th dport vmap @ports }
//	chain output      { nat output priority dstnat - 1;
//	                    ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @ports }
//	chain postrouting { nat postrouting priority srcnat - 1;
//	                    ct status dnat meta l4proto . ct original proto-dst @published masquerade }
//	chain port-tcp-8080 { dnat ip to numgen inc mod 2 map @backends-tcp-8080 }
//	chain port-udp-5353 { }
//
// Why this shape:
//   - A published port is a vmap element plus its own chain and backend
//     map, so a change touches only that port, in one transaction: the
//     backend map is refilled and the chain's one rule re-added with the
//     new modulus.
//   - The hooks run just before the node bridge's (priority dstnat): the
//     first NAT decision of a connection wins, so the bridge never sees
//     ingress traffic, and a port that is refused by nothing here still
//     falls through to it.
//   - Remote backends are another node's address and the ephemeral port its
//     bridge publishes the task on; that node's bridge DNATs it again into
//     the container. The masquerade makes the answer come back through
//     this node, which undoes its DNAT. Local backends are the container's
//     own address (NAT happens once per hook, so DNATing to this node's
//     ephemeral port would never reach the bridge's rule); they are
//     masqueraded too, which is harmless and keeps every path alike.
//   - Loopback destinations are left alone: a 127.0.0.1-sourced packet may
//     not leave on a real interface (route_localnet stays off outside the
//     bridge), so DNAT to a backend on another node could not work. TCP
//     localhost:PORT is served by the port's reservation instead, which
//     relays to the node's own address (reserve.go); UDP on localhost is
//     not published.
//   - No backends: the port's chain is empty and the connection reaches the
//     port's reservation socket, which refuses it (TCP reset).
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	setPorts         = "ports"
	setPublished     = "published"
)

// Set IDs name sets inside one transaction. They are fixed rather than left
// to the library, whose allocator is a process-wide counter other packages'
// connections bump concurrently.
const (
	idPorts     = 1
	idPublished = 2
)

var loopbackNet = netip.MustParsePrefix("127.0.0.0/8")

// layout is the table's fixed objects, built from its name alone.
type layout struct {
	table     *nftables.Table
	chains    []*nftables.Chain
	ports     *nftables.Set
	published *nftables.Set
	rules     []*nftables.Rule
}

func newLayout(tableName string) *layout {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: tableName}
	pre := &nftables.Chain{Name: chainPrerouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 1)}
	out := &nftables.Chain{Name: chainOutput, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest - 1)}
	post := &nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATSource - 1)}
	key := nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	l := &layout{
		table:  t,
		chains: []*nftables.Chain{pre, out, post},
		ports: &nftables.Set{Table: t, Name: setPorts, ID: idPorts, IsMap: true, Concatenation: true,
			KeyType: key, DataType: nftables.TypeVerdict, Comment: "ingress published ports"},
		published: &nftables.Set{Table: t, Name: setPublished, ID: idPublished, Concatenation: true,
			KeyType: key, Comment: "ingress published ports, for the masquerade"},
	}
	rule := func(c *nftables.Chain, comment string, e []expr.Any) {
		l.rules = append(l.rules, &nftables.Rule{Table: t, Chain: c, Exprs: e, UserData: nft.Comment(comment)})
	}
	dispatch := []expr.Any{nft.LoadL4Proto(nft.Reg32(0)), nft.LoadTHDport(nft.Reg32(1)), nft.MapLookup(l.ports)}
	rule(pre, "published ports", nft.Exprs(nft.FibDaddrLocal(), dispatch))
	rule(out, "published ports, from this node", nft.Exprs(notIPv4Daddr(loopbackNet), nft.FibDaddrLocal(), dispatch))
	rule(post, "answers come back through this node", nft.Then(nft.Exprs(
		nft.CtStatusAny(nft.CtStatusDNAT),
		[]expr.Any{
			nft.LoadL4Proto(nft.Reg32(0)),
			&expr.Ct{Key: expr.CtKeyPROTODST, Direction: 0 /* original */, Register: nft.Reg32(1)},
			&expr.Lookup{SourceRegister: nft.Reg1, SetName: l.published.Name, SetID: l.published.ID},
		}), nft.Masquerade()))
	return l
}

// notIPv4Daddr matches destinations outside p (`ip daddr != p`).
func notIPv4Daddr(p netip.Prefix) []expr.Any {
	p = p.Masked()
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		nft.LoadIPv4Daddr(nft.Reg1),
		&expr.Bitwise{SourceRegister: nft.Reg1, DestRegister: nft.Reg1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: nft.Reg1, Data: nft.IPv4(p.Addr())},
	}
}

func protoNumber(proto string) uint8 {
	if proto == ProtoUDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

func (k Key) keyBytes() []byte { return nft.Concat(nft.Proto(protoNumber(k.Proto)), nft.Port(k.Port)) }

func (k Key) chainName() string    { return fmt.Sprintf("port-%s-%d", k.Proto, k.Port) }
func (k Key) backendsName() string { return fmt.Sprintf("backends-%s-%d", k.Proto, k.Port) }

// setID is the backend map's transaction ID: unique per key, clear of the
// fixed ones.
func (k Key) setID() uint32 { return 1<<24 | uint32(protoNumber(k.Proto))<<16 | uint32(k.Port) }

// portObjects is everything one published port adds to the table.
type portObjects struct {
	chain    *nftables.Chain
	backends *nftables.Set
	elements []nftables.SetElement // backend map: draw number → address . port
	rule     *nftables.Rule        // nil without backends
	dispatch nftables.SetElement   // ports vmap: key → goto chain
	key      nftables.SetElement   // published set
}

func (l *layout) port(p Port) portObjects {
	k := p.Key
	o := portObjects{
		chain: &nftables.Chain{Name: k.chainName(), Table: l.table},
		backends: &nftables.Set{Table: l.table, Name: k.backendsName(), ID: k.setID(), IsMap: true,
			KeyType: nftables.TypeInteger, KeyByteOrder: binaryutil.NativeEndian,
			DataType: nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
			Comment:  "backends of " + p.Service},
		dispatch: nftables.SetElement{Key: k.keyBytes(), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: k.chainName()},
			Comment: p.Service},
		key: nftables.SetElement{Key: k.keyBytes()},
	}
	for i, b := range p.Backends {
		// numgen leaves its number in host byte order.
		o.elements = append(o.elements, nftables.SetElement{
			Key: binaryutil.NativeEndian.PutUint32(uint32(i)),
			Val: nft.Concat(nft.IPv4(b.Addr()), nft.Port(b.Port())),
		})
	}
	if n := len(p.Backends); n > 0 {
		o.rule = &nftables.Rule{Table: l.table, Chain: o.chain, UserData: nft.Comment(p.Service), Exprs: []expr.Any{
			&expr.Numgen{Register: nft.Reg1, Modulus: uint32(n), Type: unix.NFT_NG_INCREMENTAL},
			nft.MapLookup(o.backends),
			nft.DNATIPv4Regs(),
		}}
	}
	return o
}

// batch is the part of *nftables.Conn a table change queues on (a
// recording fake in unit tests).
type batch interface {
	AddChain(*nftables.Chain) *nftables.Chain
	DelChain(*nftables.Chain)
	FlushChain(*nftables.Chain)
	AddSet(*nftables.Set, []nftables.SetElement) error
	DelSet(*nftables.Set)
	FlushSet(*nftables.Set)
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	AddRule(*nftables.Rule) *nftables.Rule
}

// build queues the whole table's content (the table itself is the
// caller's) for ports.
func (l *layout) build(b batch, ports map[Key]Port) error {
	for _, c := range l.chains {
		b.AddChain(c)
	}
	if err := b.AddSet(l.ports, nil); err != nil {
		return err
	}
	if err := b.AddSet(l.published, nil); err != nil {
		return err
	}
	for _, k := range sortedKeys(ports) {
		if err := l.addPort(b, ports[k]); err != nil {
			return err
		}
	}
	for _, r := range l.rules {
		b.AddRule(r)
	}
	return nil
}

// update queues the changes from old to cur: only the ports that differ
// are touched.
func (l *layout) update(b batch, old, cur map[Key]Port) error {
	for _, k := range sortedKeys(old) {
		if _, ok := cur[k]; !ok {
			if err := l.removePort(b, old[k]); err != nil {
				return err
			}
		}
	}
	for _, k := range sortedKeys(cur) {
		p := cur[k]
		prev, ok := old[k]
		switch {
		case !ok:
			if err := l.addPort(b, p); err != nil {
				return err
			}
		case !equalPort(prev, p):
			if err := l.changePort(b, prev, p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *layout) addPort(b batch, p Port) error {
	o := l.port(p)
	if err := b.AddSet(o.backends, o.elements); err != nil {
		return err
	}
	b.AddChain(o.chain)
	if o.rule != nil {
		b.AddRule(o.rule)
	}
	if err := b.SetAddElements(l.ports, []nftables.SetElement{o.dispatch}); err != nil {
		return err
	}
	return b.SetAddElements(l.published, []nftables.SetElement{o.key})
}

// removePort drops references before what they reference: the vmap element
// (uses the chain), the rule (uses the map), then the chain and the map.
func (l *layout) removePort(b batch, p Port) error {
	o := l.port(p)
	if err := b.SetDeleteElements(l.ports, []nftables.SetElement{{Key: o.dispatch.Key}}); err != nil {
		return err
	}
	if err := b.SetDeleteElements(l.published, []nftables.SetElement{o.key}); err != nil {
		return err
	}
	b.FlushChain(o.chain)
	b.DelChain(o.chain)
	b.DelSet(o.backends)
	return nil
}

// changePort refills the backend map and re-adds the rule (the modulus is
// the backend count).
func (l *layout) changePort(b batch, prev, p Port) error {
	o := l.port(p)
	if prev.Service != p.Service {
		// The vmap element's comment names the service.
		if err := b.SetDeleteElements(l.ports, []nftables.SetElement{{Key: o.dispatch.Key}}); err != nil {
			return err
		}
		if err := b.SetAddElements(l.ports, []nftables.SetElement{o.dispatch}); err != nil {
			return err
		}
	}
	if equalBackends(prev.Backends, p.Backends) {
		return nil
	}
	b.FlushChain(o.chain)
	b.FlushSet(o.backends)
	if len(o.elements) > 0 {
		if err := b.SetAddElements(o.backends, o.elements); err != nil {
			return err
		}
	}
	if o.rule != nil {
		b.AddRule(o.rule)
	}
	return nil
}
