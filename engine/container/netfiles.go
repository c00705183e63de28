package container

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/errdefs"
)

// Files shoald writes for each container and binds into it.
const (
	hostnameFile = "hostname"
	hostsFile    = "hosts"
	resolvFile   = "resolv.conf"
)

const defaultHosts = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::\tip6-localnet\n" +
	"ff00::\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// buildHosts renders /etc/hosts: docker's localhost entries (or the host's
// file in host network mode), --add-host entries, and the container's own
// address with its hostname.
func buildHosts(cfg *container.Config, hc *container.HostConfig, ip, gateway netip.Addr, hostHosts string) (string, error) {
	var b strings.Builder
	if hc.NetworkMode.IsHost() {
		b.WriteString(hostHosts)
		if hostHosts != "" && !strings.HasSuffix(hostHosts, "\n") {
			b.WriteString("\n")
		}
	} else {
		b.WriteString(defaultHosts)
	}
	for _, h := range hc.ExtraHosts {
		name, addr, ok := strings.Cut(h, ":")
		if eq, eqAddr, ok2 := strings.Cut(h, "="); ok2 && (!ok || len(eq) < len(name)) {
			name, addr, ok = eq, eqAddr, true
		}
		if !ok || name == "" {
			return "", errdefs.InvalidParameter("invalid extra host %q: want NAME:IP", h)
		}
		if addr == "host-gateway" {
			if !gateway.IsValid() {
				return "", errdefs.InvalidParameter("invalid extra host %q: the container has no gateway", h)
			}
			addr = gateway.String()
		}
		a, err := netip.ParseAddr(strings.Trim(addr, "[]"))
		if err != nil {
			return "", errdefs.InvalidParameter("invalid IP address in add-host: %q", addr)
		}
		b.WriteString(a.String() + "\t" + name + "\n")
	}
	if ip.IsValid() && !hc.NetworkMode.IsHost() {
		names := cfg.Hostname
		if cfg.Domainname != "" {
			names = cfg.Hostname + "." + cfg.Domainname + " " + cfg.Hostname
		}
		b.WriteString(ip.String() + "\t" + names + "\n")
	}
	return b.String(), nil
}

// buildResolvConf renders /etc/resolv.conf: the host's, with --dns,
// --dns-search and --dns-option replacing its parts.
func buildResolvConf(hc *container.HostConfig, hostResolv string) string {
	if len(hc.DNS) == 0 && len(hc.DNSSearch) == 0 && len(hc.DNSOptions) == 0 {
		return hostResolv
	}
	var ns, search, opts []string
	for _, l := range strings.Split(hostResolv, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			ns = append(ns, f[1])
		case "search", "domain":
			search = f[1:]
		case "options":
			opts = append(opts, f[1:]...)
		}
	}
	if len(hc.DNS) > 0 {
		ns = ns[:0]
		for _, a := range hc.DNS {
			ns = append(ns, a.String())
		}
	}
	if len(hc.DNSSearch) > 0 {
		search = hc.DNSSearch
		if len(search) == 1 && search[0] == "." {
			search = nil
		}
	}
	if len(hc.DNSOptions) > 0 {
		opts = hc.DNSOptions
	}
	var b strings.Builder
	for _, n := range ns {
		b.WriteString("nameserver " + n + "\n")
	}
	if len(search) > 0 {
		b.WriteString("search " + strings.Join(search, " ") + "\n")
	}
	if len(opts) > 0 {
		b.WriteString("options " + strings.Join(opts, " ") + "\n")
	}
	return b.String()
}

// writeNetFiles writes hostname, hosts and resolv.conf into dir (the
// container's fresh bundle directory) and returns their mounts, skipping
// paths the user mounts over.
func writeNetFiles(dir string, cfg *container.Config, hc *container.HostConfig, ip, gateway netip.Addr, userMounts []specs.Mount) ([]specs.Mount, error) {
	hostHosts, _ := os.ReadFile("/etc/hosts")
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	hosts, err := buildHosts(cfg, hc, ip, gateway, string(hostHosts))
	if err != nil {
		return nil, err
	}
	files := []struct{ name, dest, content string }{
		{hostnameFile, "/etc/hostname", cfg.Hostname + "\n"},
		{hostsFile, "/etc/hosts", hosts},
		{resolvFile, "/etc/resolv.conf", buildResolvConf(hc, string(hostResolv))},
	}
	taken := map[string]bool{}
	for _, m := range userMounts {
		taken[filepath.Clean(m.Destination)] = true
	}
	var out []specs.Mount
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		// dir is new: a plain write, no temporary file to rename.
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			return nil, errdefs.System("writing %s: %v", f.name, err)
		}
		if taken[f.dest] {
			continue
		}
		opts := []string{"rbind", "rprivate"}
		if hc.ReadonlyRootfs {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: f.dest, Type: "bind", Source: p, Options: opts})
	}
	return out, nil
}
