package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/cluster/manager"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

func validAvailability(a swarm.NodeAvailability) (swarm.NodeAvailability, error) {
	switch a {
	case "":
		return swarm.NodeAvailabilityActive, nil
	case swarm.NodeAvailabilityActive, swarm.NodeAvailabilityPause, swarm.NodeAvailabilityDrain:
		return a, nil
	}
	return "", errdefs.InvalidParameter("invalid Availability: %q", a)
}

// Init makes this node the first manager of a new swarm and returns its
// node ID. With ForceNewCluster on a manager, it rebuilds a single-manager
// swarm from this manager's state (same cluster, nodes and services).
func (c *Cluster) Init(ctx context.Context, req swarm.InitRequest) (string, error) {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if n := c.node(); n != nil {
		if req.ForceNewCluster && n.isManager() {
			return c.forceNewCluster(ctx, n)
		}
		return "", controlapi.ErrSwarmExists
	}
	if _, err := controlapi.MergeSpec(controlapi.DefaultSpec(), req.Spec); err != nil {
		return "", err
	}
	if req.AutoLockManagers {
		return "", errdefs.NotImplemented("autolock is not supported: manager keys and Raft data are not encrypted at rest by this engine")
	}
	avail, err := validAvailability(req.Availability)
	if err != nil {
		return "", err
	}
	listen, lip, lport, err := listenAddr(req.ListenAddr)
	if err != nil {
		return "", err
	}
	adv, err := advertiseAddr(req.AdvertiseAddr, c.cfg.DefaultAdvertiseAddr, lip, lport, func() (netip.Addr, error) {
		return systemAddr(c.cfg.SkipInterfaces)
	})
	if err != nil {
		return "", err
	}
	c.setError("")

	root, err := ca.CreateRootCA()
	if err != nil {
		return "", err
	}
	nodeID, clusterID := ca.NewID(), ca.NewID()
	key, keyPEM, err := ca.GenerateKey()
	if err != nil {
		return "", err
	}
	csr, err := ca.CreateCSR(key)
	if err != nil {
		return "", err
	}
	certPEM, serial, err := root.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: nodeID, Role: swarm.NodeRoleManager, ClusterID: clusterID})
	if err != nil {
		return "", err
	}
	verifyOnly, err := ca.ParseRootCA(root.CertPEM, nil)
	if err != nil {
		return "", err
	}
	t, err := ca.NewNodeTLS(verifyOnly, keyPEM, certPEM)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.cfg.Root, 0o700); err != nil {
		return "", err
	}
	st := persisted{NodeID: nodeID, ClusterID: clusterID, ListenAddr: listen, AdvertiseAddr: adv}
	n := c.newNode(st, t)
	fail := func(err error) (string, error) {
		n.stop()
		_ = os.RemoveAll(c.cfg.Root)
		return "", err
	}
	if err := n.startManager(managerStart{bootstrap: true}); err != nil {
		return fail(err)
	}
	m := n.rawManager()
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := m.WaitLeader(wctx); err != nil {
		return fail(err)
	}
	self := &store.Node{CertRole: swarm.NodeRoleManager, CertSerial: serial}
	self.ID = nodeID
	self.Spec = swarm.NodeSpec{Role: swarm.NodeRoleManager, Availability: avail}
	self.Description = c.description()
	self.Description.TLSInfo = controlapi.TLSInfo(root.CertPEM)
	self.Status = swarm.NodeStatus{State: swarm.NodeStateReady, Addr: hostOf(adv)}
	if err := m.Control().Bootstrap(wctx, controlapi.BootstrapRequest{ClusterID: clusterID, Spec: req.Spec, Root: root, Node: self}); err != nil {
		return fail(err)
	}
	st.Managers = []swarm.Peer{{NodeID: nodeID, Addr: adv}}
	n.st.Managers = st.Managers
	n.setReady()
	if err := t.Save(c.certDir()); err != nil {
		return fail(err)
	}
	if err := c.saveState(st); err != nil {
		return fail(err)
	}
	c.setNode(n)
	n.start()
	c.log.Info("swarm initialized", "node", nodeID, "cluster", clusterID, "advertise", adv)
	return nodeID, nil
}

