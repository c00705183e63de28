package transport

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/errdefs"
)

func newNode(t *testing.T, rc *ca.RootCA, id string, role swarm.NodeRole) *ca.NodeTLS {
	t.Helper()
	key, keyPEM, err := ca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := ca.CreateCSR(key)
	cert, _, err := rc.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: id, Role: role, ClusterID: "c1"})
	if err != nil {
		t.Fatal(err)
	}
	verifyOnly, _ := ca.ParseRootCA(rc.CertPEM, nil)
	n, err := ca.NewNodeTLS(verifyOnly, keyPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// revoker is a test Authorizer: serials in revoked are refused, node IDs in
// demoted may not act as managers.
type revoker struct {
	mu      sync.Mutex
	revoked map[string]bool
	demoted map[string]bool
}

func (r *revoker) Authorize(id ca.Identity) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revoked[id.Serial] {
		return errdefs.Wrap(errdefs.KindForbidden, ErrNodeRemoved)
	}
	return nil
}

func (r *revoker) AuthorizeManager(id ca.Identity) error {
	if err := r.Authorize(id); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.demoted[id.NodeID] {
		return errdefs.Forbidden("node %s is no longer a manager", id.NodeID)
	}
	return nil
}

func startServer(t *testing.T, rc *ca.RootCA) (*Server, *revoker) {
	t.Helper()
	srv, err := Listen(Config{ListenAddr: "127.0.0.1:0", TLS: newNode(t, rc, "mgr", swarm.NodeRoleManager)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	rv := &revoker{revoked: map[string]bool{}, demoted: map[string]bool{}}
	srv.SetAuthorizer(rv)
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := ca.PeerIdentity(r)
		io.WriteString(w, r.Proto+" "+id.NodeID)
	})
	srv.HandlePublic("GET /ca/root", echo)
	srv.Mux().Handle("GET /any", echo)
	srv.Mux().Handle("GET /mgr", srv.ManagerOnly(echo))
	return srv, rv
}

func TestAccessRules(t *testing.T) {
	rc, _ := ca.CreateRootCA()
	srv, rv := startServer(t, rc)
	addr := srv.Addr().String()
	worker := newNode(t, rc, "w1", swarm.NodeRoleWorker)
	manager := newNode(t, rc, "m2", swarm.NodeRoleManager)
	otherRoot, _ := ca.CreateRootCA()
	stranger := newNode(t, otherRoot, "x", swarm.NodeRoleManager)
	verifyOnly, _ := ca.ParseRootCA(rc.CertPEM, nil)
	anon := NewHTTPClient(ca.AnonymousClientConfig(verifyOnly, nil))
	clients := map[string]*http.Client{
		"anonymous": anon,
		"worker":    NodeClient(worker),
		"manager":   NodeClient(manager),
	}
	tests := []struct {
		client, path string
		kind         errdefs.Kind // KindUnknown = success
	}{
		{"anonymous", "/ca/root", errdefs.KindUnknown},
		{"anonymous", "/any", errdefs.KindUnauthorized},
		{"anonymous", "/mgr", errdefs.KindUnauthorized},
		{"worker", "/ca/root", errdefs.KindUnknown},
		{"worker", "/any", errdefs.KindUnknown},
		{"worker", "/mgr", errdefs.KindForbidden},
		{"manager", "/any", errdefs.KindUnknown},
		{"manager", "/mgr", errdefs.KindUnknown},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.client+tc.path, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(ctx, "GET", URL(addr, tc.path), nil)
			resp, err := clients[tc.client].Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if tc.kind == errdefs.KindUnknown {
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" {
					t.Fatalf("%d %s %s", resp.StatusCode, resp.Proto, b)
				}
				return
			}
			if err := DecodeError(resp); errdefs.KindOf(err) != tc.kind {
				t.Fatalf("got %v (%v), want %v", err, errdefs.KindOf(err), tc.kind)
			}
		})
	}
	// A certificate from another swarm fails the handshake.
	if _, err := NodeClient(stranger).Get(URL(addr, "/any")); err == nil {
		t.Fatal("foreign certificate accepted")
	}
	// Revocation applies to the next request on a live connection, and the
	// sentinel survives the wire.
	rv.mu.Lock()
	rv.revoked[worker.Identity().Serial] = true
	rv.mu.Unlock()
	err := Do(ctx, clients["worker"], "GET", addr, "/any", nil, nil)
	if !errdefs.IsForbidden(err) || !errors.Is(err, ErrNodeRemoved) {
		t.Fatalf("revoked: %v", err)
	}
	// A demoted node's manager certificate no longer opens manager endpoints.
	rv.mu.Lock()
	rv.demoted["m2"] = true
	rv.mu.Unlock()
	if err := Do(ctx, clients["manager"], "GET", addr, "/mgr", nil, nil); !errdefs.IsForbidden(err) {
		t.Fatalf("demoted: %v", err)
	}
}

func TestRaftALPN(t *testing.T) {
	rc, _ := ca.CreateRootCA()
	srv, rv := startServer(t, rc)
	sl, err := srv.RaftLayer(srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan string, 4)
	go func() {
		for {
			c, err := sl.Accept()
			if err != nil {
				return
			}
			b := make([]byte, 5)
			io.ReadFull(c, b)
			accepted <- string(b)
			c.Close()
		}
	}()
	manager := newNode(t, rc, "m2", swarm.NodeRoleManager)
	worker := newNode(t, rc, "w1", swarm.NodeRoleWorker)
	send := func(n *ca.NodeTLS, msg string) error {
		c, err := DialRaft(n, srv.Addr().String(), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.Write([]byte(msg))
		// The server closes refused conns: a read sees EOF.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		return err
	}
	send(manager, "hello")
	select {
	case got := <-accepted:
		if got != "hello" {
			t.Fatalf("got %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("manager raft stream not accepted")
	}
	send(worker, "wrong")
	rv.mu.Lock()
	rv.demoted["m2"] = true
	rv.mu.Unlock()
	send(manager, "demot")
	sl.Close()
	select {
	case got := <-accepted:
		t.Fatalf("refused stream was accepted: %q", got)
	default:
	}
}

func TestErrorWire(t *testing.T) {
	sentinel := errors.New("update out of sequence")
	RegisterCode("test_sequence", sentinel)
	tests := []struct {
		err      error
		kind     errdefs.Kind
		msg      string
		sentinel error
	}{
		{errdefs.NotFound("node x not found"), errdefs.KindNotFound, "node x not found", nil},
		{errdefs.InvalidParameter("bad"), errdefs.KindInvalidParameter, "bad", nil},
		{errdefs.Wrap(errdefs.KindConflict, sentinel), errdefs.KindConflict, "update out of sequence", sentinel},
		{errors.New("plain"), errdefs.KindSystem, "plain", nil},
	}
	for _, tc := range tests {
		b, status := EncodeError(tc.err)
		got := ParseError(b, status)
		if errdefs.KindOf(got) != tc.kind || got.Error() != tc.msg {
			t.Errorf("%v → %v (%v)", tc.err, got, errdefs.KindOf(got))
		}
		if tc.sentinel != nil && !errors.Is(got, tc.sentinel) {
			t.Errorf("%v lost its sentinel", tc.err)
		}
	}
}
