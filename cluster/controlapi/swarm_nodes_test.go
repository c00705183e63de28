package controlapi

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// fakeRaft is a leader with a settable configuration. The store applies
// writes locally (LocalProposer); the real Raft path is covered by the
// raft package and the end-to-end tests.
type fakeRaft struct {
	mu      sync.Mutex
	self    string
	members []sraft.Member
	removed []string
}

func (f *fakeRaft) IsLeader() bool                    { return true }
func (f *fakeRaft) ReadBarrier(context.Context) error { return nil }
func (f *fakeRaft) Leader() (string, string)          { return f.self, "127.0.0.1:2377" }
func (f *fakeRaft) ID() string                        { return f.self }
func (f *fakeRaft) Members() ([]sraft.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sraft.Member(nil), f.members...), nil
}
func (f *fakeRaft) AddVoter(ctx context.Context, id, addr string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = append(f.members, sraft.Member{ID: id, Addr: addr, Voter: true})
	return nil
}
func (f *fakeRaft) RemoveServer(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, id)
	for i, m := range f.members {
		if m.ID == id {
			f.members = append(f.members[:i], f.members[i+1:]...)
			break
		}
	}
	return nil
}

type fixture struct {
	s    *Server
	raft *fakeRaft
	root *ca.RootCA
	down map[string]bool
}

