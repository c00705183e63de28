package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoal/shoal/lab"
)

// nodeRows returns hostname → "STATUS AVAILABILITY MANAGERSTATUS" rows of
// `node ls`, and the IDs by hostname and status.
func nodeRows(t *testing.T, c *cli) (rows map[string]string, ids map[string]string) {
	t.Helper()
	out := c.ok("node", "ls", "--format", "{{.ID}}\t{{.Hostname}}\t{{.Status}} {{.Availability}} {{.ManagerStatus}}")
	rows, ids = map[string]string{}, map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("node ls row %q", l)
		}
		st := strings.TrimSpace(f[2])
		rows[f[1]] = st
		ids[f[1]+" "+strings.Fields(st)[0]] = f[0]
	}
	return rows, ids
}

// waitNode waits until node's `node ls` row starts with want
// ("Ready Active Reachable", "Down", ...).
func waitNode(t *testing.T, c *cli, node, want string) {
	t.Helper()
	eventually(t, 30*time.Second, func() string {
		rows, _ := nodeRows(t, c)
		if !strings.HasPrefix(rows[node], want) {
			return fmt.Sprintf("node ls: %s is %q, want %q", node, rows[node], want)
		}
		return ""
	})
}

// TestNodes manages the nodes of a 3-manager, 2-worker swarm through both
// CLIs: listing, inspecting, availability, labels, promotion and demotion,
// removal (refused while ready or a manager), join-token rotation, and
// docker's refusals on workers and of a manager leaving.
func TestNodes(t *testing.T) {
	requireE2E(t)
	l := newLab(t, lab.Options{Nodes: 5, Managers: 3, HeartbeatPeriod: time.Second, NoRegistry: true})
	n1 := l.Node("node1")
	clis := func(t *testing.T) (*cli, *cli) { return shoalCLI(t, n1), dockerCLI(t, n1) }

	t.Run("node ls", func(t *testing.T) {
		sh, dk := clis(t)
		format := []string{"node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}} {{.ManagerStatus}}"}
		out := dk.ok(format...)
		if got := sh.ok(format...); got != out {
			t.Fatalf("shoal and docker node ls differ:\n%s\nvs\n%s", got, out)
		}
		want := "node1 Ready Active Leader\nnode2 Ready Active Reachable\nnode3 Ready Active Reachable\nnode4 Ready Active \nnode5 Ready Active \n"
		if out != want {
			t.Fatalf("node ls:\n%s\nwant:\n%s", out, want)
		}
		for _, c := range []*cli{sh, dk} {
			table := c.ok("node", "ls")
			lines := strings.Split(strings.TrimSpace(table), "\n")
			if len(lines) != 6 || !strings.HasPrefix(lines[0], "ID ") {
				t.Fatalf("%s node ls:\n%s", c.bin, table)
			}
			// The row of the node answering is marked "*".
			for _, row := range lines[1:] {
				if self := strings.Contains(row, " * "); self != strings.Contains(row, " node1 ") {
					t.Fatalf("%s node ls: self mark on the wrong row:\n%s", c.bin, table)
				}
			}
		}
	})

	t.Run("inspect self", func(t *testing.T) {
		sh, dk := clis(t)
		pretty := dk.ok("node", "inspect", "--pretty", "self")
		if got := sh.ok("node", "inspect", "--pretty", "self"); got != pretty {
			t.Fatalf("shoal and docker node inspect --pretty differ:\n%s\nvs\n%s", got, pretty)
		}
		fields := map[string]string{}
		for _, line := range strings.Split(pretty, "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		for k, v := range map[string]string{"Hostname": "node1", "State": "Ready", "Availability": "Active", "Leader": "Yes", "Raft Status": "Reachable"} {
			if fields[k] != v {
				t.Fatalf("node inspect --pretty self: %s is %q, want %q:\n%s", k, fields[k], v, pretty)
			}
		}
		// "self" is the node whose daemon answers.
		for _, n := range []string{"node2", "node3"} {
			for _, c := range []*cli{shoalCLI(t, l.Node(n)), dockerCLI(t, l.Node(n))} {
				if got := strings.TrimSpace(c.ok("node", "inspect", "-f", "{{.Description.Hostname}} {{.ManagerStatus.Leader}}", "self")); got != n+" false" {
					t.Fatalf("%s node inspect self on %s: %q", c.bin, n, got)
				}
			}
		}
	})

	t.Run("availability", func(t *testing.T) {
		sh, dk := clis(t)
		for _, tc := range []struct {
			set, check *cli
			avail      string
		}{{dk, sh, "drain"}, {sh, dk, "pause"}, {dk, sh, "active"}, {sh, dk, "drain"}, {dk, sh, "active"}} {
			if out := strings.TrimSpace(tc.set.ok("node", "update", "--availability", tc.avail, "node4")); out != "node4" {
				t.Fatalf("node update prints %q, want the node as given", out)
			}
			if got := strings.TrimSpace(tc.check.ok("node", "inspect", "-f", "{{.Spec.Availability}}", "node4")); got != tc.avail {
				t.Fatalf("after --availability %s: inspect says %q", tc.avail, got)
			}
			rows, _ := nodeRows(t, tc.check)
			if want := "Ready " + strings.ToUpper(tc.avail[:1]) + tc.avail[1:]; !strings.HasPrefix(rows["node4"], want) {
				t.Fatalf("after --availability %s: node ls row %q", tc.avail, rows["node4"])
			}
		}
		for _, c := range []*cli{sh, dk} {
			c.fails("invalid", "node", "update", "--availability", "sleepy", "node4")
		}
	})

	t.Run("labels", func(t *testing.T) {
		sh, dk := clis(t)
		labels := func(c *cli) string {
			return strings.TrimSpace(c.ok("node", "inspect", "-f", "{{json .Spec.Labels}}", "node3"))
		}
		dk.ok("node", "update", "--label-add", "zone=east", "--label-add", "tier=web", "node3")
		if got := labels(sh); got != `{"tier":"web","zone":"east"}` {
			t.Fatalf("after label-add: %s", got)
		}
		sh.ok("node", "update", "--label-add", "zone=west", "--label-rm", "tier", "node3")
		if got := labels(dk); got != `{"zone":"west"}` {
			t.Fatalf("after shoal label-add/rm: %s", got)
		}
		for _, c := range []*cli{sh, dk} {
			c.fails("key tier doesn't exist in node's labels", "node", "update", "--label-rm", "tier", "node3")
		}
		dk.ok("node", "update", "--label-rm", "zone", "node3")
		if got := labels(sh); got != "{}" && got != "null" {
			t.Fatalf("after removing every label: %s", got)
		}
	})

	t.Run("a worker cannot manage the cluster", func(t *testing.T) {
		n5 := l.Node("node5")
		for _, c := range []*cli{shoalCLI(t, n5), dockerCLI(t, n5)} {
			c.fails("This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.", "node", "ls")
			c.fails("This node is not a swarm manager.", "node", "update", "--availability", "drain", "node5")
		}
	})

	t.Run("a manager does not leave without --force", func(t *testing.T) {
		n2 := l.Node("node2")
		for _, c := range []*cli{shoalCLI(t, n2), dockerCLI(t, n2)} {
			r := c.fails("You are attempting to leave the swarm on a node that is participating as a manager.", "swarm", "leave")
			if !strings.Contains(r.Err, "Use `--force` to suppress this message.") {
				t.Fatalf("%s swarm leave: %s", c.bin, r)
			}
		}
		_, dk := clis(t)
		if rows, _ := nodeRows(t, dk); rows["node2"] != "Ready Active Reachable" {
			t.Fatalf("node2 after a refused leave: %q", rows["node2"])
		}
	})

	t.Run("a manager is not removed", func(t *testing.T) {
		sh, dk := clis(t)
		for _, args := range [][]string{{"node", "rm", "node2"}, {"node", "rm", "--force", "node2"}} {
			for _, c := range []*cli{sh, dk} {
				c.fails("is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", args...)
			}
		}
	})

	t.Run("promote and demote", func(t *testing.T) {
		sh, dk := clis(t)
		n4 := l.Node("node4")
		n4dk, n4sh := dockerCLI(t, n4), shoalCLI(t, n4)
		isManager := func(want string) {
			eventually(t, 30*time.Second, func() string {
				out := n4dk.ok("info")
				if !strings.Contains(out, "Is Manager: "+want) {
					return "docker info on node4:\n" + out
				}
				return ""
			})
		}
		if out := dk.ok("node", "promote", "node4"); !strings.Contains(out, "promoted to a manager in the swarm") {
			t.Fatalf("promote: %q", out)
		}
		waitNode(t, dk, "node4", "Ready Active Reachable")
		isManager("true")
		// A manager now: it lists the nodes itself.
		eventually(t, 30*time.Second, func() string {
			r := n4sh.run("node", "ls", "-q")
			if r.Code != 0 || len(strings.Fields(r.Out)) != 5 {
				return "node ls on the promoted node4: " + r.String()
			}
			return ""
		})
		if out := sh.ok("node", "promote", "node4"); !strings.Contains(out, "is already a manager") {
			t.Fatalf("second promote: %q", out)
		}
		if out := sh.ok("node", "demote", "node4"); !strings.Contains(out, "demoted in the swarm") {
			t.Fatalf("demote: %q", out)
		}
		waitNode(t, sh, "node4", "Ready Active")
		eventually(t, 30*time.Second, func() string {
			if rows, _ := nodeRows(t, dk); rows["node4"] != "Ready Active" {
				return fmt.Sprintf("node4 after demote: %q", rows["node4"])
			}
			return ""
		})
		isManager("false")
		if out := dk.ok("node", "demote", "node4"); !strings.Contains(out, "is already a worker") {
			t.Fatalf("second demote: %q", out)
		}
		n4dk.fails("This node is not a swarm manager.", "node", "ls")
	})

	t.Run("join token rotation", func(t *testing.T) {
		sh, dk := clis(t)
		old := strings.TrimSpace(dk.ok("swarm", "join-token", "-q", "worker"))
		out := dk.ok("swarm", "join-token", "--rotate", "worker")
		cur := strings.TrimSpace(sh.ok("swarm", "join-token", "-q", "worker"))
		if !strings.Contains(out, "Successfully rotated worker join token.") || !strings.Contains(out, cur) || cur == old {
			t.Fatalf("rotate: old %s, now %s, output:\n%s", old, cur, out)
		}
		if mgr := strings.TrimSpace(sh.ok("swarm", "join-token", "-q", "manager")); mgr == cur || mgr == old {
			t.Fatalf("manager token %s equals a worker token", mgr)
		}
		n4 := l.Node("node4")
		n4dk, n4sh := dockerCLI(t, n4), shoalCLI(t, n4)
		_, before := nodeRows(t, dk)
		oldID := before["node4 Ready"]
		if out := n4dk.ok("swarm", "leave"); !strings.Contains(out, "Node left the swarm.") {
			t.Fatalf("leave: %q", out)
		}
		waitNode(t, dk, "node4", "Down")
		addr := n1.IP + ":2377"
		for _, c := range []*cli{n4dk, n4sh} {
			c.fails("A valid join token is necessary to join this cluster", "swarm", "join", "--token", old, addr)
			// A refused join leaves nothing behind.
			if st := strings.TrimSpace(n4dk.ok("info", "--format", "{{.Swarm.LocalNodeState}}")); st != "inactive" {
				t.Fatalf("after a refused join node4 is %q", st)
			}
		}
		if out := n4sh.ok("swarm", "join", "--token", cur, addr); !strings.Contains(out, "This node joined a swarm as a worker.") {
			t.Fatalf("join: %q", out)
		}
		eventually(t, 30*time.Second, func() string {
			_, ids := nodeRows(t, dk)
			if ids["node4 Ready"] == "" || ids["node4 Ready"] == oldID || ids["node4 Down"] != oldID {
				return fmt.Sprintf("node4 entries: %v (old %s)", ids, oldID)
			}
			return ""
		})
		// The old entry is down: it goes without --force.
		dk.ok("node", "rm", oldID)
		if _, ids := nodeRows(t, sh); ids["node4 Down"] != "" {
			t.Fatalf("old node4 entry still listed: %v", ids)
		}
	})

	t.Run("remove a worker", func(t *testing.T) {
		sh, dk := clis(t)
		for _, c := range []*cli{sh, dk} {
			c.fails("is not down and can't be removed", "node", "rm", "node5")
		}
		if err := l.Kill(context.Background(), "node5"); err != nil {
			t.Fatal(err)
		}
		waitNode(t, dk, "node5", "Down")
		if out := strings.TrimSpace(sh.ok("node", "rm", "node5")); out != "node5" {
			t.Fatalf("node rm prints %q", out)
		}
		rows, _ := nodeRows(t, dk)
		if _, ok := rows["node5"]; ok || len(rows) != 4 {
			t.Fatalf("after node rm node5: %v", rows)
		}
		dk.fails("node5 not found", "node", "rm", "node5")
	})
}
