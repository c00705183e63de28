package controlapi

import (
	"context"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

func (s *Server) registerNodes() {
	Handle(s.fwd, "node.update", s.leaderUpdateNode)
	Handle(s.fwd, "node.remove", s.leaderRemoveNode)
}

// addrIP returns the IP of an "IP:port" address.
func addrIP(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", errdefs.InvalidParameter("invalid address %q: %v", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "", errdefs.InvalidParameter("invalid address %q: not an IP address", addr)
	}
	return ip.String(), nil
}

// nodeName is what name filters and name lookups match: the hostname,
// unless the node was given a name.
func nodeName(n *store.Node) string {
	if n.Spec.Name != "" {
		return n.Spec.Name
	}
	return n.Description.Hostname
}

// managerView is the Raft state ManagerStatus is computed from.
type managerView struct {
	members  map[string]sraft.Member
	leaderID string
	self     string
	reach    func(string) bool
}

func (s *Server) managerView() managerView {
	v := managerView{members: map[string]sraft.Member{}, self: s.raft.ID(), reach: s.reachable}
	v.leaderID, _ = s.raft.Leader()
	if ms, err := s.raft.Members(); err == nil {
		for _, m := range ms {
			if m.Voter {
				v.members[m.ID] = m
			}
		}
	}
	return v
}

// wire converts a stored node for the API, with its manager status.
func (v managerView) wire(n *store.Node, tls swarm.TLSInfo) swarm.Node {
	w := n.Node
	w.Description.TLSInfo = tls
	if m, ok := v.members[n.ID]; ok {
		st := &swarm.ManagerStatus{Addr: m.Addr, Leader: n.ID == v.leaderID, Reachability: swarm.ReachabilityUnreachable}
		if n.ID == v.self || v.reach(n.ID) {
			st.Reachability = swarm.ReachabilityReachable
		}
		w.ManagerStatus = st
	}
	return w
}

var nodeFilters = map[string]bool{"id": true, "name": true, "label": true, "node.label": true, "role": true, "membership": true}

// ListNodes lists nodes matching docker's node filters: id and name
// (prefixes), label (engine labels), node.label (node labels), role,
// membership.
func (s *Server) ListNodes(ctx context.Context, args filters.Args) ([]swarm.Node, error) {
	if err := args.Validate(nodeFilters); err != nil {
		return nil, errdefs.Wrap(errdefs.KindInvalidParameter, err)
	}
	var roles []swarm.NodeRole
	for _, r := range args.Get("role") {
		switch strings.ToLower(r) {
		case "manager":
			roles = append(roles, swarm.NodeRoleManager)
		case "worker":
			roles = append(roles, swarm.NodeRoleWorker)
		case "":
		default:
			return nil, errdefs.InvalidParameter("Invalid role filter: '%s'", r)
		}
	}
	for _, m := range args.Get("membership") {
		switch strings.ToLower(m) {
		case "accepted", "":
		case "pending":
			// Every node that holds a certificate is accepted.
			return []swarm.Node{}, nil
		default:
			return nil, errdefs.InvalidParameter("Invalid membership filter: '%s'", m)
		}
	}
	match := func(n *store.Node) bool {
		if ids := args.Get("id"); len(ids) > 0 && !nodeHasPrefix(n.ID, ids) {
			return false
		}
		if names := args.Get("name"); len(names) > 0 && !nodeHasPrefix(nodeName(n), names) {
			return false
		}
		if len(roles) > 0 && !nodeRoleIn(roles, n.Spec.Role) {
			return false
		}
		if args.Contains("label") && !args.MatchKVList("label", n.Description.Engine.Labels) {
			return false
		}
		if args.Contains("node.label") && !args.MatchKVList("node.label", n.Spec.Labels) {
			return false
		}
		return true
	}
	var (
		nodes []*store.Node
		c     *store.Cluster
	)
	s.SyncRead(ctx)
	s.store.View(func(rt store.ReadTx) {
		nodes = rt.FindNodes(store.All())
		c = rt.GetCluster()
	})
	var tls swarm.TLSInfo
	if c != nil {
		tls = TLSInfo(c.RootCACertPEM)
	}
	v := s.managerView()
	out := []swarm.Node{}
	for _, n := range nodes {
		if match(n) {
			out = append(out, v.wire(n, tls))
		}
	}
	sortNodes(out)
	return out, nil
}

