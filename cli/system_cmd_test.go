package cli

import (
	"archive/tar"
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"

	"github.com/shoal/shoal/version"
)

func TestInfoPrintsSwarmSection(t *testing.T) {
	f := newFakeEngine(t)
	limit := int64(5)
	info := system.Info{
		ID: "ENGINE-ID", Containers: 3, ContainersRunning: 2, ContainersStopped: 1, Images: 4, Driver: "overlay2",
		ServerVersion: "0.1.0", LoggingDriver: "json-file", CgroupDriver: "cgroupfs", CgroupVersion: "1",
		Plugins:       system.PluginsInfo{Volume: []string{"local"}, Network: []string{"bridge", "overlay"}, Log: []string{"json-file"}},
		KernelVersion: "6.1.0", OperatingSystem: "Debian GNU/Linux 12", OSType: "linux", Architecture: "x86_64",
		NCPU: 2, MemTotal: 4 << 30, Name: "host-a", DockerRootDir: "/var/lib/shoal",
		Swarm: swarm.Info{NodeID: "node1", NodeAddr: "10.0.0.1", LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: true,
			Managers: 1, Nodes: 3, RemoteManagers: []swarm.Peer{{NodeID: "node1", Addr: "10.0.0.1:2377"}},
			Cluster: &swarm.ClusterInfo{ID: "cluster1", Spec: swarm.Spec{
				Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &limit},
				Raft:          swarm.RaftConfig{SnapshotInterval: 10000, HeartbeatTick: 1, ElectionTick: 10},
				Dispatcher:    swarm.DispatcherConfig{HeartbeatPeriod: 5 * time.Second},
				CAConfig:      swarm.CAConfig{NodeCertExpiry: 90 * 24 * time.Hour},
			}}},
	}
	f.reply("GET /info", 200, info)
	res := runCLI(t, f, "", "info")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	for _, want := range []string{
		"Client:\n Version:    " + version.Version + "\n Context:    default\n Debug Mode: false\n\nServer:\n Containers: 3\n  Running: 2\n  Paused: 0\n  Stopped: 1\n Images: 4\n",
		" Swarm: active\n  NodeID: node1\n  Is Manager: true\n  ClusterID: cluster1\n  Managers: 1\n  Nodes: 3\n  Orchestration:\n   Task History Retention Limit: 5\n",
		"  Dispatcher:\n   Heartbeat Period: 5 seconds\n  CA Configuration:\n   Expiry Duration: 3 months\n",
		"  Node Address: 10.0.0.1\n  Manager Addresses:\n   10.0.0.1:2377\n",
		" CPUs: 2\n Total Memory: 4GiB\n Name: host-a\n ID: ENGINE-ID\n",
	} {
		if !strings.Contains(res.out, want) {
			t.Errorf("info lacks %q\n---\n%s", want, res.out)
		}
	}
	res = runCLI(t, f, "", "info", "--format", "{{.Swarm.NodeID}} {{.Swarm.ControlAvailable}} {{.ClientInfo.Context}}")
	if res.out != "node1 true default\n" {
		t.Errorf("format %q %q", res.out, res.err)
	}
	res = runCLI(t, f, "", "system", "info", "-f", "{{json .Swarm.LocalNodeState}}")
	if res.out != "\"active\"\n" {
		t.Errorf("system info %q", res.out)
	}
}

func TestInfoWithoutDaemon(t *testing.T) {
	dir := t.TempDir()
	res := runCLI(t, nil, "", "-H", "unix://"+filepath.Join(dir, "nope.sock"), "info")
	if res.code != 1 {
		t.Fatalf("exit %d", res.code)
	}
	if !strings.HasPrefix(res.out, "Client:\n") || !strings.Contains(res.err, "ERROR: Cannot connect to the Shoal daemon at unix://"+dir) {
		t.Errorf("out %q err %q", res.out, res.err)
	}
}

