package controlapi

import (
	"context"
	"crypto/x509"
	"errors"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// DefaultClusterName is the only swarm spec name docker accepts.
const DefaultClusterName = "default"

// DefaultSpec is swarmkit's default cluster spec.
func DefaultSpec() swarm.Spec {
	retention := int64(5)
	keep := uint64(0)
	return swarm.Spec{
		Annotations:   swarm.Annotations{Name: DefaultClusterName},
		Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &retention},
		Raft: swarm.RaftConfig{
			SnapshotInterval:           10000,
			KeepOldSnapshots:           &keep,
			LogEntriesForSlowFollowers: 500,
			ElectionTick:               10,
			HeartbeatTick:              1,
		},
		Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: 5 * time.Second},
		CAConfig:   swarm.CAConfig{NodeCertExpiry: ca.DefaultNodeCertExpiry},
	}
}

// MergeSpec lays the set (non-zero) fields of in over base, as docker does
// for init (over the defaults) and update (over the defaults too: clients
// send the whole spec they read). It validates the result.
func MergeSpec(base, in swarm.Spec) (swarm.Spec, error) {
	out := base
	switch in.Annotations.Name {
	case "", DefaultClusterName:
	default:
		return swarm.Spec{}, errdefs.InvalidParameter(`swarm spec must be named "default"`)
	}
	out.Annotations.Labels = in.Annotations.Labels
	if in.Orchestration.TaskHistoryRetentionLimit != nil {
		v := *in.Orchestration.TaskHistoryRetentionLimit
		out.Orchestration.TaskHistoryRetentionLimit = &v
	}
	if in.Raft.SnapshotInterval != 0 {
		out.Raft.SnapshotInterval = in.Raft.SnapshotInterval
	}
	if in.Raft.KeepOldSnapshots != nil {
		v := *in.Raft.KeepOldSnapshots
		out.Raft.KeepOldSnapshots = &v
	}
	if in.Raft.LogEntriesForSlowFollowers != 0 {
		out.Raft.LogEntriesForSlowFollowers = in.Raft.LogEntriesForSlowFollowers
	}
	if in.Raft.ElectionTick != 0 {
		out.Raft.ElectionTick = in.Raft.ElectionTick
	}
	if in.Raft.HeartbeatTick != 0 {
		out.Raft.HeartbeatTick = in.Raft.HeartbeatTick
	}
	if in.Dispatcher.HeartbeatPeriod != 0 {
		out.Dispatcher.HeartbeatPeriod = in.Dispatcher.HeartbeatPeriod
	}
	if in.CAConfig.NodeCertExpiry != 0 {
		out.CAConfig.NodeCertExpiry = in.CAConfig.NodeCertExpiry
	}
	out.TaskDefaults = in.TaskDefaults
	if in.EncryptionConfig.AutoLockManagers {
		return swarm.Spec{}, errdefs.NotImplemented("autolock is not supported: manager keys and Raft data are not encrypted at rest by this engine")
	}
	if len(in.CAConfig.ExternalCAs) > 0 || in.CAConfig.SigningCACert != "" || in.CAConfig.SigningCAKey != "" {
		return swarm.Spec{}, errdefs.NotImplemented("external CAs and custom root CAs are not supported")
	}
	if in.CAConfig.ForceRotate != base.CAConfig.ForceRotate && in.CAConfig.ForceRotate != 0 {
		return swarm.Spec{}, errdefs.NotImplemented("root CA rotation is not supported")
	}
	switch {
	case out.CAConfig.NodeCertExpiry < ca.MinNodeCertExpiry:
		return swarm.Spec{}, grpcInvalidArgument("minimum certificate expiry time is: %s", ca.MinNodeCertExpiry)
	case out.Dispatcher.HeartbeatPeriod < 0:
		return swarm.Spec{}, grpcInvalidArgument("heartbeat period must be positive")
	case out.Raft.ElectionTick <= out.Raft.HeartbeatTick:
		return swarm.Spec{}, grpcInvalidArgument("ElectionTick must be greater than HeartbeatTick")
	}
	return out, nil
}

