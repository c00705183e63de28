package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

// These tests run whole swarm memberships in one process: real TLS on
// loopback ports, real Raft on disk. No root needed.

var testTiming = sraft.Timing{
	Heartbeat:   400 * time.Millisecond,
	Election:    400 * time.Millisecond,
	LeaderLease: 300 * time.Millisecond,
	Commit:      10 * time.Millisecond,
}

type member struct {
	name string
	addr string
	cfg  Config
	c    *Cluster
}

// testLog discards logs unless SHOAL_TEST_LOG is set.
func testLog(name string) *slog.Logger {
	if os.Getenv("SHOAL_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", name)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func newMember(t *testing.T, name string) *member {
	t.Helper()
	m := &member{name: name, addr: freePort(t)}
	m.cfg = Config{
		Root:          filepath.Join(t.TempDir(), "swarm"),
		EngineVersion: "test",
		EngineLabels:  []string{"name=" + name},
		RaftTiming:    testTiming,
		Log:           testLog(name),
	}
	m.start(t)
	t.Cleanup(func() { m.c.Close() })
	return m
}

func (m *member) start(t *testing.T) {
	t.Helper()
	c, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.c = c
}

func (m *member) join(t *testing.T, remote *member, token string) {
	t.Helper()
	err := m.c.Join(context.Background(), swarm.JoinRequest{
		ListenAddr: m.addr, AdvertiseAddr: m.addr, RemoteAddrs: []string{remote.addr}, JoinToken: token,
	})
	if err != nil {
		t.Fatalf("%s join: %v", m.name, err)
	}
}

func leaderOf(ms []*member) *member {
	for _, m := range ms {
		if n := m.c.node(); n != nil {
			if mg := n.manager(); mg != nil && mg.Raft().IsLeader() {
				return m
			}
		}
	}
	return nil
}

func nodeByAddr(t *testing.T, c *Cluster, addr string) swarm.Node {
	t.Helper()
	ns, err := c.Nodes(context.Background(), filters.NewArgs())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.Status.Addr == hostOf(addr) && n.ManagerStatus != nil && n.ManagerStatus.Addr == addr {
			return n
		}
	}
	t.Fatalf("no node at %s", addr)
	return swarm.Node{}
}