// forceNewCluster restarts this manager as the only voter of its swarm.
func (c *Cluster) forceNewCluster(ctx context.Context, n *node) (string, error) {
	n.roleMu.Lock()
	defer n.roleMu.Unlock()
	n.stopManager()
	if err := n.startManager(managerStart{force: true}); err != nil {
		c.setError(fmt.Sprintf("force-new-cluster failed: %v", err))
		return "", err
	}
	n.setReady()
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	m := n.manager()
	if err := m.WaitLeader(wctx); err != nil {
		return "", err
	}
	n.setManagers(m.Control().Managers())
	c.log.Info("swarm rebuilt with this node as the only manager", "node", n.id())
	return n.id(), nil
}

func hostOf(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

// fetchRootCA reads the root certificate a manager serves, and checks that
// the manager's own certificate chains to it. Nothing secret is sent: the
// caller compares its fingerprint with the join token before sending the
// token.
func fetchRootCA(ctx context.Context, remote string) (*ca.RootCA, error) {
	var peer []*x509.Certificate
	conf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Not verified yet: we do not know the root until we read it.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			peer = cs.PeerCertificates
			return nil
		},
	}
	client := transport.NewHTTPClient(conf)
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, transport.URL(remote, manager.PathRootCA), nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &transport.UnreachableError{Addr: remote, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, transport.DecodeError(resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	root, err := ca.ParseRootCA(b, nil)
	if err != nil {
		return nil, err
	}
	if len(peer) == 0 {
		return nil, errdefs.Unavailable("manager %s presented no certificate", remote)
	}
	if _, err := peer[0].Verify(x509.VerifyOptions{Roots: root.Pool, DNSName: ca.ManagerServerName}); err != nil {
		return nil, errdefs.Unauthorized("manager %s: certificate does not chain to the CA it serves: %v", remote, err)
	}
	return root, nil
}

// Join joins the swarm of req.RemoteAddrs as a worker or a manager (by
// token). It returns once the node is a member: a manager has joined Raft
// and holds the swarm state.
func (c *Cluster) Join(ctx context.Context, req swarm.JoinRequest) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	if c.node() != nil {
		return controlapi.ErrSwarmExists
	}
	tok, err := ca.ParseToken(req.JoinToken)
	if err != nil {
		return err
	}
	if len(req.RemoteAddrs) == 0 {
		return errdefs.InvalidParameter("at least 1 RemoteAddr is required to join")
	}
	avail, err := validAvailability(req.Availability)
	if err != nil {
		return err
	}
	listen, lip, lport, err := listenAddr(req.ListenAddr)
	if err != nil {
		return err
	}
	var remotes []string
	for _, r := range req.RemoteAddrs {
		ra, err := remoteAddr(r)
		if err != nil {
			return err
		}
		remotes = append(remotes, ra)
	}
	c.mu.Lock()
	c.pending, c.errMsg = true, ""
	c.mu.Unlock()
	err = c.join(ctx, tok, req, remotes, avail, listen, lip, lport)
	if err != nil {
		c.mu.Lock()
		c.pending = false
		c.mu.Unlock()
		_ = os.RemoveAll(c.cfg.Root)
	}
	return err
}

