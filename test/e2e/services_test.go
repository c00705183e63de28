package e2e

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shoal/shoal/lab"
)

// runningTasks returns node name → number of running tasks of svc, as
// `service ps` shows them.
func runningTasks(t *testing.T, c *cli, svc string) map[string]int {
	t.Helper()
	out := c.ok("service", "ps", svc, "--filter", "desired-state=running", "--format", "{{.Node}}\t{{.CurrentState}}")
	m := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		node, state, ok := strings.Cut(l, "\t")
		if ok && strings.HasPrefix(state, "Running") {
			m[node]++
		}
	}
	return m
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// waitReplicas waits until `service ls` shows want/want for svc.
func waitReplicas(t *testing.T, c *cli, svc string, want int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() string {
		out := strings.TrimSpace(c.ok("service", "ls", "--filter", "name="+svc, "--format", "{{.Name}} {{.Replicas}}"))
		if out != fmt.Sprintf("%s %d/%d", svc, want, want) {
			return "service ls: " + out
		}
		return ""
	})
}

// TestServices follows the seeds' walkthroughs on a 5-node swarm (3 managers):
// create, scale, drain, constraints, rolling update, rollback, global
// services, a node dying, and bad input.
func TestServices(t *testing.T) {
	requireE2E(t)
	l := newLab(t, lab.Options{Nodes: 5, Managers: 3, HeartbeatPeriod: time.Second,
		NodeDaemonArgs: map[string][]string{"node5": {"--label", "disk=ssd"}}})
	n1 := l.Node("node1")
	reg := l.Registry()
	img := reg + "/demo/hostname:latest"
	clis := func(t *testing.T) (*cli, *cli) { return shoalCLI(t, n1), dockerCLI(t, n1) }

	t.Run("nodes", func(t *testing.T) {
		_, dk := clis(t)
		out := dk.ok("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}")
		leaders := strings.Count(out, "Leader")
		if strings.Count(out, "Ready") != 5 || leaders != 1 || strings.Count(out, "Reachable") != 2 {
			t.Fatalf("node ls:\n%s", out)
		}
	})

	t.Run("create, scale, remove", func(t *testing.T) {
		sh, dk := clis(t)
		out := dk.ok("service", "create", "--name", "web", "--replicas", "6", img)
		if !strings.Contains(out, "verify: Service") && !strings.Contains(out, "converged") {
			// Without -d the CLI waits for convergence and prints its progress.
			t.Logf("create output: %s", out)
		}
		waitReplicas(t, dk, "web", 6, 60*time.Second)
		spread := runningTasks(t, dk, "web")
		if total(spread) != 6 || len(spread) < 3 {
			t.Fatalf("6 replicas should spread over the nodes: %v", spread)
		}
		sh.ok("service", "scale", "web=9")
		waitReplicas(t, sh, "web", 9, 60*time.Second)
		dk.ok("service", "scale", "web=3")
		waitReplicas(t, dk, "web", 3, 60*time.Second)
		eventually(t, 30*time.Second, func() string {
			if n := total(runningTasks(t, dk, "web")); n != 3 {
				return fmt.Sprintf("%d running", n)
			}
			return ""
		})
		// Task containers are visible to docker ps on the node that runs
		// them (the scaled-down ones stop shortly after).
		eventually(t, 30*time.Second, func() string {
			found := 0
			for _, n := range l.Nodes() {
				out := dockerCLI(t, n).ok("ps", "--filter", "label=com.docker.swarm.service.name=web", "--format", "{{.Names}}")
				for _, name := range strings.Fields(out) {
					if !strings.HasPrefix(name, "web.") || strings.Count(name, ".") != 2 {
						t.Fatalf("task container name %q is not web.<slot>.<task>", name)
					}
					found++
				}
			}
			if found != 3 {
				return fmt.Sprintf("found %d running task containers, want 3", found)
			}
			return ""
		})
		dk.ok("service", "rm", "web")
		eventually(t, 30*time.Second, func() string {
			for _, n := range l.Nodes() {
				if out := dockerCLI(t, n).ok("ps", "-aq", "--filter", "label=com.docker.swarm.service.name=web"); strings.TrimSpace(out) != "" {
					return n.Name + " still has containers of web"
				}
			}
			return ""
		})
	})

	t.Run("drain and pause", func(t *testing.T) {
		sh, dk := clis(t)
		dk.ok("service", "create", "-d", "--name", "drainme", "--replicas", "6", img)
		waitReplicas(t, dk, "drainme", 6, 60*time.Second)
		dk.ok("node", "update", "--availability", "drain", "node1")
		eventually(t, 60*time.Second, func() string {
			m := runningTasks(t, dk, "drainme")
			if m["node1"] != 0 || total(m) != 6 {
				return fmt.Sprintf("after drain: %v", m)
			}
			return ""
		})
		sh.ok("node", "update", "--availability", "pause", "node2")
		before := runningTasks(t, dk, "drainme")["node2"]
		dk.ok("service", "scale", "drainme=10")
		waitReplicas(t, dk, "drainme", 10, 60*time.Second)
		m := runningTasks(t, dk, "drainme")
		if m["node2"] != before || m["node1"] != 0 {
			t.Fatalf("paused node got new tasks or drained node got tasks: %v (node2 had %d)", m, before)
		}
		dk.ok("node", "update", "--availability", "active", "node1")
		sh.ok("node", "update", "--availability", "active", "node2")
		dk.ok("service", "rm", "drainme")
	})

	t.Run("labels and constraints", func(t *testing.T) {
		sh, dk := clis(t)
		dk.ok("node", "update", "--label-add", "zone=east", "node3")
		sh.ok("node", "update", "--label-add", "zone=east", "node4")
		dk.ok("service", "create", "-d", "--name", "east", "--replicas", "4", "--constraint", "node.labels.zone==east", img)
		waitReplicas(t, dk, "east", 4, 60*time.Second)
		for node := range runningTasks(t, dk, "east") {
			if node != "node3" && node != "node4" {
				t.Fatalf("task on %s violates node.labels.zone==east", node)
			}
		}
		dk.ok("service", "create", "-d", "--name", "ssd", "--replicas", "2", "--constraint", "engine.labels.disk==ssd", img)
		waitReplicas(t, dk, "ssd", 2, 60*time.Second)
		if m := runningTasks(t, dk, "ssd"); m["node5"] != 2 {
			t.Fatalf("engine label constraint: %v", m)
		}
		dk.ok("service", "create", "-d", "--name", "mgr", "--mode", "global", "--constraint", "node.role==manager", img)
		waitReplicas(t, dk, "mgr", 3, 60*time.Second)
		dk.ok("node", "update", "--label-rm", "zone", "node3")
		if out := dk.ok("node", "inspect", "-f", "{{index .Spec.Labels \"zone\"}}", "node3"); strings.TrimSpace(out) != "" {
			t.Fatalf("label-rm: %q", out)
		}
		dk.ok("service", "rm", "east", "ssd", "mgr")
	})

	t.Run("rolling update and rollback", func(t *testing.T) {
		sh, dk := clis(t)
		v2 := reg + "/demo/hostname:v2"
		dk.ok("pull", img)
		dk.ok("tag", img, v2)
		dk.ok("push", v2)
		dk.ok("service", "create", "-d", "--name", "roll", "--replicas", "6", "--update-parallelism", "3", "--update-delay", "1s", img)
		waitReplicas(t, dk, "roll", 6, 60*time.Second)
		out := dk.ok("service", "update", "--image", v2, "roll")
		if !strings.Contains(out, "converged") {
			t.Logf("update output: %s", out)
		}
		eventually(t, 90*time.Second, func() string {
			st := strings.TrimSpace(dk.ok("service", "inspect", "-f", "{{.UpdateStatus.State}} {{.Spec.TaskTemplate.ContainerSpec.Image}}", "roll"))
			if !strings.HasPrefix(st, "completed "+v2) {
				return "update status: " + st
			}
			return ""
		})
		ps := dk.ok("service", "ps", "roll")
		if !strings.Contains(ps, `\_ roll.`) {
			t.Fatalf("service ps shows no history rows:\n%s", ps)
		}
		dk.ok("service", "rollback", "roll")
		eventually(t, 90*time.Second, func() string {
			st := strings.TrimSpace(dk.ok("service", "inspect", "-f", "{{.UpdateStatus.State}} {{.Spec.TaskTemplate.ContainerSpec.Image}}", "roll"))
			// The CLI pins the image digest: "IMAGE@sha256:...".
			if !strings.HasPrefix(st, "rollback_completed "+img) {
				return "rollback status: " + st
			}
			return ""
		})
		// Shoal: roll back to any remembered version, not only the previous one.
		hist := sh.ok("service", "history", "roll")
		if strings.Count(hist, "\n") < 3 {
			t.Fatalf("history:\n%s", hist)
		}
		dk.ok("service", "rm", "roll")
	})

	t.Run("global service on every node and a newly joined one", func(t *testing.T) {
		_, dk := clis(t)
		n4 := dockerCLI(t, l.Node("node4"))
		n4.ok("swarm", "leave")
		eventually(t, 30*time.Second, func() string {
			out := dk.ok("node", "ls", "--format", "{{.Hostname}} {{.Status}}")
			if !strings.Contains(out, "node4 Down") {
				return "node ls:\n" + out
			}
			return ""
		})
		dk.ok("service", "create", "-d", "--name", "everywhere", "--mode", "global", img)
		waitReplicas(t, dk, "everywhere", 4, 60*time.Second)
		token := strings.TrimSpace(dk.ok("swarm", "join-token", "-q", "worker"))
		n4.ok("swarm", "join", "--token", token, n1.IP+":2377")
		waitReplicas(t, dk, "everywhere", 5, 60*time.Second)
		if m := runningTasks(t, dk, "everywhere"); m["node4"] != 1 || len(m) != 5 {
			t.Fatalf("global tasks: %v", m)
		}
		dk.ok("service", "rm", "everywhere")
	})

	t.Run("a worker dies and its tasks run elsewhere", func(t *testing.T) {
		_, dk := clis(t)
		dk.ok("service", "create", "-d", "--name", "heal", "--replicas", "10", img)
		waitReplicas(t, dk, "heal", 10, 60*time.Second)
		victim := ""
		m := runningTasks(t, dk, "heal")
		for _, n := range []string{"node5", "node4"} {
			if m[n] > 0 {
				victim = n
				break
			}
		}
		if victim == "" {
			t.Fatalf("no worker runs tasks: %v", m)
		}
		start := time.Now()
		if err := l.Kill(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, func() string {
			m := runningTasks(t, dk, "heal")
			if m[victim] != 0 || total(m) != 10 {
				return fmt.Sprintf("after killing %s: %v", victim, m)
			}
			return ""
		})
		t.Logf("self-healing: 10 tasks running again %v after killing %s", time.Since(start).Round(time.Millisecond), victim)
		waitReplicas(t, dk, "heal", 10, 30*time.Second)
		if err := l.Start(context.Background(), victim); err != nil {
			t.Fatal(err)
		}
		dk.ok("service", "rm", "heal")
	})

	t.Run("bad input", func(t *testing.T) {
		sh, dk := clis(t)
		dk.fails("constraint key 'node.bogus' is not supported", "service", "create", "-d", "--name", "bad1", "--constraint", "node.bogus==x", img)
		dk.fails("constraint expected one operator", "service", "create", "-d", "--name", "bad2", "--constraint", "node.hostname", img)
		dk.fails("invalid argument", "service", "create", "-d", "--name", "bad3", "--replicas", "-1", img)
		dk.fails("replicas can only be used with replicated", "service", "create", "-d", "--name", "bad4", "--mode", "global", "--replicas", "2", img)
		sh.ok("service", "create", "-d", "--name", "dup", img)
		sh.fails("already exists", "service", "create", "-d", "--name", "dup", img)
		_ = strconv.Itoa
		dk.ok("service", "create", "-d", "--name", "huge", "--reserve-memory", "1000G", img)
		eventually(t, 30*time.Second, func() string {
			out := dk.ok("service", "ps", "huge", "--no-trunc", "--format", "{{.CurrentState}} {{.Error}}")
			if !strings.Contains(out, "Pending") || !strings.Contains(out, "insufficient resources on 5 nodes") {
				return "service ps: " + out
			}
			return ""
		})
		dk.ok("service", "rm", "huge", "dup")
	})

	t.Run("service logs", func(t *testing.T) {
		_, dk := clis(t)
		dk.ok("service", "create", "-d", "--name", "talker", "--replicas", "3", reg+"/demo/busybox:latest",
			"sh", "-c", "echo hello from $(hostname); sleep 300")
		waitReplicas(t, dk, "talker", 3, 60*time.Second)
		eventually(t, 30*time.Second, func() string {
			r := dk.run("service", "logs", "talker")
			lines := strings.Split(strings.TrimSpace(r.Out), "\n")
			sort.Strings(lines)
			if len(lines) != 3 || !strings.Contains(lines[0], "talker.") || !strings.Contains(lines[0], "| hello from ") {
				return r.String()
			}
			return ""
		})
		dk.ok("service", "rm", "talker")
	})
}
