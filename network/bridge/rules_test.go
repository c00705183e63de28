package bridge

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/network/nft"
)

func ifname(s string) []byte {
	b := make([]byte, 16)
	copy(b, s)
	return b
}

func TestLayoutRules(t *testing.T) {
	l := newLayout("shoal", "br0", netip.MustParsePrefix("172.18.0.0/16"))
	if l.table.Family != nftables.TableFamilyIPv4 || l.table.Name != "shoal" {
		t.Fatalf("table %+v", l.table)
	}
	hooks := map[string]struct {
		typ  nftables.ChainType
		hook *nftables.ChainHook
		prio *nftables.ChainPriority
	}{
		chainPrerouting:  {nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest},
		chainOutput:      {nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest},
		chainPublished:   {"", nil, nil},
		chainPostrouting: {nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource},
		chainForward:     {nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter},
	}
	for _, c := range l.chains {
		want, ok := hooks[c.Name]
		if !ok || c.Type != want.typ || !reflect.DeepEqual(c.Hooknum, want.hook) || !reflect.DeepEqual(c.Priority, want.prio) {
			t.Errorf("chain %s: %+v", c.Name, c)
		}
		delete(hooks, c.Name)
	}
	if len(hooks) != 0 {
		t.Errorf("missing chains %v", hooks)
	}

	byComment := map[string]*nftables.Rule{}
	for _, r := range l.rules {
		byComment[nft.RuleComment(r)] = r
	}
	// 172.18.0.0/16 as the kernel compares it: load, mask, compare.
	subnet := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{172, 18, 0, 0}},
	}
	local := []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
	dnat := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true}
	tests := []struct {
		comment string
		chain   string
		exprs   []expr.Any
	}{
		{"published ports", chainPrerouting, append(append([]expr.Any{}, local...),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPublished})},
		{"published ports, from the host", chainOutput, append(append([]expr.Any{}, local...),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: chainPublished})},
		{"host-address bindings", chainPublished, []expr.Any{
			&expr.Payload{DestRegister: 8, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
			&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: setPubAddr},
			dnat,
		}},
		{"wildcard bindings", chainPublished, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 8},
			&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: setPubAny},
			dnat,
		}},
		{"egress", chainPostrouting, append(append([]expr.Any{}, subnet...),
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("br0")},
			&expr.Masq{})},
		{"host loopback to published port", chainPostrouting, []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127, 0, 0, 0}},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("br0")},
			&expr.Masq{},
		}},
		{"hairpin", chainPostrouting, append(append([]expr.Any{
			&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(0x20), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		}, subnet...),
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("br0")},
			&expr.Masq{})},
		{"from containers", chainForward, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("br0")},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{"replies to containers", chainForward, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("br0")},
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}},
		{"nothing else reaches containers", chainForward, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("br0")},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}},
	}
	for _, tt := range tests {
		r, ok := byComment[tt.comment]
		if !ok {
			t.Errorf("no rule %q", tt.comment)
			continue
		}
		if r.Chain.Name != tt.chain {
			t.Errorf("%q in chain %s, want %s", tt.comment, r.Chain.Name, tt.chain)
		}
		if !reflect.DeepEqual(r.Exprs, tt.exprs) {
			t.Errorf("%q:\n got %#v\nwant %#v", tt.comment, r.Exprs, tt.exprs)
		}
	}
	// Order within a chain matters: the drop comes last in forward, the
	// host-address map before the wildcard one.
	var fwd, pub []string
	for _, r := range l.rules {
		switch r.Chain.Name {
		case chainForward:
			fwd = append(fwd, nft.RuleComment(r))
		case chainPublished:
			pub = append(pub, nft.RuleComment(r))
		}
	}
	if fwd[len(fwd)-1] != "nothing else reaches containers" || pub[0] != "host-address bindings" {
		t.Errorf("order: forward %v, published %v", fwd, pub)
	}
}

func TestLayoutSets(t *testing.T) {
	l := newLayout("shoal", "br0", netip.MustParsePrefix("172.18.0.0/16"))
	if !l.pubAny.IsMap || l.pubAny.KeyType.Bytes != 8 || l.pubAny.DataType.Bytes != 8 ||
		l.pubAny.KeyType.Name != "inet_proto . inet_service" || l.pubAny.DataType.Name != "ipv4_addr . inet_service" {
		t.Errorf("pub_any %+v", l.pubAny)
	}
	if !l.pubAddr.IsMap || l.pubAddr.KeyType.Bytes != 12 || l.pubAddr.KeyType.Name != "ipv4_addr . inet_proto . inet_service" {
		t.Errorf("pub_addr %+v", l.pubAddr)
	}
}

func TestLayoutElements(t *testing.T) {
	l := newLayout("shoal", "br0", netip.MustParsePrefix("172.18.0.0/16"))
	ip := netip.MustParseAddr("172.18.0.2")
	tests := []struct {
		m       portMapping
		set     *nftables.Set
		key     []byte
		wantVal []byte
	}{
		{portMapping{Proto: "tcp", HostIP: any4, HostPort: 8080, ContainerPort: 80}, l.pubAny,
			[]byte{6, 0, 0, 0, 0x1f, 0x90, 0, 0}, []byte{172, 18, 0, 2, 0, 80, 0, 0}},
		{portMapping{Proto: "udp", HostIP: any4, HostPort: 53, ContainerPort: 5353}, l.pubAny,
			[]byte{17, 0, 0, 0, 0, 53, 0, 0}, []byte{172, 18, 0, 2, 0x14, 0xe9, 0, 0}},
		{portMapping{Proto: "tcp", HostIP: lo4, HostPort: 443, ContainerPort: 8443}, l.pubAddr,
			[]byte{127, 0, 0, 1, 6, 0, 0, 0, 0x01, 0xbb, 0, 0}, []byte{172, 18, 0, 2, 0x20, 0xfb, 0, 0}},
	}
	for _, tt := range tests {
		s, e := l.element(tt.m, ip, "cid")
		if s != tt.set || !reflect.DeepEqual(e.Key, tt.key) || !reflect.DeepEqual(e.Val, tt.wantVal) || e.Comment != "cid" {
			t.Errorf("%+v: set %s key %v val %v comment %q", tt.m, s.Name, e.Key, e.Val, e.Comment)
		}
	}
	ep := &endpoint{ContainerID: "cid", IP: ip, Ports: []portMapping{tests[0].m, tests[1].m, tests[2].m}}
	els := l.elements(ep)
	if len(els[l.pubAny]) != 2 || len(els[l.pubAddr]) != 1 {
		t.Fatalf("grouped %v", els)
	}
}