func (c *Cluster) join(ctx context.Context, tok ca.Token, req swarm.JoinRequest, remotes []string, avail swarm.NodeAvailability, listen string, lip netip.Addr, lport int) error {
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	key, keyPEM, err := ca.GenerateKey()
	if err != nil {
		return err
	}
	csr, err := ca.CreateCSR(key)
	if err != nil {
		return err
	}
	// Bind the cluster port first: a manager must be reachable before the
	// leader adds it to Raft, and a busy port must fail the join before
	// the swarm records the node.
	l, bindErr := transport.Bind(listen)
	defer func() {
		if l != nil {
			l.Close()
		}
	}()
	var (
		resp controlapi.JoinResponse
		root *ca.RootCA
		adv  string
		last error
	)
	for _, remote := range remotes {
		root, err = fetchRootCA(ctx, remote)
		if err != nil {
			last = err
			if transport.IsUnreachable(err) {
				continue
			}
			return err
		}
		if !tok.MatchesCA(root) {
			return errdefs.InvalidParameter("remote CA does not match fingerprint. Expected: %s", tok.Digest)
		}
		adv, err = advertiseAddr(req.AdvertiseAddr, c.cfg.DefaultAdvertiseAddr, lip, lport, func() (netip.Addr, error) {
			return localAddrTowards(ctx, remote)
		})
		if err != nil {
			return err
		}
		client := transport.NewHTTPClient(ca.AnonymousClientConfig(root, nil))
		jr := controlapi.JoinRequest{Token: req.JoinToken, CSR: csr, Addr: adv, Availability: avail, Description: c.description()}
		err = transport.Do(ctx, client, http.MethodPost, remote, manager.PathJoin, jr, &resp)
		client.CloseIdleConnections()
		if err == nil {
			last = nil
			break
		}
		last = err
		if !transport.IsUnreachable(err) {
			return err
		}
	}
	if last != nil {
		if transport.IsUnreachable(last) {
			return errdefs.Wrapf(errdefs.KindUnavailable, last, "could not reach any manager of the swarm")
		}
		return last
	}
	t, err := ca.NewNodeTLS(root, keyPEM, resp.Cert)
	if err != nil {
		return err
	}
	if id := t.Identity(); id.NodeID != resp.NodeID || id.ClusterID != resp.ClusterID {
		return errdefs.System("the manager issued a certificate for %s, not %s", id.NodeID, resp.NodeID)
	}
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		return err
	}
	if err := os.MkdirAll(c.cfg.Root, 0o700); err != nil {
		return err
	}
	st := persisted{NodeID: resp.NodeID, ClusterID: resp.ClusterID, ListenAddr: listen, AdvertiseAddr: adv, Managers: resp.Managers}
	n := c.newNode(st, t)
	if resp.Role == swarm.NodeRoleManager {
		if bindErr != nil {
			return bindErr
		}
		if err := n.startManager(managerStart{listener: l}); err != nil {
			return err
		}
		l = nil // the cluster port owns it now
		if err := n.joinRaft(ctx); err != nil {
			n.stop()
			return err
		}
	}
	if err := t.Save(c.certDir()); err != nil {
		n.stop()
		return err
	}
	if err := c.saveState(st); err != nil {
		n.stop()
		return err
	}
	c.setNode(n)
	n.start()
	c.log.Info("joined swarm", "node", resp.NodeID, "role", resp.Role, "advertise", adv)
	return nil
}

// Leave leaves the swarm and erases this node's swarm state. A manager
// refuses without force (docker's message); with force it first removes
// itself from Raft when the others can still commit that.
func (c *Cluster) Leave(ctx context.Context, force bool) error {
	c.opMu.Lock()
	defer c.opMu.Unlock()
	n := c.node()
	errState := c.State() == string(swarm.LocalNodeStateError)
	if n == nil {
		if errState {
			c.setError("")
			return os.RemoveAll(c.cfg.Root)
		}
		return controlapi.ErrNotInSwarm
	}
	if m := n.manager(); m != nil && !errState {
		if !force {
			return leaveRefusal(m)
		}
		if members, err := m.Raft().Members(); err == nil && len(members) > 1 {
			lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := m.Control().RaftLeave(lctx, n.id())
			cancel()
			if err != nil {
				c.log.Warn("could not remove this manager from raft before leaving", "err", err)
			}
		}
	}
	n.stop()
	c.mu.Lock()
	c.n, c.pending, c.errMsg = nil, false, ""
	c.mu.Unlock()
	if err := os.RemoveAll(c.cfg.Root); err != nil {
		return err
	}
	c.log.Info("left the swarm")
	return nil
}
