package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// fakeContainers answers like engine/container.Service for two containers:
// "web" (running, no TTY) and "tty" (running, TTY); anything else is missing.
type fakeContainers struct {
	gotList  backend.ListOptions
	gotStop  backend.StopOptions
	gotLogs  backend.LogsOptions
	gotName  string
	started  []string
	waitCode int64
}

var errNoSuch = func(ref string) error { return errdefs.NotFound("No such container: %s", ref) }

func (f *fakeContainers) Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (string, []string, error) {
	f.gotName = name
	if cfg == nil {
		return "", nil, errdefs.InvalidParameter("Config cannot be empty in order to create a container")
	}
	if cfg.Image == "nosuch" {
		return "", nil, errdefs.NotFound("No such image: nosuch")
	}
	if name == "web" {
		return "", nil, errdefs.Conflict(`Conflict. The container name "/web" is already in use by container "abc". You have to remove (or rename) that container to be able to reuse that name.`)
	}
	return "newid", nil, nil
}
func (f *fakeContainers) find(ref string) error {
	if ref == "web" || ref == "tty" {
		return nil
	}
	return errNoSuch(ref)
}
func (f *fakeContainers) Start(ctx context.Context, ref string) error {
	if ref == "web" {
		return errdefs.NotModified("already running")
	}
	f.started = append(f.started, ref)
	return f.find(ref)
}
func (f *fakeContainers) StopWith(ctx context.Context, ref string, o backend.StopOptions) error {
	f.gotStop = o
	return f.find(ref)
}
func (f *fakeContainers) Restart(ctx context.Context, ref string, o backend.StopOptions) error {
	return f.find(ref)
}
func (f *fakeContainers) Kill(ctx context.Context, ref, sig string) error {
	if sig == "BOGUS" {
		return errdefs.InvalidParameter("Invalid signal: BOGUS")
	}
	if ref == "tty" {
		return errdefs.Conflict("Cannot kill container: tty: Container tty is not running")
	}
	return f.find(ref)
}
func (f *fakeContainers) Wait(ctx context.Context, ref string, c container.WaitCondition) (<-chan container.WaitResponse, error) {
	if err := f.find(ref); err != nil {
		return nil, err
	}
	ch := make(chan container.WaitResponse, 1)
	ch <- container.WaitResponse{StatusCode: f.waitCode}
	return ch, nil
}
func (f *fakeContainers) Remove(ctx context.Context, ref string, force, v bool) error {
	if ref == "web" && !force {
		return errdefs.Conflict(`cannot remove container "/web": container is running: stop the container before removing or force remove`)
	}
	return f.find(ref)
}
func (f *fakeContainers) List(ctx context.Context, o backend.ListOptions) ([]container.Summary, error) {
	f.gotList = o
	return []container.Summary{{ID: "abc", Names: []string{"/web"}}}, nil
}
func (f *fakeContainers) Inspect(ctx context.Context, ref string) (*container.InspectResponse, error) {
	if err := f.find(ref); err != nil {
		return nil, err
	}
	return &container.InspectResponse{ID: ref, Name: "/" + ref, Config: &container.Config{Tty: ref == "tty", OpenStdin: true},
		State: &container.State{Running: true, Status: container.StateRunning}}, nil
}
func (f *fakeContainers) Logs(ctx context.Context, ref string, o backend.LogsOptions) (io.ReadCloser, error) {
	f.gotLogs = o
	if ref == "tty" {
		return io.NopCloser(strings.NewReader("raw\n")), nil
	}
	var b bytes.Buffer
	b.Write([]byte{1, 0, 0, 0, 0, 0, 0, 4})
	b.WriteString("out\n")
	return io.NopCloser(&b), nil
}
func (f *fakeContainers) Attach(ctx context.Context, ref string, o backend.AttachOptions) error {
	// Echo stdin to stdout as one frame per read, then end.
	in, _ := io.ReadAll(o.Stdin)
	if ref == "tty" {
		o.Stdout.Write(in)
		return nil
	}
	frame := append([]byte{1, 0, 0, 0, 0, 0, 0, byte(len(in))}, in...)
	o.Stdout.Write(frame)
	return nil
}
func (f *fakeContainers) Resize(ctx context.Context, ref string, h, w uint) error { return f.find(ref) }
func (f *fakeContainers) Rename(ctx context.Context, ref, name string) error {
	f.gotName = name
	return f.find(ref)
}
func (f *fakeContainers) Pause(ctx context.Context, ref string) error   { return f.find(ref) }
func (f *fakeContainers) Unpause(ctx context.Context, ref string) error { return f.find(ref) }
func (f *fakeContainers) Top(ctx context.Context, ref, ps string) (*container.TopResponse, error) {
	return &container.TopResponse{Titles: []string{"PID"}, Processes: [][]string{{"1"}}}, f.find(ref)
}
func (f *fakeContainers) Stats(ctx context.Context, ref string) (*container.StatsResponse, error) {
	return &container.StatsResponse{ID: ref, MemoryStats: container.MemoryStats{Usage: 1024}}, f.find(ref)
}
func (f *fakeContainers) Prune(ctx context.Context, o backend.ListOptions) (*container.PruneReport, error) {
	return &container.PruneReport{ContainersDeleted: []string{"x"}}, nil
}
func (f *fakeContainers) Update(ctx context.Context, ref string, u container.UpdateConfig) ([]string, error) {
	return nil, f.find(ref)
}
func (f *fakeContainers) ExecCreate(ctx context.Context, ref string, req container.ExecCreateRequest) (string, error) {
	if ref == "tty" {
		return "", errdefs.Conflict("Container tty is not running")
	}
	return "exec1", f.find(ref)
}
func (f *fakeContainers) ExecStart(ctx context.Context, id string, o backend.ExecStartOptions) error {
	if o.Detach {
		return nil
	}
	in, _ := io.ReadAll(o.Stdin)
	o.Stdout.Write(append([]byte{2, 0, 0, 0, 0, 0, 0, byte(len(in))}, in...))
	return nil
}
func (f *fakeContainers) ExecInspect(ctx context.Context, id string) (*container.ExecInspectResponse, error) {
	if id != "exec1" {
		return nil, errdefs.NotFound("No such exec instance: %s", id)
	}
	return &container.ExecInspectResponse{ID: id, ContainerID: "web", OpenStdin: true, ProcessConfig: &container.ExecProcessConfig{}}, nil
}
func (f *fakeContainers) ExecResize(ctx context.Context, id string, h, w uint) error { return nil }