func TestSwarmLifecycle(t *testing.T) {
	ctx := context.Background()
	m1 := newMember(t, "m1")
	if got := m1.c.State(); got != "inactive" {
		t.Fatalf("state %q", got)
	}
	if _, err := m1.c.Nodes(ctx, filters.NewArgs()); !errors.Is(err, controlapi.ErrNoSwarm) {
		t.Fatalf("nodes before init: %v", err)
	}
	id, err := m1.c.Init(ctx, swarm.InitRequest{ListenAddr: m1.addr, AdvertiseAddr: m1.addr})
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 25 || m1.c.State() != "active/manager" {
		t.Fatalf("init: %q %s", id, m1.c.State())
	}
	if _, err := m1.c.Init(ctx, swarm.InitRequest{ListenAddr: m1.addr}); !errors.Is(err, controlapi.ErrSwarmExists) {
		t.Fatalf("second init: %v", err)
	}
	sw, err := m1.c.Inspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	info := m1.c.Info(ctx)
	if !info.ControlAvailable || info.NodeID != id || info.NodeAddr != "127.0.0.1" || info.Cluster == nil || info.Cluster.ID != sw.ID || info.Nodes != 1 {
		t.Fatalf("info %+v", info)
	}

	// Join 2 managers and 2 workers.
	var ms []*member
	ms = append(ms, m1)
	for i, role := range []string{"manager", "manager", "worker", "worker"} {
		m := newMember(t, fmt.Sprintf("n%d", i+2))
		tok := sw.JoinTokens.Worker
		if role == "manager" {
			tok = sw.JoinTokens.Manager
		}
		m.join(t, m1, tok)
		info := m.c.Info(ctx)
		if info.LocalNodeState != swarm.LocalNodeStateActive || info.ControlAvailable != (role == "manager") {
			t.Fatalf("%s after join: %+v", m.name, info)
		}
		ms = append(ms, m)
	}
	workers := ms[3:]
	// A follower serves reads from its replica: it catches up quickly.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ns, err := ms[1].c.Nodes(ctx, filters.NewArgs())
		return err == nil && len(ns) == 5
	}, "follower does not list 5 nodes")
	ns, err := ms[1].c.Nodes(ctx, filters.NewArgs())
	if err != nil {
		t.Fatal(err)
	}
	leaders, managers := 0, 0
	for _, n := range ns {
		if n.ManagerStatus != nil {
			managers++
			if n.ManagerStatus.Leader {
				leaders++
			}
		}
		if n.Status.State != swarm.NodeStateReady || n.Description.Hostname == "" {
			t.Fatalf("node %+v", n)
		}
	}
	if len(ns) != 5 || managers != 3 || leaders != 1 {
		t.Fatalf("%d nodes, %d managers, %d leaders", len(ns), managers, leaders)
	}
	// Reachability settles once the managers probed each other.
	testutil.Eventually(t, 10*time.Second, func() bool {
		ns, _ := m1.c.Nodes(ctx, filters.NewArgs(filters.Arg("role", "manager")))
		for _, n := range ns {
			if n.ManagerStatus == nil || n.ManagerStatus.Reachability != swarm.ReachabilityReachable {
				return false
			}
		}
		return len(ns) == 3
	}, "managers not all reachable")

	// Workers: docker's error; their info names the managers.
	if _, err := workers[0].c.Nodes(ctx, filters.NewArgs()); !errors.Is(err, controlapi.ErrNotManager) {
		t.Fatalf("worker node ls: %v", err)
	}
	if wi := workers[0].c.Info(ctx); len(wi.RemoteManagers) != 3 || wi.Cluster != nil {
		t.Fatalf("worker info %+v", wi)
	}
	if got := workers[0].c.State(); got != "active/worker" {
		t.Fatalf("worker state %q", got)
	}

	// Refused joins.
	other := newMember(t, "other")
	bad := []struct {
		name, token string
		msg         string
	}{
		{"garbage", "SWMTKN-1-xyz", "invalid join token"},
		{"wrong CA", func() string { r, _ := ca.CreateRootCA(); return r.NewJoinToken() }(), "remote CA does not match fingerprint"},
		{"wrong secret", ca.FormatToken(strings.Split(sw.JoinTokens.Worker, "-")[2], ca.NewSecret()), "A valid join token is necessary to join this cluster"},
	}
	for _, b := range bad {
		err := other.c.Join(ctx, swarm.JoinRequest{ListenAddr: other.addr, AdvertiseAddr: other.addr, RemoteAddrs: []string{m1.addr}, JoinToken: b.token})
		if err == nil || !strings.Contains(err.Error(), b.msg) || !errdefs.IsInvalidParameter(err) {
			t.Fatalf("%s: %v", b.name, err)
		}
		if other.c.State() != "inactive" {
			t.Fatalf("%s: state %s after refused join", b.name, other.c.State())
		}
	}
	// Rotation refuses the old token.
	if err := m1.c.Update(ctx, sw.Version.Index, sw.Spec, true, false, false); err != nil {
		t.Fatal(err)
	}
	err = other.c.Join(ctx, swarm.JoinRequest{ListenAddr: other.addr, AdvertiseAddr: other.addr, RemoteAddrs: []string{m1.addr}, JoinToken: sw.JoinTokens.Worker})
	if err == nil || !strings.Contains(err.Error(), "A valid join token") {
		t.Fatalf("rotated token: %v", err)
	}

	// An anonymous client may fetch the CA but not use manager endpoints.
	anon := transport.NewHTTPClient(ca.AnonymousClientConfig(mustRoot(t, sw), nil))
	if err := transport.Do(ctx, anon, "GET", m1.addr, "/raft/status", nil, nil); !errdefs.IsUnauthorized(err) {
		t.Fatalf("anonymous raft status: %v", err)
	}
	// A worker's certificate cannot call manager endpoints.
	if err := transport.Do(ctx, workers[0].c.node().client, "POST", m1.addr, "/control/node.remove", map[string]any{"NodeID": ms[1].c.NodeID(), "Force": true}, nil); !errdefs.IsForbidden(err) {
		t.Fatalf("worker control call: %v", err)
	}

	// Promote a worker: it becomes a Raft voter and a manager.
	w := workers[0]
	wn, _ := m1.c.Node(ctx, w.c.NodeID())
	spec := wn.Spec
	spec.Role = swarm.NodeRoleManager
	spec.Labels = map[string]string{"zone": "a"}
	if err := ms[2].c.UpdateNode(ctx, wn.ID, wn.Version.Index, spec); err != nil { // via a follower
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return w.c.State() == "active/manager" && len(m1.c.Info(ctx).RemoteManagers) == 4
	}, "promotion did not complete (%s)", w.c.State())
	if wi := w.c.Info(ctx); !wi.ControlAvailable || wi.Nodes != 5 {
		t.Fatalf("promoted info %+v", wi)
	}
	// Demote it back.
	wn, _ = w.c.Node(ctx, w.c.NodeID())
	spec = wn.Spec
	spec.Role = swarm.NodeRoleWorker
	if err := m1.c.UpdateNode(ctx, wn.ID, wn.Version.Index, spec); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		return w.c.State() == "active/worker" && len(m1.c.Info(ctx).RemoteManagers) == 3
	}, "demotion did not complete (%s)", w.c.State())

	// Remove the other worker: it is ready, so force is needed; then it
	// learns it was removed.
	gone := workers[1]
	if err := m1.c.RemoveNode(ctx, gone.c.NodeID(), false); err == nil || !strings.Contains(err.Error(), "is not down and can't be removed") {
		t.Fatalf("remove ready: %v", err)
	}
	if err := m1.c.RemoveNode(ctx, ms[1].c.NodeID(), true); err == nil || !strings.Contains(err.Error(), "must be demoted to worker before removal") {
		t.Fatalf("remove manager: %v", err)
	}
	if err := m1.c.RemoveNode(ctx, gone.c.NodeID(), true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return gone.c.State() == "error" }, "removed node did not notice (%s)", gone.c.State())
	if err := gone.c.Leave(ctx, false); err != nil || gone.c.State() != "inactive" {
		t.Fatalf("leave after removal: %v %s", err, gone.c.State())
	}

	// Manager leave needs force.
	if err := ms[1].c.Leave(ctx, false); err == nil || !strings.Contains(err.Error(), "Use `--force` to suppress this message.") {
		t.Fatalf("manager leave: %v", err)
	}

	// Leader failover: stop the leader's daemon; a survivor takes over.
	leader := leaderOf(ms[:3])
	if leader == nil {
		t.Fatal("no leader")
	}
	leader.c.Close()
	var survivors []*member
	for _, m := range ms[:3] {
		if m != leader {
			survivors = append(survivors, m)
		}
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return leaderOf(survivors) != nil }, "no new leader")
	s := survivors[0]
	testutil.Eventually(t, 20*time.Second, func() bool {
		n, err := s.c.Node(ctx, w.c.NodeID())
		if err != nil {
			return false
		}
		sp := n.Spec
		sp.Labels = map[string]string{"after": "failover"}
		return s.c.UpdateNode(ctx, n.ID, n.Version.Index, sp) == nil
	}, "no writes after failover")

	// Restart the old leader's daemon: it resumes as a manager, no re-join.
	leader.start(t)
	if leader.c.State() != "active/manager" {
		t.Fatalf("restarted state %s", leader.c.State())
	}
	testutil.Eventually(t, 20*time.Second, func() bool {
		n, err := leader.c.Node(ctx, w.c.NodeID())
		return err == nil && n.Spec.Labels["after"] == "failover"
	}, "restarted manager did not catch up")
}

