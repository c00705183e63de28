package cluster

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/cluster/manager"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// node is a daemon's life in one swarm: its certificate, its session with
// the managers, and the manager role when it has one.
type node struct {
	c      *Cluster
	tls    *ca.NodeTLS
	client *http.Client
	renew  *ca.Renewer

	// roleMu serializes role transitions (promotion, demotion, force new
	// cluster).
	roleMu sync.Mutex

	mu    sync.Mutex
	st    persisted
	srv   *transport.Server // managers only
	mgr   *manager.Manager  // managers only
	ready bool              // mgr has joined Raft and holds the swarm state

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	roleCh  chan struct{}
	stopped sync.Once
}

func (c *Cluster) newNode(st persisted, t *ca.NodeTLS) *node {
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{c: c, tls: t, client: transport.NodeClient(t), st: st, ctx: ctx, cancel: cancel, roleCh: make(chan struct{}, 1)}
	n.renew = ca.NewRenewer(t, n.requestCert, n.certInstalled)
	return n
}

func (n *node) id() string { return n.tls.Identity().NodeID }

func (n *node) state() persisted {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.st
	st.Managers = slices.Clone(n.st.Managers)
	return st
}

// manager is the manager role once it serves (joined and synced); nil on
// workers and while a promotion is in progress.
func (n *node) manager() *manager.Manager {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.ready {
		return nil
	}
	return n.mgr
}

// rawManager is the manager role even before it serves.
func (n *node) rawManager() *manager.Manager {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mgr
}

func (n *node) setReady() {
	n.mu.Lock()
	n.ready = n.mgr != nil
	n.mu.Unlock()
}

func (n *node) isManager() bool { return n.manager() != nil }

// managerAddrs lists managers to talk to: this node first when it is one,
// then the leader, then the others.
func (n *node) managerAddrs() []string {
	n.mu.Lock()
	peers := slices.Clone(n.st.Managers)
	self, m := n.st.AdvertiseAddr, n.mgr
	if !n.ready {
		m = nil
	}
	n.mu.Unlock()
	leader := ""
	if m != nil {
		_, leader = m.Raft().Leader()
	}
	addrs := sortPeers(peers, leader)
	if m != nil {
		addrs = append([]string{self}, slices.DeleteFunc(addrs, func(a string) bool { return a == self })...)
	}
	return addrs
}

// AgentManagers is the agent's view of the managers: leader first.
func (n *node) agentManagers() []string {
	n.mu.Lock()
	peers := slices.Clone(n.st.Managers)
	m := n.mgr
	if !n.ready {
		m = nil
	}
	n.mu.Unlock()
	leader := ""
	if m != nil {
		_, leader = m.Raft().Leader()
		peers = m.Control().Managers()
	}
	return sortPeers(peers, leader)
}

// start runs the node's loops: session, certificate renewal, role
// changes, and the agent.
func (n *node) start() {
	n.wg.Add(3)
	go func() {
		defer n.wg.Done()
		n.renew.Run(n.ctx)
	}()
	go func() {
		defer n.wg.Done()
		n.sessionLoop()
	}()
	go func() {
		defer n.wg.Done()
		n.roleLoop()
	}()
	if n.c.cfg.NewAgent != nil {
		a, err := n.c.cfg.NewAgent(AgentConfig{
			NodeID:      n.id(),
			Client:      n.client,
			Managers:    n.agentManagers,
			Description: n.c.description,
			Addr:        hostOf(n.state().AdvertiseAddr),
			Log:         n.c.log.With("component", "agent"),
		})
		if err != nil {
			n.c.log.Error("agent not started", "err", err)
			return
		}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			for n.ctx.Err() == nil {
				if err := a.Run(n.ctx); err != nil && n.ctx.Err() == nil {
					n.c.log.Error("agent stopped; restarting", "err", err)
					sleep(n.ctx, time.Second)
				}
			}
		}()
	}
}

// stop ends the loops and the manager role; files stay.
func (n *node) stop() {
	n.stopped.Do(func() {
		n.cancel()
		n.wg.Wait()
		n.stopManager()
	})
}