func newContainerServer(t *testing.T) (*fakeContainers, *httptest.Server) {
	f := &fakeContainers{}
	srv := httptest.NewServer(New(Backends{Containers: f}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return f, srv
}

func TestContainerRoutes(t *testing.T) {
	f, srv := newContainerServer(t)
	tests := []struct {
		method, path, body string
		status             int
		want               string // substring of the body
	}{
		{"POST", "/v1.47/containers/create?name=new", `{"Image":"busybox","Cmd":["true"]}`, 201, `{"Id":"newid","Warnings":[]}`},
		{"POST", "/v1.47/containers/create", `{"Image":"nosuch"}`, 404, `{"message":"No such image: nosuch"}`},
		{"POST", "/v1.47/containers/create?name=web", `{"Image":"busybox"}`, 409, `The container name \"/web\" is already in use`},
		{"POST", "/v1.47/containers/create", ``, 400, `request body is empty`},
		{"POST", "/v1.47/containers/create", `{"Image":`, 400, `invalid JSON`},
		{"POST", "/v1.47/containers/tty/start", ``, 204, ``},
		{"POST", "/v1.47/containers/web/start", ``, 304, ``},
		{"POST", "/v1.47/containers/nope/start", ``, 404, `{"message":"No such container: nope"}`},
		{"POST", "/v1.47/containers/web/stop?t=3&signal=SIGINT", ``, 204, ``},
		{"POST", "/v1.47/containers/web/stop?t=x", ``, 400, `invalid value for t`},
		{"POST", "/v1.47/containers/web/restart", ``, 204, ``},
		{"POST", "/v1.47/containers/web/kill?signal=BOGUS", ``, 400, `Invalid signal: BOGUS`},
		{"POST", "/v1.47/containers/tty/kill", ``, 409, `is not running`},
		{"POST", "/v1.47/containers/web/wait?condition=next-exit", ``, 200, `{"StatusCode":0}`},
		{"DELETE", "/v1.47/containers/web", ``, 409, `cannot remove container \"/web\": container is running: stop the container before removing or force remove`},
		{"DELETE", "/v1.47/containers/web?force=1&v=1", ``, 204, ``},
		{"GET", "/v1.47/containers/json?all=1&limit=3&filters=%7B%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D", ``, 200, `"Names":["/web"]`},
		{"GET", "/v1.47/containers/json?filters=%7Bbad", ``, 400, `invalid filters`},
		{"GET", "/v1.47/containers/web/json", ``, 200, `"Name":"/web"`},
		{"GET", "/v1.47/containers/nope/json", ``, 404, `No such container: nope`},
		{"POST", "/v1.47/containers/web/resize?h=10&w=20", ``, 200, ``},
		{"POST", "/v1.47/containers/web/resize?h=a&w=20", ``, 400, `invalid resize parameters`},
		{"POST", "/v1.47/containers/web/rename?name=other", ``, 204, ``},
		{"POST", "/v1.47/containers/web/pause", ``, 204, ``},
		{"POST", "/v1.47/containers/web/unpause", ``, 204, ``},
		{"GET", "/v1.47/containers/web/top", ``, 200, `"Titles":["PID"]`},
		{"GET", "/v1.47/containers/web/stats?stream=0&one-shot=1", ``, 200, `"usage":1024`},
		{"POST", "/v1.47/containers/prune", ``, 200, `"ContainersDeleted":["x"]`},
		{"GET", "/v1.47/containers/web/logs", ``, 400, `Bad parameters: you must choose at least one stream`},
		{"POST", "/v1.47/containers/web/exec", `{"Cmd":["sh"]}`, 201, `{"Id":"exec1"}`},
		{"POST", "/v1.47/containers/tty/exec", `{"Cmd":["sh"]}`, 409, `Container tty is not running`},
		{"GET", "/v1.47/exec/exec1/json", ``, 200, `"ContainerID":"web"`},
		{"GET", "/v1.47/exec/nope/json", ``, 404, `No such exec instance: nope`},
		{"POST", "/v1.47/exec/exec1/start", `{"Detach":true}`, 200, ``},
		{"POST", "/v1.47/exec/nope/start", `{}`, 404, `No such exec instance: nope`},
		{"POST", "/v1.47/exec/exec1/resize?h=1&w=2", ``, 200, ``},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
				t.Fatalf("status %d body %s, want %d with %q", resp.StatusCode, b, tt.status, tt.want)
			}
		})
	}
	if f.gotStop.Timeout == nil || *f.gotStop.Timeout != 3 || f.gotStop.Signal != "SIGINT" {
		t.Fatalf("stop options %+v", f.gotStop)
	}
	if !f.gotList.All || f.gotList.Limit != 3 || !f.gotList.Filters.ExactMatch("label", "a=b") {
		t.Fatalf("list options %+v", f.gotList)
	}
}

