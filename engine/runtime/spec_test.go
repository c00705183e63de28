package runtime

import (
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/errdefs"
)

func specFor(t *testing.T, cfg *container.Config, hc *container.HostConfig, mounts ...specs.Mount) *specs.Spec {
	t.Helper()
	if cfg.Cmd == nil && cfg.Entrypoint == nil {
		cfg.Cmd = []string{"sh"}
	}
	s, err := Spec(SpecInput{ID: "c1", Config: cfg, HostConfig: hc, Rootfs: "/rootfs", CgroupsPath: "/shoal/c1",
		Mounts: mounts, InitPath: "/usr/bin/shoal-shim", User: ResolvedUser{Home: "/root"},
		HostDevices: func() ([]specs.LinuxDevice, error) {
			return []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func findMount(s *specs.Spec, dest string) *specs.Mount {
	var found *specs.Mount
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			if found != nil {
				return &specs.Mount{Type: "DUPLICATE"}
			}
			found = &s.Mounts[i]
		}
	}
	return found
}

func hasNS(s *specs.Spec, typ specs.LinuxNamespaceType) (specs.LinuxNamespace, bool) {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == typ {
			return ns, true
		}
	}
	return specs.LinuxNamespace{}, false
}

func TestContainerEnv(t *testing.T) {
	tests := []struct {
		name string
		cfg  container.Config
		home string
		want []string
	}{
		{"defaults", container.Config{Hostname: "h1"}, "/root",
			[]string{"PATH=" + DefaultPathEnv, "HOSTNAME=h1", "HOME=/root"}},
		{"tty adds TERM", container.Config{Hostname: "h1", Tty: true}, "",
			[]string{"PATH=" + DefaultPathEnv, "HOSTNAME=h1", "TERM=xterm", "HOME=/"}},
		{"user env overrides and appends", container.Config{Hostname: "h1", Env: []string{"PATH=/bin", "A=1", "HOME=/h"}}, "/root",
			[]string{"PATH=/bin", "HOSTNAME=h1", "A=1", "HOME=/h"}},
		{"key without value removes", container.Config{Hostname: "h1", Env: []string{"HOSTNAME"}}, "/root",
			[]string{"PATH=" + DefaultPathEnv, "HOME=/root"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ContainerEnv(&tt.cfg, tt.home); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q want %q", got, tt.want)
			}
		})
	}
}

func TestSpecProcess(t *testing.T) {
	yes := true
	tests := []struct {
		name     string
		cfg      container.Config
		hc       container.HostConfig
		wantArgs []string
		wantCwd  string
	}{
		{"entrypoint then cmd", container.Config{Entrypoint: []string{"/bin/ep", "-x"}, Cmd: []string{"a", "b"}}, container.HostConfig{},
			[]string{"/bin/ep", "-x", "a", "b"}, "/"},
		{"cmd only, workdir", container.Config{Cmd: []string{"echo", "hi"}, WorkingDir: "/srv"}, container.HostConfig{},
			[]string{"echo", "hi"}, "/srv"},
		{"init wraps the command", container.Config{Cmd: []string{"sleep", "1"}}, container.HostConfig{Init: &yes},
			[]string{"/sbin/shoal-init", "--", "sleep", "1"}, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := specFor(t, &tt.cfg, &tt.hc)
			if !reflect.DeepEqual(s.Process.Args, tt.wantArgs) || s.Process.Cwd != tt.wantCwd {
				t.Fatalf("args %q cwd %q", s.Process.Args, s.Process.Cwd)
			}
			if tt.hc.Init != nil {
				m := findMount(s, "/sbin/shoal-init")
				if m == nil || m.Source != "/usr/bin/shoal-shim" || !reflect.DeepEqual(m.Options, []string{"bind", "ro", "rprivate"}) {
					t.Fatalf("init mount %+v", m)
				}
			}
		})
	}
	if _, err := Spec(SpecInput{Config: &container.Config{}, HostConfig: &container.HostConfig{}}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("no command: %v", err)
	}
}