func TestConnectionFailureMessage(t *testing.T) {
	dir := t.TempDir()
	sock := "unix://" + filepath.Join(dir, "shoald.sock")
	res := runCLI(t, nil, "", "-H", sock, "ps")
	want := "Cannot connect to the Shoal daemon at " + sock + ". Is the shoald daemon running?\n"
	if res.code != 1 || res.err != want {
		t.Fatalf("got %d %q, want %q", res.code, res.err, want)
	}
	t.Setenv("SHOAL_HOST", sock)
	t.Setenv("DOCKER_HOST", "unix:///elsewhere.sock")
	res = runCLI(t, nil, "", "service", "ls")
	if res.err != want {
		t.Fatalf("SHOAL_HOST not used: %q", res.err)
	}
}

func TestVersionBlocks(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /version", 200, system.VersionResponse{Platform: system.PlatformInfo{Name: "Shoal Engine"}, Version: "0.1.0", APIVersion: "1.51",
		MinAPIVersion: "1.24", Os: "linux", Arch: "amd64", Components: []system.ComponentVersion{{Name: "Engine", Version: "0.1.0",
			Details: map[string]string{"ApiVersion": "1.51", "MinAPIVersion": "1.24", "GoVersion": "go1.26", "GitCommit": "abc", "BuildTime": "now", "Os": "linux", "Arch": "amd64", "Experimental": "false"}},
			{Name: "runc", Version: "1.1.5", Details: map[string]string{"GitCommit": "v1.1.5"}}}})
	res := runCLI(t, f, "", "version")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "Client: Shoal\n Version:           " + version.Version + "\n API version:       1.51 (downgraded from 1.56)\n Go version:        " + runtime.Version() +
		"\n Git commit:        " + version.GitCommit + "\n Built:             \n OS/Arch:           " + runtime.GOOS + "/" + runtime.GOARCH + "\n Context:           default\n\n" +
		"Server: Shoal Engine\n Engine:\n  Version:          0.1.0\n  API version:      1.51 (minimum version 1.24)\n  Go version:       go1.26\n  Git commit:       abc\n" +
		"  Built:            now\n  OS/Arch:          linux/amd64\n  Experimental:     false\n runc:\n  Version:          1.1.5\n  GitCommit:        v1.1.5\n"
	if res.out != want {
		t.Errorf("got:\n%q\nwant:\n%q", res.out, want)
	}
	res = runCLI(t, f, "", "version", "--format", "{{.Server.Version}}")
	if res.out != "0.1.0\n" {
		t.Errorf("format %q", res.out)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"ps", "x"}, 1, "shoal: 'shoal ps' accepts no arguments\n\nUsage:  shoal ps [OPTIONS]\n\nRun 'shoal ps --help' for more information\n"},
		{[]string{"rm"}, 1, "shoal: 'shoal rm' requires at least 1 argument\n\nUsage:  shoal rm [OPTIONS] CONTAINER [CONTAINER...]\n\nSee 'shoal rm --help' for more information\n"},
		{[]string{"rename", "a"}, 1, "shoal: 'shoal rename' requires 2 arguments\n\nUsage:  shoal rename CONTAINER NEW_NAME\n\nRun 'shoal rename --help' for more information\n"},
		{[]string{"swarm", "join-token"}, 1, "shoal: 'shoal swarm join-token' requires 1 argument\n\nUsage:  shoal swarm join-token [OPTIONS] (worker|manager)\n\nRun 'shoal swarm join-token --help' for more information\n"},
		{[]string{"foo"}, 1, "shoal: unknown command: shoal foo\n\nRun 'shoal --help' for more information\n"},
		{[]string{"service", "nope"}, 1, "shoal: unknown command: shoal service nope\n\nRun 'shoal service --help' for more information\n"},
		{[]string{"ps", "--bogus"}, 125, "unknown flag: --bogus\n\nUsage:  shoal ps [OPTIONS]\n\nRun 'shoal ps --help' for more information\n"},
		{[]string{"run", "-p", "foo", "busybox"}, 125, "shoal: invalid containerPort: foo\n\nRun 'shoal run --help' for more information\n"},
		{[]string{"run", "--restart", "always", "--rm", "busybox"}, 125, "shoal: conflicting options: cannot specify both --restart and --rm\n\nRun 'shoal run --help' for more information\n"},
		{[]string{"service", "create", "--mode", "global", "--replicas", "2", "nginx"}, 1, "replicas can only be used with replicated or replicated-job mode\n"},
		{[]string{"images", "a", "b"}, 1, "shoal: 'shoal images' requires at most 1 argument\n\nUsage:  shoal images [OPTIONS] [REPOSITORY[:TAG]]\n\nRun 'shoal images --help' for more information\n"},
	} {
		f := newFakeEngine(t)
		res := runCLI(t, f, "", tc.args...)
		if res.code != tc.code || res.err != tc.err {
			t.Errorf("%v: got %d %q, want %d %q", tc.args, res.code, res.err, tc.code, tc.err)
		}
	}
}