func TestContainerLogsRoute(t *testing.T) {
	f, srv := newContainerServer(t)
	tests := []struct {
		path, ctype, body string
	}{
		{"/v1.47/containers/web/logs?stdout=1&stderr=1&tail=5&since=1700000000.5&timestamps=1&follow=1", mediaMultiplexedStream, "\x01\x00\x00\x00\x00\x00\x00\x04out\n"},
		{"/v1.41/containers/web/logs?stdout=1", mediaRawStream, "\x01\x00\x00\x00\x00\x00\x00\x04out\n"},
		{"/v1.47/containers/tty/logs?stdout=1&tail=all", mediaRawStream, "raw\n"},
	}
	for _, tt := range tests {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tt.ctype || string(b) != tt.body {
			t.Fatalf("%s: %d %q %q", tt.path, resp.StatusCode, resp.Header.Get("Content-Type"), b)
		}
	}
	resp, _ := http.Get(srv.URL + "/v1.47/containers/web/logs?stdout=1&tail=5&since=1700000000.5&timestamps=1&follow=1")
	resp.Body.Close()
	o := f.gotLogs
	if o.Tail != 5 || !o.Follow || !o.Timestamps || o.ShowStderr || o.Since != time.Unix(1700000000, 500000000) {
		t.Fatalf("logs options %+v", o)
	}
}

