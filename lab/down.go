package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
)

// DownOptions tune Down.
type DownOptions struct {
	// KeepData keeps the nodes' data roots and the registry's storage, so
	// a later Up of the same name starts from them.
	KeepData bool
	// Progress, if set, receives a line per thing removed.
	Progress io.Writer
}

// Down removes the lab called name and everything it made: processes
// (daemons, shims, containers, the registry, commands run in nodes), mounts
// under its directories, network namespaces, links, the nftables table,
// cgroups, and its files. It works from the naming conventions and a /proc
// scan, so a missing or corrupt state file, a crashed `shoal` or dead
// daemons do not matter. It reports whether there was anything to remove;
// running it again is a no-op.
func Down(ctx context.Context, name string, opts DownOptions) (found bool, err error) {
	if err := requireRoot(); err != nil {
		return false, err
	}
	if err := ValidateName(name); err != nil {
		return false, err
	}
	n := names{lab: name}
	say := func(format string, args ...any) {
		found = true
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, format+"\n", args...)
		}
	}
	var errs []error
	ms, err := readMounts()
	if err != nil {
		return false, err
	}
	hs := cgroupHierarchies(ms)

	// Node namespaces: by name, plus any the state file names elsewhere.
	nsPaths := labNetns(n)
	if st, err := loadState(n.statePath()); err == nil {
		for _, ni := range st.Nodes {
			if ni.Netns != "" && !contains(nsPaths, ni.Netns) && isNodeNetnsPath(n, ni.Netns) {
				nsPaths = append(nsPaths, ni.Netns)
			}
		}
	}

	// 1. Processes, before their namespaces and mounts go.
	m := procMatcher{cgroupTrees: []string{n.cgroup()}, hierarchies: hs, netns: map[uint64]bool{}}
	for _, p := range nsPaths {
		if ino := nsInode(p); ino != 0 {
			m.netns[ino] = true
		}
	}
	if pids := m.find(); len(pids) > 0 {
		say("killing %d processes", len(pids))
		if err := killAll(ctx, m); err != nil {
			errs = append(errs, err)
		}
	}

	// 2. The partition table.
	if present, err := tableExists(n.nftTable()); err != nil {
		errs = append(errs, err)
	} else if present {
		say("removing nftables table bridge %s", n.nftTable())
		if err := removeTable(n.nftTable()); err != nil {
			errs = append(errs, err)
		}
	}

	// 3. Links: the veths' host ends, then the bridge.
	if links, err := labLinks(n); err != nil {
		errs = append(errs, err)
	} else {
		for _, l := range links {
			if l == n.bridge() {
				continue
			}
			say("removing link %s", l)
			if err := deleteLink(l); err != nil {
				errs = append(errs, err)
			}
		}
		if contains(links, n.bridge()) {
			say("removing bridge %s", n.bridge())
			if err := deleteLink(n.bridge()); err != nil {
				errs = append(errs, err)
			}
		}
	}

	// 4. Network namespaces.
	for _, p := range nsPaths {
		say("removing network namespace %s", filepath.Base(p))
		if err := removeNamespace(p); err != nil {
			errs = append(errs, err)
		}
	}

	// 5. Mounts under the lab's directories: UTS namespaces, container
	// network namespaces, overlay roots, shm and other bind mounts.
	dirs := []string{n.runDir(), n.dataDir()}
	if ms, err := readMounts(); err == nil {
		if pts := mountsUnder(ms, dirs); len(pts) > 0 {
			say("unmounting %d mounts", len(pts))
		}
	}
	mountErr := unmountUnder(dirs)
	if mountErr != nil {
		errs = append(errs, mountErr)
	}

	// 6. Cgroups, in every hierarchy.
	for _, dir := range cgroupDirs(hs, n.cgroup()) {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		say("removing cgroup %s", dir)
		if err := removeCgroupTreeWait(ctx, dir, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
		removeIfEmpty(filepath.Dir(dir))
	}

	// 7. Files. Never delete through a mount that did not go away.
	if mountErr == nil {
		rm := []string{n.runDir()}
		if !opts.KeepData {
			rm = append(rm, n.dataDir())
		}
		for _, d := range rm {
			if _, err := os.Lstat(d); err != nil {
				continue
			}
			say("removing %s", d)
			if err := os.RemoveAll(d); err != nil {
				errs = append(errs, err)
			}
		}
		// Only if no other lab uses them.
		_ = os.Remove(RunBase)
		_ = os.Remove(DataBase)
	}
	return found, errors.Join(errs...)
}

// leftovers describes what of lab n exists already, or "".
func leftovers(n names) string {
	var what []string
	if _, err := os.Stat(n.runDir()); err == nil {
		what = append(what, n.runDir())
	}
	for _, p := range labNetns(n) {
		what = append(what, "netns "+filepath.Base(p))
	}
	if links, err := labLinks(n); err == nil {
		for _, l := range links {
			what = append(what, "link "+l)
		}
	}
	if ms, err := readMounts(); err == nil {
		for _, dir := range cgroupDirs(cgroupHierarchies(ms), n.cgroup()) {
			if _, err := os.Stat(dir); err == nil {
				what = append(what, "cgroup "+dir)
				break
			}
		}
	}
	if ok, _ := tableExists(n.nftTable()); ok {
		what = append(what, "nftables table "+n.nftTable())
	}
	if len(what) > 3 {
		what = append(what[:3], "...")
	}
	return strings.Join(what, ", ")
}

func tableExists(name string) (bool, error) {
	c, err := nftables.New()
	if err != nil {
		return false, err
	}
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return false, err
	}
	for _, t := range ts {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// isNodeNetnsPath keeps a corrupt or foreign state file from making Down
// remove a namespace that is not this lab's.
func isNodeNetnsPath(n names, p string) bool {
	return filepath.Dir(p) == NetnsDir && n.isNodeNetns(filepath.Base(p))
}

// List returns the names of the labs on this machine: those with a state
// directory, and those whose only trace is a node network namespace (left
// by a crash), sorted.
func List() ([]string, error) {
	set := map[string]bool{}
	ents, err := os.ReadDir(RunBase)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		if e.IsDir() && ValidateName(e.Name()) == nil {
			set[e.Name()] = true
		}
	}
	if ents, err := os.ReadDir(NetnsDir); err == nil {
		for _, e := range ents {
			lab, node, ok := strings.Cut(e.Name(), "-")
			if ok && ValidateName(lab) == nil && nodeIndex(node) > 0 {
				set[lab] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
