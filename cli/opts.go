package cli

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

// This file holds the flag value parsers shared by containers and
// services: ports, mounts, environment, labels, sizes and CPU counts, in
// docker's syntax and with docker's error wording.

// parseNanoCPUs turns "0.5" into 500000000.
func parseNanoCPUs(value string) (int64, error) {
	cpu, ok := new(big.Rat).SetString(value)
	if !ok {
		return 0, fmt.Errorf("failed to parse %v as a rational number", value)
	}
	nano := cpu.Mul(cpu, big.NewRat(1e9, 1))
	if !nano.IsInt() {
		return 0, fmt.Errorf("value is too precise")
	}
	return nano.Num().Int64(), nil
}

// formatNanoCPUs is the inverse, for display ("0.5").
func formatNanoCPUs(n int64) string {
	return big.NewRat(n, 1e9).FloatString(3)
}

// parseMemBytes parses "512M", "1g" (binary units, like docker's MemBytes).
func parseMemBytes(value string) (int64, error) {
	if value == "" {
		return 0, nil
	}
	v, err := units.RAMInBytes(value)
	if err != nil {
		return 0, err
	}
	return v, nil
}

// parseMemorySwap also accepts -1 (unlimited).
func parseMemorySwap(value string) (int64, error) {
	if value == "-1" {
		return -1, nil
	}
	return parseMemBytes(value)
}

// nanoCPUsValue is a pflag.Value for --cpus / --limit-cpu ("decimal").
type nanoCPUsValue struct{ v int64 }

func (n *nanoCPUsValue) Set(s string) error {
	v, err := parseNanoCPUs(s)
	if err != nil {
		return err
	}
	n.v = v
	return nil
}
func (n *nanoCPUsValue) Type() string { return "decimal" }
func (n *nanoCPUsValue) String() string {
	if n.v == 0 {
		return ""
	}
	return formatNanoCPUs(n.v)
}

// memBytesValue is a pflag.Value for memory sizes ("bytes").
type memBytesValue struct {
	v        int64
	allowNeg bool
}

func (m *memBytesValue) Set(s string) error {
	var v int64
	var err error
	if m.allowNeg {
		v, err = parseMemorySwap(s)
	} else {
		v, err = parseMemBytes(s)
	}
	if err != nil {
		return err
	}
	m.v = v
	return nil
}
func (m *memBytesValue) Type() string { return "bytes" }
func (m *memBytesValue) String() string {
	if m.v == 0 {
		return "0"
	}
	return units.BytesSize(float64(m.v))
}

// durationPtrValue is an optional duration (docker's DurationOpt).
type durationPtrValue struct{ v *time.Duration }

func (d *durationPtrValue) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration cannot be negative")
	}
	d.v = &v
	return nil
}
func (d *durationPtrValue) Type() string { return "duration" }
func (d *durationPtrValue) String() string {
	if d.v == nil {
		return ""
	}
	return d.v.String()
}

// uint64PtrValue is an optional uint64 (docker's Uint64Opt).
type uint64PtrValue struct{ v *uint64 }

func (u *uint64PtrValue) Set(s string) error {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return err
	}
	u.v = &v
	return nil
}
func (u *uint64PtrValue) Type() string { return "uint" }
func (u *uint64PtrValue) String() string {
	if u.v == nil {
		return ""
	}
	return strconv.FormatUint(*u.v, 10)
}

// ---- environment and labels ----

// normalizeEnv validates one -e value; "KEY" alone takes KEY from the
// client's environment when set, as docker does.
func normalizeEnv(val string) (string, error) {
	k, _, hasValue := strings.Cut(val, "=")
	if k == "" {
		return "", fmt.Errorf("invalid environment variable: %s", val)
	}
	if hasValue {
		return val, nil
	}
	if v, ok := os.LookupEnv(val); ok {
		return val + "=" + v, nil
	}
	return val, nil
}

