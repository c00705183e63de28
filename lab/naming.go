package lab

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/shoal/shoal/errdefs"
)

// Every kernel object and file a lab makes is named from the lab name by the
// functions below, so `Down` can find them again without a state file.
const (
	// DefaultName is the lab name used when none is given.
	DefaultName = "shoal"
	// RunBase holds each lab's volatile files: state, sockets, logs, exec roots.
	RunBase = "/run/shoal-lab"
	// DataBase holds each lab's persistent files: daemon data roots, registry.
	DataBase = "/var/lib/shoal-lab"
	// NetnsDir is where named network namespaces live (as `ip netns` expects).
	NetnsDir = "/run/netns"
	// cgroupBase is the cgroup subtree (in every hierarchy) of all labs.
	cgroupBase = "shoal-lab"
	// RegistryPort is where the lab registry listens on the bridge address.
	RegistryPort = 5000
	// maxNodes keeps link names within IFNAMSIZ and addresses within a /24.
	maxNodes = 200
	// nodeIPOffset: node i gets the subnet's address number offset+i.
	nodeIPOffset = 10
)

// Lab names are short so that "NAME-lab0" and "NAME-v200" stay within the
// kernel's 15-byte link name limit.
var labNameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,7}$`)

// ValidateName checks a lab name.
func ValidateName(name string) error {
	if !labNameRE.MatchString(name) {
		return errdefs.InvalidParameter("invalid lab name %q: want 1-8 lowercase letters or digits, starting with a letter", name)
	}
	return nil
}

// NodeName is the name of the i-th node (1-based).
func NodeName(i int) string { return "node" + strconv.Itoa(i) }

// nodeIndex parses "nodeN" and returns N, or 0.
func nodeIndex(name string) int {
	s, ok := strings.CutPrefix(name, "node")
	if !ok || s == "" || s[0] == '0' {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0
	}
	return n
}

// names derives every name and path of one lab.
type names struct{ lab string }

func (n names) bridge() string           { return n.lab + "-lab0" }
func (n names) veth(i int) string        { return fmt.Sprintf("%s-v%d", n.lab, i) }
func (n names) netns(node string) string { return n.lab + "-" + node }
func (n names) netnsPath(node string) string {
	return filepath.Join(NetnsDir, n.netns(node))
}
func (n names) nftTable() string              { return "shoal-lab-" + n.lab }
func (n names) runDir() string                { return filepath.Join(RunBase, n.lab) }
func (n names) dataDir() string               { return filepath.Join(DataBase, n.lab) }
func (n names) statePath() string             { return filepath.Join(n.runDir(), "lab.json") }
func (n names) lockPath() string              { return filepath.Join(n.runDir(), "lock") }
func (n names) nodeRunDir(node string) string { return filepath.Join(n.runDir(), node) }
func (n names) execRoot(node string) string   { return filepath.Join(n.nodeRunDir(node), "exec") }
func (n names) socket(node string) string     { return filepath.Join(n.execRoot(node), "shoald.sock") }
func (n names) pidfile(node string) string    { return filepath.Join(n.execRoot(node), "shoald.pid") }
func (n names) logPath(node string) string    { return filepath.Join(n.nodeRunDir(node), "shoald.log") }
func (n names) utsPath(node string) string    { return filepath.Join(n.nodeRunDir(node), "uts") }
func (n names) dataRoot(node string) string   { return filepath.Join(n.dataDir(), node) }
func (n names) registryRoot() string          { return filepath.Join(n.dataDir(), "registry") }
func (n names) registryLog() string           { return filepath.Join(n.runDir(), "registry.log") }

// cgroup paths, relative to the root of a hierarchy. A node's containers go
// under its cgroup (the daemon's --cgroup-parent), the daemon itself (and so
// its shims) into the "shoald" child: one subtree is the whole host.
func (n names) cgroup() string                  { return "/" + cgroupBase + "/" + n.lab }
func (n names) nodeCgroup(node string) string   { return n.cgroup() + "/" + node }
func (n names) daemonCgroup(node string) string { return n.nodeCgroup(node) + "/shoald" }
func (n names) registryCgroup() string          { return n.cgroup() + "/registry" }

// isVeth reports whether link is one of this lab's node veths ("NAME-vN").
func (n names) isVeth(link string) bool {
	s, ok := strings.CutPrefix(link, n.lab+"-v")
	if !ok || s == "" {
		return false
	}
	_, err := strconv.Atoi(s)
	return err == nil
}

// isNodeNetns reports whether a /run/netns entry is one of this lab's nodes.
func (n names) isNodeNetns(entry string) bool {
	s, ok := strings.CutPrefix(entry, n.lab+"-")
	return ok && nodeIndex(s) > 0
}
