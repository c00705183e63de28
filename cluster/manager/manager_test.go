package manager

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/controlapi"
	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

type countingComponent struct {
	running atomic.Int32
	starts  atomic.Int32
	failing atomic.Bool
}

func (c *countingComponent) Run(ctx context.Context) error {
	c.starts.Add(1)
	if c.failing.Load() {
		return errors.New("boom")
	}
	c.running.Add(1)
	defer c.running.Add(-1)
	<-ctx.Done()
	return nil
}

type echoDispatcher struct {
	countingComponent
	env Env
}

func (d *echoDispatcher) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := ca.PeerIdentity(r)
		leader, _ := d.env.Leader()
		if !leader {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, id.NodeID+" "+r.URL.Path)
	})
}

func nodeTLS(t *testing.T, root *ca.RootCA, id string, role swarm.NodeRole) (*ca.NodeTLS, string) {
	t.Helper()
	key, keyPEM, _ := ca.GenerateKey()
	csr, _ := ca.CreateCSR(key)
	cert, serial, err := root.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: id, Role: role, ClusterID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	verify, _ := ca.ParseRootCA(root.CertPEM, nil)
	n, err := ca.NewNodeTLS(verify, keyPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	return n, serial
}

// TestLeaderComponentsAndEndpoints runs one real manager (TLS port, Raft
// on disk) and checks the hooks: leader-only components start and
// restart, the dispatcher is mounted, revoked certificates are refused.
func TestLeaderComponentsAndEndpoints(t *testing.T) {
	root, _ := ca.CreateRootCA()
	mtls, _ := nodeTLS(t, root, "m1", swarm.NodeRoleManager)
	srv, err := transport.Listen(transport.Config{ListenAddr: "127.0.0.1:0", TLS: mtls})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	comp, flaky := &countingComponent{}, &countingComponent{}
	flaky.failing.Store(true)
	var disp *echoDispatcher
	m, err := New(Config{
		NodeID:        "m1",
		AdvertiseAddr: srv.Addr().String(),
		Dir:           filepath.Join(t.TempDir(), "raft"),
		Server:        srv,
		TLS:           mtls,
		Client:        transport.NodeClient(mtls),
		Bootstrap:     true,
		Timing:        sraft.Timing{Heartbeat: 300 * time.Millisecond, Election: 300 * time.Millisecond, LeaderLease: 200 * time.Millisecond, Commit: 10 * time.Millisecond},
		Components:    func(*store.Store) []Component { return []Component{comp, flaky} },
		Dispatcher: func(env Env) Dispatcher {
			disp = &echoDispatcher{env: env}
			return disp
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return comp.running.Load() == 1 && disp.running.Load() == 1 && flaky.starts.Load() >= 2
	}, "leader components not running (comp %d, dispatcher %d, flaky starts %d)", comp.running.Load(), disp.running.Load(), flaky.starts.Load())

	// Bootstrap the swarm objects, then a worker joins the store.
	self := &store.Node{CertRole: swarm.NodeRoleManager}
	self.ID = "m1"
	self.Spec.Role = swarm.NodeRoleManager
	if err := m.Control().Bootstrap(ctx, controlapi.BootstrapRequest{ClusterID: "c1", Root: root, Node: self}); err != nil {
		t.Fatal(err)
	}
	wtls, wserial := nodeTLS(t, root, "w1", swarm.NodeRoleWorker)
	wc := transport.NodeClient(wtls)
	get := func(c *http.Client, path string) (string, error) {
		resp, err := c.Get(transport.URL(srv.Addr().String(), path))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", transport.DecodeError(resp)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b), nil
	}
	if out, err := get(wc, "/dispatcher/session"); err != nil || out != "w1 /dispatcher/session" {
		t.Fatalf("dispatcher: %q %v", out, err)
	}
	if _, err := get(wc, PathRaftStat); !errdefs.IsForbidden(err) {
		t.Fatalf("worker on a manager endpoint: %v", err)
	}
	if out, err := get(transport.NodeClient(mtls), PathRaftStat); err != nil || out == "" {
		t.Fatalf("raft status: %v", err)
	}
	// Revoke the worker: the next request is refused as removed.
	err = m.Store().Update(ctx, func(tx store.Tx) error {
		c := tx.GetCluster().Copy()
		c.RevokedSerials = []string{wserial}
		return tx.Update(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(wc, "/dispatcher/session"); !errors.Is(err, transport.ErrNodeRemoved) {
		t.Fatalf("revoked worker: %v", err)
	}
	// A removed node: refused with any of its certificates.
	w2tls, _ := nodeTLS(t, root, "w2", swarm.NodeRoleWorker)
	w2older, _ := nodeTLS(t, root, "w2", swarm.NodeRoleWorker) // from before a renewal
	for _, c := range []*http.Client{transport.NodeClient(w2tls), transport.NodeClient(w2older)} {
		if _, err := get(c, "/dispatcher/session"); err != nil {
			t.Fatalf("w2 before removal: %v", err)
		}
	}
	err = m.Store().Update(ctx, func(tx store.Tx) error {
		c := tx.GetCluster().Copy()
		c.RemovedNodes = c.WithRemoved("w2", time.Now(), time.Hour)
		return tx.Update(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*http.Client{transport.NodeClient(w2tls), transport.NodeClient(w2older)} {
		if _, err := get(c, "/dispatcher/session"); !errors.Is(err, transport.ErrNodeRemoved) {
			t.Fatalf("removed worker: %v", err)
		}
	}
	if addrs := m.ManagerAddrs(); len(addrs) != 1 || addrs[0] != srv.Addr().String() {
		t.Fatalf("manager addrs %v", addrs)
	}

	// Stopping the manager stops the leader components.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if comp.running.Load() != 0 || disp.running.Load() != 0 {
		t.Fatal("components still running after Close")
	}
}

func TestObservedAddr(t *testing.T) {
	tests := []struct{ adv, remote, want string }{
		{"10.0.0.5:2377", "10.0.0.9:5555", "10.0.0.5:2377"},
		{"0.0.0.0:2400", "10.0.0.9:5555", "10.0.0.9:2400"},
		{"", "10.0.0.9:5555", "10.0.0.9:2377"},
	}
	for _, tc := range tests {
		if got := observedAddr(tc.adv, tc.remote); got != tc.want {
			t.Errorf("observedAddr(%q, %q) = %q, want %q", tc.adv, tc.remote, got, tc.want)
		}
	}
}
