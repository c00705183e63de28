// Package ingress is a node's share of the swarm routing mesh: every
// ingress published port of the cluster answers on every node and is
// balanced across the service's tasks, wherever they run, with nftables
// DNAT (this kernel has no IPVS). The swarm agent hands a Mesh the
// cluster's table; the Mesh programs its own nftables table (see rules.go
// for its layout and why), reserves the published ports on the node so no
// host process or plain container can take them, and keeps both in step
// with the table, one transaction per change.
//
// Backends are addresses the node can reach: for a task on another node,
// that node's address and the ephemeral port its bridge publishes the task
// on; for a task on this node, the container's own address and port.
package ingress

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/network/netns"
	"github.com/shoal/shoal/network/nft"
)

// DefaultTable is the nftables table (family ip) a Mesh owns by default.
const DefaultTable = "shoal_ingress"

// Protocols a port may be published with.
const (
	ProtoTCP = "tcp"
	ProtoUDP = "udp"
)

// Key names a published port.
type Key struct {
	Proto string // ProtoTCP or ProtoUDP
	Port  uint16
}

func (k Key) String() string { return fmt.Sprintf("%d/%s", k.Port, k.Proto) }

func compareKeys(a, b Key) int {
	return cmp.Or(strings.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
}

func sortedKeys(m map[Key]Port) []Key {
	return slices.SortedFunc(maps.Keys(m), compareKeys)
}

// Port is a published port and where its connections go.
type Port struct {
	Key
	// Service names the port's owner (comments, log lines).
	Service string
	// Backends receive new connections in turn. Empty: connections are
	// refused until a task runs.
	Backends []netip.AddrPort
}

func equalBackends(a, b []netip.AddrPort) bool { return slices.Equal(a, b) }

func equalPort(a, b Port) bool {
	return a.Key == b.Key && a.Service == b.Service && equalBackends(a.Backends, b.Backends)
}

// Config configures a Mesh.
type Config struct {
	// Table is the nftables table (family ip) the Mesh owns. Default
	// DefaultTable.
	Table string
	// Netns is the network namespace to work in (tests); nil is the
	// daemon's own.
	Netns *netns.NS
	Log   *slog.Logger

	// reserver holds published ports (tests pass a fake).
	reserver reserver
	// kernel applies table changes (tests pass a recorder).
	kernel kernel
}

// Mesh programs a node's routing mesh. Its methods are safe for concurrent
// use.
type Mesh struct {
	cfg Config
	log *slog.Logger
	l   *layout

	mu sync.Mutex
	// cur is what the kernel table holds; nil when unknown (at start, or
	// after a failed change), so the next Sync rebuilds it whole.
	cur  map[Key]Port
	held map[Key]reservation
}

// New returns a Mesh. It leaves the kernel table as a previous daemon left
// it (traffic keeps flowing across a restart) and reserves the ports that
// table publishes again; the first Sync rebuilds it.
func New(cfg Config) (*Mesh, error) {
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.reserver == nil {
		cfg.reserver = socketReserver{ns: cfg.Netns}
	}
	m := &Mesh{cfg: cfg, log: cfg.Log, l: newLayout(cfg.Table), held: map[Key]reservation{}}
	if cfg.kernel == nil {
		fd := 0
		if cfg.Netns != nil {
			fd = cfg.Netns.Fd()
		}
		c, err := nft.Open(fd)
		if err != nil {
			return nil, err
		}
		m.cfg.kernel = &nftKernel{c: c, ns: cfg.Netns}
	}
	keys, err := m.cfg.kernel.publishedKeys(m.l)
	if err != nil {
		m.cfg.kernel.close()
		return nil, fmt.Errorf("ingress: reading table %s: %w", cfg.Table, err)
	}
	for _, k := range keys {
		m.reserve(k, "")
	}
	return m, nil
}

// validate normalises ports into a map, refusing what cannot be programmed.
func validate(ports []Port) (map[Key]Port, error) {
	out := make(map[Key]Port, len(ports))
	for _, p := range ports {
		if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
			return nil, errdefs.InvalidParameter("ingress port %d: protocol %q is not supported (only tcp and udp)", p.Port, p.Proto)
		}
		if p.Port == 0 {
			return nil, errdefs.InvalidParameter("ingress port 0/%s: a published port is needed", p.Proto)
		}
		if _, dup := out[p.Key]; dup {
			return nil, errdefs.InvalidParameter("ingress port %s listed twice", p.Key)
		}
		for _, b := range p.Backends {
			if !b.Addr().Unmap().Is4() || b.Port() == 0 {
				return nil, errdefs.InvalidParameter("ingress port %s: invalid backend %s (want IPv4:port)", p.Key, b)
			}
		}
		p.Backends = slices.Clone(p.Backends)
		for i, b := range p.Backends {
			p.Backends[i] = netip.AddrPortFrom(b.Addr().Unmap(), b.Port())
		}
		out[p.Key] = p
	}
	return out, nil
}

// Sync makes the node's routing mesh exactly ports: one transaction with
// only what changed (the whole table after a restart or a failure), then
// port reservations taken and released to match. With no ports the table
// is removed.
func (m *Mesh) Sync(ports []Port) error {
	want, err := validate(ports)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.program(want); err != nil {
		m.cur = nil
		return err
	}
	m.cur = want
	for k := range m.held {
		if _, ok := want[k]; !ok {
			m.release(k)
		}
	}
	for _, k := range sortedKeys(want) {
		if _, ok := m.held[k]; !ok {
			m.reserve(k, want[k].Service)
		}
	}
	return nil
}

