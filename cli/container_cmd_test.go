package cli

import (
	"encoding/binary"
	"io"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/network"
)

// hijackAttach answers an attach request like the daemon: 101 upgrade,
// then stdcopy frames, then close.
func hijackAttach(frames ...[2]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		for _, f := range frames {
			stream := byte(1)
			if f[0] == "stderr" {
				stream = 2
			}
			hdr := make([]byte, 8)
			hdr[0] = stream
			binary.BigEndian.PutUint32(hdr[4:], uint32(len(f[1])))
			buf.Write(hdr)
			buf.WriteString(f[1])
		}
		buf.Flush()
		// The process exited: the daemon ends the stream.
	}
}

func TestRunPullsMissingImageThenRetries(t *testing.T) {
	f := newFakeEngine(t)
	var creates atomic.Int32
	f.on("POST /containers/create", func(w http.ResponseWriter, r *http.Request) {
		if creates.Add(1) == 1 {
			writeJSON(w, 404, map[string]string{"message": "No such image: busybox:latest"})
			return
		}
		writeJSON(w, 201, container.CreateResponse{ID: "c0ffee00c0ffee00c0ffee00"})
	})
	f.on("POST /images/create", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"status":"Pulling from library/busybox","id":"latest"}` + "\n" +
			`{"status":"Status: Downloaded newer image for busybox:latest"}` + "\n"))
	})
	f.on("POST /containers/c0ffee00c0ffee00c0ffee00/wait", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, container.WaitResponse{StatusCode: 0})
	})
	f.on("POST /containers/c0ffee00c0ffee00c0ffee00/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })

	res := runCLI(t, f, "", "run", "-d", "--name", "b1", "-p", "8080:80", "-e", "A=1", "busybox", "sleep", "10")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	if res.out != "c0ffee00c0ffee00c0ffee00\n" {
		t.Errorf("stdout %q", res.out)
	}
	if !strings.HasPrefix(res.err, "Unable to find image 'busybox:latest' locally\n") || !strings.Contains(res.err, "Downloaded newer image") {
		t.Errorf("stderr %q", res.err)
	}
	want := []string{
		"POST /containers/create?name=b1",
		"POST /images/create?fromImage=docker.io/library/busybox&tag=latest",
		"POST /containers/create?name=b1",
		"POST /containers/c0ffee00c0ffee00c0ffee00/wait?condition=next-exit",
		"POST /containers/c0ffee00c0ffee00c0ffee00/start",
	}
	if got := f.requests(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests\n got %v\nwant %v", got, want)
	}
	var req struct {
		container.Config
		HostConfig container.HostConfig
	}
	f.body("POST /containers/create", 1, &req)
	if !reflect.DeepEqual(req.Cmd, []string{"sleep", "10"}) || !reflect.DeepEqual(req.Env, []string{"A=1"}) || req.Image != "busybox" {
		t.Errorf("config %+v", req.Config)
	}
	p := network.MustParsePort("80/tcp")
	if b := req.HostConfig.PortBindings[p]; len(b) != 1 || b[0].HostPort != "8080" {
		t.Errorf("port bindings %+v", req.HostConfig.PortBindings)
	}
}

func TestRunPullNeverFailsWith125(t *testing.T) {
	f := newFakeEngine(t)
	f.fail("POST /containers/create", 404, "No such image: busybox:latest")
	res := runCLI(t, f, "", "run", "--pull", "never", "busybox")
	if res.code != 125 {
		t.Fatalf("exit %d", res.code)
	}
	want := "shoal: Error response from daemon: No such image: busybox:latest\n\nRun 'shoal run --help' for more information\n"
	if res.err != want {
		t.Errorf("stderr %q", res.err)
	}
}

func TestRunForegroundStreamsAndExitsWithStatus(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /containers/create", 201, container.CreateResponse{ID: "abc123"})
	f.on("POST /containers/abc123/attach", hijackAttach([2]string{"stdout", "hello\n"}, [2]string{"stderr", "warn\n"}))
	f.reply("POST /containers/abc123/wait", 200, container.WaitResponse{StatusCode: 3})
	f.on("POST /containers/abc123/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res := runCLI(t, f, "", "run", "--rm", "busybox", "sh", "-c", "exit 3")
	if res.code != 3 {
		t.Fatalf("exit %d, want 3 (stderr %q)", res.code, res.err)
	}
	if res.out != "hello\n" || res.err != "warn\n" {
		t.Errorf("stdout %q stderr %q", res.out, res.err)
	}
	reqs := f.requests()
	if reqs[1] != "POST /containers/abc123/attach?stderr=1&stdout=1&stream=1" || reqs[2] != "POST /containers/abc123/wait?condition=removed" {
		t.Errorf("requests %v", reqs)
	}
}

func TestRmReportsEachFailure(t *testing.T) {
	f := newFakeEngine(t)
	f.on("DELETE /containers/a", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	f.fail("DELETE /containers/b", 404, "No such container: b")
	f.on("DELETE /containers/c", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res := runCLI(t, f, "", "rm", "-f", "-v", "a", "b", "c")
	if res.code != 0 {
		// rm -f ignores missing containers like docker.
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	res = runCLI(t, f, "", "rm", "a", "b", "c")
	if res.code != 1 || res.out != "a\nc\n" || res.err != "Error response from daemon: No such container: b\n" {
		t.Fatalf("got %d out=%q err=%q", res.code, res.out, res.err)
	}
	// Removals run concurrently, like docker's.
	if reqs := f.requests(); !slices.Contains(reqs, "DELETE /containers/a?force=1&v=1") {
		t.Errorf("requests %v", reqs)
	}
}

func TestPsTable(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /containers/json", 200, []container.Summary{
		{ID: "4d7a0f2e9c1b5a3d6e8f0a1b2c3d4e5f", Names: []string{"/web"}, Image: "nginx:latest", ImageID: "sha256:aaaa",
			Command: "/docker-entrypoint.sh nginx -g 'daemon off;'", Created: fixedNow.Add(-2 * time.Minute).Unix(),
			Status: "Up 2 minutes", State: "running",
			Ports: []container.PortSummary{{IP: netip.MustParseAddr("0.0.0.0"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}},
		{ID: "99aa0f2e9c1b5a3d6e8f0a1b2c3d4e5f", Names: []string{"/job"}, Image: "busybox", ImageID: "sha256:bbbb",
			Command: "true", Created: fixedNow.Add(-3 * time.Hour).Unix(), Status: "Exited (0) 5 seconds ago", State: "exited"},
	})
	res := runCLI(t, f, "", "ps", "-a")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "" +
		"CONTAINER ID   IMAGE          COMMAND                  CREATED         STATUS                     PORTS                  NAMES\n" +
		"4d7a0f2e9c1b   nginx:latest   \"/docker-entrypoint.…\"   2 minutes ago   Up 2 minutes               0.0.0.0:8080->80/tcp   web\n" +
		"99aa0f2e9c1b   busybox        \"true\"                   3 hours ago     Exited (0) 5 seconds ago                          job\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
	if got := f.requests()[0]; got != "GET /containers/json?all=1" {
		t.Errorf("request %q", got)
	}
	res = runCLI(t, f, "", "ps", "-q", "--no-trunc", "--filter", "status=exited")
	if res.out != "4d7a0f2e9c1b5a3d6e8f0a1b2c3d4e5f\n99aa0f2e9c1b5a3d6e8f0a1b2c3d4e5f\n" {
		t.Errorf("quiet output %q", res.out)
	}
	if got := f.requests()[1]; got != `GET /containers/json?filters={"status":{"exited":true}}` {
		t.Errorf("filter request %q", got)
	}
	res = runCLI(t, f, "", "ps", "--format", "{{.Names}} {{.Ports}} {{json .State}}")
	if res.out != "web 0.0.0.0:8080->80/tcp \"running\"\njob  \"exited\"\n" {
		t.Errorf("template output %q", res.out)
	}
	res = runCLI(t, f, "", "ps", "--format", "table {{.ID}}\t{{.Names}}")
	if res.out != "CONTAINER ID   NAMES\n4d7a0f2e9c1b   web\n99aa0f2e9c1b   job\n" {
		t.Errorf("table template %q", res.out)
	}
	res = runCLI(t, f, "", "ps", "--format", "json")
	if !strings.HasPrefix(res.out, `{"Command":"\"/docker-entrypoint.…\"","CreatedAt":`) || strings.Count(res.out, "\n") != 2 {
		t.Errorf("json output %q", res.out)
	}
}

func TestDisplayablePorts(t *testing.T) {
	any4 := netip.MustParseAddr("0.0.0.0")
	for _, tc := range []struct {
		ports []container.PortSummary
		want  string
	}{
		{nil, ""},
		{[]container.PortSummary{{PrivatePort: 80, Type: "tcp"}}, "80/tcp"},
		{[]container.PortSummary{{PrivatePort: 80, Type: "tcp"}, {PrivatePort: 81, Type: "tcp"}, {PrivatePort: 82, Type: "tcp"}}, "80-82/tcp"},
		{[]container.PortSummary{{IP: any4, PrivatePort: 80, PublicPort: 80, Type: "tcp"}}, "0.0.0.0:80->80/tcp"},
		{[]container.PortSummary{{IP: any4, PrivatePort: 53, PublicPort: 5353, Type: "udp"}, {PrivatePort: 80, Type: "tcp"}}, "80/tcp, 0.0.0.0:5353->53/udp"},
		{[]container.PortSummary{{IP: netip.MustParseAddr("::"), PrivatePort: 80, PublicPort: 8080, Type: "tcp"}}, "[::]:8080->80/tcp"},
	} {
		if got := displayablePorts(tc.ports); got != tc.want {
			t.Errorf("displayablePorts(%v) = %q, want %q", tc.ports, got, tc.want)
		}
	}
}

func TestImagesTable(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /images/json", 200, []image.Summary{
		{ID: "sha256:1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c5b6a7988", RepoTags: []string{"busybox:latest", "localhost:5000/busybox:1"},
			RepoDigests: []string{"busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
			Created:     fixedNow.Add(-49 * time.Hour).Unix(), Size: 4261000},
		{ID: "sha256:abcdefabcdefabcdefabcdef", Created: fixedNow.Add(-10 * time.Second).Unix(), Size: 999},
	})
	res := runCLI(t, f, "", "images")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "" +
		"REPOSITORY               TAG       IMAGE ID       CREATED          SIZE\n" +
		"busybox                  latest    1f2e3d4c5b6a   2 days ago       4.26MB\n" +
		"localhost:5000/busybox   1         1f2e3d4c5b6a   2 days ago       4.26MB\n" +
		"<none>                   <none>    abcdefabcdef   10 seconds ago   999B\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
	res = runCLI(t, f, "", "image", "ls", "-q")
	// One line per repository:tag row, as docker prints it.
	if res.out != "1f2e3d4c5b6a\n1f2e3d4c5b6a\nabcdefabcdef\n" {
		t.Errorf("quiet %q", res.out)
	}
	res = runCLI(t, f, "", "images", "--digests", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}")
	if !strings.HasPrefix(res.out, "busybox:latest sha256:0123") {
		t.Errorf("digests %q", res.out)
	}
}

func TestRmiPrintsUntaggedAndDeleted(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("DELETE /images/busybox", 200, []image.DeleteResponse{{Untagged: "busybox:latest"}, {Deleted: "sha256:1f2e"}})
	res := runCLI(t, f, "", "rmi", "busybox")
	if res.code != 0 || res.out != "Untagged: busybox:latest\nDeleted: sha256:1f2e\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
}

func TestExecExitCode(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /containers/web/json", 200, container.InspectResponse{ID: "web", State: &container.State{Running: true}})
	f.reply("POST /containers/web/exec", 201, map[string]string{"Id": "exec1"})
	f.on("POST /exec/exec1/start", hijackAttach([2]string{"stdout", "hi\n"}))
	f.reply("GET /exec/exec1/json", 200, map[string]any{"ID": "exec1", "ExitCode": 7, "Running": false})
	res := runCLI(t, f, "", "exec", "web", "sh", "-c", "echo hi; exit 7")
	if res.code != 7 || res.out != "hi\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	var body map[string]any
	f.body("POST /containers/web/exec", 0, &body)
	if !reflect.DeepEqual(body["Cmd"], []any{"sh", "-c", "echo hi; exit 7"}) {
		t.Errorf("exec create body %v", body)
	}
}

func TestLogsDemux(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /containers/web/json", 200, container.InspectResponse{ID: "webid", Config: &container.Config{}})
	f.on("GET /containers/webid/logs", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.Write([]byte{1, 0, 0, 0, 0, 0, 0, 4})
		w.Write([]byte("out\n"))
		w.Write([]byte{2, 0, 0, 0, 0, 0, 0, 4})
		w.Write([]byte("err\n"))
	})
	res := runCLI(t, f, "", "logs", "--tail", "5", "-t", "web")
	if res.code != 0 || res.out != "out\n" || res.err != "err\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	if got := f.requests()[1]; got != "GET /containers/webid/logs?stderr=1&stdout=1&tail=5&timestamps=1" {
		t.Errorf("request %q", got)
	}
}

// echoAttach plays `cat`: it reads the client's stdin until it half-closes
// and sends it back as one stdout frame.
func echoAttach(w http.ResponseWriter, r *http.Request) {
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	buf.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
	buf.Flush()
	data, _ := io.ReadAll(buf)
	hdr := make([]byte, 8)
	hdr[0] = 1
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(data)))
	conn.Write(append(hdr, data...))
}

func TestRunInteractiveForwardsStdin(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /containers/create", 201, container.CreateResponse{ID: "cat1"})
	f.on("POST /containers/cat1/attach", echoAttach)
	f.reply("POST /containers/cat1/wait", 200, container.WaitResponse{StatusCode: 0})
	f.on("POST /containers/cat1/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res := runCLI(t, f, "line one\nline two\n", "run", "-i", "busybox", "cat")
	if res.code != 0 || res.out != "line one\nline two\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	var cfg container.Config
	f.body("POST /containers/create", 0, &cfg)
	if !cfg.AttachStdin || !cfg.OpenStdin || !cfg.StdinOnce {
		t.Errorf("stdin config %+v", cfg)
	}
	if got := f.requests()[1]; got != "POST /containers/cat1/attach?stderr=1&stdin=1&stdout=1&stream=1" {
		t.Errorf("attach %q", got)
	}
}

func TestRunDetachSequenceLeavesContainerRunning(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /containers/create", 201, container.CreateResponse{ID: "sh1"})
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.on("POST /containers/sh1/attach", func(w http.ResponseWriter, r *http.Request) {
		conn, buf, _ := w.(http.Hijacker).Hijack()
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		buf.Flush()
		<-release
	})
	f.on("POST /containers/sh1/wait", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		<-release
	})
	f.on("POST /containers/sh1/start", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res := runCLI(t, f, "ls\n\x10\x11", "run", "-i", "busybox", "sh")
	if res.code != 0 {
		t.Fatalf("detach: %d %q", res.code, res.err)
	}
}
