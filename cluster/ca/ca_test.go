package ca

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

func mustRoot(t *testing.T) *RootCA {
	t.Helper()
	rc, err := CreateRootCA()
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func issue(t *testing.T, rc *RootCA, id string, role swarm.NodeRole, expiry time.Duration) (keyPEM, certPEM []byte) {
	t.Helper()
	key, keyPEM, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := CreateCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err = rc.Issue(IssueRequest{CSRPEM: csr, NodeID: id, Role: role, ClusterID: "cluster1", Expiry: expiry})
	if err != nil {
		t.Fatal(err)
	}
	return keyPEM, certPEM
}

func TestRootCA(t *testing.T) {
	rc := mustRoot(t)
	if !rc.Cert.IsCA || rc.Cert.Subject.CommonName != RootCN {
		t.Fatalf("root: %+v", rc.Cert.Subject)
	}
	if life := rc.Cert.NotAfter.Sub(rc.Cert.NotBefore); life < 19*365*24*time.Hour {
		t.Fatalf("root lifetime %v", life)
	}
	if d := rc.Digest(); len(d) != 50 {
		t.Fatalf("digest %q: want 50 chars", d)
	}
	again, err := ParseRootCA(rc.CertPEM, rc.KeyPEM)
	if err != nil || again.Digest() != rc.Digest() || again.Signer == nil {
		t.Fatalf("reparse: %v", err)
	}
	other := mustRoot(t)
	if _, err := ParseRootCA(rc.CertPEM, other.KeyPEM); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("mismatched key: %v", err)
	}
	verifyOnly, _ := ParseRootCA(rc.CertPEM, nil)
	if _, _, err := verifyOnly.Issue(IssueRequest{NodeID: "n", ClusterID: "c"}); !errdefs.IsUnavailable(err) {
		t.Fatalf("issue without key: %v", err)
	}
}

func TestIssueAndVerify(t *testing.T) {
	rc := mustRoot(t)
	other := mustRoot(t)
	tests := []struct {
		name   string
		role   swarm.NodeRole
		expiry time.Duration
		ou     string
	}{
		{"manager", swarm.NodeRoleManager, 0, ManagerOU},
		{"worker", swarm.NodeRoleWorker, 2 * time.Hour, WorkerOU},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, certPEM := issue(t, rc, "node-"+tc.name, tc.role, tc.expiry)
			cert, err := ParseCertificate(certPEM)
			if err != nil {
				t.Fatal(err)
			}
			id, err := rc.Verify(cert)
			if err != nil {
				t.Fatal(err)
			}
			if id.NodeID != "node-"+tc.name || id.Role != tc.role || id.ClusterID != "cluster1" || id.Serial == "" {
				t.Fatalf("identity %+v", id)
			}
			if cert.Subject.OrganizationalUnit[0] != tc.ou {
				t.Fatalf("OU %v", cert.Subject.OrganizationalUnit)
			}
			want := tc.expiry
			if want == 0 {
				want = DefaultNodeCertExpiry
			}
			if life := cert.NotAfter.Sub(cert.NotBefore) - backdate; life < want-time.Minute || life > want+time.Minute {
				t.Fatalf("lifetime %v, want %v", life, want)
			}
			if _, err := other.Verify(cert); !errdefs.IsUnauthorized(err) {
				t.Fatalf("verified by another root: %v", err)
			}
		})
	}
}

func TestIssueRefusesBadCSR(t *testing.T) {
	rc := mustRoot(t)
	for _, csr := range [][]byte{nil, []byte("junk"), rc.CertPEM} {
		if _, _, err := rc.Issue(IssueRequest{CSRPEM: csr, NodeID: "n", ClusterID: "c"}); !errdefs.IsInvalidParameter(err) {
			t.Fatalf("csr %q: %v", csr, err)
		}
	}
}