// readKVFile reads an env or label file: KEY=VALUE lines, # comments.
func readKVFile(path string, isEnv bool) ([]string, error) {
	content, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(content))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimLeft(sc.Text(), " \t")
		if n == 1 {
			line = strings.TrimPrefix(line, "\uFEFF")
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, hasValue := strings.Cut(line, "=")
		if strings.ContainsAny(k, " \t") || k == "" {
			return nil, fmt.Errorf("variable '%s' contains whitespaces", k)
		}
		if !hasValue && isEnv {
			if v, ok := os.LookupEnv(k); ok {
				line = k + "=" + v
			} else {
				continue
			}
		}
		lines = append(lines, line)
	}
	return lines, sc.Err()
}

// buildEnv merges env files then -e values (later wins), as docker does.
func buildEnv(files, values []string) ([]string, error) {
	var all []string
	for _, f := range files {
		l, err := readKVFile(f, true)
		if err != nil {
			return nil, err
		}
		all = append(all, l...)
	}
	for _, v := range values {
		n, err := normalizeEnv(v)
		if err != nil {
			return nil, err
		}
		all = append(all, n)
	}
	return all, nil
}

// dedupEnv keeps the last value of each key, in first-seen order.
func dedupEnv(env []string) []string {
	var out []string
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		kept := out[:0]
		for _, o := range out {
			ok, _, _ := strings.Cut(o, "=")
			if ok != k {
				kept = append(kept, o)
			}
		}
		out = append(kept, e)
	}
	return out
}

// kvMap turns "k=v" (or "k") items into a map.
func kvMap(items []string) map[string]string {
	m := make(map[string]string, len(items))
	for _, it := range items {
		k, v, _ := strings.Cut(it, "=")
		m[k] = v
	}
	return m
}

func validateLabel(l string) error {
	k, _, _ := strings.Cut(l, "=")
	if strings.TrimSpace(k) == "" {
		return fmt.Errorf("invalid label '%s': empty name", l)
	}
	return nil
}

func buildLabels(files, values []string) (map[string]string, error) {
	var all []string
	for _, f := range files {
		l, err := readKVFile(f, false)
		if err != nil {
			return nil, err
		}
		all = append(all, l...)
	}
	for _, v := range values {
		if err := validateLabel(v); err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	return kvMap(all), nil
}

// ---- ports ----

// portSpec is one parsed -p value for a container.
type portSpec struct {
	hostIP   netip.Addr
	hostPort string // "", "8080" or "8080-8090"
	ctrStart uint16
	ctrEnd   uint16
	proto    string
}

// splitPortSpec splits [ip:][hostPort:]containerPort[/proto], with IPv6
// addresses in brackets.
func splitPortSpec(raw string) (ip, hostPort, ctrPort, proto string, err error) {
	proto = "tcp"
	rest := raw
	if i := strings.LastIndex(rest, "/"); i >= 0 {
		proto = strings.ToLower(rest[i+1:])
		rest = rest[:i]
	}
	switch proto {
	case "tcp", "udp", "sctp":
	default:
		return "", "", "", "", fmt.Errorf("invalid proto: %s", proto)
	}
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return "", "", "", "", fmt.Errorf("invalid IP address: %s", rest)
		}
		ip = rest[1:end]
		rest = strings.TrimPrefix(rest[end+1:], ":")
		parts := strings.Split(rest, ":")
		switch len(parts) {
		case 1:
			return ip, "", parts[0], proto, nil
		case 2:
			return ip, parts[0], parts[1], proto, nil
		}
		return "", "", "", "", fmt.Errorf("invalid port format: %s", raw)
	}
	parts := strings.Split(rest, ":")
	switch n := len(parts); {
	case n == 1:
		return "", "", parts[0], proto, nil
	case n == 2:
		return "", parts[0], parts[1], proto, nil
	case n == 3:
		return parts[0], parts[1], parts[2], proto, nil
	default:
		// Unbracketed IPv6: everything before the last two parts.
		return strings.Join(parts[:n-2], ":"), parts[n-2], parts[n-1], proto, nil
	}
}

