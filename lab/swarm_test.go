package lab

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"

	"github.com/shoal/shoal/errdefs"
)

// fakeCluster is the swarm API of a few daemons, enough to check the
// order and content of the calls setupSwarm makes. The real swarm path is
// exercised end to end by the suites in test/e2e on a lab.
type fakeCluster struct {
	mu         sync.Mutex
	noSwarm    bool
	active     map[string]bool
	calls      []string
	init       swarm.InitRequest
	joins      map[string]swarm.JoinRequest
	readyAfter int // /nodes calls before joined nodes count as ready
	listCalls  int
}

var versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)

func (f *fakeCluster) serve(t *testing.T, node, sock string) {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.52")
		w.Write([]byte("OK"))
	})
	mux.HandleFunc("GET /info", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		st := swarm.LocalNodeStateInactive
		if f.active[node] {
			st = swarm.LocalNodeStateActive
		}
		reply(w, system.Info{Name: node, Swarm: swarm.Info{LocalNodeState: st}})
	})
	if !f.noSwarm {
		mux.HandleFunc("POST /swarm/init", func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			json.NewDecoder(r.Body).Decode(&f.init)
			f.calls = append(f.calls, "init "+node)
			f.active[node] = true
			reply(w, node+"-id")
		})
		mux.HandleFunc("GET /swarm", func(w http.ResponseWriter, r *http.Request) {
			reply(w, swarm.Swarm{JoinTokens: swarm.JoinTokens{Worker: "SWMTKN-worker", Manager: "SWMTKN-manager"}})
		})
		mux.HandleFunc("POST /swarm/join", func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			var req swarm.JoinRequest
			json.NewDecoder(r.Body).Decode(&req)
			f.joins[node] = req
			f.calls = append(f.calls, "join "+node)
			f.active[node] = true
		})
		mux.HandleFunc("GET /nodes", func(w http.ResponseWriter, r *http.Request) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.listCalls++
			var out []swarm.Node
			for n, a := range f.active {
				st := swarm.NodeStateUnknown
				if a && f.listCalls > f.readyAfter {
					st = swarm.NodeStateReady
				}
				out = append(out, swarm.Node{ID: n + "-id", Description: swarm.NodeDescription{Hostname: n}, Status: swarm.NodeStatus{State: st}})
			}
			reply(w, out)
		})
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = versionPrefix.ReplaceAllString(r.URL.Path, "")
		mux.ServeHTTP(w, r)
	})}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func fakeLab(t *testing.T, f *fakeCluster, roles ...string) (*Lab, *State) {
	dir := t.TempDir()
	n := names{lab: "fake"}
	l := newLab(n, nil)
	st := &State{Name: "fake"}
	for i, role := range roles {
		name := NodeName(i + 1)
		ni := NodeInfo{Name: name, Index: i + 1, IP: addrAt(netip.MustParsePrefix(DefaultSubnet), nodeIPOffset+i+1).String(), Role: role, Socket: filepath.Join(dir, name+".sock")}
		st.Nodes = append(st.Nodes, ni)
		f.serve(t, name, ni.Socket)
	}
	l.st = st
	t.Cleanup(func() { l.Close() })
	return l, st
}

func TestSetupSwarm(t *testing.T) {
	f := &fakeCluster{active: map[string]bool{}, joins: map[string]swarm.JoinRequest{}, readyAfter: 2}
	l, st := fakeLab(t, f, RoleManager, RoleManager, RoleManager, RoleWorker, RoleWorker)
	if err := l.setupSwarm(t.Context(), st, 2*time.Second, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// node1 inits, the other managers join one after another, then the
	// workers (in any order).
	if want := []string{"init node1", "join node2", "join node3"}; !reflect.DeepEqual(f.calls[:3], want) {
		t.Errorf("calls %v, want %v first", f.calls, want)
	}
	rest := append([]string(nil), f.calls[3:]...)
	sort.Strings(rest)
	if want := []string{"join node4", "join node5"}; !reflect.DeepEqual(rest, want) {
		t.Errorf("worker joins %v", rest)
	}
	if f.init.AdvertiseAddr != "10.99.0.11:2377" || f.init.ListenAddr != "0.0.0.0:2377" {
		t.Errorf("init addresses %q %q", f.init.AdvertiseAddr, f.init.ListenAddr)
	}
	if f.init.Spec.Dispatcher.HeartbeatPeriod != 2*time.Second {
		t.Errorf("heartbeat %v, want 2s", f.init.Spec.Dispatcher.HeartbeatPeriod)
	}
	for node, want := range map[string]swarm.JoinRequest{
		"node2": {ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.99.0.12:2377", RemoteAddrs: []string{"10.99.0.11:2377"}, JoinToken: "SWMTKN-manager"},
		"node4": {ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "10.99.0.14:2377", RemoteAddrs: []string{"10.99.0.11:2377"}, JoinToken: "SWMTKN-worker"},
	} {
		if got := f.joins[node]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s joined with %+v, want %+v", node, got, want)
		}
	}
	if f.listCalls <= f.readyAfter {
		t.Errorf("returned before the nodes were ready (%d node lists)", f.listCalls)
	}

	// A second run (a lab brought up again on kept data) changes nothing.
	f.calls = nil
	f.mu.Unlock()
	err := l.setupSwarm(t.Context(), st, 0, 10*time.Second)
	f.mu.Lock()
	if err != nil || len(f.calls) != 0 {
		t.Errorf("second setup: %v, calls %v", err, f.calls)
	}
}

func TestSetupSwarmUnsupported(t *testing.T) {
	f := &fakeCluster{active: map[string]bool{}, joins: map[string]swarm.JoinRequest{}, noSwarm: true}
	l, st := fakeLab(t, f, RoleManager, RoleWorker)
	err := l.setupSwarm(t.Context(), st, 0, 10*time.Second)
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("daemon without swarm: %v, want NotImplemented", err)
	}
}
