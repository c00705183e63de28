// Package manager runs the manager role of a node: the Raft member and its
// store, the control API, the cluster-port endpoints managers serve, the
// checks of callers' certificates against the store, and — while this
// manager is the Raft leader — the leader-only components (orchestrators,
// scheduler, dispatcher, role reconciler).
package manager

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// Component is a leader-only loop. Run is started when this manager becomes
// the Raft leader (after its store caught up with everything committed) and
// its ctx is cancelled when leadership is lost. It reads the store and
// writes through it.
type Component interface {
	Run(ctx context.Context) error
}

// Dispatcher is the leader-only component that also serves agents over the
// cluster port: its Handler is mounted at /dispatcher/ on every manager
// (callers already authenticated as swarm nodes); on a manager that is not
// the leader it must answer with the leader's address (Env.Leader).
type Dispatcher interface {
	Component
	Handler() http.Handler
}

// ManagerHandlers is implemented by a Dispatcher that has more endpoints to
// mount on the cluster port, for managers only (log forwarding): pattern →
// handler.
type ManagerHandlers interface {
	ManagerHandlers() map[string]http.Handler
}

// Env is what the dispatcher is built with.
type Env struct {
	Store  *store.Store
	NodeID string
	// Leader reports whether this manager leads and, when it does not,
	// the leader's cluster address ("" when none is known).
	Leader func() (isLeader bool, leaderAddr string)
	// Managers lists the managers' cluster addresses, leader first.
	Managers func() []string
	Log      *slog.Logger
}

// Config configures a manager.
type Config struct {
	NodeID string
	// AdvertiseAddr is this manager's Raft and cluster-port address
	// ("IP:port") as other managers reach it.
	AdvertiseAddr string
	// Dir holds the Raft state (DataRoot/swarm/raft).
	Dir    string
	Server *transport.Server // the node's cluster port
	TLS    *ca.NodeTLS
	Client *http.Client // the node's mTLS client
	// Bootstrap starts a new single-manager Raft cluster; ForceNewCluster
	// rewrites the local state into one.
	Bootstrap       bool
	ForceNewCluster bool
	Timing          sraft.Timing
	// SnapshotThreshold and TrailingLogs tune Raft snapshots (the swarm
	// spec's SnapshotInterval and LogEntriesForSlowFollowers).
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Components returns the leader-only components, built over the
	// store (the lead plugs in orchestrators, scheduler, allocator, task
	// reaper). Called each time this manager becomes leader.
	Components func(*store.Store) []Component
	// Dispatcher builds the dispatcher once per manager start; it runs as
	// a leader-only component and its Handler is mounted at /dispatcher/.
	Dispatcher func(Env) Dispatcher
	Log        *slog.Logger
}

// Manager is a running manager.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	store      *store.Store
	raft       *sraft.Node
	fwd        *controlapi.Forwarder
	control    *controlapi.Server
	reach      *reachability
	dispatcher Dispatcher
	stream     *transport.StreamLayer

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// New starts the manager: opens Raft (joining nothing: a manager added to
// an existing swarm is made a voter by the leader, see RaftJoin) and mounts
// its endpoints on the cluster port.
func New(cfg Config) (*Manager, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	m := &Manager{cfg: cfg, log: cfg.Log, store: store.New()}
	sl, err := cfg.Server.RaftLayer(cfg.AdvertiseAddr)
	if err != nil {
		return nil, err
	}
	m.stream = sl
	node, err := sraft.New(sraft.Config{
		ID:                cfg.NodeID,
		Transport:         sraft.NewNetworkTransport(sl, cfg.Log),
		Dir:               cfg.Dir,
		Store:             m.store,
		Bootstrap:         cfg.Bootstrap,
		ForceNewCluster:   cfg.ForceNewCluster,
		Timing:            cfg.Timing,
		SnapshotThreshold: cfg.SnapshotThreshold,
		TrailingLogs:      cfg.TrailingLogs,
		Log:               cfg.Log,
	})
	if err != nil {
		sl.Close()
		return nil, err
	}
	m.raft = node
	m.store.SetProposer(node)
	m.fwd = controlapi.NewForwarder(node, cfg.Client)
	m.reach = newReachability(cfg.NodeID, node, cfg.Client)
	m.control = controlapi.New(controlapi.Config{
		Store: m.store, Raft: node, Forwarder: m.fwd, Reachable: m.reach.Reachable, Log: cfg.Log,
	})
	if cfg.Dispatcher != nil {
		m.dispatcher = cfg.Dispatcher(Env{
			Store:  m.store,
			NodeID: cfg.NodeID,
			Leader: func() (bool, string) {
				if node.IsLeader() {
					return true, cfg.AdvertiseAddr
				}
				_, addr := node.Leader()
				return false, addr
			},
			Managers: m.ManagerAddrs,
			Log:      cfg.Log.With("component", "dispatcher"),
		})
	}
	m.mount()
	cfg.Server.SetAuthorizer(&authorizer{store: m.store})

	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		m.reach.run(ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.followRaftSpec(ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.leaderLoop(ctx)
	}()
	return m, nil
}

// Dispatcher is the manager's dispatcher (nil without one).
func (m *Manager) Dispatcher() Dispatcher { return m.dispatcher }

// Client is the node's mTLS client.
func (m *Manager) Client() *http.Client { return m.cfg.Client }

// Store is the manager's replica of the cluster state.
func (m *Manager) Store() *store.Store { return m.store }

// Raft is the manager's Raft member.
func (m *Manager) Raft() *sraft.Node { return m.raft }

// Control is the manager's control API.
func (m *Manager) Control() *controlapi.Server { return m.control }

// Forwarder runs writes on the leader.
func (m *Manager) Forwarder() *controlapi.Forwarder { return m.fwd }

// ManagerAddrs lists the managers' cluster addresses, the leader first.
func (m *Manager) ManagerAddrs() []string {
	_, leader := m.raft.Leader()
	var out []string
	for _, p := range m.control.Managers() {
		if p.Addr == leader {
			out = append([]string{p.Addr}, out...)
		} else {
			out = append(out, p.Addr)
		}
	}
	return out
}

// Reachable reports whether another manager answered recently.
func (m *Manager) Reachable(nodeID string) bool { return m.reach.Reachable(nodeID) }

// WaitLeader waits until this manager leads (a bootstrapping manager).
func (m *Manager) WaitLeader(ctx context.Context) error {
	for {
		leader, changed := m.raft.Leadership()
		if leader {
			return m.raft.Barrier(ctx)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return errdefs.Wrapf(errdefs.KindUnavailable, ctx.Err(), "no raft leader elected")
		}
	}
}

// Close stops the leader-only components and Raft. The cluster port stays
// open (it belongs to the node).
func (m *Manager) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		m.wg.Wait()
		m.stream.StopDialing()
		err = m.raft.Shutdown()
	})
	return err
}

