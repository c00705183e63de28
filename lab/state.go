package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// stateVersion is bumped when State changes incompatibly.
const stateVersion = 1

// Node states recorded by the lab.
const (
	StateRunning = "running"
	StateStopped = "stopped"
	StateKilled  = "killed"
	// StateExited is reported (never stored) when a node recorded as running
	// has no live daemon: it crashed or was killed behind the lab's back.
	StateExited = "exited"
)

// State is what a lab records about itself in RUNBASE/NAME/lab.json: enough
// for any later `shoal lab` command to find and drive every node.
type State struct {
	Version  int       `json:"version"`
	Name     string    `json:"name"`
	Created  time.Time `json:"created"`
	Subnet   string    `json:"subnet"`
	Bridge   string    `json:"bridge"`
	BridgeIP string    `json:"bridgeIP"`
	Swarm    bool      `json:"swarm"`
	// Registry is "IP:PORT" when the lab runs one.
	Registry    string      `json:"registry,omitempty"`
	RegistryPid int         `json:"registryPid,omitempty"`
	Shoald      string      `json:"shoald"`
	Shoal       string      `json:"shoal,omitempty"`
	StopTimeout Duration    `json:"stopTimeout"`
	Nodes       []NodeInfo  `json:"nodes"`
	Partitions  [][2]string `json:"partitions,omitempty"` // blocked node pairs, each sorted
}

// NodeInfo describes one node of a lab.
type NodeInfo struct {
	Name         string   `json:"name"`
	Index        int      `json:"index"`
	IP           string   `json:"ip"`
	Role         string   `json:"role,omitempty"`
	Netns        string   `json:"netns"` // path of the network namespace
	UTS          string   `json:"uts"`   // path of the UTS namespace (hostname)
	Veth         string   `json:"veth"`  // host side of the node's link
	DataRoot     string   `json:"dataRoot"`
	ExecRoot     string   `json:"execRoot"`
	RunDir       string   `json:"runDir"`
	Socket       string   `json:"socket"`
	Pidfile      string   `json:"pidfile"`
	Log          string   `json:"log"`
	CgroupParent string   `json:"cgroupParent"`
	DaemonCgroup string   `json:"daemonCgroup"`
	Args         []string `json:"args"` // shoald's arguments, reused by Start
	Pid          int      `json:"pid,omitempty"`
	State        string   `json:"state"`
}

// Host is the node daemon's address for DOCKER_HOST / SHOAL_HOST.
func (n NodeInfo) Host() string { return "unix://" + n.Socket }

// Duration is a time.Duration that reads and writes as "10s".
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

func (s *State) node(name string) (*NodeInfo, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	return nil, errdefs.NotFound("lab %q has no node %q", s.Name, name)
}

// loadState reads a state file. A missing file is NotFound; a corrupt one
// is a System error (Down still works from naming conventions).
func loadState(path string) (*State, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("no state file %s", path)
	}
	if err != nil {
		return nil, errdefs.Wrap(errdefs.KindSystem, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, errdefs.Wrapf(errdefs.KindSystem, err, "corrupt lab state %s (run `shoal lab down` to remove the lab)", path)
	}
	if s.Version != stateVersion {
		return nil, errdefs.System("lab state %s has version %d, this shoal reads %d (run `shoal lab down` to remove the lab)", path, s.Version, stateVersion)
	}
	return &s, nil
}

// saveState writes the state atomically: a temp file, fsync, rename.
func saveState(path string, s *State) error {
	s.Version = stateVersion
	for i := range s.Partitions {
		p := &s.Partitions[i]
		if p[0] > p[1] {
			p[0], p[1] = p[1], p[0]
		}
	}
	sort.Slice(s.Partitions, func(i, j int) bool {
		a, b := s.Partitions[i], s.Partitions[j]
		return a[0] < b[0] || (a[0] == b[0] && a[1] < b[1])
	})
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".lab.json.*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

// stateLock serialises read-modify-write cycles of one lab's state file
// across processes (two `shoal lab` commands at once) and goroutines.
type stateLock struct{ f *os.File }

func lockState(path string) (*stateLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return &stateLock{f: f}, nil
}

func (l *stateLock) unlock() {
	_ = unix.Flock(int(l.f.Fd()), unix.LOCK_UN)
	l.f.Close()
}