func TestGenericInspect(t *testing.T) {
	f := newFakeEngine(t)
	f.on("GET /containers/web/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"Id":"abc","Name":"/web","State":{"Status":"running","Running":true},"NewField":{"x":1}}`))
	})
	f.fail("GET /containers/busybox/json", 404, "No such container: busybox")
	f.reply("GET /images/busybox/json", 200, image.InspectResponse{ID: "sha256:img", RepoTags: []string{"busybox:latest"}})
	f.fail("GET /containers/ghost/json", 404, "No such container: ghost")
	f.fail("GET /images/ghost/json", 404, "No such image: ghost")
	f.fail("GET /volumes/ghost", 404, "no such volume")
	f.fail("GET /networks/ghost", 404, "no such network")
	for _, k := range []string{"services", "tasks", "nodes", "secrets", "configs"} {
		f.fail("GET /"+k+"/ghost", 404, "not found")
	}
	res := runCLI(t, f, "", "inspect", "web")
	want := "[\n    {\n        \"Id\": \"abc\",\n        \"Name\": \"/web\",\n        \"State\": {\n            \"Status\": \"running\",\n            \"Running\": true\n        },\n        \"NewField\": {\n            \"x\": 1\n        }\n    }\n]\n"
	if res.code != 0 || res.out != want {
		t.Errorf("raw json: %d\n%s", res.code, res.out)
	}
	res = runCLI(t, f, "", "inspect", "--format", "{{.State.Status}} {{.NewField.x}}", "web")
	if res.out != "running 1\n" {
		t.Errorf("raw fallback template %q %q", res.out, res.err)
	}
	res = runCLI(t, f, "", "inspect", "-f", "{{join .RepoTags \",\"}} {{.Id}}", "busybox")
	if res.out != "busybox:latest sha256:img\n" {
		t.Errorf("image via generic inspect %q %q", res.out, res.err)
	}
	res = runCLI(t, f, "", "inspect", "web", "ghost")
	if res.code != 1 || res.err != "Error: No such object: ghost\n" || !strings.HasPrefix(res.out, "[\n") {
		t.Errorf("missing object: %d %q %q", res.code, res.out, res.err)
	}
	res = runCLI(t, f, "", "inspect", "-f", "{{.Nope", "web")
	if res.code != 64 || !strings.HasPrefix(res.err, "template parsing error:") {
		t.Errorf("bad template: %d %q", res.code, res.err)
	}
}

func TestTemplateFuncs(t *testing.T) {
	type row struct {
		Name   string
		Tags   []string
		Labels map[string]string
	}
	r := row{Name: "hello world", Tags: []string{"a", "b"}, Labels: map[string]string{"y": "2", "x": "1"}}
	for tmpl, want := range map[string]string{
		`{{upper .Name}}`:               "HELLO WORLD",
		`{{title .Name}}`:               "Hello World",
		`{{lower "ABC"}}`:               "abc",
		`{{join .Tags "+"}}`:            "a+b",
		`{{join .Labels ","}}`:          "1,2",
		`{{index (split .Name " ") 1}}`: "world",
		`{{truncate .Name 5}}`:          "hello",
		`[{{pad .Name 1 2}}]`:           "[ hello world  ]",
		`{{json .Tags}}`:                `["a","b"]`,
		`{{json .Labels}}`:              `{"x":"1","y":"2"}`,
		`{{println "x"}}`:               "x\n",
		`{{with .Labels}}{{.x}}{{end}}`: "1",
		`{{range .Tags}}{{.}};{{end}}`:  "a;b;",
	} {
		tp, err := parseTemplate(tmpl)
		if err != nil {
			t.Fatalf("%s: %v", tmpl, err)
		}
		var b bytes.Buffer
		if err := tp.Execute(&b, r); err != nil || b.String() != want {
			t.Errorf("%s = %q, %v; want %q", tmpl, b.String(), err, want)
		}
	}
}

