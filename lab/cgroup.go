package lab

import (
	"bufio"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// hierarchy is one mounted cgroup hierarchy.
type hierarchy struct {
	Mount       string
	V2          bool
	Controllers []string // v1 only: "pids", "freezer", "name=systemd", ...
}

// cgroupHierarchies lists the mounted cgroup hierarchies from mountinfo.
func cgroupHierarchies(ms []mountEntry) []hierarchy {
	var out []hierarchy
	for _, m := range ms {
		switch m.FSType {
		case "cgroup2":
			out = append(out, hierarchy{Mount: m.Point, V2: true})
		case "cgroup":
			h := hierarchy{Mount: m.Point}
			for _, o := range strings.Split(m.Opts, ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "noprefix", "xattr":
				default:
					if !strings.HasPrefix(o, "release_agent=") {
						h.Controllers = append(h.Controllers, o)
					}
				}
			}
			out = append(out, h)
		}
	}
	return out
}

// joinHierarchies picks where a node's daemon (and so everything it forks
// that stays put, like shims) is placed: the v1 pids and freezer
// hierarchies, or the v2 hierarchy on a pure cgroup v2 host.
func joinHierarchies(hs []hierarchy) (v1 []hierarchy, v2 *hierarchy) {
	for _, h := range hs {
		if h.V2 {
			continue
		}
		for _, c := range h.Controllers {
			if c == "pids" || c == "freezer" {
				v1 = append(v1, h)
				break
			}
		}
	}
	if len(v1) == 0 {
		for i := range hs {
			if hs[i].V2 {
				return nil, &hs[i]
			}
		}
	}
	return v1, nil
}

// cgroupDirs returns rel (a path like /shoal-lab/NAME) in every hierarchy.
func cgroupDirs(hs []hierarchy, rel string) []string {
	out := make([]string, 0, len(hs))
	for _, h := range hs {
		out = append(out, filepath.Join(h.Mount, rel))
	}
	return out
}

// cgroupTreePids lists the processes in dir and every cgroup below it.
func cgroupTreePids(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeCgroupTree removes dir and every cgroup below it, deepest first.
// A missing dir is fine; a busy one (processes left) is an error.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var firstErr error
	for _, d := range dirs {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, fs.ErrNotExist) && firstErr == nil {
			firstErr = &os.PathError{Op: "rmdir", Path: d, Err: err}
		}
	}
	return firstErr
}

// removeCgroupTreeWait is removeCgroupTree, retried while the kernel still
// counts killed processes in the cgroups: a zombie stays in its cgroup
// until its parent (often pid 1, for orphans) reaps it.
func removeCgroupTreeWait(ctx context.Context, dir string, timeout time.Duration) error {
	var err error
	waitFor(ctx, timeout, func() bool {
		err = removeCgroupTree(dir)
		return err == nil || !errors.Is(err, syscall.EBUSY)
	})
	return err
}

// removeIfEmpty removes dir if it is an empty cgroup (no children).
func removeIfEmpty(dir string) {
	_ = syscall.Rmdir(dir)
}

// parseProcCgroup reads /proc/PID/cgroup text and returns the cgroup path
// of each hierarchy line ("4:memory:/a/b" → "/a/b").
func parseProcCgroup(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 {
			out = append(out, parts[2])
		}
	}
	return out
}

// inCgroupTree reports whether any of paths is rel or below it.
func inCgroupTree(paths []string, rel string) bool {
	for _, p := range paths {
		// A runtime that took the cgroup parent as relative to its own
		// cgroup nests the tree below the daemon's: match it anywhere.
		if strings.HasSuffix(p, rel) || strings.Contains(p, rel+"/") {
			return true
		}
	}
	return false
}
