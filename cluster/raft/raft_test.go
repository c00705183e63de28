package raft

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

// Test timing: short so the tests run fast; not what production uses.
var testTiming = Timing{
	Heartbeat:   300 * time.Millisecond,
	Election:    300 * time.Millisecond,
	LeaderLease: 200 * time.Millisecond,
	Commit:      10 * time.Millisecond,
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type member struct {
	id    string
	trans *hraft.InmemTransport
	store *store.Store
	node  *Node
	dir   string
}

type cluster struct {
	t       *testing.T
	members []*member
}

// start runs m's member on a fresh transport (a shut-down member closes
// its own), connected to every other member.
func (c *cluster) start(m *member, bootstrap, force bool) {
	c.t.Helper()
	_, m.trans = hraft.NewInmemTransport(hraft.ServerAddress(m.id))
	connectAll(c.members)
	m.store = store.New()
	n, err := New(Config{
		ID: m.id, Transport: m.trans, Dir: m.dir, Store: m.store,
		Bootstrap: bootstrap, ForceNewCluster: force, Timing: testTiming, Log: quiet,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	m.node = n
	m.store.SetProposer(n)
}

// newCluster starts n in-memory members: the first bootstraps, the others
// are added as voters.
func newCluster(t *testing.T, n int, onDisk bool) *cluster {
	t.Helper()
	c := &cluster{t: t}
	for i := 0; i < n; i++ {
		m := &member{id: fmt.Sprintf("node%d", i)}
		if onDisk {
			m.dir = filepath.Join(t.TempDir(), m.id)
		}
		c.members = append(c.members, m)
	}
	c.start(c.members[0], true, false)
	c.waitLeader(c.members[:1])
	for _, m := range c.members[1:] {
		c.start(m, false, false)
		if err := c.members[0].node.AddVoter(context.Background(), m.id, m.id); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.node != nil {
				m.node.Shutdown()
			}
		}
	})
	return c
}

func (c *cluster) waitLeader(among []*member) *member {
	c.t.Helper()
	var leader *member
	testutil.Eventually(c.t, 20*time.Second, func() bool {
		for _, m := range among {
			if m.node != nil && m.node.IsLeader() {
				leader = m
				return true
			}
		}
		return false
	}, "no leader elected")
	return leader
}

func labelNode(ctx context.Context, s *store.Store, id, k, v string) error {
	return s.Update(ctx, func(tx store.Tx) error {
		n := tx.GetNode(id)
		if n == nil {
			n = &store.Node{}
			n.ID = id
			n.Spec.Labels = map[string]string{k: v}
			return tx.Create(n)
		}
		c := n.Copy()
		labels := map[string]string{}
		for a, b := range n.Spec.Labels {
			labels[a] = b
		}
		labels[k] = v
		c.Spec.Labels = labels
		return tx.Update(c)
	})
}

func label(s *store.Store, id, k string) string {
	var v string
	s.View(func(rt store.ReadTx) {
		if n := rt.GetNode(id); n != nil {
			v = n.Spec.Labels[k]
		}
	})
	return v
}

func (c *cluster) waitLabel(ms []*member, id, k, v string) {
	c.t.Helper()
	for _, m := range ms {
		testutil.Eventually(c.t, 10*time.Second, func() bool { return label(m.store, id, k) == v },
			"%s: label %s=%s of %s not replicated", m.id, k, v, id)
	}
}

func isolate(m *member, others []*member) {
	for _, o := range others {
		if o != m {
			m.trans.Disconnect(o.trans.LocalAddr())
			o.trans.Disconnect(m.trans.LocalAddr())
		}
	}
}

func connectAll(ms []*member) {
	for _, a := range ms {
		for _, b := range ms {
			if a != b && a.trans != nil && b.trans != nil {
				a.trans.Connect(b.trans.LocalAddr(), b.trans)
			}
		}
	}
}

func TestReplicationAndForwardingErrors(t *testing.T) {
	c := newCluster(t, 3, false)
	leader := c.waitLeader(c.members)
	ctx := context.Background()
	if err := labelNode(ctx, leader.store, "n1", "a", "1"); err != nil {
		t.Fatal(err)
	}
	c.waitLabel(c.members, "n1", "a", "1")
	var follower *member
	for _, m := range c.members {
		if m != leader {
			follower = m
		}
	}
	err := labelNode(ctx, follower.store, "n1", "a", "2")
	nl, ok := IsNotLeader(err)
	if !ok || !errdefs.IsUnavailable(err) || nl.LeaderAddr != leader.id {
		t.Fatalf("write on follower: %v", err)
	}
	// Per-group results come back: a stale version is a sequence conflict.
	var n *store.Node
	leader.store.View(func(rt store.ReadTx) { n = rt.GetNode("n1") })
	stale := n.Copy()
	stale.Meta.Version.Index = 1
	errs, err := leader.node.Propose(ctx, []store.Group{{{Op: store.OpUpdate, Object: stale}}, {{Op: store.OpCreate, Object: &store.Node{Node: swarm.Node{ID: "n2"}}}}})
	if err != nil || !store.IsSequence(errs[0]) || errs[1] != nil {
		t.Fatalf("propose: %v %v", errs, err)
	}
	members, _ := leader.node.Members()
	if len(members) != 3 {
		t.Fatalf("members %+v", members)
	}
}

func TestFailoverAndQuorumLoss(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	old := c.waitLeader(c.members)
	if err := labelNode(ctx, old.store, "n1", "k", "before"); err != nil {
		t.Fatal(err)
	}
	c.waitLabel(c.members, "n1", "k", "before")

	// Leader fails: the others elect a new one that accepts writes.
	isolate(old, c.members)
	var rest []*member
	for _, m := range c.members {
		if m != old {
			rest = append(rest, m)
		}
	}
	nl := c.waitLeader(rest)
	testutil.Eventually(t, 10*time.Second, func() bool { return labelNode(ctx, nl.store, "n1", "k", "after") == nil }, "new leader does not accept writes")
	c.waitLabel(rest, "n1", "k", "after")
	// The old leader steps down and refuses writes without waiting.
	testutil.Eventually(t, 10*time.Second, func() bool { return !old.node.IsLeader() }, "isolated leader did not step down")
	err := labelNode(ctx, old.store, "n1", "k", "lost")
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("write on isolated node: %v", err)
	}

	// Full partition: nobody has a quorum. Writes fail at once with
	// docker's message; reads serve the last known state.
	for _, m := range c.members {
		isolate(m, c.members)
	}
	for _, m := range c.members {
		testutil.Eventually(t, 10*time.Second, func() bool {
			id, _ := m.node.Leader()
			return !m.node.IsLeader() && id == ""
		}, "%s still sees a leader", m.id)
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := labelNode(wctx, m.store, "n1", "k", "x")
		cancel()
		if !errdefs.IsUnavailable(err) || err.Error() != NoLeaderMessage {
			t.Fatalf("%s: write without quorum: %v", m.id, err)
		}
	}
	for _, m := range rest {
		if got := label(m.store, "n1", "k"); got != "after" {
			t.Fatalf("%s: read without quorum: %q", m.id, got)
		}
	}

	// Heal: a leader is elected, the old one catches up, writes work.
	connectAll(c.members)
	l := c.waitLeader(c.members)
	testutil.Eventually(t, 10*time.Second, func() bool { return labelNode(ctx, l.store, "n1", "k", "healed") == nil }, "no writes after heal")
	c.waitLabel(c.members, "n1", "k", "healed")
}

