// Package lab runs many Shoal "hosts" on one machine, and breaks them on
// purpose. Each node is a network namespace joined by a veth to a lab bridge
// in the host namespace, with its own hostname (UTS namespace), its own
// shoald (data root, exec root, socket, cgroup subtree) and optionally a
// swarm between them and a registry on the bridge. Faults: clean stop, kill
// of the whole host, restart, and network partitions.
//
// Everything a lab creates is named after the lab (see naming.go), so Down
// removes it all even without the state file.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/client"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/demo"
	"github.com/shoal/shoal/errdefs"
)

// Options configure a new lab. Zero values mean the defaults.
type Options struct {
	Name     string // default "shoal"
	Nodes    int    // default 3
	Managers int    // default 1 (with swarm)
	Subnet   string // default 10.99.0.0/24

	NoSwarm    bool // leave every node out of swarm mode
	NoRegistry bool // run no registry on the bridge

	// ShoaldPath and ShoalPath are the binaries to run. By default: next
	// to the running executable, else on PATH.
	ShoaldPath string
	ShoalPath  string // runs `shoal registry serve`

	// DaemonArgs are extra shoald flags for every node; NodeDaemonArgs adds
	// more per node name (e.g. engine labels).
	DaemonArgs     []string
	NodeDaemonArgs map[string][]string

	// HeartbeatPeriod is the swarm's dispatcher heartbeat (default 5s).
	HeartbeatPeriod time.Duration
	// Images are pushed to the lab registry after it starts: by default
	// the demo images (demo/busybox, demo/hostname, demo/dnstools).
	// NoImages pushes none.
	Images   ImageSource
	NoImages bool

	// StartTimeout bounds waiting for a daemon's socket (default 20s);
	// ReadyTimeout bounds waiting for the swarm to be ready (default 60s).
	StartTimeout time.Duration
	ReadyTimeout time.Duration
	// StopTimeout is how long Stop lets containers exit after SIGTERM
	// before killing them (default 10s).
	StopTimeout time.Duration

	// Progress, if set, receives a line per step.
	Progress io.Writer
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Managers == 0 && !o.NoSwarm {
		o.Managers = 1
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 20 * time.Second
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 60 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
}

// Lab is a running lab. Its methods are safe for concurrent use; other
// processes (`shoal lab ...`) may drive the same lab at the same time.
type Lab struct {
	names names
	hs    []hierarchy

	mu      sync.Mutex
	st      *State
	clients map[string]*client.Client
	nodeMu  map[string]*sync.Mutex
	started map[int]chan struct{} // daemons this process started: closed when reaped
}

// Node is one host of a lab.
type Node struct {
	NodeInfo
	lab *Lab
}

// Client is an API client for the node's daemon.
func (n *Node) Client() *client.Client { return n.lab.client(n.Name) }

// Logs is the path of the node daemon's log file (its stderr and stdout,
// appended to across restarts).
func (n *Node) Logs() string { return n.Log }

// Do runs f on a throw-away OS thread inside the node's network namespace:
// connections and listeners f opens belong to the node.
func (n *Node) Do(f func() error) error { return inNetns(n.Netns, f) }

// Dial opens a connection from inside the node's network namespace.
func (n *Node) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// Listen opens a listener inside the node's network namespace.
func (n *Node) Listen(network, addr string) (net.Listener, error) {
	var l net.Listener
	err := n.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// RequireRoot is the check every lab operation makes first.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errdefs.Forbidden("shoal lab needs root (namespaces, links, cgroups and nftables)")
	}
	return nil
}