func (s *Server) registerSwarm() {
	Handle(s.fwd, "swarm.update", s.leaderUpdateSwarm)
	Handle(s.fwd, "swarm.join", s.leaderJoin)
	Handle(s.fwd, "ca.renew", s.leaderRenew)
	Handle(s.fwd, "raft.join", s.leaderRaftJoin)
	Handle(s.fwd, "raft.leave", s.leaderRaftLeave)
}

// cluster returns the cluster object of this manager's store.
func (s *Server) cluster() (*store.Cluster, error) {
	var c *store.Cluster
	s.store.View(func(rt store.ReadTx) { c = rt.GetCluster() })
	if c == nil {
		return nil, errdefs.Unavailable("this manager has not received the swarm state yet")
	}
	return c, nil
}

// signer returns the cluster's root CA with its key.
func clusterSigner(c *store.Cluster) (*ca.RootCA, error) {
	return ca.ParseRootCA(c.RootCACertPEM, c.RootCAKeyPEM)
}

// TLSInfo is the wire description of the cluster's trust root.
func TLSInfo(rootPEM []byte) swarm.TLSInfo {
	// Every node view carries it, and the root rarely changes: parse it
	// once per root.
	tlsInfoCache.mu.Lock()
	defer tlsInfoCache.mu.Unlock()
	if tlsInfoCache.pem != string(rootPEM) {
		tlsInfoCache.pem, tlsInfoCache.info = string(rootPEM), swarm.TLSInfo{}
		if rc, err := ca.ParseRootCA(rootPEM, nil); err == nil {
			pub, _ := x509.MarshalPKIXPublicKey(rc.Cert.PublicKey)
			tlsInfoCache.info = swarm.TLSInfo{
				TrustRoot:           string(rootPEM),
				CertIssuerSubject:   rc.Cert.RawSubject,
				CertIssuerPublicKey: pub,
			}
		}
	}
	// The byte slices are shared: callers only encode them.
	return tlsInfoCache.info
}

var tlsInfoCache struct {
	mu   sync.Mutex
	pem  string
	info swarm.TLSInfo
}

// BootstrapRequest is the state a new swarm starts with (swarm init).
type BootstrapRequest struct {
	ClusterID string
	Spec      swarm.Spec
	Root      *ca.RootCA
	Node      *store.Node // the first manager, with its certificate fields
}

// Bootstrap writes the cluster object and the first node. It runs on the
// new single-member cluster's leader right after it is elected.
func (s *Server) Bootstrap(ctx context.Context, req BootstrapRequest) error {
	spec, err := MergeSpec(DefaultSpec(), req.Spec)
	if err != nil {
		return err
	}
	return s.store.Update(ctx, func(tx store.Tx) error {
		if tx.GetCluster() != nil {
			return errdefs.Conflict("the swarm is already initialized")
		}
		c := &store.Cluster{RootCACertPEM: req.Root.CertPEM, RootCAKeyPEM: req.Root.KeyPEM}
		c.ID = req.ClusterID
		c.Spec = spec
		c.JoinTokens = swarm.JoinTokens{Worker: req.Root.NewJoinToken(), Manager: req.Root.NewJoinToken()}
		c.TLSInfo = TLSInfo(req.Root.CertPEM)
		if err := tx.Create(c); err != nil {
			return err
		}
		return tx.Create(req.Node)
	})
}

// InspectSwarm returns the swarm as GET /swarm shows it (join tokens
// included, CA key left out).
func (s *Server) InspectSwarm(ctx context.Context) (swarm.Swarm, error) {
	s.SyncRead(ctx)
	c, err := s.cluster()
	if err != nil {
		return swarm.Swarm{}, err
	}
	return WireSwarm(c), nil
}

// WireSwarm converts the stored cluster object.
func WireSwarm(c *store.Cluster) swarm.Swarm {
	sw := c.Swarm
	sw.Spec.CAConfig.SigningCAKey = ""
	sw.TLSInfo = TLSInfo(c.RootCACertPEM)
	return sw
}