// followRaftSpec applies the swarm spec's Raft snapshot settings.
func (m *Manager) followRaftSpec(ctx context.Context) {
	var cur swarm.RaftConfig
	apply := func(c *store.Cluster) {
		if c == nil || c.Spec.Raft.SnapshotInterval == cur.SnapshotInterval && c.Spec.Raft.LogEntriesForSlowFollowers == cur.LogEntriesForSlowFollowers {
			return
		}
		cur = c.Spec.Raft
		if err := m.raft.SetSnapshotPolicy(cur.SnapshotInterval, cur.LogEntriesForSlowFollowers); err != nil {
			m.log.Warn("raft snapshot settings not applied", "err", err)
		}
	}
	var first *store.Cluster
	events, cancel := m.store.ViewAndWatch(func(rt store.ReadTx) { first = rt.GetCluster() }, store.KindCluster)
	defer cancel()
	apply(first)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if c, isCluster := ev.Object.(*store.Cluster); isCluster && ev.Op != store.OpDelete {
				apply(c)
			} else if ev.Op == store.OpReset {
				var c *store.Cluster
				m.store.View(func(rt store.ReadTx) { c = rt.GetCluster() })
				apply(c)
			}
		}
	}
}

// leaderLoop runs the leader-only components while this manager leads.
func (m *Manager) leaderLoop(ctx context.Context) {
	var (
		stop func()
	)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	for {
		leader, changed := m.raft.Leadership()
		switch {
		case leader && stop == nil:
			stop = m.startLeading(ctx)
		case !leader && stop != nil:
			stop()
			stop = nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

func (m *Manager) startLeading(parent context.Context) func() {
	ctx, cancel := context.WithCancel(parent)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Components see everything committed by earlier leaders.
		if err := m.raft.Barrier(ctx); err != nil {
			if ctx.Err() == nil {
				m.log.Warn("leader barrier failed; components not started", "err", err)
			}
			return
		}
		comps := []Component{&roleReconciler{m: m}}
		if m.dispatcher != nil {
			comps = append(comps, m.dispatcher)
		}
		if m.cfg.Components != nil {
			comps = append(comps, m.cfg.Components(m.store)...)
		}
		m.log.Info("leading: starting leader components", "count", len(comps))
		for _, c := range comps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runComponent(ctx, c, m.log)
			}()
		}
	}()
	return func() {
		cancel()
		wg.Wait()
		m.log.Info("no longer leading: leader components stopped")
	}
}

// runComponent runs c until ctx ends, restarting it after a failure.
func runComponent(ctx context.Context, c Component, log *slog.Logger) {
	delay := 100 * time.Millisecond
	for {
		err := c.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error("leader component stopped; restarting", "component", fmt.Sprintf("%T", c), "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// authorizer checks certificates against the store: removed nodes'
// serials are revoked.
type authorizer struct {
	store *store.Store
}

func (a *authorizer) Authorize(id ca.Identity) error {
	var c *store.Cluster
	a.store.View(func(rt store.ReadTx) { c = rt.GetCluster() })
	if c != nil && (c.IsRemoved(id.NodeID) || ca.IsRevoked(id.Serial, c.RevokedSerials)) {
		return errdefs.Wrap(errdefs.KindForbidden, fmt.Errorf("node %s was removed from the swarm (certificate revoked): %w", id.NodeID, transport.ErrNodeRemoved))
	}
	return nil
}

// AuthorizeManager trusts the certificate's role, as swarmkit does: a
// demoted manager keeps its powers until it renews its certificate, which
// it does as soon as it learns the new role (seconds), and it cannot rejoin
// Raft (RaftJoin checks the node's role).
func (a *authorizer) AuthorizeManager(id ca.Identity) error {
	return a.Authorize(id)
}