func TestTimeAgo(t *testing.T) {
	for d, want := range map[time.Duration]string{
		3 * time.Second:      "3 seconds ago",
		90 * time.Second:     "About a minute ago",
		2 * time.Minute:      "2 minutes ago",
		65 * time.Minute:     "About an hour ago",
		5 * time.Hour:        "5 hours ago",
		49 * time.Hour:       "2 days ago",
		15 * 24 * time.Hour:  "2 weeks ago",
		100 * 24 * time.Hour: "3 months ago",
	} {
		if got := timeAgo(fixedNow, fixedNow.Add(-d)); got != want {
			t.Errorf("timeAgo(-%v) = %q, want %q", d, got, want)
		}
	}
}

func TestLoadAndSave(t *testing.T) {
	f := newFakeEngine(t)
	f.on("POST /images/load", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"stream":"Loaded image: busybox:latest\n"}` + "\n"))
	})
	res := runCLI(t, f, "TARDATA", "load")
	if res.code != 0 || res.out != "Loaded image: busybox:latest\n" {
		t.Fatalf("load %d %q %q", res.code, res.out, res.err)
	}
	if got := f.requests()[0]; got != "POST /images/load?quiet=1" {
		t.Errorf("load request %q", got)
	}
	f.on("GET /images/get", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("tar-bytes")) })
	out := filepath.Join(t.TempDir(), "img.tar")
	res = runCLI(t, f, "", "save", "-o", out, "busybox", "alpine")
	if res.code != 0 {
		t.Fatalf("save %d %q", res.code, res.err)
	}
	if b, _ := os.ReadFile(out); string(b) != "tar-bytes" {
		t.Errorf("saved %q", b)
	}
	if got := f.requests()[1]; got != "GET /images/get?names=busybox&names=alpine" {
		t.Errorf("save request %q", got)
	}
	res = runCLI(t, f, "", "save", "busybox")
	if res.out != "tar-bytes" {
		t.Errorf("save to stdout %q", res.out)
	}
}

func TestStartAttachExitCode(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /containers/job/json", 200, container.InspectResponse{ID: "jobid", Config: &container.Config{}})
	f.on("POST /containers/jobid/attach", hijackAttach([2]string{"stdout", "done\n"}))
	f.reply("POST /containers/jobid/wait", 200, container.WaitResponse{StatusCode: 2})
	f.on("POST /containers/jobid/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res := runCLI(t, f, "", "start", "-a", "job")
	if res.code != 2 || res.out != "done\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	f.on("POST /containers/a/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	f.fail("POST /containers/b/start", 404, "No such container: b")
	res = runCLI(t, f, "", "start", "a", "b")
	if res.code != 1 || res.out != "a\n" || res.err != "Error response from daemon: No such container: b\n" {
		t.Fatalf("start many: %d %q %q", res.code, res.out, res.err)
	}
}

func TestBuildSendsContext(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY app /app\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "app"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "secret.key"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, ".dockerignore"), []byte("*.key\n"), 0o644)
	f := newFakeEngine(t)
	var names []string
	f.on("POST /build", func(w http.ResponseWriter, r *http.Request) {
		tr := tar.NewReader(r.Body)
		for {
			h, err := tr.Next()
			if err != nil {
				break
			}
			names = append(names, h.Name)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"stream":"Step 1/2 : FROM busybox\n"}` + "\n" + `{"stream":"Successfully built abc\n"}` + "\n"))
	})
	res := runCLI(t, f, "", "build", "-t", "localhost:5000/app:1", "--build-arg", "V=2", dir)
	if res.code != 0 || res.out != "Step 1/2 : FROM busybox\nSuccessfully built abc\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	sort.Strings(names)
	if !reflect.DeepEqual(names, []string{".dockerignore", "Dockerfile", "app"}) {
		t.Errorf("context files %v", names)
	}
	req := f.requests()[0]
	if !strings.Contains(req, "t=localhost:5000/app:1") || !strings.Contains(req, `buildargs={"V":"2"}`) || !strings.Contains(req, "version=1") {
		t.Errorf("build request %q", req)
	}
}