// UpdateFlags are the rotations of a swarm update.
type UpdateFlags struct {
	RotateWorkerToken      bool
	RotateManagerToken     bool
	RotateManagerUnlockKey bool
}

type updateSwarmRequest struct {
	Version uint64
	Spec    swarm.Spec
	Flags   UpdateFlags
}

// UpdateSwarm replaces the swarm spec (compare-and-set on version) and
// rotates join tokens: a rotated token's old secret no longer joins.
func (s *Server) UpdateSwarm(ctx context.Context, version uint64, spec swarm.Spec, flags UpdateFlags) error {
	return s.fwd.Forward(ctx, "swarm.update", updateSwarmRequest{Version: version, Spec: spec, Flags: flags}, nil)
}

func (s *Server) leaderUpdateSwarm(ctx context.Context, req updateSwarmRequest) (struct{}, error) {
	if req.Flags.RotateManagerUnlockKey {
		return struct{}{}, errdefs.NotImplemented("autolock is not supported: there is no unlock key to rotate")
	}
	return struct{}{}, s.store.Update(ctx, func(tx store.Tx) error {
		cur := tx.GetCluster()
		if cur == nil {
			return errdefs.Unavailable("the swarm is not initialized")
		}
		if cur.Meta.Version.Index != req.Version {
			return errdefs.Wrap(errdefs.KindConflict, store.ErrSequence)
		}
		base := DefaultSpec()
		base.CAConfig.ForceRotate = cur.Spec.CAConfig.ForceRotate
		spec, err := MergeSpec(base, req.Spec)
		if err != nil {
			return err
		}
		root, err := ca.ParseRootCA(cur.RootCACertPEM, nil)
		if err != nil {
			return err
		}
		c := cur.Copy()
		c.Spec = spec
		if req.Flags.RotateWorkerToken {
			c.JoinTokens.Worker = root.NewJoinToken()
		}
		if req.Flags.RotateManagerToken {
			c.JoinTokens.Manager = root.NewJoinToken()
		}
		return tx.Update(c)
	})
}

// JoinRequest is what a joining node sends (POST /swarm/join on the
// cluster port, no client certificate).
type JoinRequest struct {
	Token        string
	CSR          []byte // PEM; the node keeps its key
	Addr         string // advertised "IP:port"
	Availability swarm.NodeAvailability
	Description  swarm.NodeDescription
}

// JoinResponse admits a node.
type JoinResponse struct {
	NodeID    string
	ClusterID string
	Role      swarm.NodeRole
	Cert      []byte // PEM, signed for the CSR's key
	RootCA    []byte // PEM
	Managers  []swarm.Peer
}

// Join admits a node holding a valid join token: it gets an ID, a
// certificate for its role and a node object (READY at its address).
func (s *Server) Join(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	return Call[JoinResponse](ctx, s.fwd, "swarm.join", req)
}

func validAvailability(a swarm.NodeAvailability) bool {
	switch a {
	case swarm.NodeAvailabilityActive, swarm.NodeAvailabilityPause, swarm.NodeAvailabilityDrain:
		return true
	}
	return false
}

