package daemon

import (
	"context"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/version"
)

// Version answers GET /version.
func (d *Daemon) Version(ctx context.Context) system.VersionResponse {
	kv := kernelVersion()
	return system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Shoal Engine"},
		Version:       version.Version,
		APIVersion:    version.APIVersion,
		MinAPIVersion: version.MinAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GitCommit:     version.GitCommit,
		GoVersion:     runtime.Version(),
		KernelVersion: kv,
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: version.Version,
			Details: map[string]string{
				"ApiVersion":    version.APIVersion,
				"MinAPIVersion": version.MinAPIVersion,
				"GitCommit":     version.GitCommit,
				"GoVersion":     runtime.Version(),
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"KernelVersion": kv,
			},
		}},
	}
}

// Info answers GET /info.
func (d *Daemon) Info(ctx context.Context) (*system.Info, error) {
	total, running, paused, stopped := d.containers.Counts()
	hostname, _ := os.Hostname()
	info := &system.Info{
		ID:                 hostname,
		Containers:         total,
		ContainersRunning:  running,
		ContainersPaused:   paused,
		ContainersStopped:  stopped,
		Images:             d.images.Count(),
		Driver:             "overlay2",
		DriverStatus:       [][2]string{{"Backing Filesystem", "extfs"}},
		MemoryLimit:        true,
		CPUCfsPeriod:       true,
		CPUCfsQuota:        true,
		CPUShares:          true,
		PidsLimit:          true,
		IPv4Forwarding:     true,
		Debug:              d.cfg.Debug,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      "1",
		KernelVersion:      kernelVersion(),
		OperatingSystem:    operatingSystem(),
		OSType:             runtime.GOOS,
		Architecture:       unameMachine(),
		IndexServerAddress: "https://index.docker.io/v1/",
		NCPU:               runtime.NumCPU(),
		MemTotal:           memTotal(),
		DockerRootDir:      d.cfg.DataRoot,
		Name:               hostname,
		Labels:             d.cfg.Labels,
		ServerVersion:      version.Version,
		DefaultRuntime:     "runc",
		Runtimes:           map[string]system.RuntimeWithStatus{"runc": {Runtime: system.Runtime{Path: "runc"}}},
		LiveRestoreEnabled: true,
		Swarm:              d.swarmInfo(ctx),
		SecurityOptions:    []string{"name=seccomp,profile=unconfined"},
		Plugins: system.PluginsInfo{
			Volume:  []string{"local"},
			Network: []string{"bridge", "host", "null", "overlay"},
			Log:     []string{"json-file"},
		},
	}
	return info, nil
}

// SwarmState is the Swarm header of /_ping.
func (d *Daemon) SwarmState() string {
	if d.cluster == nil {
		return "inactive"
	}
	return d.cluster.State()
}

func (d *Daemon) swarmInfo(ctx context.Context) swarm.Info {
	if d.cluster == nil {
		return swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
	}
	return d.cluster.Info(ctx)
}

func kernelVersion() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func unameMachine() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return runtime.GOARCH
	}
	return unix.ByteSliceToString(u.Machine[:])
}

func operatingSystem() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}

func memTotal() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
