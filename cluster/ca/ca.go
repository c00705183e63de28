// Package ca is the swarm's certificate authority: the root CA made at
// `swarm init` (its key is replicated in the store so any manager can sign
// after a failover), node certificates whose subject carries the node's
// identity (CN = node ID, OU = role, O = cluster ID, as swarmkit), join
// tokens, the node's hot-swappable TLS material and its renewal loop.
package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// Organizational units of node certificates: the role the servers check.
const (
	ManagerOU = "swarm-manager"
	WorkerOU  = "swarm-worker"
	// RootCN is the root certificate's common name (swarmkit's).
	RootCN = "swarm-ca"
)

// Certificate lifetimes.
const (
	RootCAExpiry          = 20 * 365 * 24 * time.Hour
	DefaultNodeCertExpiry = 90 * 24 * time.Hour
	// MinNodeCertExpiry is the shortest lifetime `swarm update
	// --cert-expiry` accepts (swarmkit's minimum).
	MinNodeCertExpiry = time.Hour
	// backdate covers small clock differences between nodes.
	backdate = time.Minute
)

// OU returns the organizational unit for a role.
func OU(role swarm.NodeRole) string {
	if role == swarm.NodeRoleManager {
		return ManagerOU
	}
	return WorkerOU
}

// RoleOf is the inverse of OU.
func RoleOf(ou string) (swarm.NodeRole, bool) {
	switch ou {
	case ManagerOU:
		return swarm.NodeRoleManager, true
	case WorkerOU:
		return swarm.NodeRoleWorker, true
	}
	return "", false
}

// RootCA is the cluster's trust root. Signer is nil on nodes that only
// verify (workers, and managers before they read the key from the store).
type RootCA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Signer  *ecdsa.PrivateKey
	KeyPEM  []byte
	Pool    *x509.CertPool
}

// CreateRootCA makes a new self-signed root (ECDSA P-256, 20 years).
func CreateRootCA() (*RootCA, error) {
	key, keyPEM, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: RootCN},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootCAExpiry),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: create root: %w", err)
	}
	return ParseRootCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
}

// ParseRootCA reads a root certificate and, if keyPEM is not empty, its key.
func ParseRootCA(certPEM, keyPEM []byte) (*RootCA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, errdefs.InvalidParameter("ca: root certificate is not a CA")
	}
	rc := &RootCA{Cert: cert, CertPEM: certPEM, Pool: x509.NewCertPool()}
	rc.Pool.AddCert(cert)
	if len(keyPEM) > 0 {
		key, err := ParseKey(keyPEM)
		if err != nil {
			return nil, err
		}
		if !key.PublicKey.Equal(cert.PublicKey) {
			return nil, errdefs.InvalidParameter("ca: root key does not match the root certificate")
		}
		rc.Signer, rc.KeyPEM = key, keyPEM
	}
	return rc, nil
}

