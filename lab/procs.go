package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procInfo is what the lab reads about a process to decide whether it
// belongs to a lab: its cgroups and its network namespace.
type procInfo struct {
	Pid     int
	Cgroups []string
	NetNS   uint64 // inode of its network namespace
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself
	// hold spaces or parentheses: find the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	st := b[i+2]
	return st != 'Z' && st != 'X'
}

// scanProcs reads every process's cgroups and network namespace.
func scanProcs() []procInfo {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	out := make([]procInfo, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		p := procInfo{Pid: pid}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cgroup"); err == nil {
			p.Cgroups = parseProcCgroup(bytes.NewReader(b))
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil {
			p.NetNS = parseNSLink(l)
		}
		out = append(out, p)
	}
	return out
}

// parseNSLink reads the inode out of a "net:[4026531840]" link.
func parseNSLink(l string) uint64 {
	i, j := strings.IndexByte(l, '['), strings.IndexByte(l, ']')
	if i < 0 || j < i {
		return 0
	}
	v, _ := strconv.ParseUint(l[i+1:j], 10, 64)
	return v
}

// nsInode returns the inode of a namespace file (a bind mount of one, as in
// /run/netns), or 0 if it is not there or not a namespace (a stale plain
// file's inode could equal a namespace's by chance).
func nsInode(path string) uint64 {
	var fs unix.Statfs_t
	if err := unix.Statfs(path, &fs); err != nil || fs.Type != unix.NSFS_MAGIC {
		return 0
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// procMatcher says which processes belong to some part of a lab.
type procMatcher struct {
	cgroupTrees []string        // cgroup paths (relative to a hierarchy root)
	netns       map[uint64]bool // network namespace inodes
	hierarchies []hierarchy
}

// find lists matching live processes from the cgroup trees' task lists and
// a /proc scan (which also finds processes that left the trees but stayed
// in a lab netns, like `lab exec` commands).
func (m procMatcher) find() []int {
	set := map[int]bool{}
	for _, rel := range m.cgroupTrees {
		for _, dir := range cgroupDirs(m.hierarchies, rel) {
			for _, pid := range cgroupTreePids(dir) {
				set[pid] = true
			}
		}
	}
	for _, p := range scanProcs() {
		if m.netns[p.NetNS] && p.NetNS != 0 {
			set[p.Pid] = true
			continue
		}
		for _, rel := range m.cgroupTrees {
			if inCgroupTree(p.Cgroups, rel) {
				set[p.Pid] = true
				break
			}
		}
	}
	delete(set, os.Getpid())
	out := make([]int, 0, len(set))
	for pid := range set {
		if alive(pid) {
			out = append(out, pid)
		}
	}
	sort.Ints(out)
	return out
}

// killAll sends SIGKILL to every matching process until none is left (a
// process may fork between the scan and the signal: the next round gets
// the child).
func killAll(ctx context.Context, m procMatcher) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wait := time.Millisecond
	for {
		pids := m.find()
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes still alive after SIGKILL: %v", pids)
		case <-time.After(wait):
		}
		if wait < 50*time.Millisecond {
			wait *= 2
		}
	}
}

// signalAll sends sig once to every matching process, then waits up to
// grace for them to exit. It reports whether all exited.
func signalAll(ctx context.Context, m procMatcher, sig syscall.Signal, grace time.Duration) bool {
	for _, pid := range m.find() {
		_ = unix.Kill(pid, sig)
	}
	return waitFor(ctx, grace, func() bool { return len(m.find()) == 0 })
}

// waitFor polls cond with short, growing intervals until it holds or the
// timeout passes; it reports whether cond held.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return cond()
		case <-time.After(wait):
		}
		if wait < 25*time.Millisecond {
			wait *= 2
		}
	}
}