// Up builds a lab: network, one daemon per node, and unless told otherwise
// a registry with the images pushed and a swarm with every node ready. On
// failure it removes everything it made.
func Up(ctx context.Context, opts Options) (l *Lab, err error) {
	if err := requireRoot(); err != nil {
		return nil, err
	}
	opts.defaults()
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	plan, err := planAddrs(opts.Subnet, opts.Nodes, opts.Managers, !opts.NoSwarm)
	if err != nil {
		return nil, err
	}
	for node := range opts.NodeDaemonArgs {
		if i := nodeIndex(node); i < 1 || i > opts.Nodes {
			return nil, errdefs.InvalidParameter("daemon flags given for %q, which is not a node of this lab (node1..node%d)", node, opts.Nodes)
		}
	}
	shoald, err := findBinary(opts.ShoaldPath, "shoald")
	if err != nil {
		return nil, err
	}
	var shoal string
	if !opts.NoRegistry {
		if shoal, err = findBinary(opts.ShoalPath, "shoal"); err != nil {
			return nil, err
		}
	}
	n := names{lab: opts.Name}
	if what := leftovers(n); what != "" {
		return nil, errdefs.Conflict("lab %q already exists (%s): run `shoal lab down --name %s` first", n.lab, what, n.lab)
	}
	if err := checkSubnetFree(plan.Subnet); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(RunBase, 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(n.runDir(), 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, errdefs.Conflict("lab %q already exists: run `shoal lab down --name %s` first", n.lab, n.lab)
		}
		return nil, err
	}
	if err := mountRunTmpfs(n.runDir()); err != nil {
		_ = os.Remove(n.runDir())
		return nil, err
	}
	_, statErr := os.Stat(n.dataDir())
	dataExisted := statErr == nil
	defer func() {
		if err != nil {
			// Never leave half a lab behind; keep data only if it was there.
			if _, derr := Down(context.WithoutCancel(ctx), n.lab, DownOptions{KeepData: dataExisted}); derr != nil {
				err = errors.Join(err, fmt.Errorf("cleaning up the failed lab: %w", derr))
			}
			l = nil
		}
	}()

	progress := newProgress(opts.Progress)
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	l = newLab(n, cgroupHierarchies(ms))
	st := &State{
		Name:        n.lab,
		Created:     time.Now().UTC(),
		Subnet:      plan.Subnet.String(),
		Bridge:      n.bridge(),
		BridgeIP:    plan.BridgeIP.String(),
		Swarm:       !opts.NoSwarm,
		Shoald:      shoald,
		Shoal:       shoal,
		StopTimeout: Duration(opts.StopTimeout),
	}
	registry := net.JoinHostPort(plan.BridgeIP.String(), strconv.Itoa(RegistryPort))
	for _, np := range plan.Nodes {
		ni := NodeInfo{
			Name:         np.Name,
			Index:        np.Index,
			IP:           np.IP.String(),
			Role:         np.Role,
			Netns:        n.netnsPath(np.Name),
			UTS:          n.utsPath(np.Name),
			Veth:         n.veth(np.Index),
			DataRoot:     n.dataRoot(np.Name),
			ExecRoot:     n.execRoot(np.Name),
			RunDir:       n.nodeRunDir(np.Name),
			Socket:       n.socket(np.Name),
			Pidfile:      n.pidfile(np.Name),
			Log:          n.logPath(np.Name),
			CgroupParent: n.nodeCgroup(np.Name),
			DaemonCgroup: n.daemonCgroup(np.Name),
			State:        StateStopped,
		}
		ni.Args = daemonArgs(ni, registry, opts.DaemonArgs, opts.NodeDaemonArgs[np.Name])
		st.Nodes = append(st.Nodes, ni)
	}
	l.st = st
	if err := saveState(n.statePath(), st); err != nil {
		return nil, err
	}

	// The network: bridge, then each node's namespaces and link.
	if err := setupBridge(n.bridge(), plan.BridgeIP, plan.Subnet); err != nil {
		return nil, err
	}
	if err := forEachNode(st.Nodes, func(ni *NodeInfo) error {
		if err := os.MkdirAll(ni.RunDir, 0o755); err != nil {
			return err
		}
		if err := makeNamespace(ni.UTS, unix.CLONE_NEWUTS, func() error {
			return unix.Sethostname([]byte(ni.Name))
		}); err != nil {
			return err
		}
		return l.makeNodeNetwork(ni, plan.Subnet)
	}); err != nil {
		return nil, err
	}
	progress.step("network %s on %s (%d nodes)", plan.Subnet, n.bridge(), len(st.Nodes))

	// The daemons, all at once.
	if err := forEachNode(st.Nodes, func(ni *NodeInfo) error {
		pid, err := l.startDaemon(ctx, st, ni, opts.StartTimeout)
		if err != nil {
			return err
		}
		ni.Pid, ni.State = pid, StateRunning
		return nil
	}); err != nil {
		return nil, err
	}
	if err := saveState(n.statePath(), st); err != nil {
		return nil, err
	}
	progress.step("%d daemons answering", len(st.Nodes))

	if !opts.NoRegistry {
		pid, err := l.startRegistry(ctx, shoal, registry)
		if err != nil {
			return nil, err
		}
		st.Registry, st.RegistryPid = registry, pid
		if err := saveState(n.statePath(), st); err != nil {
			return nil, err
		}
		progress.step("registry at %s", registry)
		if !opts.NoImages {
			src := opts.Images
			if src == nil {
				src = func(w io.Writer) error { return demo.WriteTar(w) }
			}
			refs, err := pushImages(ctx, registry, src, n.runDir())
			if err != nil {
				return nil, err
			}
			progress.step("pushed %s", strings.Join(refs, ", "))
		}
	}
	if !opts.NoSwarm {
		if err := l.setupSwarm(ctx, st, opts.HeartbeatPeriod, opts.ReadyTimeout); err != nil {
			return nil, err
		}
		progress.step("swarm ready: %d managers, %d workers", opts.Managers, opts.Nodes-opts.Managers)
	}
	return l, nil
}

