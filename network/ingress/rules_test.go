package ingress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/network/nft"
)

// recorder is a batch that writes down what is queued, one line per
// operation, so tests read a transaction as data.
type recorder struct {
	ops   []string
	rules []*nftables.Rule
}

func elems(s *nftables.Set, els []nftables.SetElement) string {
	var parts []string
	for _, e := range els {
		switch {
		case e.VerdictData != nil:
			parts = append(parts, fmt.Sprintf("%s:goto %s", keyString(e.Key), e.VerdictData.Chain))
		case s.KeyType.Name == nftables.TypeInteger.Name:
			ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte(e.Val[:4])), binary.BigEndian.Uint16(e.Val[4:6]))
			parts = append(parts, fmt.Sprintf("%d:%s", binaryutil.NativeEndian.Uint32(e.Key), ap))
		default:
			parts = append(parts, keyString(e.Key))
		}
	}
	return strings.Join(parts, " ")
}

func keyString(b []byte) string {
	if k, ok := parseKey(b); ok {
		return k.String()
	}
	return fmt.Sprintf("%x", b)
}

func (r *recorder) AddChain(c *nftables.Chain) *nftables.Chain {
	r.ops = append(r.ops, "add chain "+c.Name)
	return c
}
func (r *recorder) DelChain(c *nftables.Chain)   { r.ops = append(r.ops, "delete chain "+c.Name) }
func (r *recorder) FlushChain(c *nftables.Chain) { r.ops = append(r.ops, "flush chain "+c.Name) }
func (r *recorder) AddSet(s *nftables.Set, els []nftables.SetElement) error {
	r.ops = append(r.ops, strings.TrimSpace("add set "+s.Name+" "+elems(s, els)))
	return nil
}
func (r *recorder) DelSet(s *nftables.Set)   { r.ops = append(r.ops, "delete set "+s.Name) }
func (r *recorder) FlushSet(s *nftables.Set) { r.ops = append(r.ops, "flush set "+s.Name) }
func (r *recorder) SetAddElements(s *nftables.Set, els []nftables.SetElement) error {
	r.ops = append(r.ops, "add element "+s.Name+" "+elems(s, els))
	return nil
}
func (r *recorder) SetDeleteElements(s *nftables.Set, els []nftables.SetElement) error {
	r.ops = append(r.ops, "delete element "+s.Name+" "+elems(s, els))
	return nil
}
func (r *recorder) AddRule(rule *nftables.Rule) *nftables.Rule {
	r.ops = append(r.ops, "add rule "+rule.Chain.Name+" "+nft.RuleComment(rule))
	r.rules = append(r.rules, rule)
	return rule
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestLayoutBaseRules(t *testing.T) {
	l := newLayout("shoal_ingress")
	if l.table.Family != nftables.TableFamilyIPv4 || l.table.Name != "shoal_ingress" {
		t.Fatalf("table %+v", l.table)
	}
	// Just before the bridge's NAT hooks: the first NAT decision wins.
	prio := map[string]int32{}
	for _, c := range l.chains {
		prio[c.Name] = int32(*c.Priority)
		if c.Type != nftables.ChainTypeNAT {
			t.Errorf("chain %s type %s", c.Name, c.Type)
		}
	}
	if !reflect.DeepEqual(prio, map[string]int32{chainPrerouting: -101, chainOutput: -101, chainPostrouting: 99}) {
		t.Fatalf("priorities %v", prio)
	}
	dispatch := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 8},
		&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: setPorts, SetID: idPorts},
	}
	want := map[string][]expr.Any{
		chainPrerouting: nft.Exprs(nft.FibDaddrLocal(), dispatch),
		chainOutput: nft.Exprs([]expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		}, nft.FibDaddrLocal(), dispatch),
		chainPostrouting: nft.Exprs(nft.CtStatusAny(nft.CtStatusDNAT), []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 8},
			&expr.Ct{Key: expr.CtKeyPROTODST, Direction: 0, Register: 9},
			&expr.Lookup{SourceRegister: 1, SetName: setPublished, SetID: idPublished},
			&expr.Masq{},
		}),
	}
	if len(l.rules) != len(want) {
		t.Fatalf("%d rules", len(l.rules))
	}
	for _, r := range l.rules {
		if !reflect.DeepEqual(r.Exprs, want[r.Chain.Name]) {
			t.Errorf("chain %s rule:\n got %#v\nwant %#v", r.Chain.Name, r.Exprs, want[r.Chain.Name])
		}
	}
	if !l.ports.IsMap || l.ports.DataType.Name != nftables.TypeVerdict.Name || l.published.IsMap {
		t.Fatalf("sets %+v %+v", l.ports, l.published)
	}
}

