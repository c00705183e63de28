// Package bridge gives plain containers their network, as docker's default
// "bridge" network does: a node bridge with the gateway address, per container
// a network namespace pinned to a file and a veth pair into it, an address
// from the bridge subnet, egress masquerade, and published ports through
// nftables DNAT (reachable from outside, from the host and from 127.0.0.1).
//
// Kernel state (bridge, veths, namespaces, nftables) is re-derived from a JSON
// state file on start, so the daemon can restart while containers keep
// running and keep their published ports.
package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/moby/moby/api/types/network"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/network/netns"
	"github.com/shoal/shoal/network/nft"
)

// Config configures the node bridge.
type Config struct {
	BridgeName string // default "shoal0"
	CIDR       string // gateway address and prefix, default "172.18.0.1/16"
	NftTable   string // nftables table (family ip), default "shoal"
	StateDir   string // where IP allocations and netns files live; default /run/shoal/network
	VethPrefix string // host-side veth name prefix, default "veth" (at most 10 characters)
	MTU        int    // bridge and veth MTU, default 1500
	Log        *slog.Logger
}

// Network modes a container can ask for.
const (
	ModeBridge = "bridge"
	ModeHost   = "host"
	ModeNone   = "none"
)

// AttachRequest asks for a container's network.
type AttachRequest struct {
	ContainerID  string
	Mode         string // "bridge" (default, also "default"), "host", "none"
	PortBindings network.PortMap
	Name         string // container name, shown by Inspect (optional)
}

// Attachment is what a container got.
type Attachment struct {
	NetNSPath  string // "" for host mode
	IPAddress  netip.Addr
	Gateway    netip.Addr
	PrefixLen  int
	MacAddress string
	Ports      network.PortMap // actual host ports
	NetworkID  string          // "" for host mode
	EndpointID string          // "" for host mode
}

// Manager owns the bridge. It is safe for concurrent use.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	subnet   netip.Prefix
	gateway  netip.Addr
	nl       *netlink.Handle
	reapNL   *netlink.Handle // for slow link deletions off the hot path
	reaping  sync.WaitGroup
	nft      *nft.Conn
	unpub    *unpublisher
	layout   *layout
	reserver portReserver

	mu       sync.Mutex
	st       *state
	ports    *portTable
	reserved map[string][]reservation // container ID → held host ports
}