// DigestHex is the SHA-256 of the root certificate (DER), in hex: the
// fingerprint joining nodes check.
func (rc *RootCA) DigestHex() string {
	sum := sha256.Sum256(rc.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Digest is the fingerprint as join tokens carry it: base36, 50 chars.
func (rc *RootCA) Digest() string {
	sum := sha256.Sum256(rc.Cert.Raw)
	return fmt.Sprintf("%0*s", digestLen, new(big.Int).SetBytes(sum[:]).Text(36))
}

// IssueRequest describes a node certificate to sign.
type IssueRequest struct {
	CSRPEM    []byte
	NodeID    string
	Role      swarm.NodeRole
	ClusterID string
	Expiry    time.Duration // 0 = DefaultNodeCertExpiry
}

// Issue signs a node certificate for the CSR's public key. The subject comes
// from the request, never from the CSR: the node only proves it holds the
// key. It returns the certificate PEM and its serial (hex).
func (rc *RootCA) Issue(req IssueRequest) ([]byte, string, error) {
	if rc.Signer == nil {
		return nil, "", errdefs.Unavailable("ca: this node cannot sign certificates (no CA key)")
	}
	if req.NodeID == "" || req.ClusterID == "" {
		return nil, "", errdefs.InvalidParameter("ca: node ID and cluster ID are required")
	}
	csr, err := ParseCSR(req.CSRPEM)
	if err != nil {
		return nil, "", err
	}
	expiry := req.Expiry
	if expiry <= 0 {
		expiry = DefaultNodeCertExpiry
	}
	serial, err := newSerial()
	if err != nil {
		return nil, "", err
	}
	now := time.Now()
	notAfter := now.Add(expiry)
	if notAfter.After(rc.Cert.NotAfter) {
		notAfter = rc.Cert.NotAfter
	}
	ou := OU(req.Role)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         req.NodeID,
			OrganizationalUnit: []string{ou},
			Organization:       []string{req.ClusterID},
		},
		// Clients dial managers by IP and check the name "swarm-manager"
		// (like swarmkit), so the role is also a DNS name.
		DNSNames:    []string{ou, req.NodeID},
		NotBefore:   now.Add(-backdate),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, rc.Cert, csr.PublicKey, rc.Signer)
	if err != nil {
		return nil, "", fmt.Errorf("ca: sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), SerialHex(serial), nil
}

// Verify checks that cert chains to this root and returns its identity.
func (rc *RootCA) Verify(cert *x509.Certificate) (Identity, error) {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:     rc.Pool,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return Identity{}, errdefs.Wrapf(errdefs.KindUnauthorized, err, "certificate not issued by this swarm")
	}
	return IdentityOf(cert)
}

// Identity is who a node certificate names.
type Identity struct {
	NodeID    string
	Role      swarm.NodeRole
	ClusterID string
	Serial    string // hex
	NotAfter  time.Time
}

// IsManager reports a manager certificate.
func (id Identity) IsManager() bool { return id.Role == swarm.NodeRoleManager }

// IdentityOf reads the identity from a node certificate (no verification).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	s := cert.Subject
	if s.CommonName == "" || len(s.OrganizationalUnit) != 1 || len(s.Organization) != 1 {
		return Identity{}, errdefs.Unauthorized("certificate is not a swarm node certificate")
	}
	role, ok := RoleOf(s.OrganizationalUnit[0])
	if !ok {
		return Identity{}, errdefs.Unauthorized("certificate has unknown role %q", s.OrganizationalUnit[0])
	}
	return Identity{
		NodeID:    s.CommonName,
		Role:      role,
		ClusterID: s.Organization[0],
		Serial:    SerialHex(cert.SerialNumber),
		NotAfter:  cert.NotAfter,
	}, nil
}

// GenerateKey makes a node or CA key (ECDSA P-256) and its PEM.
func GenerateKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// CreateCSR makes a certificate request for key. The subject is left empty:
// the CA decides it.
func CreateCSR(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCertificate reads the first certificate of a PEM bundle.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errdefs.InvalidParameter("ca: no PEM certificate")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "ca: bad certificate")
	}
	return c, nil
}

// ParseKey reads an EC private key PEM.
func ParseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errdefs.InvalidParameter("ca: no PEM key")
	}
	k, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "ca: bad key")
	}
	return k, nil
}

// ParseCSR reads and checks the signature of a certificate request.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errdefs.InvalidParameter("ca: no PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "ca: bad certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "ca: certificate request signature")
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errdefs.InvalidParameter("ca: certificate request must use an ECDSA key")
	}
	return csr, nil
}

// SerialHex formats a serial number as the store keeps it.
func SerialHex(n *big.Int) string { return n.Text(16) }

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// IsRevoked reports whether serial is in the cluster's revocation list.
func IsRevoked(serial string, revoked []string) bool {
	for _, s := range revoked {
		if s == serial {
			return true
		}
	}
	return false
}