func TestPortObjects(t *testing.T) {
	l := newLayout("t")
	tests := []struct {
		name     string
		p        Port
		elements string
		modulus  uint32 // 0: no rule
	}{
		{"tcp, two backends", Port{Key: Key{ProtoTCP, 8080}, Service: "web", Backends: []netip.AddrPort{ap("10.0.0.2:32768"), ap("172.18.0.5:80")}},
			"0:10.0.0.2:32768 1:172.18.0.5:80", 2},
		{"udp, one backend", Port{Key: Key{ProtoUDP, 53}, Service: "dns", Backends: []netip.AddrPort{ap("10.0.0.3:40000")}},
			"0:10.0.0.3:40000", 1},
		{"no backends", Port{Key: Key{ProtoTCP, 9000}, Service: "idle"}, "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := l.port(tc.p)
			chain := fmt.Sprintf("port-%s-%d", tc.p.Proto, tc.p.Port)
			if o.chain.Name != chain || o.chain.Hooknum != nil || o.backends.Name != fmt.Sprintf("backends-%s-%d", tc.p.Proto, tc.p.Port) {
				t.Fatalf("names %s %s", o.chain.Name, o.backends.Name)
			}
			if got := elems(o.backends, o.elements); got != tc.elements {
				t.Fatalf("backend map %q, want %q", got, tc.elements)
			}
			proto := byte(unix.IPPROTO_TCP)
			if tc.p.Proto == ProtoUDP {
				proto = unix.IPPROTO_UDP
			}
			key := []byte{proto, 0, 0, 0, byte(tc.p.Port >> 8), byte(tc.p.Port), 0, 0}
			if !slices.Equal(o.dispatch.Key, key) || o.dispatch.VerdictData.Kind != expr.VerdictGoto ||
				o.dispatch.VerdictData.Chain != chain || !slices.Equal(o.key.Key, key) || o.dispatch.Comment != tc.p.Service {
				t.Fatalf("vmap element %+v, published %+v", o.dispatch, o.key)
			}
			if tc.modulus == 0 {
				if o.rule != nil {
					t.Fatal("rule without backends")
				}
				return
			}
			want := []expr.Any{
				&expr.Numgen{Register: 1, Modulus: tc.modulus, Type: unix.NFT_NG_INCREMENTAL},
				&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: o.backends.Name, SetID: o.backends.ID},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9, Specified: true},
			}
			if !reflect.DeepEqual(o.rule.Exprs, want) || o.rule.Chain != o.chain {
				t.Fatalf("rule %#v", o.rule.Exprs)
			}
		})
	}
	// Set IDs are unique per key and clear of the fixed ones.
	a, b, c := Key{ProtoTCP, 80}.setID(), Key{ProtoUDP, 80}.setID(), Key{ProtoTCP, 81}.setID()
	if a == b || a == c || a <= idPublished {
		t.Fatalf("set IDs %d %d %d", a, b, c)
	}
}

func ports(ps ...Port) map[Key]Port {
	m := map[Key]Port{}
	for _, p := range ps {
		m[p.Key] = p
	}
	return m
}

