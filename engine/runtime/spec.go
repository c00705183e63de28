package runtime

import (
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/engine/runtime/shim"
	"github.com/shoal/shoal/errdefs"
)

// ociVersion is the spec version written to config.json; runc 1.1 knows 1.0.2.
const ociVersion = "1.0.2"

// DefaultPathEnv is PATH when neither the image nor the user sets it.
const DefaultPathEnv = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities is docker's default capability set.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// AllCapabilities lists every capability the kernel knows (to CAP_CHECKPOINT_RESTORE).
var AllCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// DefaultMaskedPaths and DefaultReadonlyPaths are docker's.
var (
	DefaultMaskedPaths = []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// DefaultShmSize is /dev/shm's size when --shm-size is not given (64 MiB).
const DefaultShmSize = 64 << 20

// SpecInput is what Spec needs: the container's config (already merged with
// its image's) and host config, plus what the node prepared for it.
type SpecInput struct {
	ID          string
	Config      *container.Config
	HostConfig  *container.HostConfig
	Rootfs      string       // mounted root filesystem
	User        ResolvedUser // from ResolveUser
	NetNSPath   string       // network namespace to join; "" = a new one (none) or the host's (host mode)
	CgroupsPath string
	Mounts      []specs.Mount // user mounts and the hosts/hostname/resolv.conf files, host paths resolved
	InitPath    string        // host path of the init binary, required with HostConfig.Init
	// HostDevices lists the host's devices for --privileged; nil reads /dev.
	HostDevices func() ([]specs.LinuxDevice, error)
}

// Spec builds the OCI runtime spec of a container, following docker's
// defaults (capabilities, masked paths, default mounts and devices).
func Spec(in SpecInput) (*specs.Spec, error) {
	cfg, hc := in.Config, in.HostConfig
	if cfg == nil {
		cfg = &container.Config{}
	}
	if hc == nil {
		hc = &container.HostConfig{}
	}
	args := append(append([]string{}, cfg.Entrypoint...), cfg.Cmd...)
	if len(args) == 0 || args[0] == "" {
		return nil, errdefs.InvalidParameter("no command specified")
	}
	if hc.Init != nil && *hc.Init {
		if in.InitPath == "" {
			return nil, errdefs.System("--init requested but no init binary is available")
		}
		args = append([]string{shim.InitPath, "--"}, args...)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	s := &specs.Spec{
		Version:  ociVersion,
		Root:     &specs.Root{Path: in.Rootfs, Readonly: hc.ReadonlyRootfs},
		Hostname: cfg.Hostname,
		Process: &specs.Process{
			Terminal: cfg.Tty,
			User:     in.User.User,
			Args:     args,
			Env:      ContainerEnv(cfg, in.User.Home),
			Cwd:      cwd,
		},
		Linux: &specs.Linux{
			CgroupsPath: in.CgroupsPath,
			Sysctl:      hc.Sysctls,
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
		},
		Annotations: hc.Annotations,
	}
	if cfg.Domainname != "" {
		s.Domainname = cfg.Domainname
	}
	if hc.UTSMode.IsHost() {
		s.Hostname = ""
	}
	if hc.Umask != nil {
		u := *hc.Umask
		s.Process.User.Umask = &u
	}
	if cfg.Tty && (hc.ConsoleSize[0] > 0 || hc.ConsoleSize[1] > 0) {
		s.Process.ConsoleSize = &specs.Box{Height: hc.ConsoleSize[0], Width: hc.ConsoleSize[1]}
	}
	if hc.OomScoreAdj != 0 {
		v := hc.OomScoreAdj
		s.Process.OOMScoreAdj = &v
	}
	for _, o := range hc.SecurityOpt {
		if o == "no-new-privileges" || o == "no-new-privileges:true" || o == "no-new-privileges=true" {
			s.Process.NoNewPrivileges = true
		}
	}
	for _, u := range hc.Ulimits {
		if u == nil {
			continue
		}
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{
			Type: "RLIMIT_" + strings.ToUpper(u.Name), Hard: uint64(u.Hard), Soft: uint64(u.Soft),
		})
	}

	caps, err := Capabilities(hc.CapAdd, hc.CapDrop, hc.Privileged)
	if err != nil {
		return nil, err
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}

	// Namespaces.
	s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !hc.PidMode.IsHost() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	if !hc.IpcMode.IsHost() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if !hc.UTSMode.IsHost() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	hostNet := hc.NetworkMode.IsHost()
	if !hostNet {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: in.NetNSPath})
	}
	if hc.CgroupnsMode.IsPrivate() {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}

	// Mounts: docker's defaults, replaced by user mounts at the same place.
	shmSize := hc.ShmSize
	if shmSize == 0 {
		shmSize = DefaultShmSize
	}
	defaults := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.FormatInt(shmSize, 10)}},
	}
	if hostNet {
		// sysfs cannot be mounted outside a network namespace the
		// container owns; docker binds the host's instead.
		defaults[3] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
	}
	if hc.IpcMode.IsHost() {
		defaults = removeMount(defaults, "/dev/mqueue")
		defaults = removeMount(defaults, "/dev/shm")
		defaults = append(defaults, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "rprivate"}})
	}
	if hc.Privileged {
		for i := range defaults {
			if defaults[i].Destination == "/sys" || defaults[i].Destination == "/sys/fs/cgroup" {
				defaults[i].Options = removeString(defaults[i].Options, "ro")
			}
		}
	}
	user := map[string]bool{}
	for _, m := range in.Mounts {
		user[path.Clean(m.Destination)] = true
	}
	for _, m := range defaults {
		if user[m.Destination] {
			continue
		}
		// A user mount on /dev replaces the whole default /dev tree.
		if strings.HasPrefix(m.Destination, "/dev/") && user["/dev"] {
			continue
		}
		s.Mounts = append(s.Mounts, m)
	}
	userMounts := append([]specs.Mount(nil), in.Mounts...)
	// Parents before children, whatever order they were given in.
	sort.SliceStable(userMounts, func(i, j int) bool {
		return mountDepth(userMounts[i].Destination) < mountDepth(userMounts[j].Destination)
	})
	s.Mounts = append(s.Mounts, userMounts...)
	if hc.Init != nil && *hc.Init {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: shim.InitPath, Type: "bind", Source: in.InitPath, Options: []string{"bind", "ro", "rprivate"}})
	}

	if hc.Privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
		list := in.HostDevices
		if list == nil {
			list = HostDevices
		}
		devs, err := list()
		if err != nil {
			return nil, errdefs.System("listing host devices: %v", err)
		}
		s.Linux.Devices = devs
	} else {
		s.Linux.MaskedPaths = DefaultMaskedPaths
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths
		if hc.MaskedPaths != nil {
			s.Linux.MaskedPaths = hc.MaskedPaths
		}
		if hc.ReadonlyPaths != nil {
			s.Linux.ReadonlyPaths = hc.ReadonlyPaths
		}
		for _, d := range hc.Devices {
			dev, rule, err := deviceFromHost(d)
			if err != nil {
				return nil, err
			}
			s.Linux.Devices = append(s.Linux.Devices, dev)
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rule)
		}
		for _, r := range hc.DeviceCgroupRules {
			rule, err := parseDeviceRule(r)
			if err != nil {
				return nil, err
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rule)
		}
	}

	if err := setResources(s.Linux.Resources, hc.Resources); err != nil {
		return nil, err
	}
	return s, nil
}