// daemonArgs are the flags a node's shoald always runs with.
func daemonArgs(ni NodeInfo, registry string, common, perNode []string) []string {
	args := []string{
		"--data-root", ni.DataRoot,
		"--exec-root", ni.ExecRoot,
		"--host", "unix://" + ni.Socket,
		"--pidfile", ni.Pidfile,
		"--cgroup-parent", ni.CgroupParent,
		"--insecure-registry", registry,
	}
	args = append(args, common...)
	return append(args, perNode...)
}

// forEachNode runs f for every node concurrently and joins the errors.
func forEachNode(nodes []NodeInfo, f func(*NodeInfo) error) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(&nodes[i]); err != nil {
				errs[i] = fmt.Errorf("%s: %w", nodes[i].Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func newLab(n names, hs []hierarchy) *Lab {
	return &Lab{
		names:   n,
		hs:      hs,
		clients: map[string]*client.Client{},
		nodeMu:  map[string]*sync.Mutex{},
		started: map[int]chan struct{}{},
	}
}

// Open returns the lab called name, as recorded by Up.
func Open(name string) (*Lab, error) {
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	n := names{lab: name}
	st, err := loadState(n.statePath())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, errdefs.NotFound("no lab named %q (start one with `shoal lab up --name %s`)", name, name)
		}
		return nil, err
	}
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	l := newLab(n, cgroupHierarchies(ms))
	l.st = st
	return l, nil
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.names.lab }

// State returns a copy of the lab's recorded state, re-read from disk.
func (l *Lab) State() (State, error) {
	if err := l.refresh(); err != nil {
		return State{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s := *l.st
	s.Nodes = append([]NodeInfo(nil), l.st.Nodes...)
	s.Partitions = append([][2]string(nil), l.st.Partitions...)
	return s, nil
}

// Nodes lists the lab's nodes in order.
func (l *Lab) Nodes() []*Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*Node, 0, len(l.st.Nodes))
	for _, ni := range l.st.Nodes {
		out = append(out, &Node{NodeInfo: ni, lab: l})
	}
	return out
}

// Node returns the named node, or nil if the lab has none by that name.
func (l *Lab) Node(name string) *Node {
	l.mu.Lock()
	defer l.mu.Unlock()
	ni, err := l.st.node(name)
	if err != nil {
		return nil
	}
	return &Node{NodeInfo: *ni, lab: l}
}

// Status is a node's recorded state, or StateExited when it is recorded
// as running but its daemon is gone.
func (l *Lab) Status(name string) (string, error) {
	l.mu.Lock()
	ni, err := l.st.node(name)
	var info NodeInfo
	if err == nil {
		info = *ni
	}
	l.mu.Unlock()
	if err != nil {
		return "", err
	}
	if info.State == StateRunning && l.daemonPid(info) == 0 {
		return StateExited, nil
	}
	return info.State, nil
}

// Registry is the lab registry's "IP:PORT" ("" without one): images pushed
// as REGISTRY/NAME:TAG are pullable by every node.
func (l *Lab) Registry() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.st.Registry
}

// WaitSwarmReady waits until a running manager lists every running node as
// ready (after Start of a node, say).
func (l *Lab) WaitSwarmReady(ctx context.Context, timeout time.Duration) error {
	st, err := l.State()
	if err != nil {
		return err
	}
	if !st.Swarm {
		return errdefs.InvalidParameter("lab %q has no swarm", st.Name)
	}
	manager, running := "", []string(nil)
	for _, n := range st.Nodes {
		if l.daemonPid(n) == 0 {
			continue
		}
		running = append(running, n.Name)
		if manager == "" && n.Role == RoleManager {
			manager = n.Name
		}
	}
	if manager == "" {
		return errdefs.Unavailable("no manager of lab %q is running", st.Name)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return l.waitSwarmReady(ctx, manager, running)
}

// Host is the node's DOCKER_HOST value ("" for an unknown node).
func (l *Lab) Host(node string) string {
	if n := l.Node(node); n != nil {
		return n.Host()
	}
	return ""
}

// Client is an API client for the node's daemon (nil for an unknown node).
func (l *Lab) Client(node string) *client.Client {
	if l.Node(node) == nil {
		return nil
	}
	return l.client(node)
}

func (l *Lab) client(node string) *client.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c := l.clients[node]; c != nil {
		return c
	}
	ni, err := l.st.node(node)
	if err != nil {
		return nil
	}
	c, err := client.New(client.WithHost(ni.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		// Only a malformed host fails here, and the lab made the host.
		panic(fmt.Sprintf("lab: client for %s: %v", ni.Host(), err))
	}
	l.clients[node] = c
	return c
}

// Close releases the lab's API clients. The lab keeps running.
func (l *Lab) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, c := range l.clients {
		c.Close()
		delete(l.clients, k)
	}
	return nil
}