func (c *Config) defaults() {
	if c.BridgeName == "" {
		c.BridgeName = "shoal0"
	}
	if c.CIDR == "" {
		c.CIDR = "172.18.0.1/16"
	}
	if c.NftTable == "" {
		c.NftTable = "shoal"
	}
	if c.StateDir == "" {
		c.StateDir = "/run/shoal/network"
	}
	if c.VethPrefix == "" {
		c.VethPrefix = "veth"
	}
	if c.MTU == 0 {
		c.MTU = 1500
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// parseGatewayCIDR validates "GATEWAY/BITS".
func parseGatewayCIDR(s string) (netip.Prefix, netip.Addr, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, netip.Addr{}, errdefs.InvalidParameter("invalid bridge address %q: %v", s, err)
	}
	gw := p.Addr()
	if !gw.Is4() {
		return netip.Prefix{}, netip.Addr{}, errdefs.InvalidParameter("invalid bridge address %q: only IPv4 is supported", s)
	}
	if p.Bits() > 30 {
		return netip.Prefix{}, netip.Addr{}, errdefs.InvalidParameter("invalid bridge address %q: a /%d subnet has no room for containers", s, p.Bits())
	}
	subnet := p.Masked()
	if gw == subnet.Addr() || gw == broadcast(subnet) {
		return netip.Prefix{}, netip.Addr{}, errdefs.InvalidParameter("invalid bridge address %q: the gateway must be a host address of %s", s, subnet)
	}
	return subnet, gw, nil
}

func (c *Config) validate() error {
	if len(c.BridgeName) > unix.IFNAMSIZ-1 || strings.ContainsAny(c.BridgeName, "/ ") {
		return errdefs.InvalidParameter("invalid bridge name %q", c.BridgeName)
	}
	if len(c.VethPrefix) > 10 {
		return errdefs.InvalidParameter("veth prefix %q is longer than 10 characters", c.VethPrefix)
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return errdefs.InvalidParameter("invalid MTU %d", c.MTU)
	}
	return nil
}

func (m *Manager) netnsDir() string { return filepath.Join(m.cfg.StateDir, "netns") }

// New sets up the bridge and its nftables table, or adopts them as a
// previous run left them: endpoints in the state file whose namespace still
// exists keep their address and published ports, and the table is rebuilt
// from them in one atomic batch (established connections keep their
// conntrack NAT). Leftovers of an interrupted Attach are removed.
func New(cfg Config) (*Manager, error) {
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	subnet, gw, err := parseGatewayCIDR(cfg.CIDR)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:      cfg,
		log:      cfg.Log,
		subnet:   subnet,
		gateway:  gw,
		layout:   newLayout(cfg.NftTable, cfg.BridgeName, subnet),
		reserver: socketReserver{},
		ports:    newPortTable(),
		reserved: map[string][]reservation{},
	}
	if err := m.init(); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) init() error {
	if err := os.MkdirAll(m.cfg.StateDir, 0o711); err != nil {
		return err
	}
	if err := netns.PrepareDir(m.netnsDir()); err != nil {
		return err
	}
	st, err := loadState(m.cfg.StateDir, func(path string, err error) {
		m.log.Warn("ignoring unreadable endpoint state", "path", path, "err", err)
		_ = os.Remove(path)
	})
	if err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "network state")
	}
	switch {
	case st == nil:
		st = newState(m.subnet, m.gateway)
	case st.Subnet != m.subnet || st.Gateway != m.gateway:
		if live := liveEndpoints(st); len(live) > 0 {
			return errdefs.Conflict("bridge address changed from %s/%d to %s while %d containers are attached: stop them first",
				st.Gateway, st.Subnet.Bits(), m.cfg.CIDR, len(live))
		}
		for id := range st.Endpoints {
			_ = removeEndpoint(m.cfg.StateDir, id)
		}
		st.Subnet, st.Gateway = m.subnet, m.gateway
		st.IPAM = newIPAM(m.subnet, m.gateway)
		st.Endpoints = map[string]*endpoint{}
	}
	m.st = st
	if err := st.saveNetwork(m.cfg.StateDir); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "save network state")
	}

	if m.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return err
	}
	if m.reapNL, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return err
	}
	br, err := m.ensureBridge()
	if err != nil {
		return err
	}
	if err := m.setSysctls(); err != nil {
		return err
	}
	m.adoptEndpoints(br)
	if m.nft, err = nft.Open(0); err != nil {
		return err
	}
	m.unpub = newUnpublisher(m)
	if err := m.nft.ReplaceTable(m.layout.table, func(b *nftables.Conn) error {
		return m.layout.build(b, m.st.Endpoints)
	}); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "nftables")
	}
	return nil
}

// liveEndpoints lists endpoints whose namespace still exists.
func liveEndpoints(st *state) []*endpoint {
	var out []*endpoint
	for _, ep := range st.Endpoints {
		if netns.IsPinned(ep.NetNS) {
			out = append(out, ep)
		}
	}
	return out
}

