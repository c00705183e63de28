package lab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mountinfo.
type mountEntry struct {
	Point  string
	FSType string
	Source string
	Opts   string // super options, e.g. "rw,pids" for a cgroup v1 hierarchy
}

// parseMountinfo reads mountinfo(5) text. Mount points have spaces and
// other odd bytes escaped as \ooo octal.
func parseMountinfo(r io.Reader) ([]mountEntry, error) {
	var out []mountEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		if len(f) < 5 {
			continue
		}
		e := mountEntry{Point: unescapeOctal(f[4])}
		if g := strings.Fields(post); len(g) >= 2 {
			e.FSType, e.Source = g[0], unescapeOctal(g[1])
		}
		if g := strings.Fields(post); len(g) >= 3 {
			e.Opts = g[2]
		}
		out = append(out, e)
	}
	return out, sc.Err()
}

func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMountinfo(f)
}

// underAny reports whether path is one of dirs or inside one of them.
func underAny(path string, dirs []string) bool {
	for _, d := range dirs {
		if path == d || strings.HasPrefix(path, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

// mountsUnder lists mount points at or below any of dirs, deepest first.
func mountsUnder(ms []mountEntry, dirs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		if underAny(m.Point, dirs) && !seen[m.Point] {
			seen[m.Point] = true
			out = append(out, m.Point)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		di, dj := strings.Count(out[i], "/"), strings.Count(out[j], "/")
		if di != dj {
			return di > dj
		}
		return out[i] > out[j]
	})
	return out
}

// unmountUnder detaches every mount at or below dirs (overlay roots, netns
// and shm bind mounts the daemons left, stacked mounts too) until none is
// left. It fails rather than leave a mount behind, because callers then
// remove the directories and must never delete through a live mount.
func unmountUnder(dirs []string) error {
	for round := 0; ; round++ {
		ms, err := readMounts()
		if err != nil {
			return err
		}
		points := mountsUnder(ms, dirs)
		if len(points) == 0 {
			return nil
		}
		if round >= 20 {
			return fmt.Errorf("mounts still present after unmounting: %s", strings.Join(points, ", "))
		}
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
		}
	}
}

// mountRunTmpfs gives the lab's run directory (each node's /run: exec
// roots with runc and shim state, sockets, logs) a tmpfs of its own when
// the host's is on disk, as /run is on a systemd host. Runtime state is
// rewritten constantly (runc alone replaces state.json several times per
// container start); on a disk without a journal every new inode then
// skips the recently deleted ones, which doubled container start times
// under churn here. The mount goes with `lab down` (unmountUnder).
func mountRunTmpfs(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	if st.Type == unix.TMPFS_MAGIC {
		return nil
	}
	if err := unix.Mount("shoal-lab", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting a tmpfs at %s: %w", dir, err)
	}
	return nil
}
