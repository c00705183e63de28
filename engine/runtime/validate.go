package runtime

import (
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/errdefs"
)

// MinMemory is the smallest memory limit docker accepts.
const MinMemory = 6 << 20

// ValidateConfig checks a merged container config the way docker does at
// create time.
func ValidateConfig(cfg *container.Config) error {
	if len(cfg.Entrypoint) == 0 && len(cfg.Cmd) == 0 {
		return errdefs.InvalidParameter("no command specified")
	}
	if cfg.WorkingDir != "" && !path.IsAbs(cfg.WorkingDir) {
		return errdefs.InvalidParameter("the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir)
	}
	if cfg.StopSignal != "" {
		if _, err := ParseSignal(cfg.StopSignal); err != nil {
			return err
		}
	}
	if cfg.StopTimeout != nil && *cfg.StopTimeout < -1 {
		return errdefs.InvalidParameter("invalid stop timeout: %d", *cfg.StopTimeout)
	}
	return nil
}

// ValidateHostConfig refuses the host settings docker refuses, with its
// messages. ncpu is the number of CPUs of the node.
func ValidateHostConfig(hc *container.HostConfig, ncpu int) error {
	if hc == nil {
		return nil
	}
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return errdefs.InvalidParameter("%s", err.Error())
	}
	if hc.AutoRemove && !hc.RestartPolicy.IsNone() {
		return errdefs.InvalidParameter("can't create 'AutoRemove' container with restart policy")
	}
	if hc.NetworkMode.IsContainer() || hc.IpcMode.IsContainer() || hc.PidMode.IsContainer() {
		return errdefs.InvalidParameter("sharing namespaces with another container (container:NAME) is not supported")
	}
	if !hc.IpcMode.Valid() {
		return errdefs.InvalidParameter("invalid IPC mode: %s", hc.IpcMode)
	}
	if !hc.PidMode.Valid() {
		return errdefs.InvalidParameter("invalid PID mode: %s", hc.PidMode)
	}
	if !hc.UTSMode.Valid() {
		return errdefs.InvalidParameter("invalid UTS mode: %s", hc.UTSMode)
	}
	if !hc.CgroupnsMode.Valid() {
		return errdefs.InvalidParameter("invalid cgroup namespace mode: %s", hc.CgroupnsMode)
	}
	if hc.UsernsMode != "" && !hc.UsernsMode.IsHost() {
		return errdefs.InvalidParameter("user namespaces are not supported")
	}
	if hc.ShmSize < 0 {
		return errdefs.InvalidParameter("SHM size can not be less than 0")
	}
	if hc.OomScoreAdj < -1000 || hc.OomScoreAdj > 1000 {
		return errdefs.InvalidParameter("Invalid value %d, range for oom score adj is [-1000, 1000]", hc.OomScoreAdj)
	}
	for _, u := range hc.Ulimits {
		if u == nil {
			continue
		}
		if _, ok := rlimitNames[strings.ToLower(u.Name)]; !ok {
			return errdefs.InvalidParameter("invalid ulimit type: %s", u.Name)
		}
		if u.Soft > u.Hard {
			return errdefs.InvalidParameter("ulimit soft limit must be less than or equal to hard limit: %d > %d", u.Soft, u.Hard)
		}
	}
	if _, err := Capabilities(hc.CapAdd, hc.CapDrop, false); err != nil {
		return err
	}
	for _, r := range hc.DeviceCgroupRules {
		if _, err := parseDeviceRule(r); err != nil {
			return err
		}
	}
	return validateResources(hc.Resources, ncpu)
}

var rlimitNames = map[string]bool{
	"as": true, "core": true, "cpu": true, "data": true, "fsize": true, "locks": true,
	"memlock": true, "msgqueue": true, "nice": true, "nofile": true, "nproc": true,
	"rss": true, "rtprio": true, "rttime": true, "sigpending": true, "stack": true,
}