// ensureBridge creates the bridge or brings an existing one to the
// configured address, MTU and up state.
func (m *Manager) ensureBridge() (netlink.Link, error) {
	name := m.cfg.BridgeName
	link, err := m.nl.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{
			Name: name, MTU: m.cfg.MTU,
			// A fixed address: otherwise the bridge takes the lowest port's
			// MAC and changes it as containers come and go.
			HardwareAddr: randomMAC(),
		}}
		if err := m.nl.LinkAdd(br); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if link, err = m.nl.LinkByName(name); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case link.Type() != "bridge":
		return nil, errdefs.Conflict("network interface %s exists and is not a bridge (%s)", name, link.Type())
	}
	addrs, err := m.nl.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	want := netip.PrefixFrom(m.gateway, m.subnet.Bits())
	have := false
	for _, a := range addrs {
		p, ok := prefixOf(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		// The bridge is ours: a stale address (changed --bip) goes.
		if err := m.nl.AddrDel(link, &a); err != nil {
			return nil, fmt.Errorf("remove stale address %s from %s: %w", a.IPNet, name, err)
		}
	}
	if !have {
		if err := m.nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
			return nil, fmt.Errorf("address %s on %s: %w", want, name, err)
		}
	}
	if link.Attrs().MTU != m.cfg.MTU {
		if err := m.nl.LinkSetMTU(link, m.cfg.MTU); err != nil {
			return nil, err
		}
	}
	if err := m.nl.LinkSetUp(link); err != nil {
		return nil, err
	}
	return link, nil
}

func (m *Manager) setSysctls() error {
	for _, s := range []struct{ path, val string }{
		{"/proc/sys/net/ipv4/ip_forward", "1"},
		// Lets the output DNAT send a 127.0.0.1-sourced packet out on the
		// bridge (it is masqueraded in postrouting).
		{"/proc/sys/net/ipv4/conf/" + m.cfg.BridgeName + "/route_localnet", "1"},
	} {
		if b, err := os.ReadFile(s.path); err == nil && strings.TrimSpace(string(b)) == s.val {
			continue
		}
		if err := os.WriteFile(s.path, []byte(s.val), 0o644); err != nil {
			return fmt.Errorf("sysctl %s: %w", s.path, err)
		}
	}
	return nil
}

// adoptEndpoints keeps the endpoints that survived, forgets those whose
// namespace is gone, re-reserves their host ports, and removes veths and
// namespace files no endpoint claims (an Attach interrupted by a crash).
func (m *Manager) adoptEndpoints(br netlink.Link) {
	veths := map[string]bool{}
	nsFiles := map[string]bool{}
	for id, ep := range m.st.Endpoints {
		if !netns.IsPinned(ep.NetNS) {
			m.log.Info("forgetting container network: namespace gone", "container", id)
			m.forget(ep)
			_ = removeEndpoint(m.cfg.StateDir, id)
			if ep.Veth != "" {
				m.deleteLink(ep.Veth)
			}
			continue
		}
		if ep.Veth != "" {
			if _, err := m.nl.LinkByName(ep.Veth); err != nil {
				// Someone removed it: the container has no network until
				// it is restarted; keep the rest so Detach can clean up.
				m.log.Warn("container veth is gone", "container", id, "link", ep.Veth)
			}
		}
		veths[ep.Veth] = true
		nsFiles[filepath.Base(ep.NetNS)] = true
		for _, p := range ep.Ports {
			m.ports.add(p, id)
			h, _, err := m.reserver.Reserve(p.Proto, p.HostIP, p.HostPort)
			if err != nil {
				// The DNAT still works; only the guard against a host
				// process taking the port is lost.
				m.log.Warn("cannot re-reserve published port", "container", id, "port", p.hostString(), "err", err)
				continue
			}
			m.reserved[id] = append(m.reserved[id], h)
		}
	}
	if links, err := m.nl.LinkList(); err == nil {
		for _, l := range links {
			a := l.Attrs()
			if a.MasterIndex == br.Attrs().Index && l.Type() == "veth" &&
				strings.HasPrefix(a.Name, m.cfg.VethPrefix) && !veths[a.Name] {
				m.log.Info("removing orphaned veth", "link", a.Name)
				m.deleteLink(a.Name)
			}
		}
	}
	if entries, err := os.ReadDir(m.netnsDir()); err == nil {
		for _, e := range entries {
			if !nsFiles[e.Name()] {
				m.log.Info("removing orphaned netns", "path", e.Name())
				_ = netns.Remove(filepath.Join(m.netnsDir(), e.Name()))
			}
		}
	}
}

