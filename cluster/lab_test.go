package cluster_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/lab"
)

// TestLabPartition runs a five-node lab (network namespaces on a bridge,
// three managers) and cuts the Raft leader off the network: the majority
// elects a new leader and keeps writing, the isolated manager refuses
// writes at once but still serves reads, and after healing it catches up.
func TestLabPartition(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "ip", "nft")
	bin := shoaldBinary(t)
	name := fmt.Sprintf("shcl%d", os.Getpid()%1000)
	ctx := context.Background()
	l, err := lab.Up(ctx, lab.Options{
		Name:       name,
		Nodes:      5,
		Managers:   3,
		Subnet:     fmt.Sprintf("10.%d.%d.0/24", 200+os.Getpid()%50, os.Getpid()%200),
		NoRegistry: true,
		NoImages:   true,
		ShoaldPath: bin,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				t.Logf("=== %s log (tail)\n%s", n.Name, tail(n.Logs(), 4000))
			}
		}
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})

	// Node names ↔ swarm node IDs.
	ids := map[string]string{}
	for _, n := range l.Nodes() {
		c := l.Client(n.Name)
		res, err := c.Info(ctx, client.InfoOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ids[n.Name] = res.Info.Swarm.NodeID
	}
	leaderName := func(from string) string {
		res, err := l.Client(from).NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			return ""
		}
		for _, n := range res.Items {
			if n.ManagerStatus != nil && n.ManagerStatus.Leader {
				for name, id := range ids {
					if id == n.ID {
						return name
					}
				}
			}
		}
		return ""
	}
	res, err := l.Client("node1").NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	managers := 0
	for _, n := range res.Items {
		if n.ManagerStatus != nil {
			managers++
		}
	}
	if len(res.Items) != 5 || managers != 3 {
		t.Fatalf("%d nodes, %d managers", len(res.Items), managers)
	}
	old := leaderName("node1")
	if old == "" {
		t.Fatal("no leader")
	}
	var majority []string
	for _, n := range []string{"node1", "node2", "node3"} {
		if n != old {
			majority = append(majority, n)
		}
	}

	label := func(node, k, v string) error {
		c := l.Client(node)
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := c.NodeInspect(wctx, ids[node], client.NodeInspectOptions{})
		if err != nil {
			return err
		}
		spec := n.Node.Spec
		spec.Labels = map[string]string{k: v}
		_, err = c.NodeUpdate(wctx, ids[node], client.NodeUpdateOptions{Version: n.Node.Version, Spec: spec})
		return err
	}

	// Cut the leader off.
	if err := l.Partition(ctx, []string{old}, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	testutil.Eventually(t, 20*time.Second, func() bool { return label(majority[0], "side", "majority") == nil }, "majority does not accept writes")
	t.Logf("partitioned leader → majority accepts writes: %v", time.Since(start).Round(time.Millisecond))
	if nl := leaderName(majority[1]); nl == "" || nl == old {
		t.Fatalf("majority leader %q", nl)
	}
	// The isolated manager: writes fail with docker's message, quickly.
	testutil.Eventually(t, 20*time.Second, func() bool {
		err := label(old, "side", "minority")
		return err != nil && strings.Contains(err.Error(), "The swarm does not have a leader")
	}, "isolated manager does not refuse writes")
	t0 := time.Now()
	if err := label(old, "side", "minority"); err == nil || time.Since(t0) > 3*time.Second {
		t.Fatalf("isolated write: %v after %v", err, time.Since(t0))
	}
	if res, err := l.Client(old).NodeList(ctx, client.NodeListOptions{}); err != nil || len(res.Items) != 5 {
		t.Fatalf("isolated reads: %v", err)
	}

	// Heal: the old leader catches up with the majority's write.
	if err := l.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, func() bool {
		n, err := l.Client(old).NodeInspect(ctx, ids[majority[0]], client.NodeInspectOptions{})
		return err == nil && n.Node.Spec.Labels["side"] == "majority"
	}, "healed manager did not catch up")
	testutil.Eventually(t, 20*time.Second, func() bool { return label(old, "side", "healed") == nil }, "healed manager cannot write")

	// A worker still sees three managers.
	wi, err := l.Client("node5").Info(ctx, client.InfoOptions{})
	if err != nil || wi.Info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || len(wi.Info.Swarm.RemoteManagers) != 3 {
		t.Fatalf("worker info: %+v %v", wi.Info.Swarm, err)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
