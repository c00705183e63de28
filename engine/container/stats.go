package container

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/errdefs"
)

// Stats samples a running container's cgroup counters (memory, CPU, pids).
// A stopped container gives an empty sample, as docker does.
func (s *Service) Stats(ctx context.Context, ref string) (*container.StatsResponse, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	running := c.rec.running()
	cg := c.rec.Cgroup
	resp := &container.StatsResponse{ID: c.rec.ID, Name: "/" + c.rec.Name, OSType: "linux", Read: time.Now().UTC()}
	c.mu.Unlock()
	if !running {
		return resp, nil
	}
	read := func(ctrl, file string) uint64 {
		b, err := os.ReadFile("/sys/fs/cgroup/" + ctrl + cg + "/" + file)
		if err != nil {
			return 0
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
	m := &resp.MemoryStats
	m.Usage = read("memory", "memory.usage_in_bytes")
	m.MaxUsage = read("memory", "memory.max_usage_in_bytes")
	m.Failcnt = read("memory", "memory.failcnt")
	m.Limit = read("memory", "memory.limit_in_bytes")
	if total := memTotal(); total > 0 && (m.Limit == 0 || m.Limit > total) {
		m.Limit = total
	}
	m.Stats = map[string]uint64{}
	if f, err := os.Open("/sys/fs/cgroup/memory" + cg + "/memory.stat"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), " ")
			if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
				m.Stats[k] = n
			}
		}
		f.Close()
	}
	cpu := &resp.CPUStats
	cpu.CPUUsage.TotalUsage = read("cpuacct", "cpuacct.usage")
	cpu.CPUUsage.UsageInUsermode = read("cpuacct", "cpuacct.usage_user")
	cpu.CPUUsage.UsageInKernelmode = read("cpuacct", "cpuacct.usage_sys")
	cpu.SystemUsage = systemCPUNanos()
	cpu.OnlineCPUs = uint32(s.ncpu)
	resp.PidsStats.Current = read("pids", "pids.current")
	if b, err := os.ReadFile("/sys/fs/cgroup/pids" + cg + "/pids.max"); err == nil {
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			resp.PidsStats.Limit = v
		}
	}
	resp.NumProcs = uint32(resp.PidsStats.Current)
	return resp, nil
}

// systemCPUNanos is the host's total CPU time (the first line of /proc/stat)
// in nanoseconds, docker's system_cpu_usage.
func systemCPUNanos() uint64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var ticks uint64
	for _, v := range f[1:8] {
		n, _ := strconv.ParseUint(v, 10, 64)
		ticks += n
	}
	const clockTicks = 100 // USER_HZ on Linux
	return ticks * (1e9 / clockTicks)
}

func memTotal() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n * 1024
			}
		}
	}
	return 0
}

// Top lists the container's processes with the host's ps (args default
// "-ef"), keeping the rows whose PID belongs to the container.
func (s *Service) Top(ctx context.Context, ref, psArgs string) (*container.TopResponse, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	rt, err := s.runtime()
	if err != nil {
		return nil, err
	}
	if err := checkRunning(c); err != nil {
		return nil, err
	}
	pids, err := rt.Pids(ctx, c.rec.ID)
	if err != nil {
		return nil, errdefs.System("listing container processes: %v", err)
	}
	if psArgs == "" {
		psArgs = "-ef"
	}
	out, err := exec.CommandContext(ctx, "ps", strings.Fields(psArgs)...).Output()
	if err != nil {
		return nil, errdefs.System("running ps: %v", err)
	}
	return parsePS(string(out), pids)
}

func parsePS(out string, pids []int) (*container.TopResponse, error) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 {
		return nil, errdefs.System("ps printed nothing")
	}
	titles := strings.Fields(lines[0])
	pidCol := -1
	for i, t := range titles {
		if t == "PID" {
			pidCol = i
		}
	}
	if pidCol < 0 {
		return nil, errdefs.InvalidParameter("Couldn't find PID field in ps output")
	}
	want := map[int]bool{}
	for _, p := range pids {
		want[p] = true
	}
	resp := &container.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= pidCol {
			continue
		}
		pid, err := strconv.Atoi(f[pidCol])
		if err != nil || !want[pid] {
			continue
		}
		// The last column (the command) may contain spaces.
		row := append(f[:len(titles)-1:len(titles)-1], strings.Join(f[len(titles)-1:], " "))
		resp.Processes = append(resp.Processes, row)
	}
	return resp, nil
}
