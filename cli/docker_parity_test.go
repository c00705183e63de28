package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"

	"github.com/shoal/shoal/internal/testutil"
)

// TestOutputMatchesDockerCLI runs the stock docker CLI and shoal against
// the same scripted daemon and requires identical output (with "docker"
// read as "shoal" in hints). Relative times use the real clock here,
// since docker does.
func TestOutputMatchesDockerCLI(t *testing.T) {
	testutil.RequireBinary(t, "docker")
	now := time.Now()
	f := newFakeEngine(t)

	f.reply("GET /containers/json", 200, []container.Summary{
		{ID: "4d7a0f2e9c1b5a3d6e8f0a1b2c3d4e5f", Names: []string{"/web"}, Image: "nginx:latest", ImageID: "sha256:aaaa",
			Command: "/docker-entrypoint.sh nginx -g 'daemon off;'", Created: now.Add(-2 * time.Minute).Unix(),
			Status: "Up 2 minutes", State: "running",
			Ports: []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"},
				{PrivatePort: 443, Type: "tcp"}, {PrivatePort: 444, Type: "tcp"}}},
		{ID: "99aa0f2e9c1b5a3d6e8f0a1b2c3d4e5f", Names: []string{"/job"}, Image: "busybox", ImageID: "sha256:bbbb",
			Command: "true", Created: now.Add(-3 * time.Hour).Unix(), Status: "Exited (0) 5 seconds ago", State: "exited",
			Labels: map[string]string{"a": "1", "b": "2"}},
	})
	f.reply("GET /images/json", 200, []image.Summary{
		{ID: "sha256:1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988", RepoTags: []string{"busybox:latest", "localhost:5000/busybox:1"},
			RepoDigests: []string{"busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
			Created:     now.Add(-49 * time.Hour).Unix(), Size: 4261000, Containers: -1, SharedSize: -1},
		{ID: "sha256:abcdefabcdefabcdefabcdef", Created: now.Add(-10 * time.Minute).Unix(), Size: 999, Containers: -1, SharedSize: -1},
	})
	nodes := testNodes()
	nodes[1].Meta.CreatedAt = time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	nodes[1].Description.Platform = swarm.Platform{OS: "linux", Architecture: "x86_64"}
	nodes[1].Description.Resources = swarm.Resources{NanoCPUs: 2e9, MemoryBytes: 2 << 30}
	nodes[1].Status.Addr = "10.0.0.1"
	nodes[1].ManagerStatus.Addr = "10.0.0.1:2377"
	nodes[1].Spec.Labels = map[string]string{"mem": "max"}
	f.reply("GET /nodes", 200, nodes)
	f.reply("GET /nodes/"+nodes[1].ID, 200, nodes[1])
	f.reply("GET /nodes/node1", 200, swarm.Node{ID: "node1", Description: swarm.NodeDescription{Hostname: "manager1"}})
	f.reply("GET /nodes/node2", 200, swarm.Node{ID: "node2", Description: swarm.NodeDescription{Hostname: "worker1"}})
	info := swarmInfo(nodes[1].ID, true)
	f.reply("GET /info", 200, info)

	web := webService(3)
	web.Endpoint.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
		{Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: swarm.PortConfigPublishModeIngress}}
	web.ServiceStatus = &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 3}
	web.Spec.Labels = map[string]string{"tier": "front"}
	web.Spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.role==worker"}, Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.dc"}}}, MaxReplicas: 2}
	web.Spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, FailureAction: "pause", Monitor: 5 * time.Second, Order: "stop-first"}
	web.Spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: 1, FailureAction: "pause", Order: "stop-first"}
	web.Spec.TaskTemplate.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 5e8, MemoryBytes: 512 << 20}, Reservations: &swarm.Resources{NanoCPUs: 25e7}}
	web.Spec.TaskTemplate.ContainerSpec.Env = []string{"A=1", "B=2"}
	web.Spec.TaskTemplate.ContainerSpec.Args = []string{"nginx", "-g", "daemon off;"}
	web.Spec.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP}
	agent := swarm.Service{ID: "agent1234567890", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "agent"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
		Mode:         swarm.ServiceMode{Global: &swarm.GlobalService{}}},
		ServiceStatus: &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}}
	f.reply("GET /services", 200, []swarm.Service{web, agent})
	f.reply("GET /services/web", 200, web)
	f.reply("GET /services/"+web.ID, 200, web)
	ts := now.Add(-2 * time.Minute)
	f.reply("GET /tasks", 200, []swarm.Task{
		{ID: "aaaaaaaaaaaaaaaaaaaa", ServiceID: web.ID, Slot: 1, NodeID: "node1", Meta: swarm.Meta{CreatedAt: ts},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}},
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: swarm.TaskStateRunning, Timestamp: ts,
				PortStatus: swarm.PortStatus{Ports: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 30000, PublishMode: "host"}}}}},
		{ID: "bbbbbbbbbbbbbbbbbbbb", ServiceID: web.ID, Slot: 1, NodeID: "node1", Meta: swarm.Meta{CreatedAt: ts.Add(-time.Hour)},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:1.0"}},
			DesiredState: swarm.TaskStateShutdown, Status: swarm.TaskStatus{State: swarm.TaskStateShutdown, Timestamp: ts.Add(-time.Minute)}},
		{ID: "cccccccccccccccccccc", ServiceID: web.ID, Slot: 2, NodeID: "node2", Meta: swarm.Meta{CreatedAt: ts},
			Spec:         swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "nginx:latest"}},
			DesiredState: swarm.TaskStateRunning, Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "task: non-zero exit (1): something long went wrong", Timestamp: now.Add(-3 * time.Minute)}},
	})
	f.reply("GET /networks", 200, []network.Summary{
		{Network: network.Network{ID: "bbbbbbbbbbbbbbbbbbbb", Name: "ingress", Driver: "overlay", Scope: "swarm"}},
		{Network: network.Network{ID: "aaaaaaaaaaaaaaaaaaaa", Name: "bridge", Driver: "bridge", Scope: "local"}},
	})
	f.reply("GET /secrets", 200, []swarm.Secret{{ID: "sec1xxxxxxxxxxxxxxxxxxxx", Meta: swarm.Meta{CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute)},
		Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pass"}}},
		{ID: "sec2xxxxxxxxxxxxxxxxxxxx", Meta: swarm.Meta{CreatedAt: now.Add(-time.Hour), UpdatedAt: now.Add(-time.Minute)},
			Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "app_db_pass"}}}})
	f.fail("GET /containers/ghost/json", 404, "No such container: ghost")
	f.reply("POST /swarm/init", 200, "nodeabc123")
	f.reply("GET /nodes/nodeabc123", 200, swarm.Node{ID: "nodeabc123", ManagerStatus: &swarm.ManagerStatus{Addr: "10.0.0.1:2377", Leader: true}})
	f.reply("GET /swarm", 200, swarm.Swarm{ClusterInfo: swarm.ClusterInfo{Meta: swarm.Meta{Version: swarm.Version{Index: 7}}},
		JoinTokens: swarm.JoinTokens{Worker: "SWMTKN-1-aaa-www", Manager: "SWMTKN-1-aaa-mmm"}})
	f.on("POST /swarm/update", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("POST /nodes/"+nodes[1].ID+"/update", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.reply("POST /services/"+web.ID+"/update", 200, swarm.ServiceUpdateResponse{})
	f.fail("GET /distribution/docker.io/library/nginx:1.25/json", 500, "registry unreachable")
	f.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "newsvcid"})
	f.on("DELETE /services/web", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.fail("DELETE /services/ghost", 404, "service ghost not found")
	f.reply("POST /networks/create", 201, network.CreateResponse{ID: "backendid"})
	f.reply("GET /networks/backend", 200, network.Inspect{Network: network.Network{ID: "backendid", Name: "backend", Scope: "swarm", Driver: "overlay"}})
	f.reply("GET /secrets/db_pass", 200, swarm.Secret{ID: "sec1", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pass", Labels: map[string]string{}}}})
	f.reply("GET /networks/backend?scope=swarm", 200, nil)
	f.reply("GET /secrets/db_pass", 200, swarm.Secret{ID: "sec1", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pass"}}})
	f.on("POST /nodes/"+nodes[1].ID+"/update", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("DELETE /nodes/"+nodes[1].ID, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("POST /swarm/leave", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("DELETE /networks/backend", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	f.reply("POST /secrets/create", 201, swarm.SecretCreateResponse{ID: "newsecid"})
	f.reply("POST /configs/create", 201, swarm.ConfigCreateResponse{ID: "newcfgid"})
	f.reply("GET /configs", 200, []swarm.Config{{ID: "cfgid", Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "app_nginx_conf"}}}})
	f.fail("GET /configs/app_nginx_conf", 404, "config not found")
	f.fail("GET /secrets/app_db_pass", 404, "secret not found")
	for _, p := range []string{"stop", "kill", "restart"} {
		f.on("POST /containers/web/"+p, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	}
	f.fail("POST /containers/ghost/stop", 404, "No such container: ghost")
	f.on("DELETE /containers/web", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	f.reply("GET /containers/web/json", 200, container.InspectResponse{ID: "webid", Config: &container.Config{}})
	f.on("GET /containers/webid/logs", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("GET /services/web/logs", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.reply("POST /containers/create", 201, container.CreateResponse{ID: "newctr"})
	f.reply("POST /containers/newctr/wait", 200, container.WaitResponse{})
	f.on("POST /containers/newctr/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	for _, p := range []string{"/services/" + web.ID, "/services/agent1234567890", "/secrets/sec1xxxxxxxxxxxxxxxxxxxx", "/secrets/sec2xxxxxxxxxxxxxxxxxxxx",
		"/configs/cfgid", "/networks/aaaaaaaaaaaaaaaaaaaa", "/networks/bbbbbbbbbbbbbbbbbbbb"} {
		f.on("DELETE "+p, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	}
	f.reply("GET /volumes", 200, volume.ListResponse{Volumes: []volume.Volume{{Name: "data", Driver: "local"}, {Name: "app_db", Driver: "local", Labels: map[string]string{"a": "b"}}}})
	f.reply("GET /version", 200, system.VersionResponse{Version: "0.1.0", APIVersion: "1.51", MinAPIVersion: "1.24", Os: "linux", Arch: "amd64"})
	f.fail("DELETE /containers/ghost", 404, "No such container: ghost")

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret.txt")
	os.WriteFile(secretFile, []byte("hunter2"), 0o600)
	composeFile := filepath.Join(dir, "stack.yml")
	os.WriteFile(composeFile, []byte(parityCompose), 0o644)
	os.WriteFile(filepath.Join(dir, "db_pass.txt"), []byte("pw"), 0o600)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte("conf"), 0o644)

	for i, args := range [][]string{
		{"ps", "-a"},
		{"ps", "-a", "--no-trunc"},
		{"ps", "--format", "table {{.Names}}\t{{.Labels}}\t{{.Label \"a\"}}"},
		{"ps", "--format", "{{json .Names}}"},
		// (docker orders an image's tags by map iteration, so a plain
		// `images` with several tags is not comparable.)
		{"images", "-q"},
		{"node", "ls"},
		{"node", "inspect", "--pretty", "self"},
		{"service", "ls"},
		{"service", "ps", "web"},
		{"service", "ps", "--no-trunc", "web"},
		{"service", "ps", "-q", "web"},
		{"node", "ps", "-q", "self"},
		{"service", "ps", "--format", "{{.Name}} {{.Node}} {{.CurrentState}} {{.Ports}}", "web"},
		{"node", "ls", "--format", "json"},
		{"service", "ls", "--format", "table {{.Name}}\t{{.Replicas}}"},
		{"service", "inspect", "--pretty", "web"},
		{"service", "inspect", "web"},
		{"network", "ls"},
		{"secret", "ls"},
		{"rm", "ghost"},
		{"logs", "ghost"},
		{"ps", "x"},
		{"service", "scale", "web"},
		{"swarm", "init", "--advertise-addr", "10.0.0.1"},
		{"swarm", "join-token", "worker"},
		{"swarm", "join-token", "-q", "manager"},
		{"swarm", "join-token", "--rotate", "worker"},
		{"node", "update", "--availability", "drain", "--label-add", "a=b", nodes[1].ID},
		{"node", "promote", nodes[1].ID},
		{"node", "ps", "self"},
		{"service", "scale", "-d", "web=5"},
		{"service", "update", "-d", "--rollback", "web"},
		{"service", "update", "-d", "--replicas", "4", "--env-add", "C=3", "--publish-add", "9090:90", "web"},
		{"service", "rollback", "-d", "web"},
		{"service", "create", "-d", "--name", "api", "--replicas", "2", "--constraint", "node.role==worker", "-p", "8000:80", "--limit-cpu", "0.5", "--reserve-memory", "64M", "--update-parallelism", "2", "--restart-condition", "on-failure", "nginx:1.25", "nginx", "-g", "daemon off;"},
		{"service", "create", "--mode", "global", "--replicas", "2", "nginx"},
		{"service", "rm", "web", "ghost"},
		{"service", "inspect", "--format", "{{.Spec.Name}} {{json .Spec.Mode}}", "web"},
		{"network", "create", "-d", "overlay", "--attachable", "--subnet", "10.20.0.0/16", "backend"},
		{"network", "inspect", "--format", "{{.Name}}", "backend"},
		{"secret", "inspect", "db_pass"},
		{"inspect", "--format", "{{.Description.Hostname}}", nodes[1].ID},
		{"stack", "ls"},
		{"stack", "services", "app"},
		{"run", "-p", "foo", "busybox"},
		{"version", "--format", "{{.Server.Version}}"},
		{"service", "create", "-d", "--no-resolve-image", "--name", "full", "--mode", "global", "--mount", "type=bind,src=/srv,dst=/data,readonly",
			"--mount", "type=volume,source=v,target=/v,volume-label=a=b", "--network", "backend", "--secret", "source=db_pass,target=pw,mode=0400",
			"--publish", "published=9090,target=90,protocol=udp,mode=host", "-p", "53:53/udp", "--dns", "10.0.0.2", "--host", "db:10.0.0.9",
			"--health-cmd", "true", "--health-interval", "5s", "--env", "X=1", "--label", "l=1", "--container-label", "c=2", "--hostname", "h",
			"--workdir", "/w", "--user", "1000", "--entrypoint", "sh -c", "--stop-grace-period", "30s", "--stop-signal", "SIGINT", "--init",
			"--cap-add", "net_admin", "--placement-pref", "spread=node.labels.dc", "--endpoint-mode", "dnsrr", "--rollback-parallelism", "0",
			"--rollback-monitor", "1s", "--restart-delay", "3s", "--restart-window", "1m", "--read-only", "--tty", "--sysctl", "net.core.somaxconn=1024",
			"--ulimit", "nofile=1024:2048", "--log-driver", "json-file", "--log-opt", "max-size=10m", "--limit-pids", "100", "busybox", "top"},
		{"service", "update", "-d", "--image", "nginx:1.25", "--constraint-add", "node.labels.a==b", "--constraint-rm", "node.role==worker",
			"--label-add", "x=y", "--label-rm", "tier", "--mount-add", "type=tmpfs,target=/t", "--network-add", "backend",
			"--update-delay", "3s", "--update-failure-action", "rollback", "--rollback-order", "start-first", "--limit-memory", "1g",
			"--reserve-cpu", "1", "--force", "--secret-add", "db_pass", "--env-rm", "A", "--publish-rm", "80", "--dns-add", "1.1.1.1",
			"--host-add", "x:1.2.3.4", "--cap-drop", "ALL", "--placement-pref-add", "spread=node.id", "--replicas-max-per-node", "1", "web"},
		{"node", "update", "--role", "worker", nodes[1].ID},
		{"node", "demote", nodes[1].ID},
		{"node", "rm", "-f", nodes[1].ID},
		{"swarm", "leave", "--force"},
		{"swarm", "update", "--task-history-limit", "10", "--dispatcher-heartbeat", "10s", "--cert-expiry", "48h"},
		{"network", "rm", "backend"},
		{"secret", "create", "--label", "a=b", "newsec", secretFile},
		{"config", "create", "newcfg", secretFile},
		{"stop", "-t", "3", "web", "ghost"},
		{"kill", "-s", "HUP", "web"},
		{"restart", "web"},
		{"rm", "-f", "-v", "web"},
		{"logs", "--tail", "5", "--since", "10m", "-t", "web"},
		{"run", "-d", "--name", "r1", "-p", "127.0.0.1:8080:80/tcp", "-e", "A=1", "-v", "/srv:/data:ro", "-v", "/anon", "--mount", "type=tmpfs,target=/t",
			"--tmpfs", "/run:size=1m", "-w", "/w", "-u", "1000", "--entrypoint", "sh", "--hostname", "hh", "--network", "backend", "-l", "a=b",
			"--restart", "on-failure:3", "-m", "512m", "--memory-swap", "1g", "--cpus", "1.5", "--cpu-shares", "512", "--cpuset-cpus", "0",
			"--pids-limit", "100", "--read-only", "--init", "--privileged", "--cap-add", "NET_ADMIN", "--cap-drop", "mknod", "--stop-signal", "SIGINT",
			"--stop-timeout", "5", "--dns", "8.8.8.8", "--add-host", "h:1.2.3.4", "busybox", "sleep", "9"},
		{"create", "--name", "c1", "-it", "busybox"},
		{"stack", "deploy", "-c", composeFile, "--resolve-image", "never", "app"},
		{"stack", "rm", "app"},
		{"service", "logs", "web"},
		{"volume", "ls"},
		{"ps", "--format", "json"},
		{"images", "--format", "json"},
		{"network", "ls", "--format", "json"},
		{"service", "ps", "--format", "json", "web"},
	} {
		_ = i
		before := len(f.requests())
		var dout, derr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", f.host()}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "DOCKER_CONFIG=" + t.TempDir(), "PATH=/usr/bin:/bin"}
		cmd.Stdout, cmd.Stderr = &dout, &derr
		_ = cmd.Run()
		cancel()
		dcode := cmd.ProcessState.ExitCode()

		// docker 28 spells insertDefaults true/false; the moby client we
		// use sends 1 or leaves it out (the daemon's default).
		dreqs := f.requests()[before:]
		for j, r := range dreqs {
			r = strings.ReplaceAll(r, "?insertDefaults=false", "")
			r = strings.ReplaceAll(r, "&tail=all", "")
			dreqs[j] = strings.ReplaceAll(r, "insertDefaults=true", "insertDefaults=1")
		}
		var sout, serr bytes.Buffer
		c := &CLI{Out: &sout, Err: &serr, In: strings.NewReader(""), PollInterval: time.Millisecond}
		scode := execute(context.Background(), newRoot(c), c, append([]string{"-H", f.host()}, args...))

		sreqs := f.requests()[before+len(dreqs):]
		if len(sreqs) == 0 {
			sreqs = nil
		}
		if len(dreqs) == 0 {
			dreqs = nil
		}
		if parallel[args[0]] {
			// docker runs these concurrently: compare as sets.
			sort.Strings(dreqs)
			sort.Strings(sreqs)
		}
		if !reflect.DeepEqual(dreqs, sreqs) {
			t.Errorf("%v requests differ\n docker: %v\n  shoal: %v", args, dreqs, sreqs)
		} else {
			bodies := f.sequence()
			for j := range dreqs {
				db, sb := bodies[before+j], bodies[before+len(dreqs)+j]
				var dv, sv any
				if len(db) > 0 || len(sb) > 0 {
					_ = json.Unmarshal(db, &dv)
					_ = json.Unmarshal(sb, &sv)
				}
				dv, sv = normJSON(dv), normJSON(sv)
				if !reflect.DeepEqual(dv, sv) {
					t.Errorf("%v body of %s differs\n docker: %s\n  shoal: %s", args, dreqs[j], db, sb)
				}
			}
		}
		norm := strings.NewReplacer("docker ", "shoal ", "docker'", "shoal'", "docker:", "shoal:").Replace
		dstr, sstr := norm(dout.String()), sout.String()
		if args[0] == "images" {
			// docker ranges over a map of an image's repositories: the
			// order of rows of one image varies from run to run.
			dstr, sstr = sortedLines(dstr), sortedLines(sstr)
		}
		if dstr != sstr || dcode != scode {
			t.Errorf("%v stdout differs (exit docker %d, shoal %d)\n--- docker:\n%s\n--- shoal:\n%s\n%q\n%q", args, dcode, scode, dout.String(), sout.String(), dout.String(), sout.String())
		}
		if norm(derr.String()) != serr.String() {
			t.Errorf("%v stderr differs\n--- docker:\n%q\n--- shoal:\n%q", args, derr.String(), serr.String())
		}
	}
}

var parallel = map[string]bool{"stop": true, "kill": true, "restart": true, "rm": true}

// normJSON drops null members (docker's older types lack omitempty on
// some fields) and sorts Env lists.
func normJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			x[k] = normJSON(e)
		}
	case []any:
		for i, e := range x {
			x[i] = normJSON(e)
		}
	}
	sortEnv(v)
	return v
}

// sortEnv orders "Env" lists, which docker's service update builds from a
// map (so in random order).
func sortEnv(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if l, ok := e.([]any); ok && k == "Env" {
				sort.Slice(l, func(i, j int) bool { return fmt.Sprint(l[i]) < fmt.Sprint(l[j]) })
			}
			sortEnv(e)
		}
	case []any:
		for _, e := range x {
			sortEnv(e)
		}
	}
}

const parityCompose = `
services:
  web:
    image: nginx:latest
    command: ["nginx", "-g", "daemon off;"]
    environment: [A=1]
    ports: ["8080:80", "53:53/udp"]
    networks:
      front:
        aliases: [www]
    secrets: [db_pass]
    configs:
      - source: nginx_conf
        target: /etc/nginx/nginx.conf
    volumes:
      - data:/data
      - /srv:/srv:ro
    healthcheck:
      test: ["CMD", "true"]
      interval: 5s
    stop_grace_period: 20s
    deploy:
      replicas: 2
      labels: {tier: web}
      resources:
        limits: {cpus: "0.5", memory: 64M}
        reservations: {cpus: "0.25"}
      restart_policy: {condition: on-failure, delay: 3s, max_attempts: 3, window: 1m}
      placement:
        constraints: [node.role==worker]
        preferences: [{spread: node.labels.dc}]
        max_replicas_per_node: 1
      update_config: {parallelism: 2, delay: 10s, order: start-first}
      rollback_config: {parallelism: 1}
      endpoint_mode: vip
networks:
  front:
    driver: overlay
    attachable: true
    labels: {n: "1"}
volumes:
  data:
    labels: {v: "1"}
secrets:
  db_pass:
    file: ./db_pass.txt
configs:
  nginx_conf:
    file: ./nginx.conf
`

// TestProgressMatchesDockerCLI compares the convergence progress docker
// and shoal print (plain lines when stdout is not a terminal).
func TestProgressMatchesDockerCLI(t *testing.T) {
	testutil.RequireBinary(t, "docker")
	f := newFakeEngine(t)
	svc := webService(2)
	svc.ID, svc.Spec.Name = "convid", "conv"
	svc.Spec.UpdateConfig.Monitor = time.Millisecond
	f.reply("GET /services/conv", 200, svc)
	f.reply("GET /services/convid", 200, svc)
	f.reply("POST /services/convid/update", 200, swarm.ServiceUpdateResponse{})
	tasks := runningTasks(svc.ID, 2)
	tasks = append(tasks, swarm.Task{ID: "old", ServiceID: svc.ID, Slot: 1, NodeID: "node1", DesiredState: swarm.TaskStateShutdown,
		Status: swarm.TaskStatus{State: swarm.TaskStateFailed, Err: "task: non-zero exit (1)"}})
	f.reply("GET /tasks", 200, tasks)
	f.reply("GET /nodes", 200, []swarm.Node{{ID: "node1", Status: swarm.NodeStatus{State: swarm.NodeStateReady}}})
	f.fail("GET /distribution/docker.io/library/nginx:latest/json", 500, "no registry")
	f.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "convid"})
	for _, args := range [][]string{
		{"service", "scale", "conv=2"},
		{"service", "update", "--force", "conv"},
		{"service", "create", "--name", "conv", "--replicas", "2", "nginx"},
	} {
		var dout, derr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, "docker", append([]string{"-H", f.host()}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "DOCKER_CONFIG=" + t.TempDir(), "PATH=/usr/bin:/bin"}
		cmd.Stdout, cmd.Stderr = &dout, &derr
		_ = cmd.Run()
		cancel()
		var sout, serr bytes.Buffer
		c := &CLI{Out: &sout, Err: &serr, In: strings.NewReader(""), PollInterval: time.Millisecond}
		scode := execute(context.Background(), newRoot(c), c, append([]string{"-H", f.host()}, args...))
		t.Logf("%v:\n%s", args, sout.String())
		if dout.String() != sout.String() || cmd.ProcessState.ExitCode() != scode {
			t.Errorf("%v differs (exit %d/%d)\n--- docker:\n%q\n--- shoal:\n%q", args, cmd.ProcessState.ExitCode(), scode, dout.String(), sout.String())
		}
		if derr.String() != serr.String() {
			t.Errorf("%v stderr differs\n--- docker:\n%q\n--- shoal:\n%q", args, derr.String(), serr.String())
		}
	}
}

// TestInfoServerSectionMatchesDockerCLI compares the Server part of
// `info` (the Client part describes each CLI itself).
func TestInfoServerSectionMatchesDockerCLI(t *testing.T) {
	testutil.RequireBinary(t, "docker")
	f := newFakeEngine(t)
	limit := int64(5)
	keep := uint64(0)
	info := system.Info{
		ID: "ENGINE-ID", Containers: 3, ContainersRunning: 2, ContainersStopped: 1, Images: 4, Driver: "overlay2",
		DriverStatus: [][2]string{{"Backing Filesystem", "extfs"}}, ServerVersion: "0.1.0", LoggingDriver: "json-file",
		CgroupDriver: "cgroupfs", CgroupVersion: "1", SecurityOptions: []string{"name=seccomp,profile=builtin"},
		Plugins:  system.PluginsInfo{Volume: []string{"local"}, Network: []string{"bridge", "overlay"}, Log: []string{"json-file"}},
		Runtimes: map[string]system.RuntimeWithStatus{"runc": {}}, DefaultRuntime: "runc", InitBinary: "shoal-init",
		RuncCommit: system.Commit{ID: "v1.1.5"}, KernelVersion: "6.1.0", OperatingSystem: "Debian GNU/Linux 12", OSType: "linux",
		Architecture: "x86_64", NCPU: 2, MemTotal: 4 << 30, Name: "host-a", DockerRootDir: "/var/lib/shoal", Labels: []string{"zone=a"},
		Swarm: swarm.Info{NodeID: "node1", NodeAddr: "10.0.0.1", LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: true,
			Managers: 1, Nodes: 3, RemoteManagers: []swarm.Peer{{NodeID: "node1", Addr: "10.0.0.1:2377"}},
			Cluster: &swarm.ClusterInfo{ID: "cluster1", DefaultAddrPool: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, SubnetSize: 24,
				DataPathPort: 4789, Spec: swarm.Spec{
					Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
					Raft:          swarm.RaftConfig{SnapshotInterval: 10000, KeepOldSnapshots: &keep, HeartbeatTick: 1, ElectionTick: 10},
					Dispatcher:    swarm.DispatcherConfig{HeartbeatPeriod: 5 * time.Second},
					CAConfig:      swarm.CAConfig{NodeCertExpiry: 90 * 24 * time.Hour},
				}}},
		Warnings: []string{"WARNING: No swap limit support"},
	}
	f.reply("GET /info", 200, info)
	for _, args := range [][]string{{"info"}, {"info", "--format", "{{json .Swarm}}"}, {"info", "-f", "{{.Swarm.Cluster.ID}} {{.NCPU}}"}} {
		var dout, derr bytes.Buffer
		cmd := exec.Command("docker", append([]string{"-H", f.host()}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "DOCKER_CONFIG=" + t.TempDir(), "PATH=/usr/bin:/bin"}
		cmd.Stdout, cmd.Stderr = &dout, &derr
		_ = cmd.Run()
		var sout, serr bytes.Buffer
		c := &CLI{Out: &sout, Err: &serr, In: strings.NewReader("")}
		execute(context.Background(), newRoot(c), c, append([]string{"-H", f.host()}, args...))
		d, s := dout.String(), sout.String()
		if len(args) == 1 {
			_, d, _ = strings.Cut(d, "\nServer:\n")
			_, s, _ = strings.Cut(s, "\nServer:\n")
		}
		if d != s || derr.String() != serr.String() {
			t.Errorf("%v differs\n--- docker:\n%s%s\n--- shoal:\n%s%s", args, d, derr.String(), s, serr.String())
		}
	}
}

func sortedLines(s string) string {
	lines := strings.Split(s, "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