// forget drops an endpoint from the state and frees its address and ports.
// The caller removes its file.
func (m *Manager) forget(ep *endpoint) {
	for _, h := range m.reserved[ep.ContainerID] {
		_ = h.Close()
	}
	delete(m.reserved, ep.ContainerID)
	for _, p := range ep.Ports {
		m.ports.remove(p, ep.ContainerID)
	}
	if ep.IP.IsValid() {
		m.st.IPAM.Release(ep.IP)
	}
	delete(m.st.Endpoints, ep.ContainerID)
}

var containerIDRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

// parseMode normalises a network mode.
func parseMode(mode string) (string, error) {
	switch mode {
	case "", "default", ModeBridge:
		return ModeBridge, nil
	case ModeHost, ModeNone:
		return mode, nil
	}
	return "", errdefs.InvalidParameter("network mode %q is not supported (want bridge, host or none)", mode)
}

// Attach creates the container's network namespace and plumbing. Attaching
// an attached container with the same request returns what it has (so the
// container service can re-read it after a restart); a different request is a
// conflict. On error nothing is left behind.
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (*Attachment, error) {
	if !containerIDRe.MatchString(req.ContainerID) {
		return nil, errdefs.InvalidParameter("invalid container ID %q", req.ContainerID)
	}
	mode, err := parseMode(req.Mode)
	if err != nil {
		return nil, err
	}
	if mode == ModeHost {
		// Port bindings are ignored in host mode, as docker does.
		return &Attachment{}, nil
	}
	var reqs []portRequest
	if mode == ModeBridge {
		if reqs, err = parsePortBindings(req.PortBindings); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return nil, errdefs.Unavailable("network manager is closed")
	}
	if ep, ok := m.st.Endpoints[req.ContainerID]; ok {
		if ep.Mode == mode && reflect.DeepEqual(ep.Requested, reqs) {
			return m.attachment(ep), nil
		}
		return nil, errdefs.Conflict("container %s is already attached to the network with different settings", req.ContainerID)
	}
	ep := &endpoint{
		ContainerID: req.ContainerID,
		Name:        strings.TrimPrefix(req.Name, "/"),
		EndpointID:  randomHex(32),
		Mode:        mode,
		NetNS:       filepath.Join(m.netnsDir(), req.ContainerID),
		Requested:   reqs,
	}
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if err := m.attach(ep, &undo); err != nil {
		rollback()
		return nil, err
	}
	if err := saveEndpoint(m.cfg.StateDir, ep); err != nil {
		rollback()
		return nil, errdefs.Wrapf(errdefs.KindSystem, err, "save network state")
	}
	m.st.Endpoints[ep.ContainerID] = ep
	return m.attachment(ep), nil
}