func (s *Server) leaderJoin(ctx context.Context, req JoinRequest) (JoinResponse, error) {
	tok, err := ca.ParseToken(req.Token)
	if err != nil {
		return JoinResponse{}, err
	}
	c, err := s.cluster()
	if err != nil {
		return JoinResponse{}, err
	}
	root, err := clusterSigner(c)
	if err != nil {
		return JoinResponse{}, err
	}
	var role swarm.NodeRole
	switch {
	case !tok.MatchesCA(root):
		return JoinResponse{}, ErrBadJoinSecret
	case ca.SameSecret(req.Token, c.JoinTokens.Manager):
		role = swarm.NodeRoleManager
	case ca.SameSecret(req.Token, c.JoinTokens.Worker):
		role = swarm.NodeRoleWorker
	default:
		return JoinResponse{}, ErrBadJoinSecret
	}
	if req.Availability == "" {
		req.Availability = swarm.NodeAvailabilityActive
	}
	if !validAvailability(req.Availability) {
		return JoinResponse{}, errdefs.InvalidParameter("invalid Availability: %q", req.Availability)
	}
	ip, err := addrIP(req.Addr)
	if err != nil {
		return JoinResponse{}, err
	}
	id := ca.NewID()
	cert, serial, err := root.Issue(ca.IssueRequest{
		CSRPEM: req.CSR, NodeID: id, Role: role, ClusterID: c.ID, Expiry: c.Spec.CAConfig.NodeCertExpiry,
	})
	if err != nil {
		return JoinResponse{}, err
	}
	n := &store.Node{CertRole: role, CertSerial: serial}
	n.ID = id
	n.Spec = swarm.NodeSpec{Role: role, Availability: req.Availability}
	n.Description = req.Description
	n.Description.TLSInfo = TLSInfo(c.RootCACertPEM)
	// Ready at join; the dispatcher's heartbeats own liveness from here on.
	n.Status = swarm.NodeStatus{State: swarm.NodeStateReady, Addr: ip}
	if err := s.store.Update(ctx, func(tx store.Tx) error { return tx.Create(n) }); err != nil {
		return JoinResponse{}, err
	}
	s.log.Info("node joined", "node", id, "role", role, "addr", req.Addr, "hostname", req.Description.Hostname)
	return JoinResponse{
		NodeID: id, ClusterID: c.ID, Role: role, Cert: cert, RootCA: c.RootCACertPEM, Managers: s.Managers(),
	}, nil
}

// RenewRequest asks for a new certificate for a node's key. The role comes
// from the node's spec: this is how promotions and demotions reach the
// node.
type RenewRequest struct {
	NodeID string
	CSR    []byte
}

// RenewResponse carries the new certificate.
type RenewResponse struct {
	Cert []byte
}

// RenewCertificate issues a new certificate to a node (the caller's
// identity was verified by the cluster port).
func (s *Server) RenewCertificate(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	return Call[RenewResponse](ctx, s.fwd, "ca.renew", req)
}

var errRoleChanged = errors.New("node role changed while signing")

func (s *Server) leaderRenew(ctx context.Context, req RenewRequest) (RenewResponse, error) {
	for attempt := 0; ; attempt++ {
		c, err := s.cluster()
		if err != nil {
			return RenewResponse{}, err
		}
		var n *store.Node
		s.store.View(func(rt store.ReadTx) { n = rt.GetNode(req.NodeID) })
		if n == nil {
			return RenewResponse{}, errdefs.NotFound("node %s not found", req.NodeID)
		}
		root, err := clusterSigner(c)
		if err != nil {
			return RenewResponse{}, err
		}
		role := n.Spec.Role
		cert, serial, err := root.Issue(ca.IssueRequest{
			CSRPEM: req.CSR, NodeID: n.ID, Role: role, ClusterID: c.ID, Expiry: c.Spec.CAConfig.NodeCertExpiry,
		})
		if err != nil {
			return RenewResponse{}, err
		}
		err = s.store.Update(ctx, func(tx store.Tx) error {
			cur := tx.GetNode(req.NodeID)
			if cur == nil {
				return errdefs.NotFound("node %s not found", req.NodeID)
			}
			if cur.Spec.Role != role {
				return errRoleChanged
			}
			x := cur.Copy()
			x.CertRole, x.CertSerial = role, serial
			return tx.Update(x)
		})
		if errors.Is(err, errRoleChanged) && attempt < 3 {
			continue
		}
		if err != nil {
			return RenewResponse{}, err
		}
		return RenewResponse{Cert: cert}, nil
	}
}

// RaftJoinRequest adds a manager to the Raft configuration.
type RaftJoinRequest struct {
	NodeID string
	Addr   string // Raft address (advertised IP:port)
}

// RaftJoin makes a node holding a manager certificate a Raft voter. The
// node must be listening already: the change commits only once it answers.
func (s *Server) RaftJoin(ctx context.Context, req RaftJoinRequest) error {
	return s.fwd.Forward(ctx, "raft.join", req, nil)
}