func TestSpecDefaultsAndNamespaces(t *testing.T) {
	s := specFor(t, &container.Config{Hostname: "abc", Domainname: "example.org", Tty: true}, &container.HostConfig{ConsoleSize: [2]uint{24, 80}, ReadonlyRootfs: true},
		specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}})
	if s.Hostname != "abc" || s.Domainname != "example.org" || !s.Root.Readonly || s.Root.Path != "/rootfs" {
		t.Fatalf("spec %+v %+v", s.Root, s.Hostname)
	}
	if !s.Process.Terminal || s.Process.ConsoleSize == nil || s.Process.ConsoleSize.Height != 24 || s.Process.ConsoleSize.Width != 80 {
		t.Fatalf("console %+v", s.Process.ConsoleSize)
	}
	if !reflect.DeepEqual(s.Process.Capabilities.Bounding, DefaultCapabilities) {
		t.Fatalf("caps %v", s.Process.Capabilities.Bounding)
	}
	if !reflect.DeepEqual(s.Linux.MaskedPaths, DefaultMaskedPaths) || !reflect.DeepEqual(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
		t.Fatal("masked/readonly paths missing")
	}
	for _, d := range []string{"/proc", "/dev", "/dev/pts", "/sys", "/dev/mqueue", "/sys/fs/cgroup"} {
		if m := findMount(s, d); m == nil || m.Type == "DUPLICATE" {
			t.Fatalf("default mount %s: %+v", d, m)
		}
	}
	if m := findMount(s, "/dev/shm"); m == nil || m.Type != "tmpfs" || m.Options[0] != "size=1m" {
		t.Fatalf("user /dev/shm should replace the default: %+v", m)
	}
	if ns, ok := hasNS(s, specs.NetworkNamespace); !ok || ns.Path != "" {
		t.Fatalf("want a new network namespace: %+v", s.Linux.Namespaces)
	}
	for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
		if _, ok := hasNS(s, typ); !ok {
			t.Fatalf("missing %s namespace", typ)
		}
	}
	if len(s.Linux.Resources.Devices) != 1 || s.Linux.Resources.Devices[0].Allow {
		t.Fatalf("devices cgroup should start from deny-all: %+v", s.Linux.Resources.Devices)
	}
	if s.Linux.CgroupsPath != "/shoal/c1" {
		t.Fatal(s.Linux.CgroupsPath)
	}
}

func TestSpecNetworkModes(t *testing.T) {
	host := specFor(t, &container.Config{}, &container.HostConfig{NetworkMode: "host"})
	if _, ok := hasNS(host, specs.NetworkNamespace); ok {
		t.Fatal("host network must not get a network namespace")
	}
	if m := findMount(host, "/sys"); m == nil || m.Type != "bind" || m.Source != "/sys" {
		t.Fatalf("host network binds /sys: %+v", m)
	}
	s, err := Spec(SpecInput{Config: &container.Config{Cmd: []string{"x"}}, HostConfig: &container.HostConfig{NetworkMode: "bridge"}, NetNSPath: "/run/netns/c1"})
	if err != nil {
		t.Fatal(err)
	}
	if ns, _ := hasNS(s, specs.NetworkNamespace); ns.Path != "/run/netns/c1" {
		t.Fatalf("bridge joins the given netns: %+v", ns)
	}
}