type managerStart struct {
	bootstrap bool
	force     bool
	listener  net.Listener // pre-bound by join
}

// startManager runs the cluster port and the manager.
func (n *node) startManager(opts managerStart) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mgr != nil {
		return nil
	}
	if n.srv == nil {
		srv, err := transport.Listen(transport.Config{
			ListenAddr: n.st.ListenAddr, Listener: opts.listener, TLS: n.tls, Log: n.c.log.With("component", "cluster-port"),
		})
		if err != nil {
			return err
		}
		n.srv = srv
	}
	m, err := manager.New(manager.Config{
		NodeID:          n.st.NodeID,
		AdvertiseAddr:   n.st.AdvertiseAddr,
		Dir:             n.c.raftDir(),
		Server:          n.srv,
		TLS:             n.tls,
		Client:          n.client,
		Bootstrap:       opts.bootstrap,
		ForceNewCluster: opts.force,
		Timing:          n.c.cfg.RaftTiming,
		Components:      n.c.cfg.Components,
		Dispatcher:      n.c.cfg.Dispatcher,
		Log:             n.c.log.With("component", "manager"),
	})
	if err != nil {
		n.srv.Close()
		n.srv = nil
		return err
	}
	n.mgr = m
	return nil
}

func (n *node) stopManager() {
	n.mu.Lock()
	m, srv := n.mgr, n.srv
	n.mgr, n.srv, n.ready = nil, nil, false
	n.mu.Unlock()
	if m != nil {
		if err := m.Close(); err != nil {
			n.c.log.Warn("manager shutdown", "err", err)
		}
	}
	if srv != nil {
		srv.Close()
	}
}

// joinRaft asks the managers to make this node a Raft voter, then waits
// until its store holds the cluster and this node.
func (n *node) joinRaft(ctx context.Context) error {
	m := n.rawManager()
	if m == nil {
		return errdefs.System("not a manager")
	}
	var last error
	for ctx.Err() == nil {
		for _, addr := range n.managerAddrs() {
			if addr == n.state().AdvertiseAddr {
				continue
			}
			err := transport.Do(ctx, n.client, http.MethodPost, addr, manager.PathRaftJoin, manager.RaftJoinBody{Addr: n.state().AdvertiseAddr}, nil)
			if err == nil {
				if err := n.waitSynced(ctx, m); err != nil {
					return err
				}
				n.setReady()
				return nil
			}
			last = err
			if !transport.IsUnreachable(err) && !errdefs.IsUnavailable(err) {
				return err
			}
		}
		sleep(ctx, 500*time.Millisecond)
	}
	if last == nil {
		last = ctx.Err()
	}
	return errdefs.Wrapf(errdefs.KindUnavailable, last, "could not join the managers' raft")
}

// waitSynced waits until the manager's store has the swarm and this node.
func (n *node) waitSynced(ctx context.Context, m *manager.Manager) error {
	for {
		ok := false
		m.Store().View(func(rt store.ReadTx) { ok = rt.GetCluster() != nil && rt.GetNode(n.id()) != nil })
		if ok {
			return nil
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return errdefs.Wrapf(errdefs.KindUnavailable, ctx.Err(), "timed out waiting for the swarm state to replicate")
		}
	}
}

// inRaft reports whether this manager is in its own Raft configuration.
func (n *node) inRaft(m *manager.Manager) bool {
	members, err := m.Raft().Members()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(members, func(mb sraft.Member) bool { return mb.ID == n.id() })
}

// requestCert sends a CSR to a manager (the renewer's transport).
func (n *node) requestCert(ctx context.Context, csr []byte) ([]byte, error) {
	var last error = controlapi.ErrNoLeader
	for _, addr := range n.managerAddrs() {
		var resp controlapi.RenewResponse
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := transport.Do(rctx, n.client, http.MethodPost, addr, manager.PathRenew, controlapi.RenewRequest{CSR: csr}, &resp)
		cancel()
		if err == nil {
			return resp.Cert, nil
		}
		if errors.Is(err, transport.ErrNodeRemoved) {
			n.removed(err)
			return nil, err
		}
		last = err
	}
	return nil, last
}

