package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// fakeSwarm records what the routes pass on; the real backend (package
// cluster) is tested end to end with the docker CLI.
type fakeSwarm struct {
	version    uint64
	rotate     [3]bool
	force      bool
	ref        string
	spec       swarm.NodeSpec
	args       filters.Args
	initErr    error
	updateNErr error
}

func (f *fakeSwarm) Init(ctx context.Context, req swarm.InitRequest) (string, error) {
	return "node1", f.initErr
}
func (f *fakeSwarm) Join(ctx context.Context, req swarm.JoinRequest) error { return nil }
func (f *fakeSwarm) Leave(ctx context.Context, force bool) error {
	f.force = force
	return nil
}
func (f *fakeSwarm) Inspect(ctx context.Context) (swarm.Swarm, error) {
	return swarm.Swarm{}, errdefs.Unavailable("This node is not a swarm manager.")
}
func (f *fakeSwarm) Update(ctx context.Context, v uint64, spec swarm.Spec, w, m, u bool) error {
	f.version, f.rotate = v, [3]bool{w, m, u}
	return nil
}
func (f *fakeSwarm) UnlockKey(ctx context.Context) (string, error) { return "", nil }
func (f *fakeSwarm) Unlock(ctx context.Context, key string) error  { return nil }
func (f *fakeSwarm) Nodes(ctx context.Context, args filters.Args) ([]swarm.Node, error) {
	f.args = args
	return []swarm.Node{}, nil
}
func (f *fakeSwarm) Node(ctx context.Context, ref string) (swarm.Node, error) {
	return swarm.Node{}, errdefs.NotFound("node %s not found", ref)
}
func (f *fakeSwarm) UpdateNode(ctx context.Context, ref string, v uint64, spec swarm.NodeSpec) error {
	f.ref, f.version, f.spec = ref, v, spec
	return f.updateNErr
}
func (f *fakeSwarm) RemoveNode(ctx context.Context, ref string, force bool) error {
	f.ref, f.force = ref, force
	return nil
}

func TestSwarmRoutes(t *testing.T) {
	f := &fakeSwarm{}
	s := New(Backends{Swarm: f}, nil)
	do := func(method, path, body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(method, path, strings.NewReader(body)))
		return w
	}
	// init answers a JSON string
	w := do("POST", "/v1.47/swarm/init", `{"ListenAddr":"0.0.0.0:2377"}`)
	var id string
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &id) != nil || id != "node1" {
		t.Fatalf("init: %d %s", w.Code, w.Body)
	}
	f.initErr = errdefs.Unavailable(`This node is already part of a swarm.`)
	if w := do("POST", "/swarm/init", `{}`); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("init again: %d", w.Code)
	}
	tests := []struct {
		name, method, path, body string
		status                   int
		check                    func() bool
	}{
		{"update", "POST", "/swarm/update?version=7&rotateWorkerToken=true&rotateManagerToken=false", `{}`, 200,
			func() bool { return f.version == 7 && f.rotate == [3]bool{true, false, false} }},
		{"update bad version", "POST", "/swarm/update?version=x", `{}`, 400, nil},
		{"update no body", "POST", "/swarm/update?version=1", ``, 400, nil},
		{"inspect on a worker", "GET", "/swarm", "", 503, nil},
		{"leave force", "POST", "/swarm/leave?force=1", "", 200, func() bool { return f.force }},
		{"nodes filters", "GET", `/nodes?filters={"role":{"manager":true}}`, "", 200,
			func() bool { return f.args.ExactMatch("role", "manager") }},
		{"node missing", "GET", "/nodes/abc", "", 404, nil},
		{"node update", "POST", "/nodes/abc/update?version=3", `{"Role":"worker","Availability":"drain"}`, 200,
			func() bool { return f.ref == "abc" && f.version == 3 && f.spec.Availability == "drain" }},
		{"node update no version", "POST", "/nodes/abc/update", `{}`, 400, nil},
		{"node rm", "DELETE", "/nodes/xyz?force=true", "", 200, func() bool { return f.ref == "xyz" && f.force }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := do(tc.method, tc.path, tc.body)
			if w.Code != tc.status {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if tc.check != nil && !tc.check() {
				t.Fatalf("backend got %+v", f)
			}
		})
	}
	// Stale versions come back as a conflict with docker's text.
	f.updateNErr = errdefs.Conflict("update out of sequence")
	if w := do("POST", "/nodes/abc/update?version=1", `{}`); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "update out of sequence") {
		t.Fatalf("stale: %d %s", w.Code, w.Body)
	}
}