func sortNodes(ns []swarm.Node) {
	sort.Slice(ns, func(i, j int) bool {
		if ns[i].Description.Hostname != ns[j].Description.Hostname {
			return ns[i].Description.Hostname < ns[j].Description.Hostname
		}
		return ns[i].ID < ns[j].ID
	})
}

func nodeHasPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func nodeRoleIn(xs []swarm.NodeRole, x swarm.NodeRole) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// resolveNode finds a node as docker does: full ID, else exact name
// (hostname), else ID prefix. Several matches are ambiguous.
func resolveNode(rt store.ReadTx, ref string) (*store.Node, error) {
	if ref == "" {
		return nil, errdefs.InvalidParameter("invalid node name or ID: value is empty")
	}
	if n := rt.GetNode(ref); n != nil {
		return n, nil
	}
	all := rt.FindNodes(store.All())
	var matches []*store.Node
	for _, n := range all {
		if strings.EqualFold(nodeName(n), ref) {
			matches = append(matches, n)
		}
	}
	if len(matches) == 0 {
		for _, n := range all {
			if strings.HasPrefix(n.ID, ref) {
				matches = append(matches, n)
			}
		}
	}
	switch len(matches) {
	case 0:
		return nil, errdefs.NotFound("node %s not found", ref)
	case 1:
		return matches[0], nil
	}
	return nil, errdefs.InvalidParameter("node %s is ambiguous (%d matches found)", ref, len(matches))
}

// GetNode returns a node by ID, name or ID prefix.
func (s *Server) GetNode(ctx context.Context, ref string) (swarm.Node, error) {
	var (
		n   *store.Node
		c   *store.Cluster
		err error
	)
	s.SyncRead(ctx)
	s.store.View(func(rt store.ReadTx) {
		n, err = resolveNode(rt, ref)
		c = rt.GetCluster()
	})
	if err != nil {
		return swarm.Node{}, err
	}
	var tls swarm.TLSInfo
	if c != nil {
		tls = TLSInfo(c.RootCACertPEM)
	}
	return s.managerView().wire(n, tls), nil
}

type updateNodeRequest struct {
	NodeID  string
	Version uint64
	Spec    swarm.NodeSpec
}

// UpdateNode replaces a node's spec (compare-and-set on version):
// availability, labels, name, and role — promotion and demotion. The
// node's certificate and Raft membership follow the new role.
func (s *Server) UpdateNode(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error {
	var (
		n   *store.Node
		err error
	)
	s.SyncRead(ctx)
	s.store.View(func(rt store.ReadTx) { n, err = resolveNode(rt, ref) })
	if err != nil {
		return err
	}
	return s.fwd.Forward(ctx, "node.update", updateNodeRequest{NodeID: n.ID, Version: version, Spec: spec}, nil)
}

func (s *Server) leaderUpdateNode(ctx context.Context, req updateNodeRequest) (struct{}, error) {
	spec := req.Spec
	var cur *store.Node
	s.store.View(func(rt store.ReadTx) { cur = rt.GetNode(req.NodeID) })
	if cur == nil {
		return struct{}{}, errdefs.NotFound("node %s not found", req.NodeID)
	}
	// An empty role or availability keeps the current one (docker's CLI
	// always sends both).
	if spec.Role == "" {
		spec.Role = cur.Spec.Role
	}
	if spec.Availability == "" {
		spec.Availability = cur.Spec.Availability
	}
	spec.Role = swarm.NodeRole(strings.ToLower(string(spec.Role)))
	spec.Availability = swarm.NodeAvailability(strings.ToLower(string(spec.Availability)))
	if spec.Role != swarm.NodeRoleManager && spec.Role != swarm.NodeRoleWorker {
		return struct{}{}, errdefs.InvalidParameter("invalid Role: %q", req.Spec.Role)
	}
	if !validAvailability(spec.Availability) {
		return struct{}{}, errdefs.InvalidParameter("invalid Availability: %q", req.Spec.Availability)
	}
	demote := cur.Spec.Role == swarm.NodeRoleManager && spec.Role == swarm.NodeRoleWorker
	if demote {
		if err := s.checkDemote(cur.ID); err != nil {
			return struct{}{}, err
		}
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		n := tx.GetNode(req.NodeID)
		if n == nil {
			return errdefs.NotFound("node %s not found", req.NodeID)
		}
		if n.Meta.Version.Index != req.Version {
			return errdefs.Wrap(errdefs.KindConflict, store.ErrSequence)
		}
		c := n.Copy()
		c.Spec = spec
		return tx.Update(c)
	})
	if err != nil {
		return struct{}{}, err
	}
	if demote && cur.ID != s.raft.ID() {
		// Leave Raft now; the leader's reconciler retries if this fails
		// and moves leadership away first when the leader demotes itself.
		if members, err := s.raft.Members(); err == nil && isRaftMember(members, cur.ID) {
			if err := s.raft.RemoveServer(ctx, cur.ID); err != nil {
				s.log.Warn("demoted manager not yet removed from raft", "node", cur.ID, "err", err)
			}
		}
	}
	return struct{}{}, nil
}

