package cli

import (
	"fmt"
	"net/netip"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/blkiodev"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/spf13/pflag"
)

// containerOptions are the flags shared by `run` and `create`.
type containerOptions struct {
	attach       []string
	interactive  bool
	tty          bool
	autoRemove   bool
	name         string
	publish      []string
	publishAll   bool
	expose       []string
	env          []string
	envFile      []string
	volumes      []string
	mounts       []string
	tmpfs        []string
	workdir      string
	user         string
	entrypoint   string
	entrypointOK bool
	hostname     string
	domainname   string
	network      string
	aliases      []string
	ipv4         string
	labels       []string
	labelFile    []string
	restart      string
	memory       memBytesValue
	memorySwap   memBytesValue
	memoryRes    memBytesValue
	shmSize      memBytesValue
	cpus         nanoCPUsValue
	cpuShares    int64
	cpusetCPUs   string
	cpusetMems   string
	cpuPeriod    int64
	cpuQuota     int64
	pidsLimit    int64
	readOnly     bool
	init         bool
	privileged   bool
	capAdd       []string
	capDrop      []string
	stopSignal   string
	stopTimeout  int
	pull         string
	dns          []string
	dnsSearch    []string
	dnsOption    []string
	addHost      []string
	groupAdd     []string
	securityOpt  []string
	sysctls      []string
	ulimits      []string
	logDriver    string
	logOpts      []string
	healthCmd    string
	healthInt    time.Duration
	healthTO     time.Duration
	healthStart  time.Duration
	healthRetry  int
	noHealth     bool
	pidMode      string
	ipcMode      string
	utsMode      string
	platform     string
	oomScoreAdj  int
	cidFile      string
	runtime      string
	quiet        bool
}