func parsePortRange(s string) (uint16, uint16, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return uint16(a), uint16(a), nil
	}
	b, err := strconv.ParseUint(hi, 10, 16)
	if err != nil {
		return 0, 0, err
	}
	if b < a {
		return 0, 0, fmt.Errorf("invalid range %s", s)
	}
	return uint16(a), uint16(b), nil
}

// parsePortSpecs converts -p values into exposed ports and bindings.
func parsePortSpecs(specs []string) (network.PortSet, network.PortMap, error) {
	exposed := network.PortSet{}
	bindings := network.PortMap{}
	for _, raw := range specs {
		ip, hostPort, ctrPort, proto, err := splitPortSpec(raw)
		if err != nil {
			return nil, nil, err
		}
		var hostIP netip.Addr
		if ip != "" {
			hostIP, err = netip.ParseAddr(ip)
			if err != nil {
				return nil, nil, fmt.Errorf("invalid IP address: %s", ip)
			}
		}
		if ctrPort == "" {
			return nil, nil, fmt.Errorf("no port specified: %s<empty>", raw)
		}
		cStart, cEnd, err := parsePortRange(ctrPort)
		if err != nil {
			return nil, nil, fmt.Errorf("invalid containerPort: %s", ctrPort)
		}
		var hStart, hEnd uint16
		if hostPort != "" {
			hStart, hEnd, err = parsePortRange(hostPort)
			if err != nil {
				return nil, nil, fmt.Errorf("invalid hostPort: %s", hostPort)
			}
			if hEnd != hStart && cEnd-cStart != hEnd-hStart && cEnd != cStart {
				return nil, nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", ctrPort, hostPort)
			}
		}
		for i := uint32(0); i <= uint32(cEnd-cStart); i++ {
			p, _ := network.PortFrom(uint16(uint32(cStart)+i), network.IPProtocol(proto))
			exposed[p] = struct{}{}
			hp := hostPort
			if hostPort != "" && hEnd-hStart == cEnd-cStart {
				hp = strconv.Itoa(int(uint32(hStart) + i))
			}
			bindings[p] = append(bindings[p], network.PortBinding{HostIP: hostIP, HostPort: hp})
		}
	}
	return exposed, bindings, nil
}

