package cluster_test

import (
	"context"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

const noLeaderText = "The swarm does not have a leader"

func info(t *testing.T, d *daemon) swarm.Info {
	t.Helper()
	c := d.client()
	defer c.Close()
	res, err := c.Info(context.Background(), client.InfoOptions{})
	if err != nil {
		t.Fatalf("%s info: %v", d.name, err)
	}
	return res.Info.Swarm
}

func nodeList(d *daemon) ([]swarm.Node, error) {
	c := d.client()
	defer c.Close()
	res, err := c.NodeList(context.Background(), client.NodeListOptions{})
	return res.Items, err
}

// labelSelf sets a label on d's own node through d's API (a write that
// the leader must commit).
func labelSelf(d *daemon, nodeID, k, v string) error {
	c := d.client()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := c.NodeInspect(ctx, nodeID, client.NodeInspectOptions{})
	if err != nil {
		return err
	}
	spec := n.Node.Spec
	labels := map[string]string{}
	for a, b := range spec.Labels {
		labels[a] = b
	}
	labels[k] = v
	spec.Labels = labels
	_, err = c.NodeUpdate(ctx, nodeID, client.NodeUpdateOptions{Version: n.Node.Version, Spec: spec})
	return err
}

func leaderIndex(ds []*daemon) int {
	for i, d := range ds {
		if !d.running() {
			continue
		}
		ns, err := nodeList(d)
		if err != nil {
			continue
		}
		self := ""
		c := d.client()
		if res, err := c.Info(context.Background(), client.InfoOptions{}); err == nil {
			self = res.Info.Swarm.NodeID
		}
		c.Close()
		for _, n := range ns {
			if n.ID == self && n.ManagerStatus != nil && n.ManagerStatus.Leader {
				return i
			}
		}
	}
	return -1
}

// TestE2ESwarm drives five real daemons with the docker CLI and the Go
// client: init, joins, access rules, node operations, failover, quorum
// loss and full restart.
func TestE2ESwarm(t *testing.T) {
	h := newHarness(t, 6)
	d := h.daemons
	mgrs, workers, spare := d[:3], d[3:5], d[5]

	// --- init + joins with the docker CLI
	out := d[0].mustDocker("swarm", "init", "--listen-addr", d[0].addr, "--advertise-addr", d[0].addr)
	if !strings.Contains(out, "Swarm initialized: current node") || !strings.Contains(out, "docker swarm join --token SWMTKN-1-") {
		t.Fatalf("init output:\n%s", out)
	}
	mtok := strings.TrimSpace(d[0].mustDocker("swarm", "join-token", "-q", "manager"))
	wtok := strings.TrimSpace(d[0].mustDocker("swarm", "join-token", "-q", "worker"))
	for _, m := range mgrs[1:] {
		out := m.mustDocker("swarm", "join", "--token", mtok, "--listen-addr", m.addr, "--advertise-addr", m.addr, d[0].addr)
		if !strings.Contains(out, "This node joined a swarm as a manager.") {
			t.Fatalf("manager join: %s", out)
		}
	}
	for _, w := range workers {
		out := w.mustDocker("swarm", "join", "--token", wtok, "--listen-addr", w.addr, "--advertise-addr", w.addr, d[0].addr)
		if !strings.Contains(out, "This node joined a swarm as a worker.") {
			t.Fatalf("worker join: %s", out)
		}
	}
	ids := map[*daemon]string{}
	for _, x := range d[:5] {
		ids[x] = info(t, x).NodeID
	}
	ls := d[0].mustDocker("node", "ls")
	if rows := strings.Count(ls, "\n") - 1; rows != 5 || strings.Count(ls, "Leader") != 1 || strings.Count(ls, "Reachable") != 2 {
		t.Fatalf("node ls:\n%s", ls)
	}
	if !strings.Contains(ls, ids[d[0]]+" *") {
		t.Fatalf("node ls does not mark self:\n%s", ls)
	}

	// --- workers cannot read cluster state
	if out, err := workers[0].docker("node", "ls"); err == nil || !strings.Contains(out, "Worker nodes can't be used to view or modify cluster state") {
		t.Fatalf("worker node ls: %v %s", err, out)
	}
	// --- refused joins: wrong CA digest, rotated token
	other, _ := ca.CreateRootCA()
	if out, err := spare.docker("swarm", "join", "--token", other.NewJoinToken(), "--listen-addr", spare.addr, "--advertise-addr", spare.addr, d[0].addr); err == nil || !strings.Contains(out, "remote CA does not match fingerprint") {
		t.Fatalf("wrong CA join: %v %s", err, out)
	}
	d[0].mustDocker("swarm", "join-token", "--rotate", "worker")
	if out, err := spare.docker("swarm", "join", "--token", wtok, "--listen-addr", spare.addr, "--advertise-addr", spare.addr, d[0].addr); err == nil || !strings.Contains(out, "A valid join token is necessary to join this cluster") {
		t.Fatalf("rotated token join: %v %s", err, out)
	}
	if i := info(t, spare); i.LocalNodeState != swarm.LocalNodeStateInactive {
		t.Fatalf("spare after refused joins: %+v", i)
	}

	// --- the cluster port refuses clients without (the right) certificate
	sw := func() swarm.Swarm {
		c := d[0].client()
		defer c.Close()
		res, err := c.SwarmInspect(context.Background(), client.SwarmInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Swarm
	}()
	root, err := ca.ParseRootCA([]byte(sw.TLSInfo.TrustRoot), nil)
	if err != nil {
		t.Fatal(err)
	}
	anon := transport.NewHTTPClient(ca.AnonymousClientConfig(root, nil))
	ctx := context.Background()
	for _, path := range []string{"/raft/status", "/node/session"} {
		if err := transport.Do(ctx, anon, http.MethodGet, d[0].addr, path, nil, nil); !errdefs.IsUnauthorized(err) {
			t.Fatalf("anonymous %s: %v", path, err)
		}
	}
	if err := transport.Do(ctx, anon, http.MethodPost, d[0].addr, "/control/node.remove", map[string]any{"NodeID": ids[d[1]], "Force": true}, nil); !errdefs.IsUnauthorized(err) {
		t.Fatalf("anonymous control: %v", err)
	}
	wtls, err := ca.Load(workers[0].dir + "/data/swarm/certificates")
	if err != nil {
		t.Fatal(err)
	}
	if err := transport.Do(ctx, transport.NodeClient(wtls), http.MethodPost, d[0].addr, "/control/node.remove", map[string]any{"NodeID": ids[d[1]], "Force": true}, nil); !errdefs.IsForbidden(err) {
		t.Fatalf("worker control: %v", err)
	}

	// --- node operations with the docker CLI and the Go client
	w0, w1 := ids[workers[0]], ids[workers[1]]
	d[1].mustDocker("node", "update", "--availability", "drain", "--label-add", "zone=a", w0)
	if out := d[0].mustDocker("node", "inspect", "-f", "{{.Spec.Availability}} {{index .Spec.Labels \"zone\"}}", w0); strings.TrimSpace(out) != "drain zone=a" && strings.TrimSpace(out) != "drain a" {
		t.Fatalf("after drain: %q", out)
	}
	d[0].mustDocker("node", "update", "--availability", "pause", w0)
	if err := labelSelf(d[2], w0, "go", "client"); err != nil {
		t.Fatal(err)
	}
	if out := d[0].mustDocker("node", "inspect", "-f", "{{.Spec.Availability}} {{.Spec.Labels}}", w0); strings.TrimSpace(out) != "pause map[go:client zone:a]" {
		t.Fatalf("after pause: %q", out)
	}
	if out, err := d[0].docker("node", "update", "--availability", "sleepy", w0); err == nil {
		t.Fatalf("bad availability accepted: %s", out)
	}
	// promote / demote
	d[0].mustDocker("node", "promote", w0)
	testutil.Eventually(t, 30*time.Second, func() bool { return info(t, workers[0]).ControlAvailable }, "promoted worker not a manager")
	if out := workers[0].mustDocker("node", "ls"); strings.Count(out, "Reachable")+strings.Count(out, "Leader") != 4 {
		t.Fatalf("node ls on promoted node:\n%s", out)
	}
	d[0].mustDocker("node", "demote", w0)
	testutil.Eventually(t, 30*time.Second, func() bool { return !info(t, workers[0]).ControlAvailable }, "demoted manager still a manager")
	testutil.Eventually(t, 10*time.Second, func() bool {
		out, _ := d[0].docker("node", "ls")
		return strings.Count(out, "Reachable")+strings.Count(out, "Leader") == 3
	}, "demoted node still listed as a manager")
	// Demoting every manager stops at the last one.
	if out, err := d[0].docker("node", "demote", ids[d[1]], ids[d[2]], ids[d[0]]); err == nil {
		t.Fatalf("demoted every manager: %s", out)
	} else if !strings.Contains(out, "attempting to demote the last manager of the swarm") {
		t.Fatalf("demote all: %s", out)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		return !info(t, d[1]).ControlAvailable && !info(t, d[2]).ControlAvailable && len(info(t, d[0]).RemoteManagers) == 1
	}, "managers not demoted")
	d[0].mustDocker("node", "promote", ids[d[1]], ids[d[2]])
	testutil.Eventually(t, 30*time.Second, func() bool {
		return info(t, d[0]).ControlAvailable && info(t, d[1]).ControlAvailable && len(info(t, d[2]).RemoteManagers) == 3
	}, "managers not restored")
	// rm
	if out, err := d[0].docker("node", "rm", w1); err == nil || !strings.Contains(out, "is not down and can't be removed") {
		t.Fatalf("rm ready node: %v %s", err, out)
	}
	if out, err := d[0].docker("node", "rm", "--force", ids[d[1]]); err == nil || !strings.Contains(out, "must be demoted to worker before removal") {
		t.Fatalf("rm manager: %v %s", err, out)
	}
	d[0].mustDocker("node", "rm", "--force", w1)
	testutil.Eventually(t, 20*time.Second, func() bool { return info(t, workers[1]).LocalNodeState == swarm.LocalNodeStateError }, "removed node does not know")
	workers[1].mustDocker("swarm", "leave")
	if i := info(t, workers[1]); i.LocalNodeState != swarm.LocalNodeStateInactive {
		t.Fatalf("after leave: %+v", i)
	}

	// --- failover: kill -9 the leader's daemon
	li := leaderIndex(mgrs)
	if li < 0 {
		t.Fatal("no leader")
	}
	killed := mgrs[li]
	var survivors []*daemon
	for _, m := range mgrs {
		if m != killed {
			survivors = append(survivors, m)
		}
	}
	killed.stop(syscall.SIGKILL)
	start := time.Now()
	testutil.Eventually(t, 15*time.Second, func() bool { return labelSelf(survivors[0], ids[survivors[0]], "failover", "yes") == nil }, "no writes after the leader died")
	t.Logf("failover (kill -9 leader → write accepted by a survivor): %v", time.Since(start).Round(time.Millisecond))
	if out := survivors[1].mustDocker("node", "ls"); strings.Count(out, "Leader") != 1 {
		t.Fatalf("node ls after failover:\n%s", out)
	}
	killed.start()
	testutil.Eventually(t, 20*time.Second, func() bool {
		ns, err := nodeList(killed)
		if err != nil {
			return false
		}
		for _, n := range ns {
			if n.ID == ids[survivors[0]] && n.Spec.Labels["failover"] == "yes" {
				return true
			}
		}
		return false
	}, "restarted manager did not catch up")

	// --- quorum loss: stop two of three managers
	alone := mgrs[0]
	for _, m := range mgrs[1:] {
		m.stop(syscall.SIGTERM)
	}
	testutil.Eventually(t, 15*time.Second, func() bool {
		err := labelSelf(alone, ids[alone], "q", "lost")
		return err != nil && strings.Contains(err.Error(), noLeaderText)
	}, "writes without quorum do not fail with the no-leader error")
	t0 := time.Now()
	err = labelSelf(alone, ids[alone], "q", "lost")
	took := time.Since(t0)
	if err == nil || !strings.Contains(err.Error(), noLeaderText) || took > 2*time.Second {
		t.Fatalf("write without quorum: %v after %v", err, took)
	}
	t.Logf("write without quorum refused in %v", took.Round(time.Millisecond))
	if out, err := alone.docker("node", "ls"); err != nil || !strings.Contains(out, ids[alone]) {
		t.Fatalf("reads without quorum: %v %s", err, out)
	}
	if out, err := alone.docker("node", "update", "--label-add", "x=y", ids[alone]); err == nil || !strings.Contains(out, noLeaderText) {
		t.Fatalf("CLI write without quorum: %v %s", err, out)
	}
	for _, m := range mgrs[1:] {
		m.start()
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return labelSelf(alone, ids[alone], "q", "back") == nil }, "writes do not resume with the quorum")

	// --- stop everything, start again: same swarm, no re-join
	for _, x := range d[:5] {
		x.stop(syscall.SIGTERM)
	}
	for _, x := range d[:5] {
		x.start()
	}
	for _, x := range d[:5] {
		if i := info(t, x); x != workers[1] && (i.NodeID != ids[x] || i.LocalNodeState != swarm.LocalNodeStateActive) {
			t.Fatalf("%s after restart: %+v", x.name, i)
		}
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return leaderIndex(mgrs) >= 0 }, "no leader after restart")
	ns, err := nodeList(d[1])
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]swarm.Node{}
	for _, n := range ns {
		got[n.ID] = n
	}
	if len(ns) != 4 || got[w0].Spec.Labels["zone"] != "a" || got[ids[alone]].Spec.Labels["q"] != "back" {
		t.Fatalf("state after restart: %d nodes, %+v", len(ns), got[w0].Spec)
	}
	testutil.Eventually(t, 20*time.Second, func() bool { return labelSelf(d[2], ids[d[2]], "after", "restart") == nil }, "no writes after restart")
}