func isRaftMember(ms []sraft.Member, id string) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// checkDemote refuses demotions docker refuses: the last manager, and one
// whose removal from Raft would lose the quorum.
func (s *Server) checkDemote(id string) error {
	var managers int
	s.store.View(func(rt store.ReadTx) {
		for _, n := range rt.FindNodes(store.All()) {
			if n.Spec.Role == swarm.NodeRoleManager {
				managers++
			}
		}
	})
	if managers <= 1 {
		return failedPrecondition("attempting to demote the last manager of the swarm")
	}
	members, err := s.raft.Members()
	if err != nil {
		return err
	}
	if !isRaftMember(members, id) {
		return nil // promoted but never joined Raft: nothing to remove
	}
	self := s.raft.ID()
	reach := func(m string) bool { return m == self || s.reachable(m) }
	if !sraft.CanRemove(members, id, reach) {
		return failedPrecondition("can't remove member from the raft: this would result in a loss of quorum")
	}
	return nil
}

type removeNodeRequest struct {
	NodeID string
	Force  bool
}

// RemoveNode deletes a node from the swarm and revokes its certificate.
// Managers must be demoted first; a ready node needs force.
func (s *Server) RemoveNode(ctx context.Context, ref string, force bool) error {
	var (
		n   *store.Node
		err error
	)
	s.SyncRead(ctx)
	s.store.View(func(rt store.ReadTx) { n, err = resolveNode(rt, ref) })
	if err != nil {
		return err
	}
	return s.fwd.Forward(ctx, "node.remove", removeNodeRequest{NodeID: n.ID, Force: force}, nil)
}

func (s *Server) leaderRemoveNode(ctx context.Context, req removeNodeRequest) (struct{}, error) {
	members, err := s.raft.Members()
	if err != nil {
		return struct{}{}, err
	}
	return struct{}{}, s.store.Update(ctx, func(tx store.Tx) error {
		n := tx.GetNode(req.NodeID)
		if n == nil {
			return errdefs.NotFound("node %s not found", req.NodeID)
		}
		if n.Spec.Role == swarm.NodeRoleManager && isRaftMember(members, n.ID) {
			return failedPrecondition("node %s is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", n.ID)
		}
		if !req.Force && n.Status.State == swarm.NodeStateReady {
			return failedPrecondition("node %s is not down and can't be removed", n.ID)
		}
		if err := tx.Delete(store.KindNode, n.ID); err != nil {
			return err
		}
		c := tx.GetCluster()
		if c == nil {
			return nil
		}
		x := c.Copy()
		// Kept as long as a certificate issued before now may be valid:
		// the longest expiry the swarm uses (it may have been shortened
		// since) plus the renewal overlap.
		keep := max(c.Spec.CAConfig.NodeCertExpiry, ca.DefaultNodeCertExpiry) + 24*time.Hour
		x.RemovedNodes = c.WithRemoved(n.ID, time.Now().UTC(), keep)
		return tx.Update(x)
	})
}