// certInstalled persists a renewed certificate and reacts to role changes.
func (n *node) certInstalled(id ca.Identity) {
	if err := n.tls.Save(n.c.certDir()); err != nil {
		n.c.log.Error("saving renewed certificate", "err", err)
	}
	n.c.log.Info("node certificate renewed", "role", id.Role, "expires", id.NotAfter)
	select {
	case n.roleCh <- struct{}{}:
	default:
	}
}

// roleLoop makes the running role follow the certificate's role.
func (n *node) roleLoop() {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		n.reconcileRole()
		select {
		case <-n.ctx.Done():
			return
		case <-n.roleCh:
		case <-t.C:
		}
	}
}

func (n *node) reconcileRole() {
	n.roleMu.Lock()
	defer n.roleMu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	want := n.tls.Identity().Role
	m := n.rawManager()
	switch {
	case want == swarm.NodeRoleManager && m == nil:
		n.c.log.Info("promoted: starting the manager role")
		_ = os.RemoveAll(n.c.raftDir())
		if err := n.startManager(managerStart{}); err != nil {
			n.c.log.Error("starting the manager role failed; will retry", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, waitTimeout)
		defer cancel()
		if err := n.joinRaft(ctx); err != nil {
			n.c.log.Error("joining raft after promotion failed; will retry", "err", err)
		}
	case want == swarm.NodeRoleManager && !n.inRaft(m):
		// Started as a manager but not (yet) a voter: ask again.
		ctx, cancel := context.WithTimeout(n.ctx, waitTimeout)
		defer cancel()
		if err := n.joinRaft(ctx); err != nil {
			n.c.log.Warn("joining raft failed; will retry", "err", err)
		}
	case want == swarm.NodeRoleWorker && m != nil:
		n.c.log.Info("demoted: stopping the manager role")
		n.stopManager()
		if err := os.RemoveAll(n.c.raftDir()); err != nil {
			n.c.log.Warn("removing raft state", "err", err)
		}
	}
}

// sessionLoop follows this node's object on the managers: role changes
// (then the certificate is renewed for the new role), the manager list,
// and removal from the swarm.
func (n *node) sessionLoop() {
	var since uint64
	for n.ctx.Err() == nil {
		ok := false
		for _, addr := range n.managerAddrs() {
			var resp controlapi.SessionResponse
			ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
			q := url.Values{"since": {strconv.FormatUint(since, 10)}, "wait": {"10s"}}
			err := transport.Do(ctx, n.client, http.MethodGet, addr, manager.PathSession+"?"+q.Encode(), nil, &resp)
			cancel()
			if errors.Is(err, transport.ErrNodeRemoved) {
				n.removed(err)
				return
			}
			if err != nil {
				continue
			}
			n.setManagers(resp.Managers)
			if resp.Node == nil {
				// This manager has not seen us yet (it lags): ask another.
				continue
			}
			ok = true
			since = resp.Node.Meta.Version.Index
			if resp.Node.Spec.Role != n.tls.Identity().Role {
				n.renew.Trigger()
			}
			break
		}
		if !ok {
			sleep(n.ctx, time.Second)
		}
	}
}

func (n *node) setManagers(ps []swarm.Peer) {
	if len(ps) == 0 {
		return
	}
	n.mu.Lock()
	same := slices.Equal(ps, n.st.Managers)
	if !same {
		n.st.Managers = slices.Clone(ps)
	}
	st := n.st
	n.mu.Unlock()
	if !same {
		if err := n.c.saveState(st); err != nil {
			n.c.log.Warn("saving manager list", "err", err)
		}
	}
}

// removed puts the node in the error state: its certificate was revoked.
func (n *node) removed(err error) {
	n.c.log.Error("this node was removed from the swarm", "err", err)
	n.c.setError(`this node was removed from the swarm and its certificate revoked; run "docker swarm leave" to reset it, then join again`)
	n.cancel()
	go n.stopManager()
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
