package api

import (
	"encoding/json"
	"testing"

	"github.com/moby/moby/api/types/network"
)

type fakeNetworks struct{}

func (fakeNetworks) Networks() []network.Summary {
	return []network.Summary{
		{Network: network.Network{Name: "bridge", ID: "aaa111", Driver: "bridge", Scope: "local"}},
		{Network: network.Network{Name: "host", ID: "bbb222", Driver: "host", Scope: "local"}},
		{Network: network.Network{Name: "none", ID: "bbb333", Driver: "null", Scope: "local"}},
	}
}

func (fakeNetworks) Inspect() network.Inspect {
	return network.Inspect{Network: network.Network{Name: "bridge", ID: "aaa111", Driver: "bridge"},
		Containers: map[string]network.EndpointResource{"c1": {Name: "web"}}}
}

func TestNetworkRoutes(t *testing.T) {
	srv := New(Backends{Networks: fakeNetworks{}}, nil)
	tests := []struct {
		name, method, path string
		status             int
		count              int // list length, or -1
	}{
		{"list", "GET", "/v1.47/networks", 200, 3},
		{"filter driver", "GET", `/networks?filters={"driver":{"bridge":true}}`, 200, 1},
		{"filter bad key", "GET", `/networks?filters={"bogus":{"x":true}}`, 400, -1},
		{"inspect by name", "GET", "/networks/bridge", 200, -1},
		{"inspect by id prefix", "GET", "/networks/aaa", 200, -1},
		{"ambiguous prefix", "GET", "/networks/bbb", 400, -1},
		{"missing", "GET", "/networks/nope", 404, -1},
		{"remove predefined", "DELETE", "/networks/host", 403, -1},
		{"create is not built", "POST", "/networks/create", 501, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := do(t, srv, tc.method, tc.path, `{"Name":"x","Driver":"overlay"}`)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.status, rec.Body)
			}
			if tc.count >= 0 {
				var list []network.Summary
				if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list) != tc.count {
					t.Fatalf("list: %v %d", err, len(list))
				}
			}
		})
	}
	rec := do(t, srv, "GET", "/networks/bridge", "")
	var n network.Inspect
	if err := json.Unmarshal(rec.Body.Bytes(), &n); err != nil || n.Containers["c1"].Name != "web" {
		t.Fatalf("inspect bridge: %v %+v", err, n)
	}
}