// attach does the work of Attach, registering an undo step for each piece.
func (m *Manager) attach(ep *endpoint, undo *[]func()) error {
	id := ep.ContainerID
	if len(ep.Requested) > 0 {
		maps, held, err := m.ports.allocate(id, ep.Requested, m.reserver)
		if err != nil {
			return err
		}
		ep.Ports = maps
		m.reserved[id] = held
		*undo = append(*undo, func() {
			for _, h := range held {
				_ = h.Close()
			}
			delete(m.reserved, id)
			for _, p := range maps {
				m.ports.remove(p, id)
			}
		})
	}
	if ep.Mode == ModeBridge {
		ip, err := m.st.IPAM.Allocate(id)
		if err != nil {
			return err
		}
		ep.IP = ip
		ep.MAC = macFromIP(ip).String()
		*undo = append(*undo, func() { m.st.IPAM.Release(ip) })
	}

	// A leftover pin of the same container (crash before the state was
	// saved) would make Create fail.
	_ = netns.Remove(ep.NetNS)
	ns, err := netns.Create(ep.NetNS)
	if err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "network namespace")
	}
	defer ns.Close()
	*undo = append(*undo, func() { _ = netns.Remove(ep.NetNS) })
	if ep.Mode == ModeNone {
		return nil
	}

	veth, err := m.createVeth(ns, ep)
	if err != nil {
		return err
	}
	ep.Veth = veth
	*undo = append(*undo, func() { m.deleteLink(veth) })
	if err := m.configureContainerSide(ns, ep); err != nil {
		return err
	}

	if len(ep.Ports) > 0 {
		if err := m.unpub.publish(m.layout.elements(ep)); err != nil {
			return errdefs.Wrapf(errdefs.KindSystem, err, "publish ports")
		}
		*undo = append(*undo, func() { m.unpub.queue(ep) })
	}
	return nil
}

// createVeth makes the pair in one request: the host side enslaved to the
// bridge and up, the container side created directly inside the namespace
// as eth0 with its MAC.
func (m *Manager) createVeth(ns *netns.NS, ep *endpoint) (string, error) {
	br, err := m.nl.LinkByName(m.cfg.BridgeName)
	if err != nil {
		return "", errdefs.Wrapf(errdefs.KindSystem, err, "bridge %s", m.cfg.BridgeName)
	}
	mac, _ := net.ParseMAC(ep.MAC)
	suffix := min(7, unix.IFNAMSIZ-1-len(m.cfg.VethPrefix))
	for range 3 {
		name := m.cfg.VethPrefix + randomHex(4)[:suffix]
		v := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{
				Name: name, MTU: m.cfg.MTU, MasterIndex: br.Attrs().Index, Flags: net.FlagUp,
			},
			PeerName:         "eth0",
			PeerHardwareAddr: mac,
			PeerNamespace:    netlink.NsFd(ns.Fd()),
		}
		err = m.nl.LinkAdd(v)
		if errors.Is(err, unix.EEXIST) {
			// Random name clash with another host link: try another.
			if _, lerr := m.nl.LinkByName(name); lerr == nil {
				continue
			}
		}
		if err != nil {
			m.deleteLink(name) // LinkAdd creates, then enslaves: undo a half
			return "", errdefs.Wrapf(errdefs.KindSystem, err, "create veth")
		}
		// Let a container reach its own published port via a host address.
		link, err := m.nl.LinkByName(name)
		if err == nil {
			err = m.nl.LinkSetHairpin(link, true)
		}
		if err != nil {
			m.deleteLink(name)
			return "", errdefs.Wrapf(errdefs.KindSystem, err, "configure veth %s", name)
		}
		return name, nil
	}
	return "", errdefs.System("create veth: no free interface name")
}

func (m *Manager) configureContainerSide(ns *netns.NS, ep *endpoint) error {
	h, err := ns.Netlink()
	if err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "netlink in container namespace")
	}
	defer h.Close()
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "container eth0")
	}
	if err := h.AddrAdd(eth, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(ep.IP, m.subnet.Bits()))}); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "container address")
	}
	if err := h.LinkSetUp(eth); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "container eth0 up")
	}
	gw := m.gateway.As4()
	if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.IP(gw[:])}); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "container default route")
	}
	return nil
}

// reapLink deletes a container's host veth in the background. Deleting a
// veth waits for RCU grace periods (~20 ms here), which would triple
// Detach's time; usually the kernel has already removed the pair with the
// unpinned namespace, and this only guarantees removal if something still
// holds that namespace. Close and Cleanup wait for it.
func (m *Manager) reapLink(name string) {
	m.reaping.Add(1)
	go func() {
		defer m.reaping.Done()
		if l, err := m.reapNL.LinkByName(name); err == nil {
			_ = m.reapNL.LinkDel(l) // gone meanwhile with its namespace: fine
		}
	}()
}

