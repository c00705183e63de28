// Package cluster is a daemon's swarm membership: the state machine behind
// `docker swarm init/join/leave`, `docker info`'s swarm section and the
// swarm and node API routes.
//
// A node in a swarm holds a certificate (DataRoot/swarm/certificates) and a
// little state (DataRoot/swarm/state.json). Managers also run the cluster
// port, Raft and the control API (cluster/manager); every node runs a
// session with the managers that tells it about role changes and the
// current managers, renews its certificate, and runs the agent. A daemon
// that restarts resumes its role from disk.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/cluster/manager"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// AgentConfig is what the agent gets when the node is in a swarm.
type AgentConfig struct {
	NodeID string
	// Client is the node's mTLS client for the managers' cluster ports
	// (its certificate is renewed in place).
	Client *http.Client
	// Managers returns the managers' cluster addresses ("IP:port"), the
	// leader first when known.
	Managers func() []string
	// Description is what the node reports about itself (hostname,
	// platform, resources, engine version and labels).
	Description func() swarm.NodeDescription
	// Addr is the node's advertised IP.
	Addr string
	Log  *slog.Logger
}

// Config configures the swarm membership of a daemon.
type Config struct {
	// Root is DataRoot/swarm.
	Root string
	// EngineVersion and EngineLabels (k=v, from --label) describe the node.
	EngineVersion string
	EngineLabels  []string
	// DefaultAdvertiseAddr is --swarm-default-advertise-addr.
	DefaultAdvertiseAddr string
	// SkipInterfaces are left out when guessing the advertise address
	// (the engine's own bridges).
	SkipInterfaces []string
	// RaftTiming overrides Raft's timeouts (tests); zero = defaults.
	RaftTiming sraft.Timing
	// Components are the leader-only components (manager.Config).
	Components func(*store.Store) []manager.Component
	// Dispatcher builds the dispatcher on managers (optional).
	Dispatcher func(manager.Env) manager.Dispatcher
	// NewAgent builds the node's agent (optional); it runs while the node
	// is in a swarm, managers included.
	NewAgent func(AgentConfig) (manager.Component, error)
	Log      *slog.Logger
}

// Cluster is the daemon's swarm membership.
type Cluster struct {
	cfg Config
	log *slog.Logger

	// opMu serializes init, join, leave and close.
	opMu sync.Mutex

	mu      sync.RWMutex
	n       *node  // nil: not in a swarm
	pending bool   // a join is in progress
	errMsg  string // the node is in the error state
}

// persisted is DataRoot/swarm/state.json.
type persisted struct {
	NodeID        string
	ClusterID     string
	ListenAddr    string // IP:port to bind when a manager
	AdvertiseAddr string // IP:port
	Managers      []swarm.Peer
}

const stateFile = "state.json"

func (c *Cluster) certDir() string { return filepath.Join(c.cfg.Root, "certificates") }
func (c *Cluster) raftDir() string { return filepath.Join(c.cfg.Root, "raft") }

// New returns the daemon's membership, resuming the role saved under Root.
func New(cfg Config) (*Cluster, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	c := &Cluster{cfg: cfg, log: cfg.Log}
	st, err := c.loadState()
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Leftovers of an init or join that did not finish.
		if rerr := os.RemoveAll(cfg.Root); rerr != nil {
			return nil, rerr
		}
		return c, nil
	case err != nil:
		c.errMsg = fmt.Sprintf("swarm state unreadable: %v", err)
		return c, nil
	}
	if err := c.resume(st); err != nil {
		c.log.Error("could not resume swarm membership", "err", err)
		c.errMsg = err.Error()
	}
	return c, nil
}

func (c *Cluster) loadState() (persisted, error) {
	var st persisted
	b, err := os.ReadFile(filepath.Join(c.cfg.Root, stateFile))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, err
	}
	if st.NodeID == "" {
		return st, errors.New("state.json has no node ID")
	}
	return st, nil
}

func (c *Cluster) saveState(st persisted) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(c.cfg.Root, stateFile)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// resume restarts a node from its saved state.
func (c *Cluster) resume(st persisted) error {
	t, err := ca.Load(c.certDir())
	if err != nil {
		return fmt.Errorf("swarm certificates: %w", err)
	}
	if id := t.Identity(); id.NodeID != st.NodeID {
		return fmt.Errorf("swarm certificate is for node %s, state for %s", id.NodeID, st.NodeID)
	}
	if time.Now().After(t.Leaf().NotAfter) {
		// docker's errSwarmCertificatesExpired
		return errors.New("Swarm certificates have expired. To replace them, leave the swarm and join again.")
	}
	n := c.newNode(st, t)
	if t.Identity().IsManager() {
		if err := n.startManager(managerStart{}); err != nil {
			n.stop()
			return err
		}
		// Serves its replica from disk at once; if it is not a voter yet
		// (stopped during a promotion) the role loop asks to join.
		n.setReady()
	}
	c.setNode(n)
	n.start()
	c.log.Info("resumed swarm membership", "node", st.NodeID, "role", t.Identity().Role)
	return nil
}

func (c *Cluster) node() *node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.n
}

func (c *Cluster) setNode(n *node) {
	c.mu.Lock()
	c.n, c.pending, c.errMsg = n, false, ""
	c.mu.Unlock()
}

func (c *Cluster) setError(msg string) {
	c.mu.Lock()
	c.errMsg = msg
	c.mu.Unlock()
}

// State is the Swarm header of /_ping.
func (c *Cluster) State() string {
	c.mu.RLock()
	n, pending, errMsg := c.n, c.pending, c.errMsg
	c.mu.RUnlock()
	switch {
	case errMsg != "":
		return string(swarm.LocalNodeStateError)
	case pending:
		return string(swarm.LocalNodeStatePending)
	case n == nil:
		return string(swarm.LocalNodeStateInactive)
	case n.isManager():
		return "active/manager"
	}
	return "active/worker"
}