func mountDepth(p string) int {
	p = path.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

func removeMount(ms []specs.Mount, dest string) []specs.Mount {
	out := ms[:0]
	for _, m := range ms {
		if m.Destination != dest {
			out = append(out, m)
		}
	}
	return out
}

func removeString(ss []string, s string) []string {
	var out []string
	for _, x := range ss {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// ContainerEnv is the environment of a container's process: docker's
// defaults (PATH, HOSTNAME, TERM with a TTY, HOME) overridden by the
// container's own Env.
func ContainerEnv(cfg *container.Config, home string) []string {
	env := []string{"PATH=" + DefaultPathEnv}
	if cfg.Hostname != "" {
		env = append(env, "HOSTNAME="+cfg.Hostname)
	}
	if cfg.Tty {
		env = append(env, "TERM=xterm")
	}
	env = ReplaceOrAppendEnv(env, cfg.Env)
	if !hasEnv(env, "HOME") {
		if home == "" {
			home = "/"
		}
		env = append(env, "HOME="+home)
	}
	return env
}

func hasEnv(env []string, key string) bool {
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if k == key {
			return true
		}
	}
	return false
}

// ReplaceOrAppendEnv overrides entries of defaults by key with those of
// overrides and appends the rest. An override without "=" removes the key.
func ReplaceOrAppendEnv(defaults, overrides []string) []string {
	out := append([]string(nil), defaults...)
	index := map[string]int{}
	for i, e := range out {
		k, _, _ := strings.Cut(e, "=")
		index[k] = i
	}
	var drop map[string]bool
	for _, e := range overrides {
		k, _, hasValue := strings.Cut(e, "=")
		if !hasValue {
			if drop == nil {
				drop = map[string]bool{}
			}
			drop[k] = true
			continue
		}
		if i, ok := index[k]; ok {
			out[i] = e
			continue
		}
		index[k] = len(out)
		out = append(out, e)
	}
	if drop != nil {
		kept := out[:0]
		for _, e := range out {
			k, _, _ := strings.Cut(e, "=")
			if !drop[k] {
				kept = append(kept, e)
			}
		}
		out = kept
	}
	return out
}

// Capabilities applies --cap-add/--cap-drop to docker's defaults as docker
// does: "ALL" in add grants everything not dropped; "ALL" in drop starts
// from nothing; --privileged grants everything.
func Capabilities(add, drop []string, privileged bool) ([]string, error) {
	if privileged {
		return append([]string(nil), AllCapabilities...), nil
	}
	if len(add) == 0 && len(drop) == 0 {
		return append([]string(nil), DefaultCapabilities...), nil
	}
	adds, err := normalizeCaps(add)
	if err != nil {
		return nil, err
	}
	drops, err := normalizeCaps(drop)
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case contains(adds, "ALL"):
		for _, c := range AllCapabilities {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
	case contains(drops, "ALL"):
		caps = adds
	default:
		for _, c := range DefaultCapabilities {
			if !contains(drops, c) {
				caps = append(caps, c)
			}
		}
		for _, c := range adds {
			if !contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	return caps, nil
}

func normalizeCaps(in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "ALL" {
			out = append(out, c)
			continue
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !contains(AllCapabilities, c) {
			return nil, errdefs.InvalidParameter("unknown capability: %q", c)
		}
		out = append(out, c)
	}
	return out, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// setResources converts docker's resources into cgroup settings.
// ValidateHostConfig has already refused impossible values.
func setResources(r *specs.LinuxResources, res container.Resources) error {
	mem := &specs.LinuxMemory{}
	hasMem := false
	if res.Memory > 0 {
		v := res.Memory
		mem.Limit = &v
		hasMem = true
		swap := res.MemorySwap
		if swap == 0 {
			swap = 2 * res.Memory // docker's default: as much swap as memory
		}
		mem.Swap = &swap
	} else if res.MemorySwap == -1 {
		v := int64(-1)
		mem.Swap = &v
		hasMem = true
	}
	if res.MemoryReservation > 0 {
		v := res.MemoryReservation
		mem.Reservation = &v
		hasMem = true
	}
	if res.MemorySwappiness != nil && *res.MemorySwappiness >= 0 {
		v := uint64(*res.MemorySwappiness)
		mem.Swappiness = &v
		hasMem = true
	}
	if res.OomKillDisable != nil {
		v := *res.OomKillDisable
		mem.DisableOOMKiller = &v
		hasMem = true
	}
	if hasMem {
		r.Memory = mem
	}

	cpu := &specs.LinuxCPU{}
	hasCPU := false
	if res.CPUShares > 0 {
		v := uint64(res.CPUShares)
		cpu.Shares = &v
		hasCPU = true
	}
	if res.NanoCPUs > 0 {
		period := uint64(100000)
		quota := res.NanoCPUs * int64(period) / 1e9
		cpu.Period, cpu.Quota = &period, &quota
		hasCPU = true
	}
	if res.CPUPeriod > 0 {
		v := uint64(res.CPUPeriod)
		cpu.Period = &v
		hasCPU = true
	}
	if res.CPUQuota > 0 {
		v := res.CPUQuota
		cpu.Quota = &v
		hasCPU = true
	}
	if res.CpusetCpus != "" {
		cpu.Cpus = res.CpusetCpus
		hasCPU = true
	}
	if res.CpusetMems != "" {
		cpu.Mems = res.CpusetMems
		hasCPU = true
	}
	if hasCPU {
		r.CPU = cpu
	}
	if res.PidsLimit != nil && *res.PidsLimit > 0 {
		v := *res.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &v}
	}
	if res.BlkioWeight > 0 {
		v := res.BlkioWeight
		r.BlockIO = &specs.LinuxBlockIO{Weight: &v}
	}
	return nil
}

// deviceFromHost turns --device HOST[:CONTAINER[:PERMS]] into a device node
// and its cgroup rule.
func deviceFromHost(d container.DeviceMapping) (specs.LinuxDevice, specs.LinuxDeviceCgroup, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(d.PathOnHost, &st); err != nil {
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, errdefs.InvalidParameter("error gathering device information while adding custom device %q: %v", d.PathOnHost, err)
	}
	var typ string
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		typ = "c"
	case syscall.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, specs.LinuxDeviceCgroup{}, errdefs.InvalidParameter("error gathering device information while adding custom device %q: not a device node", d.PathOnHost)
	}
	dst := d.PathInContainer
	if dst == "" {
		dst = d.PathOnHost
	}
	perms := d.CgroupPermissions
	if perms == "" {
		perms = "rwm"
	}
	major, minor := int64(unixMajor(st.Rdev)), int64(unixMinor(st.Rdev))
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	dev := specs.LinuxDevice{Path: dst, Type: typ, Major: major, Minor: minor, FileMode: &mode, UID: &uid, GID: &gid}
	rule := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Major: &major, Minor: &minor, Access: perms}
	return dev, rule, nil
}

func unixMajor(dev uint64) uint64 { return ((dev >> 8) & 0xfff) | ((dev >> 32) & 0xfffff000) }
func unixMinor(dev uint64) uint64 { return (dev & 0xff) | ((dev >> 12) & 0xffffff00) }

// parseDeviceRule parses --device-cgroup-rule "c 1:3 rwm" (majors and minors may be "*").
func parseDeviceRule(s string) (specs.LinuxDeviceCgroup, error) {
	bad := errdefs.InvalidParameter("invalid device cgroup rule %q", s)
	f := strings.Fields(s)
	if len(f) != 3 || (f[0] != "a" && f[0] != "b" && f[0] != "c") {
		return specs.LinuxDeviceCgroup{}, bad
	}
	maj, min, ok := strings.Cut(f[1], ":")
	if !ok {
		return specs.LinuxDeviceCgroup{}, bad
	}
	rule := specs.LinuxDeviceCgroup{Allow: true, Type: f[0], Access: f[2]}
	for _, p := range []struct {
		s   string
		dst **int64
	}{{maj, &rule.Major}, {min, &rule.Minor}} {
		if p.s == "*" {
			continue
		}
		v, err := strconv.ParseInt(p.s, 10, 64)
		if err != nil {
			return specs.LinuxDeviceCgroup{}, bad
		}
		*p.dst = &v
	}
	for _, c := range f[2] {
		if c != 'r' && c != 'w' && c != 'm' {
			return specs.LinuxDeviceCgroup{}, bad
		}
	}
	return rule, nil
}

// HostDevices lists the host's device nodes under /dev for --privileged.
func HostDevices() ([]specs.LinuxDevice, error) {
	var out []specs.LinuxDevice
	err := filepath.WalkDir("/dev", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			switch p {
			case "/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/fd":
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || p == "/dev/ptmx" {
			return nil
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return nil
		}
		var typ string
		switch st.Mode & syscall.S_IFMT {
		case syscall.S_IFCHR:
			typ = "c"
		case syscall.S_IFBLK:
			typ = "b"
		default:
			return nil
		}
		mode := os.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		out = append(out, specs.LinuxDevice{Path: p, Type: typ, Major: int64(unixMajor(st.Rdev)), Minor: int64(unixMinor(st.Rdev)), FileMode: &mode, UID: &uid, GID: &gid})
		return nil
	})
	return out, err
}