func (s *Server) leaderRaftJoin(ctx context.Context, req RaftJoinRequest) (struct{}, error) {
	var n *store.Node
	s.store.View(func(rt store.ReadTx) { n = rt.GetNode(req.NodeID) })
	switch {
	case n == nil:
		return struct{}{}, errdefs.NotFound("node %s not found", req.NodeID)
	case n.Spec.Role != swarm.NodeRoleManager || n.CertRole != swarm.NodeRoleManager:
		return struct{}{}, failedPrecondition("node %s is not a manager", req.NodeID)
	}
	if _, err := addrIP(req.Addr); err != nil {
		return struct{}{}, err
	}
	return struct{}{}, s.raft.AddVoter(ctx, req.NodeID, req.Addr)
}

// RaftLeaveRequest removes a manager from the Raft configuration.
type RaftLeaveRequest struct {
	NodeID string
}

// RaftLeave removes a manager that is leaving the swarm from Raft.
func (s *Server) RaftLeave(ctx context.Context, nodeID string) error {
	return s.fwd.Forward(ctx, "raft.leave", RaftLeaveRequest{NodeID: nodeID}, nil)
}

func (s *Server) leaderRaftLeave(ctx context.Context, req RaftLeaveRequest) (struct{}, error) {
	members, err := s.raft.Members()
	if err != nil {
		return struct{}{}, err
	}
	if !slices.ContainsFunc(members, func(m sraft.Member) bool { return m.ID == req.NodeID }) {
		return struct{}{}, nil
	}
	return struct{}{}, s.raft.RemoveServer(ctx, req.NodeID)
}

// Managers lists the Raft voters (node ID and address), sorted by ID.
func (s *Server) Managers() []swarm.Peer {
	members, err := s.raft.Members()
	if err != nil {
		return nil
	}
	var out []swarm.Peer
	for _, m := range members {
		if m.Voter {
			out = append(out, swarm.Peer{NodeID: m.ID, Addr: m.Addr})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// SessionResponse is a node's view of its membership.
type SessionResponse struct {
	// Node is the node's object; nil when this manager does not know it
	// (yet: it may lag behind the leader).
	Node     *store.Node
	Managers []swarm.Peer
	Leader   string // leader address, "" if unknown
}

// Session returns the node's object at once if its version is above since,
// else when its role changes or it is removed, or after wait. Nodes use it
// to learn role changes (then renew their certificate) and the current
// managers. Other changes of the node (labels, availability, status) do
// not end the wait: a cluster busy relabelling nodes would otherwise wake
// every node's poll, and the manager's goroutine for it, for each change.
func (s *Server) Session(ctx context.Context, nodeID string, since uint64, wait time.Duration) SessionResponse {
	var n *store.Node
	match := func(ev *store.Event) bool {
		if ev.Object == nil || ev.Object.GetID() != nodeID {
			return false
		}
		if ev.Op != store.OpUpdate || ev.Old == nil {
			return true
		}
		return ev.Old.(*store.Node).Spec.Role != ev.Object.(*store.Node).Spec.Role
	}
	events, cancel := s.store.ViewAndWatchMatch(func(rt store.ReadTx) { n = rt.GetNode(nodeID) }, match, store.KindNode)
	defer cancel()
	if n == nil || n.Meta.Version.Index > since {
		return s.sessionReply(n)
	}
	current := func() SessionResponse {
		s.store.View(func(rt store.ReadTx) { n = rt.GetNode(nodeID) })
		return s.sessionReply(n)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return current()
		case <-t.C:
			return current()
		case ev, ok := <-events:
			if !ok || ev.Op == store.OpReset {
				return current()
			}
			if ev.Op == store.OpDelete {
				return s.sessionReply(nil)
			}
			return s.sessionReply(ev.Object.(*store.Node))
		}
	}
}

func (s *Server) sessionReply(n *store.Node) SessionResponse {
	_, leader := s.raft.Leader()
	return SessionResponse{Node: n, Managers: s.Managers(), Leader: leader}
}