func validateResources(r container.Resources, ncpu int) error {
	if r.Memory < 0 {
		return errdefs.InvalidParameter("invalid memory limit: %d", r.Memory)
	}
	if r.Memory > 0 && r.Memory < MinMemory {
		return errdefs.InvalidParameter("Minimum memory limit allowed is 6MB")
	}
	if r.MemorySwap > 0 && r.Memory == 0 {
		return errdefs.InvalidParameter("You should always set the Memory limit when using Memoryswap limit, see usage")
	}
	if r.MemorySwap > 0 && r.MemorySwap < r.Memory {
		return errdefs.InvalidParameter("Minimum memoryswap limit should be larger than memory limit, see usage")
	}
	if r.MemorySwap < -1 {
		return errdefs.InvalidParameter("invalid memory swap limit: %d", r.MemorySwap)
	}
	if r.MemoryReservation < 0 {
		return errdefs.InvalidParameter("invalid memory reservation: %d", r.MemoryReservation)
	}
	if r.MemoryReservation > 0 && r.MemoryReservation < MinMemory {
		return errdefs.InvalidParameter("Minimum memory reservation allowed is 6MB")
	}
	if r.Memory > 0 && r.MemoryReservation > r.Memory {
		return errdefs.InvalidParameter("Minimum memory limit can not be less than memory reservation limit, see usage")
	}
	if s := r.MemorySwappiness; s != nil && (*s < -1 || *s > 100) {
		return errdefs.InvalidParameter("Invalid value: %d, valid memory swappiness range is 0-100", *s)
	}
	if r.CPUShares < 0 {
		return errdefs.InvalidParameter("invalid CPU shares: %d", r.CPUShares)
	}
	if r.NanoCPUs != 0 {
		if r.CPUPeriod != 0 {
			return errdefs.InvalidParameter("Conflicting options: Nano CPUs and CPU Period cannot both be set")
		}
		if r.CPUQuota != 0 {
			return errdefs.InvalidParameter("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
		}
		if r.NanoCPUs < 1e7 || r.NanoCPUs > int64(ncpu)*1e9 {
			return errdefs.InvalidParameter("Range of CPUs is from 0.01 to %d.00, as there are only %d CPUs available", ncpu, ncpu)
		}
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return errdefs.InvalidParameter("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return errdefs.InvalidParameter("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	}
	if r.CpusetCpus != "" {
		cpus, err := parseCPUList(r.CpusetCpus)
		if err != nil {
			return errdefs.InvalidParameter("Invalid value %s for cpuset cpus", r.CpusetCpus)
		}
		for _, c := range cpus {
			if c >= ncpu {
				return errdefs.InvalidParameter("Requested CPUs are not available - requested %s, available: %s", r.CpusetCpus, cpuRange(ncpu))
			}
		}
	}
	if r.CpusetMems != "" {
		if _, err := parseCPUList(r.CpusetMems); err != nil {
			return errdefs.InvalidParameter("Invalid value %s for cpuset mems", r.CpusetMems)
		}
	}
	if r.BlkioWeight > 0 && (r.BlkioWeight < 10 || r.BlkioWeight > 1000) {
		return errdefs.InvalidParameter("Range of blkio weight is from 10 to 1000")
	}
	return nil
}

func cpuRange(n int) string {
	if n <= 1 {
		return "0"
	}
	return "0-" + strconv.Itoa(n-1)
}

// parseCPUList parses "0-2,4".
func parseCPUList(s string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, errdefs.InvalidParameter("invalid cpu list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, errdefs.InvalidParameter("invalid cpu list %q", s)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	return out, nil
}

var signalNames = map[string]syscall.Signal{
	"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "BUS": syscall.SIGBUS, "CHLD": syscall.SIGCHLD,
	"CONT": syscall.SIGCONT, "FPE": syscall.SIGFPE, "HUP": syscall.SIGHUP, "ILL": syscall.SIGILL,
	"INT": syscall.SIGINT, "IO": syscall.SIGIO, "IOT": syscall.SIGIOT, "KILL": syscall.SIGKILL,
	"PIPE": syscall.SIGPIPE, "POLL": syscall.SIGIO, "PROF": syscall.SIGPROF, "PWR": syscall.SIGPWR,
	"QUIT": syscall.SIGQUIT, "SEGV": syscall.SIGSEGV, "STKFLT": syscall.SIGSTKFLT, "STOP": syscall.SIGSTOP,
	"SYS": syscall.SIGSYS, "TERM": syscall.SIGTERM, "TRAP": syscall.SIGTRAP, "TSTP": syscall.SIGTSTP,
	"TTIN": syscall.SIGTTIN, "TTOU": syscall.SIGTTOU, "URG": syscall.SIGURG, "USR1": syscall.SIGUSR1,
	"USR2": syscall.SIGUSR2, "VTALRM": syscall.SIGVTALRM, "WINCH": syscall.SIGWINCH, "XCPU": syscall.SIGXCPU,
	"XFSZ": syscall.SIGXFSZ,
}

// ParseSignal parses "SIGTERM", "TERM", "term", "15" or "RTMIN+3".
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, errdefs.InvalidParameter("Invalid signal: %s", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if sig, ok := signalNames[name]; ok {
		return sig, nil
	}
	if rest, ok := strings.CutPrefix(name, "RTMIN"); ok {
		off := 0
		if rest != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(rest, "+"))
			if err != nil || !strings.HasPrefix(rest, "+") {
				return 0, errdefs.InvalidParameter("Invalid signal: %s", s)
			}
			off = n
		}
		if 34+off <= 64 {
			return syscall.Signal(34 + off), nil
		}
	}
	if rest, ok := strings.CutPrefix(name, "RTMAX"); ok {
		off := 0
		if rest != "" {
			n, err := strconv.Atoi(strings.TrimPrefix(rest, "-"))
			if err != nil || !strings.HasPrefix(rest, "-") {
				return 0, errdefs.InvalidParameter("Invalid signal: %s", s)
			}
			off = n
		}
		if 64-off >= 34 {
			return syscall.Signal(64 - off), nil
		}
	}
	return 0, errdefs.InvalidParameter("Invalid signal: %s", s)
}
