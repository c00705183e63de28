package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/shoal/shoal/errdefs"
)

// File names under the node's certificate directory (swarmkit's).
const (
	RootCertFile = "swarm-root-ca.crt"
	NodeCertFile = "swarm-node.crt"
	NodeKeyFile  = "swarm-node.key"
)

// ManagerServerName is the name clients check on a manager's certificate.
const ManagerServerName = ManagerOU

// NodeTLS is a node's TLS material. The certificate can be replaced while
// connections are being made (renewal, role change): the TLS configs read
// it through GetCertificate/GetClientCertificate on every handshake. The
// private key never leaves the node; renewals reuse it.
type NodeTLS struct {
	root   *RootCA
	key    *ecdsa.PrivateKey
	keyPEM []byte
	cur    atomic.Pointer[nodeCert]
}

type nodeCert struct {
	tls  tls.Certificate
	leaf *x509.Certificate
	pem  []byte
	id   Identity
}

// NewNodeTLS combines a root, the node's key and its signed certificate.
func NewNodeTLS(root *RootCA, keyPEM, certPEM []byte) (*NodeTLS, error) {
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	n := &NodeTLS{root: root, key: key, keyPEM: keyPEM}
	if err := n.SetCertificate(certPEM); err != nil {
		return nil, err
	}
	return n, nil
}

// SetCertificate installs a newly issued certificate for the node's key.
func (n *NodeTLS) SetCertificate(certPEM []byte) error {
	leaf, err := ParseCertificate(certPEM)
	if err != nil {
		return err
	}
	if !n.key.PublicKey.Equal(leaf.PublicKey) {
		return errdefs.InvalidParameter("ca: certificate is not for this node's key")
	}
	id, err := n.root.Verify(leaf)
	if err != nil {
		return err
	}
	n.cur.Store(&nodeCert{
		tls:  tls.Certificate{Certificate: [][]byte{leaf.Raw}, PrivateKey: n.key, Leaf: leaf},
		leaf: leaf,
		pem:  certPEM,
		id:   id,
	})
	return nil
}

// Root is the cluster's root CA (without its key).
func (n *NodeTLS) Root() *RootCA { return n.root }

// Identity is who the current certificate names.
func (n *NodeTLS) Identity() Identity { return n.cur.Load().id }

// Leaf is the current certificate.
func (n *NodeTLS) Leaf() *x509.Certificate { return n.cur.Load().leaf }

// CertPEM is the current certificate.
func (n *NodeTLS) CertPEM() []byte { return n.cur.Load().pem }

// NewCSR makes a request for a new certificate of the node's key.
func (n *NodeTLS) NewCSR() ([]byte, error) { return CreateCSR(n.key) }

func (n *NodeTLS) getCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := n.cur.Load().tls
	return &c, nil
}

func (n *NodeTLS) getClientCert(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c := n.cur.Load().tls
	return &c, nil
}

// ServerConfig is the listener's TLS config: it presents the node
// certificate and verifies client certificates against the root when given
// (endpoints decide whether they need one).
func (n *NodeTLS) ServerConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: n.getCert,
		ClientAuth:     tls.VerifyClientCertIfGiven,
		ClientCAs:      n.root.Pool,
		NextProtos:     nextProtos,
	}
}

// ClientConfig dials a manager: the server must hold a manager certificate
// of this cluster; the node presents its own.
func (n *NodeTLS) ClientConfig(nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		RootCAs:              n.root.Pool,
		ServerName:           ManagerServerName,
		GetClientCertificate: n.getClientCert,
		NextProtos:           nextProtos,
	}
}

// AnonymousClientConfig dials a manager of root's cluster without a client
// certificate (joining nodes).
func AnonymousClientConfig(root *RootCA, nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    root.Pool,
		ServerName: ManagerServerName,
		NextProtos: nextProtos,
	}
}

// ConnIdentity returns the verified client identity of a TLS connection.
func ConnIdentity(cs *tls.ConnectionState) (Identity, error) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, errdefs.Unauthorized("a swarm node certificate is required")
	}
	return IdentityOf(cs.VerifiedChains[0][0])
}

// PeerIdentity returns who made an HTTP request on the cluster port, from
// its verified client certificate.
func PeerIdentity(r *http.Request) (Identity, error) { return ConnIdentity(r.TLS) }

// Save writes the node's TLS material under dir (the key 0600). Each file is
// replaced atomically, so a crash leaves the old or the new one.
func (n *NodeTLS) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{RootCertFile, n.root.CertPEM, 0o644},
		{NodeKeyFile, n.keyPEM, 0o600},
		{NodeCertFile, n.CertPEM(), 0o644},
	} {
		p := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if err := writeFileAtomic(p, f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// Load reads what Save wrote. A missing directory is errdefs.NotFound.
func Load(dir string) (*NodeTLS, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			return nil, errdefs.NotFound("ca: %s missing", filepath.Join(dir, name))
		}
		return b, err
	}
	rootPEM, err := read(RootCertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := read(NodeKeyFile)
	if err != nil {
		return nil, err
	}
	certPEM, err := read(NodeCertFile)
	if err != nil {
		return nil, err
	}
	root, err := ParseRootCA(rootPEM, nil)
	if err != nil {
		return nil, err
	}
	return NewNodeTLS(root, keyPEM, certPEM)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
