package nft

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

func TestConcat(t *testing.T) {
	tests := []struct {
		name   string
		fields [][]byte
		want   []byte
	}{
		{"proto . port", [][]byte{Proto(6), Port(8080)}, []byte{6, 0, 0, 0, 0x1f, 0x90, 0, 0}},
		{"addr . port", [][]byte{IPv4(netip.MustParseAddr("10.1.2.3")), Port(1)}, []byte{10, 1, 2, 3, 0, 1, 0, 0}},
		{"addr . proto . port", [][]byte{IPv4(netip.MustParseAddr("127.0.0.1")), Proto(17), Port(53)},
			[]byte{127, 0, 0, 1, 17, 0, 0, 0, 0, 53, 0, 0}},
		{"single aligned", [][]byte{IPv4(netip.MustParseAddr("1.2.3.4"))}, []byte{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		if got := Concat(tt.fields...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
	// The padded length is what the library declares for the set type.
	kt := nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	if n := len(Concat(IPv4(netip.MustParseAddr("1.2.3.4")), Proto(6), Port(1))); uint32(n) != kt.Bytes {
		t.Errorf("concat length %d, set key length %d", n, kt.Bytes)
	}
}

func TestIfName(t *testing.T) {
	got := IfName("eth0")
	if len(got) != 16 || string(got[:4]) != "eth0" || got[4] != 0 {
		t.Fatalf("%q", got)
	}
}

func TestIPv4Prefix(t *testing.T) {
	tests := []struct {
		p    string
		want []expr.Any
	}{
		{"10.0.0.0/8", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{10, 0, 0, 0}},
		}},
		// An unmasked prefix is masked, as nft does.
		{"192.168.1.77/23", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 254, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{192, 168, 0, 0}},
		}},
		// A single address needs no mask.
		{"1.2.3.4/32", []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 2, 3, 4}},
		}},
	}
	for _, tt := range tests {
		if got := IPv4Saddr(netip.MustParsePrefix(tt.p)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", tt.p, got, tt.want)
		}
	}
	d := IPv4Daddr(netip.MustParsePrefix("1.2.3.4/32"))
	if d[0].(*expr.Payload).Offset != 16 {
		t.Errorf("daddr offset %d", d[0].(*expr.Payload).Offset)
	}
}

func TestMapLookupRegisters(t *testing.T) {
	vmap := &nftables.Set{Name: "v", IsMap: true, DataType: nftables.TypeVerdict}
	dmap := &nftables.Set{Name: "d", IsMap: true, DataType: nftables.TypeIPAddr}
	if l := MapLookup(vmap).(*expr.Lookup); l.DestRegister != RegVerdict || !l.IsDestRegSet || l.SetName != "v" {
		t.Errorf("verdict map lookup %+v", l)
	}
	if l := MapLookup(dmap).(*expr.Lookup); l.DestRegister != Reg1 || l.SourceRegister != Reg1 {
		t.Errorf("data map lookup %+v", l)
	}
	if Reg32(0) != 8 || Reg32(1) != 9 {
		t.Errorf("Reg32 %d %d", Reg32(0), Reg32(1))
	}
}

func TestCommentRoundTrip(t *testing.T) {
	r := &nftables.Rule{UserData: Comment("container abc")}
	if got := RuleComment(r); got != "container abc" {
		t.Fatalf("got %q", got)
	}
	if got := RuleComment(&nftables.Rule{}); got != "" {
		t.Fatalf("no userdata: %q", got)
	}
}

func TestThenAndExprs(t *testing.T) {
	m := OIFName("br0", false)
	got := Then(Exprs(m, IIFName("eth0", true)), Accept())
	if len(got) != 5 {
		t.Fatalf("%d exprs", len(got))
	}
	if c := got[3].(*expr.Cmp); c.Op != expr.CmpOpNeq {
		t.Errorf("iifname != : %+v", c)
	}
	if len(m) != 2 {
		t.Error("Then modified its input")
	}
}