// Down removes the lab and everything it made; see the package Down.
func (l *Lab) Down(ctx context.Context) error {
	l.Close()
	_, err := Down(ctx, l.names.lab, DownOptions{})
	l.reapStarted(5 * time.Second)
	return err
}

// refresh re-reads the state file (another process may have changed it).
func (l *Lab) refresh() error {
	st, err := loadState(l.names.statePath())
	if err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("no lab named %q", l.names.lab)
		}
		return err
	}
	l.mu.Lock()
	l.st = st
	l.mu.Unlock()
	return nil
}

// update applies fn to the freshest state under the cross-process lock and
// saves it.
func (l *Lab) update(fn func(*State) error) error {
	lk, err := lockState(l.names.lockPath())
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.NotFound("no lab named %q", l.names.lab)
		}
		return err
	}
	defer lk.unlock()
	if err := l.refresh(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st := *l.st
	st.Nodes = append([]NodeInfo(nil), l.st.Nodes...)
	st.Partitions = append([][2]string(nil), l.st.Partitions...)
	if err := fn(&st); err != nil {
		return err
	}
	if err := saveState(l.names.statePath(), &st); err != nil {
		return err
	}
	l.st = &st
	return nil
}

// nodeLock serialises fault operations on one node within this process.
func (l *Lab) nodeLock(name string) *sync.Mutex {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.nodeMu[name]
	if m == nil {
		m = &sync.Mutex{}
		l.nodeMu[name] = m
	}
	return m
}

// nodeInfo looks up a node in the freshest state.
func (l *Lab) nodeInfo(name string) (NodeInfo, *State, error) {
	if err := l.refresh(); err != nil {
		return NodeInfo{}, nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ni, err := l.st.node(name)
	if err != nil {
		return NodeInfo{}, nil, err
	}
	return *ni, l.st, nil
}

// nodeMatcher finds every process of a node: its cgroup subtree (daemon,
// shims, containers) and anything else in its network namespace.
func (l *Lab) nodeMatcher(ni NodeInfo) procMatcher {
	m := procMatcher{cgroupTrees: []string{ni.CgroupParent}, hierarchies: l.hs, netns: map[uint64]bool{}}
	if ino := nsInode(ni.Netns); ino != 0 {
		m.netns[ino] = true
	}
	return m
}

// daemonPid returns the pid of the node's running daemon, or 0. A pid only
// counts if that process sits in the node's daemon cgroup (pids get reused).
func (l *Lab) daemonPid(ni NodeInfo) int {
	cands := []int{ni.Pid}
	if b, err := os.ReadFile(ni.Pidfile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			cands = append(cands, pid)
		}
	}
	for _, pid := range cands {
		if pid <= 0 || !alive(pid) {
			continue
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil {
			continue
		}
		if inCgroupTree(parseProcCgroup(strings.NewReader(string(b))), ni.DaemonCgroup) {
			return pid
		}
	}
	return 0
}

// Command prepares cmd to run inside the node: its network and UTS
// namespaces (not its mounts: /sys and the cgroup hierarchies stay
// visible), with DOCKER_HOST and SHOAL_HOST set to the node's daemon.
func (l *Lab) Command(ctx context.Context, node, name string, args ...string) (*exec.Cmd, error) {
	n := l.Node(node)
	if n == nil {
		return nil, errdefs.NotFound("lab %q has no node %q", l.names.lab, node)
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, errdefs.NotFound("nsenter not found on PATH (Debian package util-linux)")
	}
	argv := append([]string{"--net=" + n.Netns, "--uts=" + n.UTS, "--", name}, args...)
	cmd := exec.CommandContext(ctx, nsenter, argv...)
	env := daemonEnv()
	cmd.Env = append(env, "DOCKER_HOST="+n.Host(), "SHOAL_HOST="+n.Host())
	return cmd, nil
}

// Exec runs cmd inside the node (see Command) and returns its combined
// output; a non-zero exit is an *exec.ExitError.
func (l *Lab) Exec(ctx context.Context, node string, cmd ...string) ([]byte, error) {
	if len(cmd) == 0 {
		return nil, errdefs.InvalidParameter("exec needs a command")
	}
	c, err := l.Command(ctx, node, cmd[0], cmd[1:]...)
	if err != nil {
		return nil, err
	}
	return c.CombinedOutput()
}

// progress prints timed steps.
type progress struct {
	w     io.Writer
	start time.Time
}

func newProgress(w io.Writer) *progress { return &progress{w: w, start: time.Now()} }

func (p *progress) step(format string, args ...any) {
	if p.w == nil {
		return
	}
	fmt.Fprintf(p.w, "[%6.2fs] %s\n", time.Since(p.start).Seconds(), fmt.Sprintf(format, args...))
}