func TestSpecPrivileged(t *testing.T) {
	s := specFor(t, &container.Config{}, &container.HostConfig{Privileged: true, CapDrop: []string{"ALL"}})
	if len(s.Process.Capabilities.Bounding) != len(AllCapabilities) {
		t.Fatalf("privileged caps %d", len(s.Process.Capabilities.Bounding))
	}
	if s.Linux.MaskedPaths != nil || s.Linux.ReadonlyPaths != nil {
		t.Fatal("privileged has no masked paths")
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow {
		t.Fatalf("privileged allows all devices: %+v", d)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/fuse" {
		t.Fatalf("host devices %+v", s.Linux.Devices)
	}
	for _, o := range findMount(s, "/sys").Options {
		if o == "ro" {
			t.Fatal("privileged /sys is writable")
		}
	}
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name       string
		add, drop  []string
		want       []string
		wantErr    bool
		checkCount int
	}{
		{name: "defaults", want: DefaultCapabilities},
		{name: "add without prefix, drop with", add: []string{"net_admin"}, drop: []string{"CAP_KILL", "chown"},
			want: []string{"CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_AUDIT_WRITE", "CAP_NET_ADMIN"}},
		{name: "drop all keeps adds", add: []string{"NET_BIND_SERVICE"}, drop: []string{"all"}, want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "add all minus drops", add: []string{"ALL"}, drop: []string{"SYS_ADMIN"}, checkCount: len(AllCapabilities) - 1},
		{name: "unknown", add: []string{"FLY"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Capabilities(tt.add, tt.drop, false)
			if tt.wantErr {
				if !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "unknown capability") {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.checkCount > 0 {
				if len(got) != tt.checkCount || contains(got, "CAP_SYS_ADMIN") {
					t.Fatalf("got %d caps: %v", len(got), got)
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestSpecResources(t *testing.T) {
	pids := int64(100)
	swappiness := int64(10)
	tests := []struct {
		name  string
		res   container.Resources
		check func(t *testing.T, r *specs.LinuxResources)
	}{
		{"memory with default swap", container.Resources{Memory: 64 << 20}, func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 {
				t.Fatalf("memory %d swap %d", *r.Memory.Limit, *r.Memory.Swap)
			}
		}},
		{"memory and swap and swappiness", container.Resources{Memory: 64 << 20, MemorySwap: 100 << 20, MemorySwappiness: &swappiness}, func(t *testing.T, r *specs.LinuxResources) {
			if *r.Memory.Swap != 100<<20 || *r.Memory.Swappiness != 10 {
				t.Fatalf("swap %d", *r.Memory.Swap)
			}
		}},
		{"nano cpus", container.Resources{NanoCPUs: 1500000000}, func(t *testing.T, r *specs.LinuxResources) {
			if *r.CPU.Period != 100000 || *r.CPU.Quota != 150000 {
				t.Fatalf("period %d quota %d", *r.CPU.Period, *r.CPU.Quota)
			}
		}},
		{"shares cpuset pids blkio", container.Resources{CPUShares: 512, CpusetCpus: "0-1", PidsLimit: &pids, BlkioWeight: 300}, func(t *testing.T, r *specs.LinuxResources) {
			if *r.CPU.Shares != 512 || r.CPU.Cpus != "0-1" || *r.Pids.Limit != 100 || *r.BlockIO.Weight != 300 {
				t.Fatalf("%+v %+v %+v", r.CPU, r.Pids, r.BlockIO)
			}
		}},
		{"nothing set", container.Resources{}, func(t *testing.T, r *specs.LinuxResources) {
			if r.Memory != nil || r.CPU != nil || r.Pids != nil {
				t.Fatalf("unexpected limits %+v", r)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := specFor(t, &container.Config{}, &container.HostConfig{Resources: tt.res})
			tt.check(t, s.Linux.Resources)
		})
	}
}

func TestValidateHostConfig(t *testing.T) {
	neg := int64(-5)
	tests := []struct {
		name string
		hc   container.HostConfig
		msg  string // "" = valid
	}{
		{"valid", container.HostConfig{Resources: container.Resources{Memory: 6 << 20, NanoCPUs: 1e9}}, ""},
		{"memory too small", container.HostConfig{Resources: container.Resources{Memory: 4 << 20}}, "Minimum memory limit allowed is 6MB"},
		{"swap without memory", container.HostConfig{Resources: container.Resources{MemorySwap: 64 << 20}}, "You should always set the Memory limit when using Memoryswap limit, see usage"},
		{"swap below memory", container.HostConfig{Resources: container.Resources{Memory: 64 << 20, MemorySwap: 32 << 20}}, "Minimum memoryswap limit should be larger than memory limit, see usage"},
		{"swappiness", container.HostConfig{Resources: container.Resources{MemorySwappiness: &neg}}, "Invalid value: -5, valid memory swappiness range is 0-100"},
		{"too many cpus", container.HostConfig{Resources: container.Resources{NanoCPUs: 3e9}}, "Range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"},
		{"nano and period", container.HostConfig{Resources: container.Resources{NanoCPUs: 1e9, CPUPeriod: 100000}}, "Conflicting options: Nano CPUs and CPU Period cannot both be set"},
		{"cpuset out of range", container.HostConfig{Resources: container.Resources{CpusetCpus: "0-3"}}, "Requested CPUs are not available - requested 0-3, available: 0-1"},
		{"cpuset garbage", container.HostConfig{Resources: container.Resources{CpusetCpus: "a"}}, "Invalid value a for cpuset cpus"},
		{"restart policy", container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"},
		{"rm with restart", container.HostConfig{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "always"}}, "can't create 'AutoRemove' container with restart policy"},
		{"oom score", container.HostConfig{OomScoreAdj: 2000}, "Invalid value 2000, range for oom score adj is [-1000, 1000]"},
		{"shm", container.HostConfig{ShmSize: -1}, "SHM size can not be less than 0"},
		{"unknown cap", container.HostConfig{CapAdd: []string{"NOPE"}}, `unknown capability: "CAP_NOPE"`},
		{"container netns", container.HostConfig{NetworkMode: "container:x"}, "sharing namespaces with another container (container:NAME) is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateHostConfig(&tt.hc, 2)
			if tt.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errdefs.IsInvalidParameter(err) || err.Error() != tt.msg {
				t.Fatalf("err = %v (%v), want %q", err, errdefs.KindOf(err), tt.msg)
			}
		})
	}
}

func TestValidateConfig(t *testing.T) {
	if err := ValidateConfig(&container.Config{}); err == nil || err.Error() != "no command specified" {
		t.Fatalf("no command: %v", err)
	}
	if err := ValidateConfig(&container.Config{Cmd: []string{"x"}, WorkingDir: "rel"}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("relative workdir: %v", err)
	}
	if err := ValidateConfig(&container.Config{Cmd: []string{"x"}, StopSignal: "SIGNOPE"}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad stop signal: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"SIGTERM": 15, "term": 15, "9": 9, "KILL": 9, "SIGRTMIN+3": 37, "RTMAX": 64, "USR1": 10} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "65", "SIGFOO", "RTMIN+40"} {
		if _, err := ParseSignal(in); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%q: want invalid, got %v", in, err)
		}
	}
}