func mustRoot(t *testing.T, sw swarm.Swarm) *ca.RootCA {
	t.Helper()
	r, err := ca.ParseRootCA([]byte(sw.TLSInfo.TrustRoot), nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLeaveAndForceNewCluster(t *testing.T) {
	ctx := context.Background()
	m1 := newMember(t, "m1")
	if _, err := m1.c.Init(ctx, swarm.InitRequest{ListenAddr: m1.addr, AdvertiseAddr: m1.addr}); err != nil {
		t.Fatal(err)
	}
	// The last manager refuses to leave without force.
	if err := m1.c.Leave(ctx, false); err == nil || !strings.Contains(err.Error(), "Removing the last manager erases all current state of the swarm") {
		t.Fatalf("last manager leave: %v", err)
	}
	sw, _ := m1.c.Inspect(ctx)
	m2, m3 := newMember(t, "m2"), newMember(t, "m3")
	m2.join(t, m1, sw.JoinTokens.Manager)
	m3.join(t, m1, sw.JoinTokens.Manager)
	id3 := m3.c.NodeID()

	// A manager leaving with force removes itself from Raft first.
	if err := m3.c.Leave(ctx, true); err != nil {
		t.Fatal(err)
	}
	if m3.c.State() != "inactive" {
		t.Fatalf("after leave: %s", m3.c.State())
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return len(m1.c.Info(ctx).RemoteManagers) == 2 }, "left manager still in raft")
	n3, err := m1.c.Node(ctx, id3)
	if err != nil || n3.ManagerStatus != nil {
		t.Fatalf("left manager: %+v %v", n3.ManagerStatus, err)
	}

	// Lose m2: one of two voters, no quorum.
	m2.c.Close()
	testutil.Eventually(t, 10*time.Second, func() bool {
		n, err := m1.c.Node(ctx, m1.c.NodeID())
		if err != nil {
			return false
		}
		err = m1.c.UpdateNode(ctx, n.ID, n.Version.Index, n.Spec)
		return errdefs.IsUnavailable(err) && strings.Contains(err.Error(), "does not have a leader")
	}, "writes without quorum do not fail")
	// Reads still work.
	if ns, err := m1.c.Nodes(ctx, filters.NewArgs()); err != nil || len(ns) != 3 {
		t.Fatalf("reads without quorum: %d %v", len(ns), err)
	}

	// Rebuild from m1's state: same cluster and nodes, writes again.
	id, err := m1.c.Init(ctx, swarm.InitRequest{ForceNewCluster: true})
	if err != nil {
		t.Fatal(err)
	}
	if id != m1.c.NodeID() {
		t.Fatalf("node ID changed: %s", id)
	}
	sw2, err := m1.c.Inspect(ctx)
	if err != nil || sw2.ID != sw.ID {
		t.Fatalf("cluster after force-new-cluster: %v %v", sw2.ID, err)
	}
	if got := m1.c.Info(ctx); len(got.RemoteManagers) != 1 || got.Nodes != 3 {
		t.Fatalf("info after force-new-cluster: %+v", got)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		n, err := m1.c.Node(ctx, m1.c.NodeID())
		if err != nil {
			return false
		}
		sp := n.Spec
		sp.Labels = map[string]string{"reborn": "yes"}
		return m1.c.UpdateNode(ctx, n.ID, n.Version.Index, sp) == nil
	}, "no writes after force-new-cluster")
	// A worker cannot force a new cluster; a node in no swarm just inits.
	if _, err := m3.c.Init(ctx, swarm.InitRequest{ForceNewCluster: true, ListenAddr: m3.addr, AdvertiseAddr: m3.addr}); err != nil {
		t.Fatalf("force-new-cluster on an inactive node: %v", err)
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		listen, adv   string
		wantListen    string
		wantAdvertise string
		errPart       string
	}{
		{"", "127.0.0.1", "0.0.0.0:2377", "127.0.0.1:2377", ""},
		{"127.0.0.1:4000", "", "127.0.0.1:4000", "127.0.0.1:4000", ""},
		{":4000", "127.0.0.2", "0.0.0.0:4000", "127.0.0.2:4000", ""},
		{"lo:4001", "lo", "127.0.0.1:4001", "127.0.0.1:4001", ""},
		{"0.0.0.0", "127.0.0.1:5000", "0.0.0.0:2377", "127.0.0.1:5000", ""},
		{"127.0.0.1:99999", "", "", "", "invalid port"},
		{"nosuchif0", "", "", "", "interface nosuchif0 not found"},
		{"", "0.0.0.0", "0.0.0.0:2377", "", "advertise address must be a non-zero IP address"},
		{"", "nosuchif0:1", "0.0.0.0:2377", "", "interface nosuchif0 not found"},
	}
	for _, tc := range tests {
		t.Run(tc.listen+"|"+tc.adv, func(t *testing.T) {
			l, ip, port, err := listenAddr(tc.listen)
			if err == nil {
				if l != tc.wantListen {
					t.Fatalf("listen %q, want %q", l, tc.wantListen)
				}
				var a string
				a, err = advertiseAddr(tc.adv, "", ip, port, func() (netip.Addr, error) { return netip.Addr{}, errNoIP })
				if err == nil && a != tc.wantAdvertise {
					t.Fatalf("advertise %q, want %q", a, tc.wantAdvertise)
				}
			}
			if tc.errPart == "" && err != nil {
				t.Fatal(err)
			}
			if tc.errPart != "" && (err == nil || !strings.Contains(err.Error(), tc.errPart) || !errdefs.IsInvalidParameter(err)) {
				t.Fatalf("err %v, want %q", err, tc.errPart)
			}
		})
	}
	// The daemon's default advertise address applies when none is given.
	a, err := advertiseAddr("", "127.0.0.9", netip.IPv4Unspecified(), 2377, nil)
	if err != nil || a != "127.0.0.9:2377" {
		t.Fatalf("default advertise: %q %v", a, err)
	}
}