// NodeID is this node's swarm ID ("" when not in a swarm).
func (c *Cluster) NodeID() string {
	if n := c.node(); n != nil {
		return n.id()
	}
	return ""
}

// Control returns this manager's control API, or docker's errors for
// nodes that are not managers.
func (c *Cluster) Control() (*controlapi.Server, error) {
	n := c.node()
	if n == nil {
		return nil, controlapi.ErrNoSwarm
	}
	m := n.manager()
	if m == nil {
		if c.State() == string(swarm.LocalNodeStateError) {
			return nil, controlapi.ErrNoSwarm
		}
		return nil, controlapi.ErrNotManager
	}
	return m.Control(), nil
}

// Info is the Swarm part of GET /info.
func (c *Cluster) Info(ctx context.Context) swarm.Info {
	c.mu.RLock()
	n, pending, errMsg := c.n, c.pending, c.errMsg
	c.mu.RUnlock()
	info := swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
	switch {
	case errMsg != "":
		info.LocalNodeState, info.Error = swarm.LocalNodeStateError, errMsg
	case pending:
		info.LocalNodeState = swarm.LocalNodeStatePending
	case n != nil:
		info.LocalNodeState = swarm.LocalNodeStateActive
	}
	if n == nil {
		return info
	}
	st := n.state()
	info.NodeID = st.NodeID
	if host, _, err := net.SplitHostPort(st.AdvertiseAddr); err == nil {
		info.NodeAddr = host
	}
	info.RemoteManagers = append([]swarm.Peer{}, st.Managers...)
	m := n.manager()
	if m == nil {
		return info
	}
	info.ControlAvailable = true
	info.RemoteManagers = m.Control().Managers()
	var (
		cl              *store.Cluster
		nodes, managers int
	)
	m.Store().View(func(rt store.ReadTx) {
		cl = rt.GetCluster()
		for _, x := range rt.FindNodes(store.All()) {
			nodes++
			if x.IsManager() {
				managers++
			}
		}
	})
	info.Nodes, info.Managers = nodes, managers
	if cl != nil {
		ci := controlapi.WireSwarm(cl).ClusterInfo
		info.Cluster = &ci
	}
	return info
}

// description is what this node reports about itself.
func (c *Cluster) description() swarm.NodeDescription {
	hostname, _ := os.Hostname()
	labels := map[string]string{}
	for _, l := range c.cfg.EngineLabels {
		k, v, _ := strings.Cut(l, "=")
		labels[k] = v
	}
	var si unix.Sysinfo_t
	var mem int64
	if unix.Sysinfo(&si) == nil {
		mem = int64(si.Totalram) * int64(si.Unit)
	}
	arch := runtime.GOARCH
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		arch = unix.ByteSliceToString(u.Machine[:])
	}
	return swarm.NodeDescription{
		Hostname:  hostname,
		Platform:  swarm.Platform{Architecture: arch, OS: runtime.GOOS},
		Resources: swarm.Resources{NanoCPUs: int64(runtime.NumCPU()) * 1e9, MemoryBytes: mem},
		Engine: swarm.EngineDescription{
			EngineVersion: c.cfg.EngineVersion,
			Labels:        labels,
			Plugins: []swarm.PluginDescription{
				{Type: "Log", Name: "json-file"},
				{Type: "Network", Name: "bridge"},
				{Type: "Network", Name: "host"},
				{Type: "Network", Name: "null"},
				{Type: "Network", Name: "overlay"},
				{Type: "Volume", Name: "local"},
			},
		},
	}
}

// Close stops the node's swarm components (the membership stays on disk).
func (c *Cluster) Close() error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if n := c.node(); n != nil {
		n.stop()
	}
	return nil
}

// managerStats counts the Raft voters this manager can and cannot reach.
func managerStats(m *manager.Manager) (reachable, unreachable int) {
	members, err := m.Raft().Members()
	if err != nil {
		return 1, 0
	}
	for _, mb := range members {
		if !mb.Voter {
			continue
		}
		if m.Reachable(mb.ID) {
			reachable++
		} else {
			unreachable++
		}
	}
	return reachable, unreachable
}

// leaveRefusal is docker's refusal of `swarm leave` on a manager without
// --force.
func leaveRefusal(m *manager.Manager) error {
	msg := "You are attempting to leave the swarm on a node that is participating as a manager. "
	reachable, unreachable := managerStats(m)
	if reachable-2 <= unreachable {
		if reachable == 1 && unreachable == 0 {
			msg += "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. "
			return errdefs.Unavailable("%s", msg)
		}
		msg += fmt.Sprintf("Removing this node leaves %v managers out of %v. Without a Raft quorum your swarm will be inaccessible. ", reachable-1, reachable+unreachable)
	}
	msg += "The only way to restore a swarm that has lost consensus is to reinitialize it with `--force-new-cluster`. Use `--force` to suppress this message."
	return errdefs.Unavailable("%s", msg)
}

// sortPeers puts the leader first, then by ID.
func sortPeers(ps []swarm.Peer, leaderAddr string) []string {
	sort.Slice(ps, func(i, j int) bool {
		li, lj := ps[i].Addr == leaderAddr, ps[j].Addr == leaderAddr
		if li != lj {
			return li
		}
		return ps[i].NodeID < ps[j].NodeID
	})
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Addr
	}
	return out
}

// waitTimeout bounds init's and join's waits on the cluster.
const waitTimeout = 30 * time.Second