func (m *Manager) deleteLink(name string) {
	if l, err := m.nl.LinkByName(name); err == nil {
		if err := m.nl.LinkDel(l); err != nil {
			m.log.Warn("delete link", "link", name, "err", err)
		}
	}
}

func (m *Manager) attachment(ep *endpoint) *Attachment {
	a := &Attachment{
		NetNSPath:  ep.NetNS,
		NetworkID:  m.st.NetworkID,
		EndpointID: ep.EndpointID,
		Ports:      toPortMap(ep.Ports),
	}
	if ep.Mode == ModeBridge {
		a.IPAddress = ep.IP
		a.Gateway = m.gateway
		a.PrefixLen = m.subnet.Bits()
		a.MacAddress = ep.MAC
	}
	return a
}

// Detach removes what Attach made for the container. Idempotent: an unknown
// container is not an error, and after a partial failure it can be called
// again. The namespace, address and host ports are released before it
// returns; the nftables map elements and the host veth go a few
// milliseconds later in the background (see unpublisher and reapLink).
func (m *Manager) Detach(ctx context.Context, containerID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return errdefs.Unavailable("network manager is closed")
	}
	ep, ok := m.st.Endpoints[containerID]
	if !ok {
		return nil
	}
	if err := netns.Remove(ep.NetNS); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "remove network namespace of %s", containerID)
	}
	if ep.Veth != "" {
		m.reapLink(ep.Veth)
	}
	if err := removeEndpoint(m.cfg.StateDir, containerID); err != nil {
		return errdefs.Wrapf(errdefs.KindSystem, err, "remove network state of %s", containerID)
	}
	// Last: from here on the host ports are free for the next Attach, which
	// will carry the queued deletions into its own batch.
	m.unpub.queue(ep)
	m.forget(ep)
	return nil
}

// Close releases the manager's sockets and host-port reservations. Kernel
// state stays: containers keep their network while the daemon is down, and
// the next New adopts it.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closeLocked()
	return nil
}

func (m *Manager) closeLocked() {
	if m.unpub != nil {
		m.unpub.close()
	}
	m.reaping.Wait()
	if m.reapNL != nil {
		m.reapNL.Close()
		m.reapNL = nil
	}
	for id, hs := range m.reserved {
		for _, h := range hs {
			_ = h.Close()
		}
		delete(m.reserved, id)
	}
	if m.nft != nil {
		_ = m.nft.Close()
		m.nft = nil
	}
	if m.nl != nil {
		m.nl.Close()
		m.nl = nil
	}
	m.st = nil
}

