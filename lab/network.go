package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// checkSubnetFree refuses a lab subnet that overlaps an address or route
// the host already has (another lab, a real network).
func checkSubnetFree(subnet netip.Prefix) error {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok && p.Overlaps(subnet) {
			name := ""
			if l, err := netlink.LinkByIndex(a.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			return errdefs.Conflict("subnet %s overlaps %s on %s: pick another with --subnet", subnet, p, name)
		}
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route overlaps everything by design
		}
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 && p.Overlaps(subnet) {
			return errdefs.Conflict("subnet %s overlaps the route to %s: pick another with --subnet", subnet, p.Masked())
		}
	}
	return nil
}

// retryDump repeats a netlink dump that another process's changes
// interrupted (the kernel then flags the partial result as inconsistent).
func retryDump[T any](dump func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := dump()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 20 {
			continue
		}
		return v, err
	}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// setupBridge creates the lab bridge in the host netns with the host's
// address on the lab network.
func setupBridge(name string, ip netip.Addr, subnet netip.Prefix) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge %s: %w", name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	if err := netlink.AddrAdd(br, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", addr, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up %s: %w", name, err)
	}
	return nil
}

// setupNodeLink joins a node's netns to the bridge: a veth whose host end
// is a bridge port and whose other end is the node's eth0 with its address.
// The node gets no default route: nothing it sends can leave the machine.
func setupNodeLink(bridge, veth, nsPath string, ip netip.Addr, subnet netip.Prefix) error {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer ns.Close()
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: veth, MasterIndex: br.Attrs().Index},
		PeerName:  "eth0",
		// A host keeps its MAC address across reboots, so its peers' ARP
		// caches stay right when Start recreates the node's link.
		PeerHardwareAddr: nodeMAC(ip),
		PeerNamespace:    netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("create veth %s: %w", veth, err)
	}
	host, err := netlink.LinkByName(veth)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring up %s: %w", veth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring up lo in %s: %w", nsPath, err)
	}
	eth, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(subnet.Bits(), 32)}}
	if err := h.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address %s in %s: %w", addr, nsPath, err)
	}
	if err := h.LinkSetUp(eth); err != nil {
		return fmt.Errorf("bring up eth0 in %s: %w", nsPath, err)
	}
	return nil
}

// nodeMAC is a locally administered unicast MAC derived from the node's
// address (as Docker does for containers).
func nodeMAC(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x5a, b[0], b[1], b[2], b[3]}
}

// deleteLink removes a link by name; a missing link is fine.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// labLinks lists host links that belong to lab n by name.
func labLinks(n names) ([]string, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		name := l.Attrs().Name
		if name == n.bridge() || n.isVeth(name) {
			out = append(out, name)
		}
	}
	return out, nil
}

// labNetns lists the pinned node namespaces of lab n in /run/netns.
func labNetns(n names) []string {
	ents, err := os.ReadDir(NetnsDir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if n.isNodeNetns(e.Name()) {
			out = append(out, NetnsDir+"/"+e.Name())
		}
	}
	return out
}
