package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

type fakeServices struct {
	gotVersion uint64
	gotOpts    ServiceUpdateOptions
	gotArgs    filters.Args
	logs       []LogMessage
}

func (f *fakeServices) CreateService(ctx context.Context, spec swarm.ServiceSpec, auth string) (swarm.ServiceCreateResponse, error) {
	if spec.Name == "taken" {
		return swarm.ServiceCreateResponse{}, errdefs.Conflict("service taken already exists")
	}
	return swarm.ServiceCreateResponse{ID: "svc1"}, nil
}
func (f *fakeServices) UpdateService(ctx context.Context, ref string, v uint64, spec swarm.ServiceSpec, o ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	f.gotVersion, f.gotOpts = v, o
	return swarm.ServiceUpdateResponse{}, nil
}
func (f *fakeServices) RemoveService(ctx context.Context, ref string) error {
	return errdefs.NotFound("service %s not found", ref)
}
func (f *fakeServices) GetService(ctx context.Context, ref string, d bool) (swarm.Service, error) {
	return swarm.Service{ID: ref}, nil
}
func (f *fakeServices) ListServices(ctx context.Context, a filters.Args, st bool) ([]swarm.Service, error) {
	f.gotArgs = a
	return nil, nil
}
func (f *fakeServices) ServiceHistory(ctx context.Context, ref string) ([]ServiceHistoryEntry, error) {
	return nil, nil
}
func (f *fakeServices) ListTasks(ctx context.Context, a filters.Args) ([]swarm.Task, error) {
	f.gotArgs = a
	return nil, nil
}
func (f *fakeServices) GetTask(ctx context.Context, ref string) (swarm.Task, error) {
	return swarm.Task{}, errdefs.NotFound("task %s not found", ref)
}
func (f *fakeServices) Logs(ctx context.Context, s, t string, o LogsOptions) (<-chan LogMessage, error) {
	ch := make(chan LogMessage, len(f.logs))
	for _, m := range f.logs {
		ch <- m
	}
	close(ch)
	return ch, nil
}

func do(t *testing.T, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServiceRoutes(t *testing.T) {
	f := &fakeServices{}
	srv := New(Backends{Services: f}, nil)
	tests := []struct {
		name, method, path, body string
		status                   int
		msg                      string
	}{
		{"create", "POST", "/v1.47/services/create", `{"Name":"web"}`, 201, ""},
		{"create conflict", "POST", "/v1.47/services/create", `{"Name":"taken"}`, 409, "service taken already exists"},
		{"create bad json", "POST", "/v1.47/services/create", `{`, 400, ""},
		{"update needs version", "POST", "/v1.47/services/web/update", `{}`, 400, "invalid service version"},
		{"update", "POST", "/v1.47/services/web/update?version=7&rollback=previous", `{}`, 200, ""},
		{"rm missing", "DELETE", "/v1.47/services/nope", ``, 404, "service nope not found"},
		{"task missing", "GET", "/tasks/abc", ``, 404, "task abc not found"},
		{"list tasks", "GET", `/v1.41/tasks?filters={"service":{"web":true}}`, ``, 200, ""},
		{"bad filters", "GET", `/v1.41/tasks?filters={bad`, ``, 400, ""},
		{"logs need a stream", "GET", `/services/web/logs`, ``, 400, "choose at least one stream"},
		{"too new", "GET", "/v9.99/services", ``, 400, "is too new"},
		{"unknown path", "GET", "/v1.47/nowhere", ``, 404, "page not found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, srv, tc.method, tc.path, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.status >= 400 {
				var e struct{ Message string }
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message == "" {
					t.Fatalf("error body %q must be {\"message\":...}", rec.Body)
				}
				if tc.msg != "" && !strings.Contains(e.Message, tc.msg) {
					t.Fatalf("message %q does not contain %q", e.Message, tc.msg)
				}
			}
		})
	}
	if f.gotVersion != 7 || f.gotOpts.Rollback != "previous" {
		t.Fatalf("update got version %d opts %+v", f.gotVersion, f.gotOpts)
	}
	if rec := do(t, srv, "GET", "/services", ""); rec.Body.String() != "[]\n" {
		t.Fatalf("empty list must be [] not null: %q", rec.Body)
	}
}

func TestServiceLogsFraming(t *testing.T) {
	ts := time.Date(2026, 11, 22, 8, 0, 0, 5, time.UTC)
	f := &fakeServices{logs: []LogMessage{
		{NodeID: "n1", ServiceID: "s1", TaskID: "t1", Timestamp: ts, Line: []byte("hello\n")},
		{NodeID: "n2", ServiceID: "s1", TaskID: "t2", Timestamp: ts, Stderr: true, Line: []byte("oops\n")},
	}}
	srv := New(Backends{Services: f}, nil)
	rec := do(t, srv, "GET", "/v1.47/services/s1/logs?details=1&stdout=1&stderr=1&timestamps=1", "")
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out, errb bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errb, rec.Body); err != nil {
		t.Fatal(err)
	}
	wantOut := "2026-11-22T08:00:00.000000005Z com.docker.swarm.node.id=n1,com.docker.swarm.service.id=s1,com.docker.swarm.task.id=t1 hello\n"
	if out.String() != wantOut {
		t.Fatalf("stdout %q\nwant   %q", out.String(), wantOut)
	}
	if !strings.HasSuffix(errb.String(), "task.id=t2 oops\n") {
		t.Fatalf("stderr %q", errb.String())
	}
}
