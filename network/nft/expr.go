package nft

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Registers. The kernel has four 16-byte registers (1..4) that alias sixteen
// 4-byte ones (8..23): register 1 is 8..11. Concatenations load each field
// into consecutive 4-byte registers starting at Reg1, as nft does.
const (
	RegVerdict uint32 = 0
	Reg1       uint32 = 1
)

// Reg32 is the n-th 4-byte register (0-based), the one a concatenation's n-th
// field lands in when the concatenation starts at Reg1.
func Reg32(n int) uint32 { return 8 + uint32(n) }

// Connection-tracking bits, as the kernel stores them in the ct state and
// ct status registers.
const (
	CtStateEstablished = expr.CtStateBitESTABLISHED
	CtStateRelated     = expr.CtStateBitRELATED
	CtStatusDNAT       = uint32(0x20) // IPS_DST_NAT
	CtStatusSNAT       = uint32(0x10) // IPS_SRC_NAT
)

// IfName pads an interface name to IFNAMSIZ as the kernel compares it.
func IfName(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func cmp(op expr.CmpOp, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: op, Register: Reg1, Data: data}
}

func eqOrNeq(neq bool) expr.CmpOp {
	if neq {
		return expr.CmpOpNeq
	}
	return expr.CmpOpEq
}

// IIFName matches (or with neq, excludes) the input interface by name.
func IIFName(name string, neq bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: Reg1},
		cmp(eqOrNeq(neq), IfName(name)),
	}
}

// OIFName matches (or with neq, excludes) the output interface by name.
func OIFName(name string, neq bool) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: Reg1},
		cmp(eqOrNeq(neq), IfName(name)),
	}
}

// IPv4 header offsets.
const (
	offIPv4Saddr = 12
	offIPv4Daddr = 16
)

func ipv4Prefix(offset uint32, p netip.Prefix) []expr.Any {
	p = p.Masked()
	load := &expr.Payload{DestRegister: Reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
	if p.Bits() == 32 {
		return []expr.Any{load, cmp(expr.CmpOpEq, IPv4(p.Addr()))}
	}
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		cmp(expr.CmpOpEq, IPv4(p.Addr())),
	}
}

// IPv4Saddr matches an IPv4 source address within p (family ip, or inet
// after an nfproto check).
func IPv4Saddr(p netip.Prefix) []expr.Any { return ipv4Prefix(offIPv4Saddr, p) }

// IPv4Daddr matches an IPv4 destination address within p.
func IPv4Daddr(p netip.Prefix) []expr.Any { return ipv4Prefix(offIPv4Daddr, p) }

// FibDaddrLocal matches packets addressed to this host (`fib daddr type
// local`): any local address, including loopback and the bridge gateway.
func FibDaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: Reg1, FlagDADDR: true, ResultADDRTYPE: true},
		cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)),
	}
}

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: key, Register: Reg1},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		cmp(expr.CmpOpNeq, binaryutil.NativeEndian.PutUint32(0)),
	}
}

// CtStateAny matches when the connection is in any of the given states
// (`ct state established,related`).
func CtStateAny(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATE, bits) }

// CtStatusAny matches when any of the given ct status bits is set
// (`ct status dnat`).
func CtStatusAny(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATUS, bits) }

// LoadIPv4Daddr loads the IPv4 destination address into reg.
func LoadIPv4Daddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: offIPv4Daddr, Len: 4}
}

// LoadL4Proto loads the transport protocol number into reg.
func LoadL4Proto(reg uint32) expr.Any {
	return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg}
}

// LoadTHDport loads the transport destination port (`th dport`: the same
// offset for TCP, UDP and SCTP) into reg.
func LoadTHDport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// MapLookup looks the key starting at Reg1 up in map s and stores the value
// from Reg1 on (for a verdict map, into the verdict register). A miss ends the
// rule.
func MapLookup(s *nftables.Set) expr.Any {
	dreg := Reg1
	if s.DataType.Name == nftables.TypeVerdict.Name {
		dreg = RegVerdict
	}
	return &expr.Lookup{SourceRegister: Reg1, DestRegister: dreg, IsDestRegSet: true, SetName: s.Name, SetID: s.ID}
}

// DNATIPv4Regs DNATs to the IPv4 address in Reg1 and the port in Reg32(1),
// which is where a map lookup with data `ipv4_addr . inet_service` leaves them.
func DNATIPv4Regs() expr.Any {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4,
		RegAddrMin: Reg1, RegProtoMin: Reg32(1), Specified: true}
}

// Masquerade SNATs to the outgoing interface's address.
func Masquerade() expr.Any { return &expr.Masq{} }

// Counter counts packets and bytes.
func Counter() expr.Any { return &expr.Counter{} }

// Accept, Drop, Return, Jump and Goto are verdicts.
func Accept() expr.Any           { return &expr.Verdict{Kind: expr.VerdictAccept} }
func Drop() expr.Any             { return &expr.Verdict{Kind: expr.VerdictDrop} }
func Return() expr.Any           { return &expr.Verdict{Kind: expr.VerdictReturn} }
func Jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }
func Goto(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain} }

// Exprs concatenates match lists into one rule's expressions.
func Exprs(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Then appends statements to a match list, for readable rule literals:
// Then(OIFName("br0", false), Accept()).
func Then(match []expr.Any, stmts ...expr.Any) []expr.Any {
	out := make([]expr.Any, 0, len(match)+len(stmts))
	out = append(out, match...)
	return append(out, stmts...)
}

// Key and value encodings for set elements, in the byte order the kernel
// compares them (network order for addresses and ports).

// IPv4 is a 4-byte IPv4 address.
func IPv4(a netip.Addr) []byte { b := a.As4(); return b[:] }

// Port is a 2-byte port number.
func Port(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// Proto is a 1-byte IP protocol number.
func Proto(p uint8) []byte { return []byte{p} }

// Concat joins the fields of a concatenated key or value, padding each to a
// multiple of 4 bytes as registers hold them.
func Concat(fields ...[]byte) []byte {
	var out []byte
	for _, f := range fields {
		out = append(out, f...)
		if r := len(f) % 4; r != 0 {
			out = append(out, make([]byte, 4-r)...)
		}
	}
	return out
}
