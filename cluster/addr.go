package cluster

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// Address rules follow docker's: listen and advertise addresses are an IP
// or an interface name, optionally with a port (default 2377; an advertise
// address without port takes the listen port).

var errNoIP = errdefs.InvalidParameter("could not find the system's IP address - specify one with --advertise-addr")

// splitAddr splits "host[:port]" (host may be an interface name, an IP, a
// bracketed IPv6 address, or empty).
func splitAddr(s string, defPort int) (host string, port int, err error) {
	if s == "" {
		return "", defPort, nil
	}
	h, p, serr := net.SplitHostPort(s)
	if serr != nil {
		// No port: the whole thing is the host (IPv6 without brackets too).
		return strings.Trim(s, "[]"), defPort, nil
	}
	if p == "" {
		return h, defPort, nil
	}
	port, err = strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, errdefs.InvalidParameter("invalid port %q in address %q", p, s)
	}
	return h, port, nil
}

// resolveHost turns an IP or an interface name into an IP.
func resolveHost(host string) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	iface, err := net.InterfaceByName(host)
	if err != nil {
		return netip.Addr{}, errdefs.InvalidParameter("interface %s not found", host)
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return netip.Addr{}, errdefs.InvalidParameter("interface %s: %v", host, err)
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP)
		ip = ip.Unmap()
		switch {
		case ip.Is4():
			v4 = append(v4, ip)
		case ip.IsGlobalUnicast():
			v6 = append(v6, ip)
		}
	}
	switch {
	case len(v4) == 1:
		return v4[0], nil
	case len(v4) > 1:
		return netip.Addr{}, errdefs.InvalidParameter("interface %s has more than one IPv4 address (%s and %s)", host, v4[0], v4[1])
	case len(v6) == 1:
		return v6[0], nil
	case len(v6) > 1:
		return netip.Addr{}, errdefs.InvalidParameter("interface %s has more than one IPv6 address (%s and %s)", host, v6[0], v6[1])
	}
	return netip.Addr{}, errdefs.InvalidParameter("interface %s has no usable IP address", host)
}

// listenAddr resolves a listen address to "IP:port" (default
// 0.0.0.0:2377).
func listenAddr(s string) (string, netip.Addr, int, error) {
	host, port, err := splitAddr(s, transport.DefaultPort)
	if err != nil {
		return "", netip.Addr{}, 0, err
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		if ip, err = resolveHost(host); err != nil {
			return "", netip.Addr{}, 0, errdefs.InvalidParameter("invalid listen address %q: %v", s, err)
		}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), ip, port, nil
}

// advertiseAddr resolves what other nodes reach this one at: the explicit
// advertise address, else the daemon's default, else the listen IP if it
// is specific, else fallback (the system's address for init; for join, the
// address used to reach the remote manager).
func advertiseAddr(adv, daemonDefault string, listenIP netip.Addr, listenPort int, fallback func() (netip.Addr, error)) (string, error) {
	if adv == "" {
		adv = daemonDefault
	}
	if adv != "" {
		host, port, err := splitAddr(adv, listenPort)
		if err != nil {
			return "", err
		}
		if host == "" {
			return "", errdefs.InvalidParameter("invalid advertise address %q: no host", adv)
		}
		ip, err := resolveHost(host)
		if err != nil {
			return "", errdefs.InvalidParameter("invalid advertise address %q: %v", adv, err)
		}
		if ip.IsUnspecified() {
			return "", errdefs.InvalidParameter("advertise address must be a non-zero IP address")
		}
		return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
	}
	if !listenIP.IsUnspecified() {
		return net.JoinHostPort(listenIP.String(), strconv.Itoa(listenPort)), nil
	}
	ip, err := fallback()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(listenPort)), nil
}

// systemAddr picks the system's address as docker does: the only global
// IPv4 address of the up, non-loopback interfaces (skipping the engine's
// own bridges); with several, the one of the interface holding the default
// route, if that is unambiguous.
func systemAddr(skip []string) (netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	type cand struct {
		iface string
		ip    netip.Addr
	}
	var cands []cand
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || contains(skip, ifc.Name) {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ip = ip.Unmap()
			if ip.Is4() && ip.IsGlobalUnicast() {
				cands = append(cands, cand{ifc.Name, ip})
			}
		}
	}
	switch len(cands) {
	case 0:
		return netip.Addr{}, errNoIP
	case 1:
		return cands[0].ip, nil
	}
	if def := defaultRouteIface(); def != "" {
		var onDef []netip.Addr
		for _, c := range cands {
			if c.iface == def {
				onDef = append(onDef, c.ip)
			}
		}
		if len(onDef) == 1 {
			return onDef[0], nil
		}
	}
	a, b := cands[0], cands[1]
	if a.iface == b.iface {
		return netip.Addr{}, errdefs.InvalidParameter("could not choose an IP address to advertise since this system has multiple addresses on interface %s (%s and %s)", a.iface, a.ip, b.ip)
	}
	return netip.Addr{}, errdefs.InvalidParameter("could not choose an IP address to advertise since this system has multiple addresses on different interfaces (%s on %s and %s on %s)", a.ip, a.iface, b.ip, b.iface)
}

// defaultRouteIface reads the IPv4 default route's interface.
func defaultRouteIface() string {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 7 && fields[1] == "00000000" && fields[7] == "00000000" {
			return fields[0]
		}
	}
	return ""
}

// localAddrTowards returns the local IP the kernel would use to reach
// remote ("IP:port"); no packet is sent.
func localAddrTowards(ctx context.Context, remote string) (netip.Addr, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", remote)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no route to %s: %w", remote, err)
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

// remoteAddr completes a manager address with the default port.
func remoteAddr(s string) (string, error) {
	host, port, err := splitAddr(s, transport.DefaultPort)
	if err != nil {
		return "", err
	}
	if host == "" {
		return "", errdefs.InvalidParameter("invalid remote address %q", s)
	}
	ip, err := resolveHost(host)
	if err != nil {
		// A DNS name: keep it, the dialer resolves it.
		if _, lerr := net.LookupHost(host); lerr != nil {
			return "", errdefs.InvalidParameter("invalid remote address %q: %v", s, lerr)
		}
		return net.JoinHostPort(host, strconv.Itoa(port)), nil
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