func TestLayoutUpdate(t *testing.T) {
	web := Port{Key: Key{ProtoTCP, 8080}, Service: "web", Backends: []netip.AddrPort{ap("10.0.0.2:32768"), ap("10.0.0.3:32769")}}
	web1 := web
	web1.Backends = []netip.AddrPort{ap("10.0.0.3:32769")}
	webNone := web
	webNone.Backends = nil
	dns := Port{Key: Key{ProtoUDP, 53}, Service: "dns", Backends: []netip.AddrPort{ap("10.0.0.4:40000")}}
	dnsRenamed := dns
	dnsRenamed.Service = "resolver"
	tests := []struct {
		name     string
		old, cur map[Key]Port
		want     []string
	}{
		{"nothing changed", ports(web, dns), ports(web, dns), nil},
		{"port added", ports(web), ports(web, dns), []string{
			"add set backends-udp-53 0:10.0.0.4:40000",
			"add chain port-udp-53",
			"add rule port-udp-53 dns",
			"add element ports 53/udp:goto port-udp-53",
			"add element published 53/udp",
		}},
		{"port removed", ports(web, dns), ports(web), []string{
			"delete element ports 53/udp",
			"delete element published 53/udp",
			"flush chain port-udp-53",
			"delete chain port-udp-53",
			"delete set backends-udp-53",
		}},
		{"backend gone", ports(web, dns), ports(web1, dns), []string{
			"flush chain port-tcp-8080",
			"flush set backends-tcp-8080",
			"add element backends-tcp-8080 0:10.0.0.3:32769",
			"add rule port-tcp-8080 web",
		}},
		{"last backend gone", ports(web1), ports(webNone), []string{
			"flush chain port-tcp-8080",
			"flush set backends-tcp-8080",
		}},
		{"first backend", ports(webNone), ports(web1), []string{
			"flush chain port-tcp-8080",
			"flush set backends-tcp-8080",
			"add element backends-tcp-8080 0:10.0.0.3:32769",
			"add rule port-tcp-8080 web",
		}},
		{"owner renamed", ports(dns), ports(dnsRenamed), []string{
			"delete element ports 53/udp",
			"add element ports 53/udp:goto port-udp-53",
		}},
	}
	l := newLayout("t")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r recorder
			if err := l.update(&r, tc.old, tc.cur); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(r.ops, tc.want) {
				t.Fatalf("ops:\n%s\nwant:\n%s", strings.Join(r.ops, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestLayoutBuild(t *testing.T) {
	l := newLayout("t")
	var r recorder
	err := l.build(&r, ports(
		Port{Key: Key{ProtoUDP, 53}, Service: "dns"},
		Port{Key: Key{ProtoTCP, 8080}, Service: "web", Backends: []netip.AddrPort{ap("10.0.0.2:32768")}},
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"add chain prerouting", "add chain output", "add chain postrouting",
		"add set ports", "add set published",
		"add set backends-tcp-8080 0:10.0.0.2:32768", "add chain port-tcp-8080", "add rule port-tcp-8080 web",
		"add element ports 8080/tcp:goto port-tcp-8080", "add element published 8080/tcp",
		"add set backends-udp-53", "add chain port-udp-53",
		"add element ports 53/udp:goto port-udp-53", "add element published 53/udp",
		"add rule prerouting published ports", "add rule output published ports, from this node",
		"add rule postrouting answers come back through this node",
	}
	if !slices.Equal(r.ops, want) {
		t.Fatalf("ops:\n%s", strings.Join(r.ops, "\n"))
	}
}

// fakeKernel records transactions instead of sending them.
type fakeKernel struct {
	exists    bool
	published []Key
	txs       [][]string // one entry per transaction
	fail      error
	forward   int
}

func (k *fakeKernel) replace(t *nftables.Table, build func(batch) error) error {
	var r recorder
	r.ops = append(r.ops, "replace table "+t.Name)
	if err := build(&r); err != nil {
		return err
	}
	if k.fail != nil {
		return k.fail
	}
	k.txs = append(k.txs, r.ops)
	k.exists = true
	return nil
}

func (k *fakeKernel) batch(fn func(batch) error) error {
	var r recorder
	if err := fn(&r); err != nil {
		return err
	}
	if k.fail != nil {
		return k.fail
	}
	k.txs = append(k.txs, r.ops)
	return nil
}

func (k *fakeKernel) deleteTable(t *nftables.Table) error {
	if k.fail != nil {
		return k.fail
	}
	if k.exists {
		k.txs = append(k.txs, []string{"delete table " + t.Name})
	}
	k.exists = false
	return nil
}

func (k *fakeKernel) publishedKeys(*layout) ([]Key, error) { return k.published, nil }
func (k *fakeKernel) enableForwarding() error              { k.forward++; return nil }
func (k *fakeKernel) close() error                         { return nil }

// fakeReserver holds ports in a map; taken ports are someone else's.
type fakeReserver struct {
	held  map[Key]bool
	taken map[Key]bool
}

type fakeReservation struct {
	r *fakeReserver
	k Key
}

func (f fakeReservation) Close() error { delete(f.r.held, f.k); return nil }

func (f *fakeReserver) reserve(k Key) (reservation, error) {
	if f.taken[k] || f.held[k] {
		return nil, errPortInUse
	}
	f.held[k] = true
	return fakeReservation{f, k}, nil
}

func heldKeys(f *fakeReserver) []string {
	var out []string
	for k := range f.held {
		out = append(out, k.String())
	}
	slices.Sort(out)
	return out
}

func TestMeshSync(t *testing.T) {
	k := &fakeKernel{exists: true, published: []Key{{ProtoTCP, 8080}}}
	res := &fakeReserver{held: map[Key]bool{}, taken: map[Key]bool{{ProtoTCP, 9999}: true}}
	m, err := New(Config{Table: "t", kernel: k, reserver: res, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	// A restart: the old table's ports are held again before any Sync.
	if got := heldKeys(res); !slices.Equal(got, []string{"8080/tcp"}) {
		t.Fatalf("held at start %v", got)
	}
	web := Port{Key: Key{ProtoTCP, 8080}, Service: "web", Backends: []netip.AddrPort{ap("10.0.0.2:32768")}}
	// The first Sync rebuilds the table whole, in one transaction.
	if err := m.Sync([]Port{web}); err != nil {
		t.Fatal(err)
	}
	if len(k.txs) != 1 || k.txs[0][0] != "replace table t" || k.forward != 1 {
		t.Fatalf("first sync: %v (forwarding %d)", k.txs, k.forward)
	}
	// Same content: nothing sent.
	if err := m.Sync([]Port{web}); err != nil || len(k.txs) != 1 {
		t.Fatalf("idempotent sync: %v %v", err, k.txs)
	}
	// One change, one transaction, only that port; a port someone else
	// holds is programmed anyway and reserved later.
	web.Backends = append(web.Backends, ap("10.0.0.3:32770"))
	busy := Port{Key: Key{ProtoTCP, 9999}, Service: "busy"}
	if err := m.Sync([]Port{busy, web}); err != nil {
		t.Fatal(err)
	}
	if len(k.txs) != 2 || !slices.Contains(k.txs[1], "add chain port-tcp-9999") || !slices.Contains(k.txs[1], "flush set backends-tcp-8080") {
		t.Fatalf("second tx %v", k.txs[1:])
	}
	if got := heldKeys(res); !slices.Equal(got, []string{"8080/tcp"}) {
		t.Fatalf("held %v", got)
	}
	delete(res.taken, busy.Key)
	if err := m.Sync([]Port{busy, web}); err != nil || len(k.txs) != 2 {
		t.Fatalf("retry: %v %d txs", err, len(k.txs))
	}
	if got := heldKeys(res); !slices.Equal(got, []string{"8080/tcp", "9999/tcp"}) {
		t.Fatalf("held after retry %v", got)
	}
	if got := m.Ports(); len(got) != 2 || got[0].Port != 8080 || got[1].Port != 9999 {
		t.Fatalf("Ports() = %+v", got)
	}

	// A failed transaction: the kernel state is unknown, the next Sync
	// rebuilds the table.
	k.fail = errors.New("boom")
	web.Backends = web.Backends[:1]
	if err := m.Sync([]Port{busy, web}); err == nil {
		t.Fatal("failure not reported")
	}
	k.fail = nil
	if err := m.Sync([]Port{busy, web}); err != nil {
		t.Fatal(err)
	}
	if last := k.txs[len(k.txs)-1]; last[0] != "replace table t" {
		t.Fatalf("after a failure: %v", last)
	}

	// No ports left: the table goes, and the reservations.
	if err := m.Sync(nil); err != nil {
		t.Fatal(err)
	}
	if last := k.txs[len(k.txs)-1]; !slices.Equal(last, []string{"delete table t"}) || len(res.held) != 0 {
		t.Fatalf("empty sync: %v, held %v", last, heldKeys(res))
	}
	n := len(k.txs)
	if err := m.Sync(nil); err != nil || len(k.txs) != n {
		t.Fatalf("empty again: %v %v", err, k.txs[n:])
	}
	// Back again: built whole.
	if err := m.Sync([]Port{web}); err != nil {
		t.Fatal(err)
	}
	if last := k.txs[len(k.txs)-1]; last[0] != "replace table t" {
		t.Fatalf("rebuilt: %v", last)
	}
	if err := m.Remove(); err != nil || k.exists || len(res.held) != 0 {
		t.Fatalf("remove: %v exists=%v held=%v", err, k.exists, heldKeys(res))
	}
}

func TestMeshSyncRefusesBadPorts(t *testing.T) {
	m, err := New(Config{Table: "t", kernel: &fakeKernel{}, reserver: &fakeReserver{held: map[Key]bool{}}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		p    []Port
	}{
		{"protocol", []Port{{Key: Key{"sctp", 80}}}},
		{"port 0", []Port{{Key: Key{ProtoTCP, 0}}}},
		{"twice", []Port{{Key: Key{ProtoTCP, 80}}, {Key: Key{ProtoTCP, 80}}}},
		{"IPv6 backend", []Port{{Key: Key{ProtoTCP, 80}, Backends: []netip.AddrPort{ap("[::1]:80")}}}},
		{"backend port 0", []Port{{Key: Key{ProtoTCP, 80}, Backends: []netip.AddrPort{ap("10.0.0.1:0")}}}},
	}
	for _, tc := range tests {
		if err := m.Sync(tc.p); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%s: %v, want InvalidParameter", tc.name, err)
		}
	}
	if m.Ports() != nil {
		t.Fatal("refused input changed the table")
	}
}

func TestParseKey(t *testing.T) {
	for _, k := range []Key{{ProtoTCP, 1}, {ProtoUDP, 65535}, {ProtoTCP, 8080}} {
		got, ok := parseKey(k.keyBytes())
		if !ok || got != k {
			t.Errorf("%v → %v %v", k, got, ok)
		}
	}
	if _, ok := parseKey([]byte{1, 2, 3}); ok {
		t.Error("short key parsed")
	}
	if _, ok := parseKey([]byte{1, 0, 0, 0, 0, 80, 0, 0}); ok {
		t.Error("icmp key parsed")
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