// parseServicePort parses --publish for services: the long CSV syntax
// (published=8080,target=80,protocol=udp,mode=host) or the short one.
func parseServicePort(value string) ([]swarm.PortConfig, error) {
	if strings.Contains(value, "=") {
		fields, err := csv.NewReader(strings.NewReader(value)).Read()
		if err != nil {
			return nil, err
		}
		pc := swarm.PortConfig{Protocol: network.TCP, PublishMode: swarm.PortConfigPublishModeIngress}
		for _, field := range fields {
			key, val, ok := strings.Cut(strings.ToLower(field), "=")
			if !ok || key == "" {
				return nil, fmt.Errorf("invalid field: %s", field)
			}
			switch key {
			case "protocol":
				switch p := network.IPProtocol(val); p {
				case network.TCP, network.UDP, network.SCTP:
					pc.Protocol = p
				default:
					return nil, fmt.Errorf("invalid protocol value '%s'", val)
				}
			case "mode":
				switch m := swarm.PortConfigPublishMode(val); m {
				case swarm.PortConfigPublishModeIngress, swarm.PortConfigPublishModeHost:
					pc.PublishMode = m
				default:
					return nil, fmt.Errorf("invalid publish mode value (%s): must be either '%s' or '%s'", val, swarm.PortConfigPublishModeIngress, swarm.PortConfigPublishModeHost)
				}
			case "target":
				v, err := strconv.ParseUint(val, 10, 16)
				if err != nil {
					return nil, fmt.Errorf("invalid target port (%s): value must be an integer: %w", val, numErrCause(err))
				}
				pc.TargetPort = uint32(v)
			case "published":
				v, err := strconv.ParseUint(val, 10, 16)
				if err != nil {
					return nil, fmt.Errorf("invalid published port (%s): value must be an integer: %w", val, numErrCause(err))
				}
				pc.PublishedPort = uint32(v)
			default:
				return nil, fmt.Errorf("invalid field key: %s", key)
			}
		}
		if pc.TargetPort == 0 {
			return nil, fmt.Errorf("missing mandatory field 'target'")
		}
		return []swarm.PortConfig{pc}, nil
	}
	ip, hostPort, ctrPort, proto, err := splitPortSpec(value)
	if err != nil {
		return nil, err
	}
	if ip != "" {
		return nil, fmt.Errorf("hostip is not supported")
	}
	cStart, cEnd, err := parsePortRange(ctrPort)
	if err != nil {
		return nil, fmt.Errorf("invalid containerPort: %s", ctrPort)
	}
	var hStart, hEnd uint16
	if hostPort != "" {
		hStart, hEnd, err = parsePortRange(hostPort)
		if err != nil {
			return nil, fmt.Errorf("invalid hostPort: %s", hostPort)
		}
		if hEnd-hStart != cEnd-cStart && cEnd != cStart {
			return nil, fmt.Errorf("invalid ranges specified for container and host Ports: %s and %s", ctrPort, hostPort)
		}
	}
	var out []swarm.PortConfig
	for i := uint32(0); i <= uint32(cEnd-cStart); i++ {
		target := uint32(cStart) + i
		if hostPort == "" {
			out = append(out, swarm.PortConfig{Protocol: network.IPProtocol(proto), TargetPort: target, PublishMode: swarm.PortConfigPublishModeIngress})
			continue
		}
		if cEnd == cStart {
			// One container port, a host range: publish each host port.
			for h := uint32(hStart); h <= uint32(hEnd); h++ {
				out = append(out, swarm.PortConfig{Protocol: network.IPProtocol(proto), TargetPort: target, PublishedPort: h, PublishMode: swarm.PortConfigPublishModeIngress})
			}
			continue
		}
		out = append(out, swarm.PortConfig{Protocol: network.IPProtocol(proto), TargetPort: target, PublishedPort: uint32(hStart) + i, PublishMode: swarm.PortConfigPublishModeIngress})
	}
	return out, nil
}

func numErrCause(err error) error {
	if ne, ok := err.(*strconv.NumError); ok {
		return ne.Err
	}
	return err
}

// ---- mounts ----