func TestExpiredCertificateRefused(t *testing.T) {
	rc := mustRoot(t)
	// Lifetime shorter than the backdate: already expired when issued.
	_, certPEM := issue(t, rc, "old", swarm.NodeRoleWorker, time.Second)
	cert, _ := ParseCertificate(certPEM)
	if _, err := rc.Verify(cert); err != nil {
		t.Fatalf("fresh cert: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		_, err := rc.Verify(cert)
		return errdefs.IsUnauthorized(err)
	}, "expired certificate still verifies")
}

func TestRevocation(t *testing.T) {
	tests := []struct {
		serial  string
		list    []string
		revoked bool
	}{
		{"ab", nil, false},
		{"ab", []string{"cd"}, false},
		{"ab", []string{"cd", "ab"}, true},
	}
	for _, tc := range tests {
		if got := IsRevoked(tc.serial, tc.list); got != tc.revoked {
			t.Errorf("IsRevoked(%q, %v) = %v", tc.serial, tc.list, got)
		}
	}
}

func TestTokens(t *testing.T) {
	rc := mustRoot(t)
	tok := rc.NewJoinToken()
	if !strings.HasPrefix(tok, "SWMTKN-1-") || len(tok) != len("SWMTKN-1-")+50+1+25 {
		t.Fatalf("token %q", tok)
	}
	parsed, err := ParseToken(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !parsed.MatchesCA(rc) || parsed.MatchesCA(mustRoot(t)) {
		t.Fatal("digest match wrong")
	}
	if parsed.String() != tok {
		t.Fatalf("round trip %q", parsed.String())
	}
	rotated := rc.NewJoinToken()
	if SameSecret(tok, rotated) || !SameSecret(tok, tok) {
		t.Fatal("rotation did not change the secret")
	}
	bad := []string{
		"",
		"SWMTKN-1-abc-def",
		strings.Replace(tok, "SWMTKN", "SWXTKN", 1),
		strings.Replace(tok, "-1-", "-2-", 1),
		tok + "x",
		tok[:len(tok)-1] + "-",
		strings.ToUpper(tok),
	}
	for _, s := range bad {
		if _, err := ParseToken(s); !errdefs.IsInvalidParameter(err) || err.Error() != "invalid join token" {
			t.Errorf("ParseToken(%q) = %v", s, err)
		}
	}
}

func TestNewID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		id := NewID()
		if len(id) != 25 || !isBase36(id) || seen[id] {
			t.Fatalf("id %q", id)
		}
		seen[id] = true
	}
}

func TestRenewalTime(t *testing.T) {
	now := time.Now()
	c := *mustRoot(t).Cert
	c.NotBefore, c.NotAfter = now, now.Add(100*time.Hour)
	for _, tc := range []struct {
		frac float64
		want time.Duration
	}{{0, 50 * time.Hour}, {0.5, 65 * time.Hour}, {0.999999, 80 * time.Hour}} {
		got := RenewalTime(&c, tc.frac).Sub(now)
		if d := got - tc.want; d < -time.Second || d > time.Second {
			t.Errorf("frac %v: %v, want %v", tc.frac, got, tc.want)
		}
	}
}