func addContainerFlags(flags *pflag.FlagSet, o *containerOptions) {
	flags.SetInterspersed(false)
	// -h is --hostname here, so --help has no shorthand (as in docker).
	flags.Bool("help", false, "Print usage")
	flags.StringArrayVarP(&o.attach, "attach", "a", nil, "Attach to STDIN, STDOUT or STDERR")
	flags.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	flags.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	flags.BoolVar(&o.autoRemove, "rm", false, "Automatically remove the container and its associated anonymous volumes when it exits")
	flags.StringVar(&o.name, "name", "", "Assign a name to the container")
	flags.StringArrayVarP(&o.publish, "publish", "p", nil, "Publish a container's port(s) to the host")
	flags.BoolVarP(&o.publishAll, "publish-all", "P", false, "Publish all exposed ports to random ports")
	flags.StringArrayVar(&o.expose, "expose", nil, "Expose a port or a range of ports")
	flags.StringArrayVarP(&o.env, "env", "e", nil, "Set environment variables")
	flags.StringArrayVar(&o.envFile, "env-file", nil, "Read in a file of environment variables")
	flags.StringArrayVarP(&o.volumes, "volume", "v", nil, "Bind mount a volume")
	flags.StringArrayVar(&o.mounts, "mount", nil, "Attach a filesystem mount to the container")
	flags.StringArrayVar(&o.tmpfs, "tmpfs", nil, "Mount a tmpfs directory")
	flags.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	flags.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	flags.StringVar(&o.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	flags.StringVarP(&o.hostname, "hostname", "h", "", "Container host name")
	flags.StringVar(&o.domainname, "domainname", "", "Container NIS domain name")
	flags.StringVar(&o.network, "network", "", "Connect a container to a network")
	flags.StringVar(&o.network, "net", "", "Connect a container to a network")
	flags.MarkHidden("net")
	flags.StringArrayVar(&o.aliases, "network-alias", nil, "Add network-scoped alias for the container")
	flags.StringVar(&o.ipv4, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	flags.StringArrayVarP(&o.labels, "label", "l", nil, "Set meta data on a container")
	flags.StringArrayVar(&o.labelFile, "label-file", nil, "Read in a line delimited file of labels")
	flags.StringVar(&o.restart, "restart", "", "Restart policy to apply when a container exits")
	o.memorySwap.allowNeg = true
	flags.VarP(&o.memory, "memory", "m", "Memory limit")
	flags.Var(&o.memorySwap, "memory-swap", "Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
	flags.Var(&o.memoryRes, "memory-reservation", "Memory soft limit")
	flags.Var(&o.shmSize, "shm-size", "Size of /dev/shm")
	flags.Var(&o.cpus, "cpus", "Number of CPUs")
	flags.Int64VarP(&o.cpuShares, "cpu-shares", "c", 0, "CPU shares (relative weight)")
	flags.StringVar(&o.cpusetCPUs, "cpuset-cpus", "", "CPUs in which to allow execution (0-3, 0,1)")
	flags.StringVar(&o.cpusetMems, "cpuset-mems", "", "MEMs in which to allow execution (0-3, 0,1)")
	flags.Int64Var(&o.cpuPeriod, "cpu-period", 0, "Limit CPU CFS (Completely Fair Scheduler) period")
	flags.Int64Var(&o.cpuQuota, "cpu-quota", 0, "Limit CPU CFS (Completely Fair Scheduler) quota")
	flags.Int64Var(&o.pidsLimit, "pids-limit", 0, "Tune container pids limit (set -1 for unlimited)")
	flags.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	flags.BoolVar(&o.init, "init", false, "Run an init inside the container that forwards signals and reaps processes")
	flags.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to this container")
	flags.StringArrayVar(&o.capAdd, "cap-add", nil, "Add Linux capabilities")
	flags.StringArrayVar(&o.capDrop, "cap-drop", nil, "Drop Linux capabilities")
	flags.StringVar(&o.stopSignal, "stop-signal", "", "Signal to stop the container")
	flags.IntVar(&o.stopTimeout, "stop-timeout", 0, "Timeout (in seconds) to stop a container")
	flags.StringVar(&o.pull, "pull", "missing", `Pull image before running ("always", "missing", "never")`)
	flags.StringArrayVar(&o.dns, "dns", nil, "Set custom DNS servers")
	flags.StringArrayVar(&o.dnsSearch, "dns-search", nil, "Set custom DNS search domains")
	flags.StringArrayVar(&o.dnsOption, "dns-option", nil, "Set DNS options")
	flags.StringArrayVar(&o.addHost, "add-host", nil, "Add a custom host-to-IP mapping (host:ip)")
	flags.StringArrayVar(&o.groupAdd, "group-add", nil, "Add additional groups to join")
	flags.StringArrayVar(&o.securityOpt, "security-opt", nil, "Security Options")
	flags.StringArrayVar(&o.sysctls, "sysctl", nil, "Sysctl options")
	flags.StringArrayVar(&o.ulimits, "ulimit", nil, "Ulimit options")
	flags.StringVar(&o.logDriver, "log-driver", "", "Logging driver for the container")
	flags.StringArrayVar(&o.logOpts, "log-opt", nil, "Log driver options")
	flags.StringVar(&o.healthCmd, "health-cmd", "", "Command to run to check health")
	flags.DurationVar(&o.healthInt, "health-interval", 0, "Time between running the check (ms|s|m|h) (default 0s)")
	flags.DurationVar(&o.healthTO, "health-timeout", 0, "Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
	flags.DurationVar(&o.healthStart, "health-start-period", 0, "Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)")
	flags.IntVar(&o.healthRetry, "health-retries", 0, "Consecutive failures needed to report unhealthy")
	flags.BoolVar(&o.noHealth, "no-healthcheck", false, "Disable any container-specified HEALTHCHECK")
	flags.StringVar(&o.pidMode, "pid", "", "PID namespace to use")
	flags.StringVar(&o.ipcMode, "ipc", "", "IPC mode to use")
	flags.StringVar(&o.utsMode, "uts", "", "UTS namespace to use")
	flags.StringVar(&o.platform, "platform", "", "Set platform if server is multi-platform capable")
	flags.IntVar(&o.oomScoreAdj, "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000)")
	flags.StringVar(&o.cidFile, "cidfile", "", "Write the container ID to the file")
	flags.StringVar(&o.runtime, "runtime", "", "Runtime to use for this container")
	flags.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress the pull output")
}

// containerConfig is what POST /containers/create takes.
type containerConfig struct {
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
}

// parseRestartPolicy parses "no", "always", "unless-stopped", "on-failure[:N]".
func parseRestartPolicy(s string) (container.RestartPolicy, error) {
	if s == "" {
		return container.RestartPolicy{}, nil
	}
	name, count, hasCount := strings.Cut(s, ":")
	p := container.RestartPolicy{Name: container.RestartPolicyMode(name)}
	switch p.Name {
	case container.RestartPolicyDisabled, container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		if hasCount {
			return p, fmt.Errorf("invalid restart policy format: maximum retry count can only be used with 'on-failure'")
		}
	case container.RestartPolicyOnFailure:
		if hasCount {
			n, err := strconv.Atoi(count)
			if err != nil {
				return p, fmt.Errorf("invalid restart policy format: maximum retry count must be an integer")
			}
			p.MaximumRetryCount = n
		}
	default:
		return p, fmt.Errorf("invalid restart policy format: unknown policy '%s'", name)
	}
	return p, nil
}

// toConfig turns the parsed flags and the IMAGE [COMMAND] [ARG...]
// arguments into a create request, validating like docker.
func (o *containerOptions) toConfig(flags *pflag.FlagSet, args []string) (*containerConfig, error) {
	image := args[0]
	cmdArgs := args[1:]

	attachStdin, attachStdout, attachStderr := false, false, false
	for _, a := range o.attach {
		switch strings.ToLower(a) {
		case "stdin":
			attachStdin = true
		case "stdout":
			attachStdout = true
		case "stderr":
			attachStderr = true
		default:
			return nil, fmt.Errorf("invalid argument %q for \"-a, --attach\" flag: valid streams are STDIN, STDOUT and STDERR", a)
		}
	}
	if len(o.attach) == 0 {
		attachStdout, attachStderr = true, true
		if o.interactive {
			attachStdin = true
		}
	}

	exposed, bindings, err := parsePortSpecs(o.publish)
	if err != nil {
		return nil, err
	}
	for _, e := range o.expose {
		proto := "tcp"
		portStr := e
		if p, pr, ok := strings.Cut(e, "/"); ok {
			portStr, proto = p, pr
		}
		lo, hi, err := parsePortRange(portStr)
		if err != nil {
			return nil, fmt.Errorf("invalid range format for --expose: %s, error: %w", e, err)
		}
		for i := uint32(lo); i <= uint32(hi); i++ {
			p, _ := network.PortFrom(uint16(i), network.IPProtocol(proto))
			exposed[p] = struct{}{}
		}
	}

	env, err := buildEnv(o.envFile, o.env)
	if err != nil {
		return nil, err
	}
	labels, err := buildLabels(o.labelFile, o.labels)
	if err != nil {
		return nil, err
	}

	var binds []string
	volumes := map[string]struct{}{}
	for _, v := range o.volumes {
		if v == "" {
			return nil, fmt.Errorf("invalid empty volume spec")
		}
		parts := strings.Split(v, ":")
		switch len(parts) {
		case 1:
			if !path.IsAbs(parts[0]) {
				return nil, fmt.Errorf("invalid volume specification: '%s': invalid mount config for type \"volume\": invalid mount path: '%s' mount path must be absolute", v, parts[0])
			}
			volumes[parts[0]] = struct{}{}
		case 2, 3:
			if !path.IsAbs(parts[1]) {
				return nil, fmt.Errorf("invalid volume specification: '%s': invalid mount path: '%s' mount path must be absolute", v, parts[1])
			}
			binds = append(binds, v)
		default:
			return nil, fmt.Errorf("invalid volume specification: '%s'", v)
		}
	}
	var mounts []mount.Mount
	for _, m := range o.mounts {
		mm, err := parseMount(m)
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--mount\" flag: %w", m, err)
		}
		mounts = append(mounts, mm)
	}
	tmpfs := map[string]string{}
	for _, t := range o.tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if !path.IsAbs(dst) {
			return nil, fmt.Errorf("invalid mount path: '%s' mount path must be absolute", dst)
		}
		tmpfs[dst] = opts
	}

	restart, err := parseRestartPolicy(o.restart)
	if err != nil {
		return nil, err
	}
	if o.autoRemove && !restart.IsNone() {
		return nil, fmt.Errorf("conflicting options: cannot specify both --restart and --rm")
	}

	var entrypoint []string
	if flags.Changed("entrypoint") {
		if o.entrypoint == "" {
			entrypoint = []string{""}
		} else {
			entrypoint = []string{o.entrypoint}
		}
	}

	dns, err := parseDNS(o.dns)
	if err != nil {
		return nil, err
	}

	var stopTimeout *int
	if flags.Changed("stop-timeout") {
		v := o.stopTimeout
		stopTimeout = &v
	}
	pidsLimit := o.pidsLimit
	var initp *bool
	if flags.Changed("init") {
		v := o.init
		initp = &v
	}

	var health *container.HealthConfig
	switch {
	case o.noHealth:
		if o.healthCmd != "" || o.healthInt != 0 || o.healthTO != 0 || o.healthStart != 0 || o.healthRetry != 0 {
			return nil, fmt.Errorf("--no-healthcheck conflicts with --health-* options")
		}
		health = &container.HealthConfig{Test: []string{"NONE"}}
	case o.healthCmd != "" || o.healthInt != 0 || o.healthTO != 0 || o.healthStart != 0 || o.healthRetry != 0:
		health = &container.HealthConfig{Interval: o.healthInt, Timeout: o.healthTO, StartPeriod: o.healthStart, Retries: o.healthRetry}
		if o.healthCmd != "" {
			health.Test = []string{"CMD-SHELL", o.healthCmd}
		}
	}

	ulimits, err := parseUlimits(o.ulimits)
	if err != nil {
		return nil, err
	}

	cfg := &container.Config{
		Hostname:     o.hostname,
		Domainname:   o.domainname,
		User:         o.user,
		AttachStdin:  attachStdin,
		AttachStdout: attachStdout,
		AttachStderr: attachStderr,
		ExposedPorts: exposed,
		Tty:          o.tty,
		OpenStdin:    o.interactive,
		StdinOnce:    attachStdin,
		Env:          env,
		Cmd:          cmdArgs,
		Healthcheck:  health,
		Image:        image,
		Volumes:      volumes,
		WorkingDir:   o.workdir,
		Entrypoint:   entrypoint,
		Labels:       labels,
		StopSignal:   o.stopSignal,
		StopTimeout:  stopTimeout,
	}
	if len(cmdArgs) == 0 {
		cfg.Cmd = nil
	}
	netMode := o.network
	if netMode == "" {
		netMode = network.NetworkDefault
	}
	if restart.Name == "" {
		restart.Name = container.RestartPolicyDisabled
	}
	// docker sends explicit empty lists and its own defaults for the
	// resource knobs; mirror them so daemons see identical requests.
	swappiness := int64(-1)
	oomKillDisable := false
	if ulimits == nil {
		ulimits = []*container.Ulimit{}
	}
	hc := &container.HostConfig{
		Binds:           binds,
		ContainerIDFile: o.cidFile,
		LogConfig:       container.LogConfig{Type: o.logDriver, Config: kvMap(o.logOpts)},
		NetworkMode:     container.NetworkMode(netMode),
		PortBindings:    bindings,
		RestartPolicy:   restart,
		AutoRemove:      o.autoRemove,
		CapAdd:          normalizeCaps(o.capAdd),
		CapDrop:         normalizeCaps(o.capDrop),
		DNS:             orEmpty(dns),
		DNSOptions:      orEmpty(o.dnsOption),
		DNSSearch:       orEmpty(o.dnsSearch),
		ExtraHosts:      o.addHost,
		GroupAdd:        o.groupAdd,
		IpcMode:         container.IpcMode(o.ipcMode),
		PidMode:         container.PidMode(o.pidMode),
		UTSMode:         container.UTSMode(o.utsMode),
		OomScoreAdj:     o.oomScoreAdj,
		Privileged:      o.privileged,
		PublishAllPorts: o.publishAll,
		ReadonlyRootfs:  o.readOnly,
		SecurityOpt:     o.securityOpt,
		ShmSize:         o.shmSize.v,
		Sysctls:         kvMapOrNil(o.sysctls),
		Runtime:         o.runtime,
		Mounts:          mounts,
		Init:            initp,
		Resources: container.Resources{
			CPUShares:            o.cpuShares,
			Memory:               o.memory.v,
			NanoCPUs:             o.cpus.v,
			CpusetCpus:           o.cpusetCPUs,
			CpusetMems:           o.cpusetMems,
			CPUPeriod:            o.cpuPeriod,
			CPUQuota:             o.cpuQuota,
			MemoryReservation:    o.memoryRes.v,
			MemorySwap:           o.memorySwap.v,
			PidsLimit:            &pidsLimit,
			Ulimits:              ulimits,
			MemorySwappiness:     &swappiness,
			OomKillDisable:       &oomKillDisable,
			BlkioWeightDevice:    []*blkiodev.WeightDevice{},
			BlkioDeviceReadBps:   []*blkiodev.ThrottleDevice{},
			BlkioDeviceWriteBps:  []*blkiodev.ThrottleDevice{},
			BlkioDeviceReadIOps:  []*blkiodev.ThrottleDevice{},
			BlkioDeviceWriteIOps: []*blkiodev.ThrottleDevice{},
			Devices:              []container.DeviceMapping{},
		},
	}
	if len(tmpfs) > 0 {
		hc.Tmpfs = tmpfs
	}
	if o.cpus.v != 0 && (o.cpuPeriod != 0 || o.cpuQuota != 0) {
		return nil, fmt.Errorf("conflicting options: Nano CPUs and CPU Period/Quota cannot both be set")
	}

	// Endpoint settings are sent for the default network, and for a
	// named one only when it has per-network options (as docker does).
	nc := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{}}
	userDefined := netMode != network.NetworkDefault && !container.NetworkMode(netMode).IsContainer() && netMode != "host" && netMode != "none" && netMode != "bridge"
	switch {
	case netMode == network.NetworkDefault:
		nc.EndpointsConfig[netMode] = &network.EndpointSettings{}
	case userDefined && (len(o.aliases) > 0 || o.ipv4 != ""):
		ep := &network.EndpointSettings{Aliases: o.aliases}
		if o.ipv4 != "" {
			ip, err := netip.ParseAddr(o.ipv4)
			if err != nil {
				return nil, fmt.Errorf("invalid IPv4 address: %s", o.ipv4)
			}
			ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: ip}
		}
		nc.EndpointsConfig[netMode] = ep
	case !userDefined && len(o.aliases) > 0:
		return nil, fmt.Errorf("network-scoped aliases are only supported for user-defined networks")
	}
	return &containerConfig{Config: cfg, HostConfig: hc, Networking: nc}, nil
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func kvMapOrNil(items []string) map[string]string {
	if len(items) == 0 {
		return nil
	}
	return kvMap(items)
}

// parseUlimits parses name=soft[:hard].
func parseUlimits(vals []string) ([]*container.Ulimit, error) {
	var out []*container.Ulimit
	for _, v := range vals {
		name, limits, ok := strings.Cut(v, "=")
		if !ok {
			return nil, fmt.Errorf("invalid ulimit argument: %s", v)
		}
		softS, hardS, hasHard := strings.Cut(limits, ":")
		soft, err := strconv.ParseInt(softS, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid ulimit soft value %s: %w", softS, err)
		}
		hard := soft
		if hasHard {
			hard, err = strconv.ParseInt(hardS, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("invalid ulimit hard value %s: %w", hardS, err)
			}
		}
		if soft > hard {
			return nil, fmt.Errorf("ulimit soft limit must be less than or equal to hard limit: %d > %d", soft, hard)
		}
		out = append(out, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	return out, nil
}