// parseMount parses docker's --mount CSV syntax.
func parseMount(value string) (mount.Mount, error) {
	fields, err := csv.NewReader(strings.NewReader(value)).Read()
	if err != nil {
		return mount.Mount{}, err
	}
	m := mount.Mount{Type: mount.TypeVolume}
	// Like docker, any volume-* option brings an (empty) driver config.
	volumeOpts := func() *mount.VolumeOptions {
		if m.VolumeOptions == nil {
			m.VolumeOptions = &mount.VolumeOptions{}
		}
		if m.VolumeOptions.DriverConfig == nil {
			m.VolumeOptions.DriverConfig = &mount.Driver{}
		}
		return m.VolumeOptions
	}
	bindOpts := func() *mount.BindOptions {
		if m.BindOptions == nil {
			m.BindOptions = &mount.BindOptions{}
		}
		return m.BindOptions
	}
	tmpfsOpts := func() *mount.TmpfsOptions {
		if m.TmpfsOptions == nil {
			m.TmpfsOptions = &mount.TmpfsOptions{}
		}
		return m.TmpfsOptions
	}
	setBool := func(key, val string, hasVal bool) (bool, error) {
		if !hasVal {
			return true, nil
		}
		switch strings.ToLower(val) {
		case "true", "1":
			return true, nil
		case "false", "0":
			return false, nil
		}
		return false, fmt.Errorf("invalid value for %s: %s", key, val)
	}
	for _, field := range fields {
		key, val, hasVal := strings.Cut(field, "=")
		key = strings.ToLower(key)
		if !hasVal {
			switch key {
			case "readonly", "ro", "volume-nocopy", "bind-nonrecursive", "bind-create-mountpoint":
			default:
				return mount.Mount{}, fmt.Errorf("invalid field '%s' must be a key=value pair", field)
			}
		}
		switch key {
		case "type":
			m.Type = mount.Type(strings.ToLower(val))
		case "source", "src":
			m.Source = val
		case "target", "dst", "destination":
			m.Target = val
		case "readonly", "ro":
			b, err := setBool(key, val, hasVal)
			if err != nil {
				return mount.Mount{}, err
			}
			m.ReadOnly = b
		case "consistency":
			m.Consistency = mount.Consistency(strings.ToLower(val))
		case "bind-propagation":
			bindOpts().Propagation = mount.Propagation(strings.ToLower(val))
		case "bind-nonrecursive":
			b, err := setBool(key, val, hasVal)
			if err != nil {
				return mount.Mount{}, err
			}
			bindOpts().NonRecursive = b
		case "bind-create-mountpoint":
			b, err := setBool(key, val, hasVal)
			if err != nil {
				return mount.Mount{}, err
			}
			bindOpts().CreateMountpoint = b
		case "volume-nocopy":
			b, err := setBool(key, val, hasVal)
			if err != nil {
				return mount.Mount{}, err
			}
			volumeOpts().NoCopy = b
		case "volume-label":
			k, v, _ := strings.Cut(val, "=")
			vo := volumeOpts()
			if vo.Labels == nil {
				vo.Labels = map[string]string{}
			}
			vo.Labels[k] = v
		case "volume-driver":
			volumeOpts().DriverConfig.Name = val
		case "volume-opt":
			vo := volumeOpts()
			if vo.DriverConfig.Options == nil {
				vo.DriverConfig.Options = map[string]string{}
			}
			k, v, _ := strings.Cut(val, "=")
			vo.DriverConfig.Options[k] = v
		case "volume-subpath":
			volumeOpts().Subpath = val
		case "tmpfs-size":
			sz, err := units.RAMInBytes(val)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			tmpfsOpts().SizeBytes = sz
		case "tmpfs-mode":
			md, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return mount.Mount{}, fmt.Errorf("invalid value for %s: %s", key, val)
			}
			tmpfsOpts().Mode = os.FileMode(md)
		default:
			return mount.Mount{}, fmt.Errorf("unexpected key '%s' in '%s'", key, field)
		}
	}
	if m.Target == "" {
		return mount.Mount{}, fmt.Errorf("target is required")
	}
	switch m.Type {
	case mount.TypeBind, mount.TypeVolume, mount.TypeTmpfs, mount.TypeImage, mount.TypeNamedPipe, mount.TypeCluster:
	default:
		return mount.Mount{}, fmt.Errorf("invalid mount type: %s", m.Type)
	}
	if m.Type != mount.TypeVolume && m.VolumeOptions != nil {
		return mount.Mount{}, fmt.Errorf("cannot mix 'volume-*' options with mount type '%s'", m.Type)
	}
	if m.Type != mount.TypeBind && m.BindOptions != nil {
		return mount.Mount{}, fmt.Errorf("cannot mix 'bind-*' options with mount type '%s'", m.Type)
	}
	if m.Type != mount.TypeTmpfs && m.TmpfsOptions != nil {
		return mount.Mount{}, fmt.Errorf("cannot mix 'tmpfs-*' options with mount type '%s'", m.Type)
	}
	if m.Type == mount.TypeBind && m.Source == "" {
		return mount.Mount{}, fmt.Errorf("source is required when specifying bind mounts")
	}
	return m, nil
}

// ---- restart policy, misc ----

// splitCommaList accepts "a,b" lists used by --cap-add etc.
func splitCommaList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// normalizeCaps uppercases and prefixes CAP_ like docker ("ALL" stays).
func normalizeCaps(caps []string) []string {
	var out []string
	for _, c := range splitCommaList(caps) {
		c = strings.ToUpper(c)
		if c != "ALL" && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		out = append(out, c)
	}
	return out
}

// parseDNS validates nameserver addresses.
func parseDNS(vals []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, v := range vals {
		a, err := netip.ParseAddr(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%s is not an ip address", v)
		}
		out = append(out, a)
	}
	return out, nil
}