// TestNodeTLSHotSwap checks that a renewed certificate is used by new
// handshakes on a live listener without restarting it, and that the server
// sees the client's identity.
func TestNodeTLSHotSwap(t *testing.T) {
	rc := mustRoot(t)
	sKey, sCert := issue(t, rc, "server", swarm.NodeRoleManager, 0)
	cKey, cCert := issue(t, rc, "client", swarm.NodeRoleWorker, 0)
	srv, err := NewNodeTLS(rc, sKey, sCert)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := NewNodeTLS(rc, cKey, cCert)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv.ServerConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ids := make(chan Identity, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if err := tc.Handshake(); err == nil {
				cs := tc.ConnectionState()
				id, _ := ConnIdentity(&cs)
				ids <- id
			}
			c.Close()
		}
	}()
	dial := func() (serverSerial string) {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(), cli.ClientConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		id, _ := IdentityOf(c.ConnectionState().PeerCertificates[0])
		return id.Serial
	}
	first := dial()
	if id := <-ids; id.NodeID != "client" || id.Role != swarm.NodeRoleWorker {
		t.Fatalf("server saw %+v", id)
	}
	// Renew both: the client is promoted, the server gets a new serial.
	renew := func(n *NodeTLS, id string, role swarm.NodeRole) {
		r := NewRenewer(n, func(ctx context.Context, csr []byte) ([]byte, error) {
			c, _, err := rc.Issue(IssueRequest{CSRPEM: csr, NodeID: id, Role: role, ClusterID: "cluster1"})
			return c, err
		}, nil)
		if err := r.RenewNow(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	renew(srv, "server", swarm.NodeRoleManager)
	renew(cli, "client", swarm.NodeRoleManager)
	if second := dial(); second == first || second != srv.Identity().Serial {
		t.Fatalf("server cert not swapped: %s then %s", first, second)
	}
	if id := <-ids; id.Role != swarm.NodeRoleManager {
		t.Fatalf("client cert not swapped: %+v", id)
	}
	// A worker certificate cannot serve as a manager (name check).
	wKey, wCert := issue(t, rc, "w", swarm.NodeRoleWorker, 0)
	wTLS, _ := NewNodeTLS(rc, wKey, wCert)
	l2, _ := tls.Listen("tcp", "127.0.0.1:0", wTLS.ServerConfig(nil))
	defer l2.Close()
	go func() {
		c, err := l2.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", l2.Addr().String(), cli.ClientConfig(nil)); err == nil {
		c.Close()
		t.Fatal("client accepted a worker certificate as a manager")
	}
}

func TestSaveLoad(t *testing.T) {
	rc := mustRoot(t)
	key, cert := issue(t, rc, "n1", swarm.NodeRoleManager, 0)
	n, err := NewNodeTLS(rc, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "certificates")
	if _, err := Load(dir); !errdefs.IsNotFound(err) {
		t.Fatalf("load missing: %v", err)
	}
	if err := n.Save(dir); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, NodeKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode: %v %v", st.Mode(), err)
	}
	back, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if back.Identity() != n.Identity() || back.Root().Digest() != rc.Digest() || back.Root().Signer != nil {
		t.Fatalf("loaded %+v", back.Identity())
	}
	// A certificate for another key is refused.
	_, otherCert := issue(t, rc, "n2", swarm.NodeRoleWorker, 0)
	if err := back.SetCertificate(otherCert); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("foreign cert: %v", err)
	}
}

// TestRenewerRenews: a certificate past its renewal point (RenewalTime is
// tested above) is renewed on its own, hot-swapped, and reported.
func TestRenewerRenews(t *testing.T) {
	rc := mustRoot(t)
	key, keyPEM, _ := GenerateKey()
	csr, _ := CreateCSR(key)
	// Lifetime: backdate (1m) + 4s, so 50-80% of it has passed already.
	cert, _, err := rc.Issue(IssueRequest{CSRPEM: csr, NodeID: "n", Role: swarm.NodeRoleWorker, ClusterID: "c", Expiry: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNodeTLS(rc, keyPEM, cert)
	if err != nil {
		t.Fatal(err)
	}
	first := n.Identity().Serial
	installed := make(chan Identity, 4)
	r := NewRenewer(n, func(ctx context.Context, csr []byte) ([]byte, error) {
		c, _, err := rc.Issue(IssueRequest{CSRPEM: csr, NodeID: "n", Role: swarm.NodeRoleWorker, ClusterID: "c"})
		return c, err
	}, func(id Identity) { installed <- id })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	select {
	case id := <-installed:
		if id.Serial == first || n.Identity().Serial != id.Serial {
			t.Fatalf("not renewed: %s → %s", first, id.Serial)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("certificate not renewed before expiry")
	}
	cancel()
	<-done
}