func (m *Mesh) program(want map[Key]Port) error {
	k := m.cfg.kernel
	switch {
	case len(want) == 0:
		if m.cur != nil && len(m.cur) == 0 {
			return nil
		}
		return k.deleteTable(m.l.table)
	case len(m.cur) == 0:
		// Nothing known or nothing there: the table whole, atomically.
		if err := k.enableForwarding(); err != nil {
			return err
		}
		return k.replace(m.l.table, func(b batch) error { return m.l.build(b, want) })
	}
	if maps.EqualFunc(m.cur, want, equalPort) {
		return nil
	}
	return k.batch(func(b batch) error { return m.l.update(b, m.cur, want) })
}

// reserve holds a published port the way the bridge does (a bound socket
// that never listens), so host processes and plain containers get "address
// already in use" instead of silently losing their traffic to the mesh.
// Failing to reserve is logged, not fatal: the mesh still takes the port's
// traffic, as docker's routing mesh does; later Syncs try again.
func (m *Mesh) reserve(k Key, service string) {
	r, err := m.cfg.reserver.reserve(k)
	if err != nil {
		m.log.Warn("ingress port is in use on this node: the routing mesh takes its traffic, the current holder gets none",
			"port", k.String(), "service", service, "err", err)
		return
	}
	m.held[k] = r
}

func (m *Mesh) release(k Key) {
	if r := m.held[k]; r != nil {
		_ = r.Close()
	}
	delete(m.held, k)
}

// Ports returns what the table holds, sorted (nil when unknown).
func (m *Mesh) Ports() []Port {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil {
		return nil
	}
	out := make([]Port, 0, len(m.cur))
	for _, k := range sortedKeys(m.cur) {
		out = append(out, m.cur[k])
	}
	return out
}

// Reserved reports whether the Mesh holds k's reservation on the node.
func (m *Mesh) Reserved(k Key) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.held[k]
	return ok
}

// Remove deletes the node's routing mesh (leaving the swarm): the table
// and every reservation.
func (m *Mesh) Remove() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	err := m.cfg.kernel.deleteTable(m.l.table)
	if err != nil {
		m.cur = nil
	} else {
		m.cur = map[Key]Port{}
	}
	for k := range m.held {
		m.release(k)
	}
	return err
}

// Close releases the reservations and the netlink socket; the table stays
// (a daemon restart keeps the mesh answering, and the next daemon reserves
// its ports again).
func (m *Mesh) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.held {
		m.release(k)
	}
	return m.cfg.kernel.close()
}

// kernel applies table changes.
type kernel interface {
	// replace makes the table hold exactly what build queues, atomically.
	replace(t *nftables.Table, build func(batch) error) error
	// batch applies what fn queues as one transaction.
	batch(fn func(batch) error) error
	// deleteTable removes the table; a missing one is fine.
	deleteTable(t *nftables.Table) error
	// publishedKeys lists the ports an existing table publishes.
	publishedKeys(l *layout) ([]Key, error)
	enableForwarding() error
	close() error
}

type nftKernel struct {
	c  *nft.Conn
	ns *netns.NS
}

func (k *nftKernel) replace(t *nftables.Table, build func(batch) error) error {
	return k.c.ReplaceTable(t, func(b *nftables.Conn) error { return build(b) })
}

func (k *nftKernel) batch(fn func(batch) error) error {
	return k.c.Batch(func(b *nftables.Conn) error { return fn(b) })
}

func (k *nftKernel) deleteTable(t *nftables.Table) error { return k.c.DeleteTable(t.Family, t.Name) }

func (k *nftKernel) publishedKeys(l *layout) ([]Key, error) {
	ok, err := k.c.TableExists(l.table.Family, l.table.Name)
	if err != nil || !ok {
		return nil, err
	}
	els, err := k.c.GetSetElements(l.published)
	if nft.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Key
	for _, e := range els {
		if k, ok := parseKey(e.Key); ok {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, compareKeys)
	return out, nil
}

// parseKey reads a published-set key (inet_proto . inet_service, each
// padded to 4 bytes).
func parseKey(b []byte) (Key, bool) {
	if len(b) != 8 {
		return Key{}, false
	}
	var k Key
	switch b[0] {
	case protoNumber(ProtoTCP):
		k.Proto = ProtoTCP
	case protoNumber(ProtoUDP):
		k.Proto = ProtoUDP
	default:
		return Key{}, false
	}
	k.Port = uint16(b[4])<<8 | uint16(b[5])
	return k, k.Port != 0
}

// enableForwarding turns on IPv4 forwarding: traffic for remote backends
// passes through this node.
func (k *nftKernel) enableForwarding() error {
	return do(k.ns, func() error {
		const path = "/proc/sys/net/ipv4/ip_forward"
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == "1" {
			return nil
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("ingress: enabling IPv4 forwarding: %w", err)
		}
		return nil
	})
}

func (k *nftKernel) close() error { return k.c.Close() }

// do runs fn in ns (nil: here). /proc/sys/net and new sockets belong to
// the calling thread's namespace.
func do(ns *netns.NS, fn func() error) error {
	if ns == nil {
		return fn()
	}
	return ns.Do(fn)
}

var errPortInUse = errors.New("address already in use")