// rawRequest sends a request on a fresh connection and returns the
// connection positioned after the response head.
func rawRequest(t *testing.T, srv *httptest.Server, method, path, body string, upgrade bool) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if upgrade {
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "tcp")
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return conn, br, resp
}

func TestAttachHijack(t *testing.T) {
	_, srv := newContainerServer(t)
	conn, br, resp := rawRequest(t, srv, "POST", "/v1.47/containers/web/attach?stream=1&stdin=1&stdout=1&stderr=1", "", true)
	if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != mediaMultiplexedStream ||
		resp.Header.Get("Upgrade") != "tcp" || resp.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("head %d %v", resp.StatusCode, resp.Header)
	}
	// What "echo hi | docker run -i" does: write, half-close, read to the end.
	conn.Write([]byte("hi\n"))
	conn.(*net.TCPConn).CloseWrite()
	var out, errs bytes.Buffer
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := stdcopy.StdCopy(&out, &errs, br); err != nil {
		t.Fatal(err)
	}
	if out.String() != "hi\n" {
		t.Fatalf("echoed %q", out.String())
	}

	conn, br, resp = rawRequest(t, srv, "POST", "/v1.47/containers/tty/attach?stream=1&stdin=1&stdout=1", "", false)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != mediaRawStream {
		t.Fatalf("no-upgrade head %d %v", resp.StatusCode, resp.Header)
	}
	conn.Write([]byte("raw"))
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, _ := io.ReadAll(br); string(b) != "raw" {
		t.Fatalf("tty echoed %q", b)
	}

	_, _, resp = rawRequest(t, srv, "POST", "/v1.47/containers/nope/attach?stream=1", "", true)
	if resp.StatusCode != 404 {
		t.Fatalf("missing container: %d", resp.StatusCode)
	}
}

func TestExecStartHijack(t *testing.T) {
	_, srv := newContainerServer(t)
	conn, br, resp := rawRequest(t, srv, "POST", "/v1.47/exec/exec1/start", `{"Detach":false,"Tty":false}`, true)
	if resp.StatusCode != 101 || resp.Header.Get("Content-Type") != mediaMultiplexedStream {
		t.Fatalf("head %d %v", resp.StatusCode, resp.Header)
	}
	conn.Write([]byte("input"))
	conn.(*net.TCPConn).CloseWrite()
	var out, errs bytes.Buffer
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := stdcopy.StdCopy(&out, &errs, br); err != nil {
		t.Fatal(err)
	}
	if errs.String() != "input" {
		t.Fatalf("stderr %q", errs.String())
	}
}

func TestWaitHeaderBeforeResult(t *testing.T) {
	f, srv := newContainerServer(t)
	f.waitCode = 7
	resp, err := http.Post(srv.URL+"/v1.47/containers/web/wait", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var wr container.WaitResponse
	if err := json.NewDecoder(resp.Body).Decode(&wr); err != nil || wr.StatusCode != 7 {
		t.Fatalf("%+v %v", wr, err)
	}
}
