package constraint

import (
	"testing"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

func TestParse(t *testing.T) {
	tests := []struct {
		expr    string
		wantErr string // "" means valid
		key     string
		op      Op
		exp     string
	}{
		{expr: "", wantErr: "constraint expected one operator from ==, !="},
		{expr: " ", wantErr: "constraint expected one operator from ==, !="},
		{expr: "nodeabc", wantErr: "constraint expected one operator from ==, !="},
		{expr: "node ~ abc", wantErr: "constraint expected one operator from ==, !="},
		{expr: "1node==a2", wantErr: "key '1node' is invalid"},
		{expr: "no de== node1", wantErr: "key 'no de' is invalid"},
		{expr: "no*de==node1", wantErr: "key 'no*de' is invalid"},
		{expr: "==node1", wantErr: "key '' is invalid"},
		{expr: "node.id==", wantErr: "value '' is invalid"},
		{expr: "node.id== ", wantErr: "value '' is invalid"},
		{expr: "node.id==a<b", wantErr: "value 'a<b' is invalid"},
		{expr: "node.label.zone==east", wantErr: "constraint key 'node.label.zone' is not supported: use " + supportedKeys},
		{expr: "node.labels.==east", wantErr: "constraint key 'node.labels.' is not supported: use " + supportedKeys},
		{expr: "node.name==foo", wantErr: "constraint key 'node.name' is not supported: use " + supportedKeys},
		{expr: "node.ip==300.1.1.1", wantErr: "value '300.1.1.1' is invalid: node.ip needs an IP address or a CIDR network"},
		{expr: " node.hostname == node1", key: "node.hostname", op: Eq, exp: "node1"},
		{expr: "NODE.HOSTNAME!=x", key: "NODE.HOSTNAME", op: NotEq, exp: "x"},
		{expr: "node.labels.zone==east", key: "node.labels.zone", op: Eq, exp: "east"},
		{expr: "engine.labels.disk==ssd", key: "engine.labels.disk", op: Eq, exp: "ssd"},
		{expr: "node.hostname==node 1", key: "node.hostname", op: Eq, exp: "node 1"},
		{expr: "node.labels.x==[a-b]+c*(n|b)/", key: "node.labels.x", op: Eq, exp: "[a-b]+c*(n|b)/"},
		{expr: "node.ip==10.0.0.0/8", key: "node.ip", op: Eq, exp: "10.0.0.0/8"},
		{expr: "node.ip!=2001:db8::2", key: "node.ip", op: NotEq, exp: "2001:db8::2"},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			cs, err := Parse([]string{tc.expr})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if !errdefs.IsInvalidParameter(err) {
					t.Fatalf("err kind = %v, want invalid parameter", errdefs.KindOf(err))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := cs[0]
			if c.Key != tc.key || c.Op != tc.op || c.Exp != tc.exp {
				t.Fatalf("got %q %v %q", c.Key, c.Op, c.Exp)
			}
		})
	}
}

func node() *store.Node {
	n := &store.Node{}
	n.ID = "n1id"
	n.Spec.Role = swarm.NodeRoleManager
	n.Spec.Labels = map[string]string{"zone": "east", "Case": "Sensitive"}
	n.Description.Hostname = "host-1"
	n.Description.Platform = swarm.Platform{OS: "linux", Architecture: "x86_64"}
	n.Description.Engine.Labels = map[string]string{"disk": "ssd"}
	n.Status.Addr = "10.1.2.3"
	return n
}

func TestNodeMatches(t *testing.T) {
	tests := []struct {
		exprs []string
		want  bool
	}{
		{[]string{"node.id==n1id"}, true},
		{[]string{"node.id!=n1id"}, false},
		{[]string{"node.hostname==HOST-1"}, true}, // values compare case-insensitively
		{[]string{"node.hostname!=x"}, true},
		{[]string{"node.role==manager"}, true},
		{[]string{"node.role==worker"}, false},
		{[]string{"node.platform.os==linux"}, true},
		{[]string{"node.platform.arch==x86_64"}, true},
		{[]string{"node.labels.zone==east"}, true},
		{[]string{"node.labels.zone==west"}, false},
		{[]string{"node.labels.missing==x"}, false},
		{[]string{"node.labels.missing!=x"}, true},
		{[]string{"node.labels.case==Sensitive"}, false}, // label names are case-sensitive
		{[]string{"NODE.LABELS.Case==sensitive"}, true},
		{[]string{"engine.labels.disk==ssd"}, true},
		{[]string{"engine.labels.disk!=ssd"}, false},
		{[]string{"node.ip==10.1.2.3"}, true},
		{[]string{"node.ip==10.0.0.0/8"}, true},
		{[]string{"node.ip!=10.0.0.0/8"}, false},
		{[]string{"node.ip==192.168.0.0/16"}, false},
		{[]string{"node.labels.zone==east", "node.role==worker"}, false},
		{[]string{"node.labels.zone==east", "engine.labels.disk==ssd", "node.hostname!=other"}, true},
	}
	n := node()
	for _, tc := range tests {
		cs, err := Parse(tc.exprs)
		if err != nil {
			t.Fatalf("%v: %v", tc.exprs, err)
		}
		if got := NodeMatches(cs, n); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.exprs, got, tc.want)
		}
	}
}

func TestPreferences(t *testing.T) {
	sp := func(d string) swarm.PlacementPreference {
		return swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: d}}
	}
	n := node()
	tests := []struct {
		pref    swarm.PlacementPreference
		wantErr bool
		value   string
	}{
		{pref: sp("node.labels.zone"), value: "east"},
		{pref: sp("engine.labels.disk"), value: "ssd"},
		{pref: sp("node.labels.nope"), value: ""},
		{pref: sp("node.hostname"), value: "host-1"},
		{pref: sp("node.platform.arch"), value: "x86_64"},
		{pref: sp(""), wantErr: true},
		{pref: sp("zone"), wantErr: true},
		{pref: sp("node.ip"), wantErr: true},
		{pref: swarm.PlacementPreference{}, wantErr: true},
	}
	for _, tc := range tests {
		ss, err := ParsePreferences([]swarm.PlacementPreference{tc.pref})
		if tc.wantErr {
			if !errdefs.IsInvalidParameter(err) {
				t.Errorf("%+v: err = %v, want invalid parameter", tc.pref, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := ss[0].Value(n); got != tc.value {
			t.Errorf("%s: value %q, want %q", ss[0].Descriptor, got, tc.value)
		}
	}
}

func TestValidatePlacementAndPlatforms(t *testing.T) {
	if err := ValidatePlacement(nil); err != nil {
		t.Fatal(err)
	}
	bad := []*swarm.Placement{
		{Constraints: []string{"node.foo==1"}},
		{Preferences: []swarm.PlacementPreference{{}}},
		{Platforms: []swarm.Platform{{}}},
	}
	for _, p := range bad {
		if err := ValidatePlacement(p); !errdefs.IsInvalidParameter(err) {
			t.Errorf("%+v: err = %v", p, err)
		}
	}
	n := node()
	plats := []struct {
		p    []swarm.Platform
		want bool
	}{
		{nil, true},
		{[]swarm.Platform{{OS: "linux", Architecture: "amd64"}}, true},
		{[]swarm.Platform{{OS: "windows"}}, false},
		{[]swarm.Platform{{OS: "windows"}, {Architecture: "amd64"}}, true},
		{[]swarm.Platform{{Architecture: "arm64"}}, false},
	}
	for _, tc := range plats {
		if got := PlatformMatches(tc.p, n); got != tc.want {
			t.Errorf("%+v: got %v", tc.p, got)
		}
	}
}