// newFixture makes a swarm whose nodes are given as id:hostname:role:state.
func newFixture(t *testing.T, nodes ...string) *fixture {
	t.Helper()
	root, err := ca.CreateRootCA()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{raft: &fakeRaft{self: "m1"}, root: root, down: map[string]bool{}}
	st := store.New()
	f.s = New(Config{
		Store: st, Raft: f.raft, Forwarder: NewForwarder(f.raft, nil),
		Reachable: func(id string) bool { return !f.down[id] },
	})
	boot := &store.Node{}
	boot.ID = "bootstrap"
	if err := f.s.Bootstrap(context.Background(), BootstrapRequest{ClusterID: "c1", Root: root, Node: boot}); err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		if err := tx.Delete(store.KindNode, "bootstrap"); err != nil {
			return err
		}
		for _, spec := range nodes {
			p := strings.Split(spec, ":")
			n := &store.Node{CertSerial: "serial-" + p[0]}
			n.ID = p[0]
			n.Description.Hostname = p[1]
			n.Spec.Role = swarm.NodeRole(p[2])
			n.CertRole = n.Spec.Role
			n.Spec.Availability = swarm.NodeAvailabilityActive
			n.Status.State = swarm.NodeState(p[3])
			n.Description.Engine.Labels = map[string]string{"host": p[1]}
			if err := tx.Create(n); err != nil {
				return err
			}
			if n.Spec.Role == swarm.NodeRoleManager {
				f.raft.members = append(f.raft.members, sraft.Member{ID: n.ID, Addr: "10.0.0." + p[0][1:] + ":2377", Voter: true})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) version(t *testing.T, ref string) uint64 {
	t.Helper()
	n, err := f.s.GetNode(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return n.Version.Index
}

func TestGetNodeResolution(t *testing.T) {
	f := newFixture(t, "m1:alpha:manager:ready", "w2abc:beta:worker:ready", "w2abd:twin:worker:ready", "w3:twin:worker:down")
	tests := []struct {
		ref, id string
		kind    errdefs.Kind
		msg     string
	}{
		{"m1", "m1", 0, ""},
		{"alpha", "m1", 0, ""},
		{"ALPHA", "m1", 0, ""},
		{"w3", "w3", 0, ""},
		{"w2abc", "w2abc", 0, ""},
		{"w2", "", errdefs.KindInvalidParameter, "node w2 is ambiguous (2 matches found)"},
		{"twin", "", errdefs.KindInvalidParameter, "node twin is ambiguous (2 matches found)"},
		{"nope", "", errdefs.KindNotFound, "node nope not found"},
		{"", "", errdefs.KindInvalidParameter, ""},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			n, err := f.s.GetNode(context.Background(), tc.ref)
			if tc.kind != 0 {
				if errdefs.KindOf(err) != tc.kind || (tc.msg != "" && err.Error() != tc.msg) {
					t.Fatalf("err %v (%v)", err, errdefs.KindOf(err))
				}
				return
			}
			if err != nil || n.ID != tc.id {
				t.Fatalf("got %s, %v", n.ID, err)
			}
		})
	}
	n, _ := f.s.GetNode(context.Background(), "m1")
	if n.ManagerStatus == nil || !n.ManagerStatus.Leader || n.ManagerStatus.Reachability != swarm.ReachabilityReachable || n.ManagerStatus.Addr != "10.0.0.1:2377" {
		t.Fatalf("manager status %+v", n.ManagerStatus)
	}
	if n.Description.TLSInfo.TrustRoot == "" {
		t.Fatal("no TLS info")
	}
}

func TestListNodesFilters(t *testing.T) {
	f := newFixture(t, "m1:alpha:manager:ready", "m2:bravo:manager:ready", "w3:charlie:worker:ready")
	ctx := context.Background()
	// A node label on w3.
	v := f.version(t, "w3")
	if err := f.s.UpdateNode(ctx, "w3", v, swarm.NodeSpec{Annotations: swarm.Annotations{Labels: map[string]string{"zone": "a"}}}); err != nil {
		t.Fatal(err)
	}
	f.down["m2"] = true
	tests := []struct {
		name string
		args filters.Args
		want []string
		kind errdefs.Kind
	}{
		{"all", filters.NewArgs(), []string{"m1", "m2", "w3"}, 0},
		{"role", filters.NewArgs(filters.Arg("role", "manager")), []string{"m1", "m2"}, 0},
		{"id prefix", filters.NewArgs(filters.Arg("id", "w")), []string{"w3"}, 0},
		{"name prefix", filters.NewArgs(filters.Arg("name", "br")), []string{"m2"}, 0},
		{"engine label", filters.NewArgs(filters.Arg("label", "host=alpha")), []string{"m1"}, 0},
		{"node label", filters.NewArgs(filters.Arg("node.label", "zone=a")), []string{"w3"}, 0},
		{"node label key", filters.NewArgs(filters.Arg("node.label", "zone")), []string{"w3"}, 0},
		{"membership", filters.NewArgs(filters.Arg("membership", "accepted")), []string{"m1", "m2", "w3"}, 0},
		{"pending", filters.NewArgs(filters.Arg("membership", "pending")), nil, 0},
		{"bad role", filters.NewArgs(filters.Arg("role", "boss")), nil, errdefs.KindInvalidParameter},
		{"bad key", filters.NewArgs(filters.Arg("color", "red")), nil, errdefs.KindInvalidParameter},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns, err := f.s.ListNodes(ctx, tc.args)
			if tc.kind != 0 {
				if errdefs.KindOf(err) != tc.kind {
					t.Fatalf("err %v", err)
				}
				return
			}
			var got []string
			for _, n := range ns {
				got = append(got, n.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	ns, _ := f.s.ListNodes(ctx, filters.NewArgs(filters.Arg("id", "m2")))
	if ns[0].ManagerStatus.Reachability != swarm.ReachabilityUnreachable || ns[0].ManagerStatus.Leader {
		t.Fatalf("m2 status %+v", ns[0].ManagerStatus)
	}
}

func TestUpdateNodeRules(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		nodes []string
		down  []string
		ref   string
		spec  swarm.NodeSpec
		stale bool
		kind  errdefs.Kind
		msg   string
	}{
		{name: "drain", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "w2",
			spec: swarm.NodeSpec{Role: "worker", Availability: "drain"}},
		{name: "stale version", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "w2", stale: true,
			spec: swarm.NodeSpec{Role: "worker", Availability: "pause"}, kind: errdefs.KindConflict, msg: "update out of sequence"},
		{name: "bad availability", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "w2",
			spec: swarm.NodeSpec{Role: "worker", Availability: "sleep"}, kind: errdefs.KindInvalidParameter, msg: `invalid Availability: "sleep"`},
		{name: "bad role", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "w2",
			spec: swarm.NodeSpec{Role: "boss", Availability: "active"}, kind: errdefs.KindInvalidParameter, msg: `invalid Role: "boss"`},
		{name: "demote last manager", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "m1",
			spec: swarm.NodeSpec{Role: "worker", Availability: "active"}, kind: errdefs.KindInvalidParameter,
			msg: "rpc error: code = FailedPrecondition desc = attempting to demote the last manager of the swarm"},
		{name: "demote loses quorum", nodes: []string{"m1:a:manager:ready", "m2:b:manager:ready", "m3:c:manager:down"}, down: []string{"m3"}, ref: "m2",
			spec: swarm.NodeSpec{Role: "worker", Availability: "active"}, kind: errdefs.KindInvalidParameter,
			msg: "rpc error: code = FailedPrecondition desc = can't remove member from the raft: this would result in a loss of quorum"},
		{name: "demote down manager", nodes: []string{"m1:a:manager:ready", "m2:b:manager:ready", "m3:c:manager:down"}, down: []string{"m3"}, ref: "m3",
			spec: swarm.NodeSpec{Role: "worker", Availability: "active"}},
		{name: "promote", nodes: []string{"m1:a:manager:ready", "w2:b:worker:ready"}, ref: "w2",
			spec: swarm.NodeSpec{Role: "manager", Availability: "active"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.nodes...)
			for _, d := range tc.down {
				f.down[d] = true
			}
			v := f.version(t, tc.ref)
			if tc.stale {
				v--
			}
			err := f.s.UpdateNode(ctx, tc.ref, v, tc.spec)
			if tc.kind != 0 {
				if errdefs.KindOf(err) != tc.kind || err.Error() != tc.msg {
					t.Fatalf("err %q (%v)", err, errdefs.KindOf(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			n, _ := f.s.GetNode(ctx, tc.ref)
			if n.Spec.Role != tc.spec.Role || n.Spec.Availability != tc.spec.Availability {
				t.Fatalf("spec %+v", n.Spec)
			}
			if tc.spec.Role == "worker" && strings.HasPrefix(tc.ref, "m") {
				if len(f.raft.removed) != 1 || f.raft.removed[0] != tc.ref {
					t.Fatalf("demoted manager not removed from raft: %v", f.raft.removed)
				}
			}
		})
	}
}

func TestRemoveNodeRules(t *testing.T) {
	ctx := context.Background()
	nodes := []string{"m1:a:manager:ready", "m2:b:manager:down", "w3:c:worker:ready", "w4:d:worker:down"}
	tests := []struct {
		ref   string
		force bool
		msg   string
		id    string // the node removed
	}{
		{"m2", true, "rpc error: code = FailedPrecondition desc = node m2 is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", ""},
		{"w3", false, "rpc error: code = FailedPrecondition desc = node w3 is not down and can't be removed", ""},
		{"w3", true, "", "w3"},
		{"d", false, "", "w4"},
		{"zz", false, "node zz not found", ""},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			f := newFixture(t, nodes...)
			err := f.s.RemoveNode(ctx, tc.ref, tc.force)
			if tc.msg != "" {
				if err == nil || err.Error() != tc.msg {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.s.GetNode(ctx, tc.ref); !errdefs.IsNotFound(err) {
				t.Fatalf("still there: %v", err)
			}
			c, _ := f.s.cluster()
			if len(c.RemovedNodes) != 1 || !c.IsRemoved(tc.id) || c.RemovedNodes[0].At.IsZero() {
				t.Fatalf("certificates of %s not revoked: %+v", tc.id, c.RemovedNodes)
			}
		})
	}
}

func TestJoinAndTokenRotation(t *testing.T) {
	f := newFixture(t, "m1:a:manager:ready")
	ctx := context.Background()
	sw, err := f.s.InspectSwarm(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sw.Spec.CAConfig.SigningCAKey != "" || sw.TLSInfo.TrustRoot == "" || sw.JoinTokens.Worker == sw.JoinTokens.Manager {
		t.Fatalf("swarm %+v", sw)
	}
	if *sw.Spec.Orchestration.TaskHistoryRetentionLimit != 5 || sw.Spec.Dispatcher.HeartbeatPeriod.Seconds() != 5 {
		t.Fatalf("defaults %+v", sw.Spec)
	}
	join := func(token string) (JoinResponse, error) {
		key, _, _ := ca.GenerateKey()
		csr, _ := ca.CreateCSR(key)
		return f.s.Join(ctx, JoinRequest{Token: token, CSR: csr, Addr: "10.0.0.9:2377", Description: swarm.NodeDescription{Hostname: "new"}})
	}
	w, err := join(sw.JoinTokens.Worker)
	if err != nil || w.Role != swarm.NodeRoleWorker || len(w.NodeID) != 25 {
		t.Fatalf("worker join %+v %v", w, err)
	}
	m, err := join(sw.JoinTokens.Manager)
	if err != nil || m.Role != swarm.NodeRoleManager {
		t.Fatalf("manager join %+v %v", m, err)
	}
	cert, _ := ca.ParseCertificate(m.Cert)
	if id, _ := ca.IdentityOf(cert); id.Role != swarm.NodeRoleManager || id.NodeID != m.NodeID || id.ClusterID != "c1" {
		t.Fatalf("cert identity %+v", id)
	}
	n, _ := f.s.GetNode(ctx, w.NodeID)
	if n.Status.State != swarm.NodeStateReady || n.Status.Addr != "10.0.0.9" || n.Description.Hostname != "new" {
		t.Fatalf("joined node %+v", n)
	}
	// Rotate the worker token: the old one is refused, the new one works.
	if err := f.s.UpdateSwarm(ctx, sw.Version.Index, sw.Spec, UpdateFlags{RotateWorkerToken: true}); err != nil {
		t.Fatal(err)
	}
	sw2, _ := f.s.InspectSwarm(ctx)
	if sw2.JoinTokens.Worker == sw.JoinTokens.Worker || sw2.JoinTokens.Manager != sw.JoinTokens.Manager {
		t.Fatal("rotation wrong")
	}
	if _, err := join(sw.JoinTokens.Worker); err != ErrBadJoinSecret {
		t.Fatalf("old token: %v", err)
	}
	if _, err := join(sw2.JoinTokens.Worker); err != nil {
		t.Fatal(err)
	}
	// A token of another swarm, and garbage.
	other, _ := ca.CreateRootCA()
	if _, err := join(other.NewJoinToken()); err != ErrBadJoinSecret {
		t.Fatalf("foreign token: %v", err)
	}
	if _, err := join("SWMTKN-1-nope"); !errdefs.IsInvalidParameter(err) || err.Error() != "invalid join token" {
		t.Fatalf("bad token: %v", err)
	}
	// Stale swarm version, spec validation.
	if err := f.s.UpdateSwarm(ctx, sw.Version.Index, sw.Spec, UpdateFlags{}); !store.IsSequence(err) {
		t.Fatalf("stale: %v", err)
	}
	bad := sw2.Spec
	bad.CAConfig.NodeCertExpiry = 1
	if err := f.s.UpdateSwarm(ctx, sw2.Version.Index, bad, UpdateFlags{}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("short expiry: %v", err)
	}
	bad = sw2.Spec
	bad.Name = "other"
	if err := f.s.UpdateSwarm(ctx, sw2.Version.Index, bad, UpdateFlags{}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("name: %v", err)
	}
}

func TestRenewFollowsRole(t *testing.T) {
	f := newFixture(t, "m1:a:manager:ready", "w2:b:worker:ready")
	ctx := context.Background()
	v := f.version(t, "w2")
	if err := f.s.UpdateNode(ctx, "w2", v, swarm.NodeSpec{Role: "manager", Availability: "active"}); err != nil {
		t.Fatal(err)
	}
	key, _, _ := ca.GenerateKey()
	csr, _ := ca.CreateCSR(key)
	resp, err := f.s.RenewCertificate(ctx, RenewRequest{NodeID: "w2", CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := ca.ParseCertificate(resp.Cert)
	id, _ := ca.IdentityOf(cert)
	if id.Role != swarm.NodeRoleManager {
		t.Fatalf("renewed as %v", id.Role)
	}
	var n *store.Node
	f.s.store.View(func(rt store.ReadTx) { n = rt.GetNode("w2") })
	if n.CertRole != swarm.NodeRoleManager || n.CertSerial != id.Serial {
		t.Fatalf("node cert fields %v %v", n.CertRole, n.CertSerial)
	}
	if err := f.s.RaftJoin(ctx, RaftJoinRequest{NodeID: "w2", Addr: "10.0.0.2:2377"}); err != nil {
		t.Fatal(err)
	}
	if ms := f.s.Managers(); len(ms) != 2 {
		t.Fatalf("managers %+v", ms)
	}
	if _, err := f.s.RenewCertificate(ctx, RenewRequest{NodeID: "gone", CSR: csr}); !errdefs.IsNotFound(err) {
		t.Fatalf("renew unknown: %v", err)
	}
}
