package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal/shoal/lab"
)

// udpEchoSource is a UDP server answering every datagram with its
// container's hostname: busybox-static has no UDP server. Built static, it
// is bind-mounted into demo/busybox (lab nodes share the host's files).
const udpEchoSource = `package main

import (
	"net"
	"os"
)

func main() {
	name, _ := os.Hostname()
	c, err := net.ListenPacket("udp4", ":" + os.Args[1])
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 512)
	for {
		_, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo([]byte(name), from)
	}
}
`

func buildUDPEcho(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(udpEchoSource), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "udpecho")
	cmd := exec.Command("go", "build", "-o", bin, "main.go")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the UDP echo server: %v\n%s", err, out)
	}
	return bin
}

// mesh sends requests from inside lab nodes.
type mesh struct {
	t *testing.T
	l *lab.Lab
}

// get asks node from for http://ip:port/ and returns the answer.
func (m mesh) get(from, ip string, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// No -T: busybox 1.35's wget crashes with it.
	out, err := m.l.Exec(ctx, from, "busybox", "wget", "-qO-", fmt.Sprintf("http://%s:%d/", ip, port))
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// udp sends a datagram from node from to ip:port and returns the answer.
func (m mesh) udp(from, ip string, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := m.l.Node(from).Dial(ctx, "udp4", fmt.Sprintf("%s:%d", ip, port))
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("who")); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// answers makes n requests from node from to ip and returns the distinct
// answers, or why one failed.
func (m mesh) answers(from, ip string, n int, udp bool) ([]string, error) {
	seen := map[string]bool{}
	for range n {
		var s string
		var err error
		if udp {
			s, err = m.udp(from, ip, 5353)
		} else {
			s, err = m.get(from, ip, 8080)
		}
		if err != nil {
			return nil, fmt.Errorf("%s → %s: %v", from, ip, err)
		}
		seen[s] = true
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// everyNodeServes waits until every listed node answers on its address, to
// requests from another node and from itself, with exactly want distinct
// backends per node (numgen takes them in turn).
func (m mesh) everyNodeServes(nodes []string, want int, udp bool) {
	m.t.Helper()
	eventually(m.t, 45*time.Second, func() string {
		var all []string
		for i, n := range nodes {
			ip := m.l.Node(n).IP
			for _, from := range []string{nodes[(i+1)%len(nodes)], n} {
				got, err := m.answers(from, ip, 2*want, udp)
				if err != nil {
					return err.Error()
				}
				if len(got) != want {
					return fmt.Sprintf("%s → %s: backends %v, want %d", from, n, got, want)
				}
				all = append(all, got...)
			}
		}
		slices.Sort(all)
		if len(slices.Compact(all)) != want {
			return fmt.Sprintf("nodes disagree on the backends: %v", all)
		}
		return ""
	})
}

func (m mesh) closedEverywhere(nodes []string, port int) {
	m.t.Helper()
	eventually(m.t, 30*time.Second, func() string {
		for _, n := range nodes {
			if s, err := m.get(n, m.l.Node(n).IP, port); err == nil {
				return fmt.Sprintf("%s:%d still answers %q", n, port, s)
			}
		}
		return ""
	})
}

func (m mesh) tableGone(nodes []string) {
	m.t.Helper()
	eventually(m.t, 30*time.Second, func() string {
		for _, n := range nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			out, err := m.l.Exec(ctx, n, "nft", "list", "tables")
			cancel()
			if err != nil {
				return fmt.Sprintf("nft on %s: %v %s", n, err, out)
			}
			if strings.Contains(string(out), "shoal_ingress") {
				return n + " still has the ingress table"
			}
		}
		return ""
	})
}

// TestIngress: a published port answers on every node, the one without a
// task too, balanced over the service's tasks; it follows scaling, a
// daemon restart, a dead node, publish-rm, a node leaving and service rm;
// UDP works; and host-mode users of the port are refused clearly.
func TestIngress(t *testing.T) {
	requireE2E(t)
	echo := buildUDPEcho(t)
	l := newLab(t, lab.Options{Nodes: 3, Managers: 1, HeartbeatPeriod: time.Second})
	img := l.Registry() + "/demo/hostname:latest"
	dk := dockerCLI(t, l.Node("node1"))
	m := mesh{t: t, l: l}
	all := []string{"node1", "node2", "node3"}

	dk.ok("service", "create", "-d", "--name", "web", "--replicas", "2", "-p", "8080:80", img)
	waitReplicas(t, dk, "web", 2, 60*time.Second)
	spread := runningTasks(t, dk, "web")
	idle := ""
	for _, n := range all {
		if spread[n] == 0 {
			idle = n
		}
	}
	if idle == "" {
		t.Fatalf("2 replicas on 3 nodes, yet every node runs one: %v", spread)
	}
	m.everyNodeServes(all, 2, false)
	t.Logf("every node answers on :8080, %s (no task) included, over both tasks", idle)

	t.Run("localhost", func(t *testing.T) {
		// As on a docker swarm node, localhost:8080 answers too, here on
		// a node without a task: every answer comes from another node.
		eventually(t, 20*time.Second, func() string {
			got, err := m.answers(idle, "127.0.0.1", 4, false)
			if err != nil {
				return err.Error()
			}
			if len(got) != 2 {
				return fmt.Sprintf("localhost on %s: backends %v, want 2", idle, got)
			}
			return ""
		})
	})

	t.Run("host-mode users of the port are refused", func(t *testing.T) {
		r := dockerCLI(t, l.Node(idle)).fails("address already in use", "run", "-d", "-p", "8080:80", img)
		if !strings.Contains(r.Err, "8080") {
			t.Fatalf("error does not name the port: %s", r.Err)
		}
		dk.ok("service", "create", "-d", "--name", "hostweb", "--publish", "mode=host,published=8080,target=80", img)
		eventually(t, 30*time.Second, func() string {
			out := dk.ok("service", "ps", "hostweb", "--no-trunc", "--format", "{{.Error}}")
			if !strings.Contains(out, "host-mode port 8080/tcp is already published through the ingress routing mesh by service web") {
				return "service ps: " + out
			}
			return ""
		})
		dk.ok("service", "rm", "hostweb")
	})

	dk.ok("service", "scale", "web=3")
	waitReplicas(t, dk, "web", 3, 60*time.Second)
	m.everyNodeServes(all, 3, false)

	// A daemon restart: the node keeps answering and rebuilds its table.
	if err := l.RestartDaemon(context.Background(), "node2"); err != nil {
		t.Fatal(err)
	}
	m.everyNodeServes(all, 3, false)

	t.Run("udp", func(t *testing.T) {
		dk.ok("service", "create", "-d", "--name", "echo", "--replicas", "2", "-p", "5353:5353/udp",
			"--mount", "type=bind,source="+echo+",target=/udpecho,readonly",
			l.Registry()+"/demo/busybox:latest", "/udpecho", "5353")
		waitReplicas(t, dk, "echo", 2, 60*time.Second)
		m.everyNodeServes(all, 2, true)
	})

	// A node with a task dies: the survivors keep answering, over the
	// replacement too.
	victim := ""
	for n, c := range runningTasks(t, dk, "web") {
		if n != "node1" && c > 0 {
			victim = n
		}
	}
	if victim == "" {
		t.Fatal("no worker runs a task of web")
	}
	survivors := slices.DeleteFunc(slices.Clone(all), func(n string) bool { return n == victim })
	start := time.Now()
	if err := l.Kill(context.Background(), victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, func() string {
		if m := runningTasks(t, dk, "web"); m[victim] != 0 || total(m) != 3 {
			return fmt.Sprintf("tasks %v", m)
		}
		return ""
	})
	m.everyNodeServes(survivors, 3, false)
	t.Logf("survivors serve all 3 tasks again %v after %s died", time.Since(start).Round(time.Millisecond), victim)

	// The docker CLI removes published ports by target port: "80", not
	// "8080", takes 8080:80 away.
	dk.ok("service", "update", "-d", "--publish-rm", "80", "web")
	m.closedEverywhere(survivors, 8080)
	if got, err := m.answers(survivors[0], l.Node(survivors[1]).IP, 2, true); err != nil || len(got) == 0 {
		t.Fatalf("udp port after removing the tcp one: %v %v", got, err)
	}

	// A node that leaves the swarm stops answering for it; the others
	// carry on.
	leaver := survivors[1]
	dockerCLI(t, l.Node(leaver)).ok("swarm", "leave")
	m.tableGone([]string{leaver})
	eventually(t, 30*time.Second, func() string {
		if got, err := m.answers(leaver, l.Node("node1").IP, 2, true); err != nil || len(got) == 0 {
			return fmt.Sprintf("udp on node1 after %s left: %v %v", leaver, got, err)
		}
		return ""
	})

	dk.ok("service", "rm", "web", "echo")
	m.tableGone([]string{"node1"})
}