func TestSnapshotInstallOnNewMember(t *testing.T) {
	c := newCluster(t, 3, false)
	ctx := context.Background()
	leader := c.waitLeader(c.members)
	for i := 0; i < 50; i++ {
		if err := labelNode(ctx, leader.store, fmt.Sprint("n", i), "i", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range c.members {
		testutil.Eventually(t, 10*time.Second, func() bool { return label(m.store, "n49", "i") == "49" }, "not replicated")
		if err := m.node.Snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	// Compact the log so the new member must receive the snapshot.
	rc := leader.node.r.ReloadableConfig()
	rc.TrailingLogs, rc.SnapshotThreshold = 0, 1
	if err := leader.node.r.ReloadConfig(rc); err != nil {
		t.Fatal(err)
	}
	if err := leader.node.Snapshot(); err != nil {
		t.Fatal(err)
	}
	m := &member{id: "late"}
	c.members = append(c.members, m)
	c.start(m, false, false)
	if err := leader.node.AddVoter(ctx, "late", "late"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return label(m.store, "n49", "i") == "49" && label(m.store, "n0", "i") == "0" }, "snapshot not installed")
	if err := labelNode(ctx, leader.store, "n0", "i", "again"); err != nil {
		t.Fatal(err)
	}
	c.waitLabel([]*member{m}, "n0", "i", "again")
}

// TestRestartFromDisk checks that a manager restarted alone serves its last
// state (snapshot + committed local log) before any quorum, and that Raft
// then does not apply those entries twice.
func TestRestartFromDisk(t *testing.T) {
	c := newCluster(t, 3, true)
	ctx := context.Background()
	leader := c.waitLeader(c.members)
	for i := 0; i < 20; i++ {
		if err := labelNode(ctx, leader.store, "n1", "i", fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
		if i == 10 {
			if err := leader.node.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.waitLabel(c.members, "n1", "i", "19")
	// Let every member record its applied index, then stop them all.
	for _, m := range c.members {
		testutil.Eventually(t, 10*time.Second, func() bool {
			v, _ := m.node.stable.GetUint64(keyApplied)
			return v >= m.node.AppliedIndex() && v > 0
		}, "applied index not recorded")
	}
	var events [][]store.Event
	for _, m := range c.members {
		if err := m.node.Shutdown(); err != nil {
			t.Fatal(err)
		}
		m.node = nil
	}
	// One member alone: state is there, without a leader.
	alone := c.members[1]
	c.start(alone, false, false)
	if got := label(alone.store, "n1", "i"); got != "19" {
		t.Fatalf("restarted alone: label %q", got)
	}
	if err := labelNode(ctx, alone.store, "n1", "i", "x"); !errdefs.IsUnavailable(err) {
		t.Fatalf("write alone: %v", err)
	}
	// The others come back: a leader, writes, and nothing re-applied.
	watch, cancel := alone.store.Watch(store.KindNode)
	defer cancel()
	for _, m := range []*member{c.members[0], c.members[2]} {
		c.start(m, false, false)
	}
	l := c.waitLeader(c.members)
	// A new leader's first read waits for its barrier, once per election.
	if err := l.node.ReadBarrier(ctx); err != nil {
		t.Fatal(err)
	}
	l.node.mu.Lock()
	ready := l.node.readyFor == l.node.changed
	l.node.mu.Unlock()
	if !ready || label(l.store, "n1", "i") != "19" {
		t.Fatalf("after the read barrier: ready %v, label %q", ready, label(l.store, "n1", "i"))
	}
	for _, m := range c.members {
		if m != l {
			if err := m.node.ReadBarrier(ctx); err != nil {
				t.Fatalf("follower read barrier: %v", err)
			}
		}
	}
	testutil.Eventually(t, 10*time.Second, func() bool { return labelNode(ctx, l.store, "n1", "i", "20") == nil }, "no writes after restart")
	c.waitLabel(c.members, "n1", "i", "20")
	var got []store.Event
	for len(got) == 0 {
		got = append(got, <-watch)
	}
	events = append(events, got)
	if ev := events[0][0]; ev.Op != store.OpUpdate || ev.Object.(*store.Node).Spec.Labels["i"] != "20" {
		t.Fatalf("first event after restart %v %+v: an old entry was applied again", ev.Op, ev.Object)
	}
}

func TestForceNewCluster(t *testing.T) {
	c := newCluster(t, 3, true)
	ctx := context.Background()
	leader := c.waitLeader(c.members)
	if err := labelNode(ctx, leader.store, "n1", "k", "v"); err != nil {
		t.Fatal(err)
	}
	c.waitLabel(c.members, "n1", "k", "v")
	for _, m := range c.members {
		m.node.Shutdown()
		m.node = nil
	}
	survivor := c.members[2]
	c.start(survivor, false, true)
	c.waitLeader([]*member{survivor})
	members, err := survivor.node.Members()
	if err != nil || len(members) != 1 || members[0].ID != survivor.id {
		t.Fatalf("members after recovery: %+v %v", members, err)
	}
	if got := label(survivor.store, "n1", "k"); got != "v" {
		t.Fatalf("state lost: %q", got)
	}
	if err := labelNode(ctx, survivor.store, "n1", "k", "w"); err != nil {
		t.Fatal(err)
	}
	// Nothing to recover on an empty node.
	empty := &member{id: "e", dir: filepath.Join(t.TempDir(), "e")}
	_, empty.trans = hraft.NewInmemTransport("e")
	if _, err := New(Config{ID: "e", Transport: empty.trans, Dir: empty.dir, Store: store.New(), ForceNewCluster: true, Log: quiet}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("force on empty: %v", err)
	}
}

func TestCanRemove(t *testing.T) {
	ms := func(ids ...string) []Member {
		var out []Member
		for _, id := range ids {
			out = append(out, Member{ID: id, Voter: true})
		}
		return out
	}
	down := func(ids ...string) func(string) bool {
		return func(id string) bool {
			for _, d := range ids {
				if d == id {
					return false
				}
			}
			return true
		}
	}
	tests := []struct {
		name    string
		members []Member
		remove  string
		down    []string
		ok      bool
	}{
		{"last", ms("a"), "a", nil, false},
		{"two healthy", ms("a", "b"), "b", nil, true},
		{"three healthy", ms("a", "b", "c"), "c", nil, true},
		{"three, other down", ms("a", "b", "c"), "c", []string{"b"}, false},
		{"three, removing the down one", ms("a", "b", "c"), "c", []string{"c"}, true},
		{"five, one down", ms("a", "b", "c", "d", "e"), "e", []string{"d"}, true},
		{"five, two down", ms("a", "b", "c", "d", "e"), "e", []string{"c", "d"}, false},
	}
	for _, tc := range tests {
		if got := CanRemove(tc.members, tc.remove, down(tc.down...)); got != tc.ok {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.ok)
		}
	}
}

// TestConcurrentProposals checks that many writers at once all land (the
// leader batches them) with correct per-writer results.
func TestConcurrentProposals(t *testing.T) {
	c := newCluster(t, 3, true)
	leader := c.waitLeader(c.members)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if err := labelNode(ctx, leader.store, fmt.Sprint("w", w), "i", fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := 0; w < 32; w++ {
		c.waitLabel(c.members, fmt.Sprint("w", w), "i", "19")
	}
}