// Cleanup removes everything the manager made: every container's veth and
// namespace, the nftables table, the bridge and the state. For tests and
// `shoal lab down`; the manager is closed afterwards.
func (m *Manager) Cleanup() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st == nil {
		return errdefs.Unavailable("network manager is closed")
	}
	m.unpub.close()
	m.reaping.Wait()
	var errs []error
	if err := m.nft.DeleteTable(m.layout.table.Family, m.layout.table.Name); err != nil {
		errs = append(errs, fmt.Errorf("delete nftables table: %w", err))
	}
	for _, ep := range m.st.Endpoints {
		if ep.Veth != "" {
			m.deleteLink(ep.Veth)
		}
	}
	if br, err := m.nl.LinkByName(m.cfg.BridgeName); err == nil {
		// Any other veth still enslaved with our prefix is ours too.
		if links, err := m.nl.LinkList(); err == nil {
			for _, l := range links {
				if l.Attrs().MasterIndex == br.Attrs().Index && strings.HasPrefix(l.Attrs().Name, m.cfg.VethPrefix) {
					m.deleteLink(l.Attrs().Name)
				}
			}
		}
		if err := m.nl.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge: %w", err))
		}
	}
	if err := netns.RemoveDir(m.netnsDir()); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(endpointsDir(m.cfg.StateDir)); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(networkPath(m.cfg.StateDir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	m.closeLocked()
	return errors.Join(errs...)
}

// Subnet and Gateway are the bridge network's addressing.
func (m *Manager) Subnet() netip.Prefix { return m.subnet }
func (m *Manager) Gateway() netip.Addr  { return m.gateway }

// BridgeName is the node bridge's interface name.
func (m *Manager) BridgeName() string { return m.cfg.BridgeName }

// Inspect describes the bridge network as `docker network inspect bridge`
// shows it.
func (m *Manager) Inspect() network.Inspect {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := network.Inspect{
		Network: m.summaryLocked(ModeBridge),
	}
	n.Containers = map[string]network.EndpointResource{}
	if m.st == nil {
		return n
	}
	for id, ep := range m.st.Endpoints {
		if ep.Mode != ModeBridge {
			continue
		}
		mac, _ := net.ParseMAC(ep.MAC)
		n.Containers[id] = network.EndpointResource{
			Name:        ep.Name,
			EndpointID:  ep.EndpointID,
			MacAddress:  network.HardwareAddr(mac),
			IPv4Address: netip.PrefixFrom(ep.IP, m.subnet.Bits()),
		}
	}
	return n
}

// Networks lists the predefined local networks (bridge, host, none), as
// `docker network ls` shows them on a fresh engine.
func (m *Manager) Networks() []network.Summary {
	m.mu.Lock()
	defer m.mu.Unlock()
	return []network.Summary{
		{Network: m.summaryLocked(ModeBridge)},
		{Network: m.summaryLocked(ModeHost)},
		{Network: m.summaryLocked(ModeNone)},
	}
}

func (m *Manager) summaryLocked(mode string) network.Network {
	var id string
	created := m.createdLocked()
	if m.st != nil {
		id = m.st.NetworkID
	}
	switch mode {
	case ModeHost, ModeNone:
		// Stable IDs derived from the bridge network's, so they survive
		// restarts like docker's.
		return network.Network{
			Name: mode, ID: derivedID(id, mode), Created: created, Scope: "local",
			Driver: map[string]string{ModeHost: "host", ModeNone: "null"}[mode],
			IPAM:   network.IPAM{Driver: "default"}, Options: map[string]string{}, Labels: map[string]string{},
		}
	}
	return network.Network{
		Name: "bridge", ID: id, Created: created, Scope: "local", Driver: "bridge",
		EnableIPv4: true,
		IPAM: network.IPAM{Driver: "default", Config: []network.IPAMConfig{{
			Subnet: m.subnet, Gateway: m.gateway,
		}}},
		Options: map[string]string{
			"com.docker.network.bridge.default_bridge":       "true",
			"com.docker.network.bridge.enable_icc":           "true",
			"com.docker.network.bridge.enable_ip_masquerade": "true",
			"com.docker.network.bridge.host_binding_ipv4":    "0.0.0.0",
			"com.docker.network.bridge.name":                 m.cfg.BridgeName,
			"com.docker.network.driver.mtu":                  strconv.Itoa(m.cfg.MTU),
		},
		Labels: map[string]string{},
	}
}

func (m *Manager) createdLocked() time.Time {
	if m.st != nil {
		return m.st.Created
	}
	return time.Time{}
}

// macFromIP derives a container MAC from its IPv4 address as docker does:
// 02:42 (locally administered) followed by the four address bytes.
func macFromIP(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = (b[0] | 0x02) &^ 0x01 // locally administered, unicast
	return b
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// derivedID is a stable 64-hex ID for a predefined network.
func derivedID(base, name string) string {
	sum := sha256.Sum256([]byte(base + "/" + name))
	return hex.EncodeToString(sum[:])
}

func ipNet(p netip.Prefix) *net.IPNet {
	a := p.Addr().As4()
	return &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(p.Bits(), 32)}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones), true
}
