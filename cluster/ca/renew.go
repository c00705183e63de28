package ca

import (
	"context"
	"crypto/x509"
	"math/rand/v2"
	"time"
)

// RenewalTime picks when to renew cert: a random point between 50% and 80%
// of its lifetime (swarmkit's window), so a cluster's nodes do not all
// renew at once. frac is a random number in [0,1).
func RenewalTime(cert *x509.Certificate, frac float64) time.Time {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotBefore.Add(time.Duration(float64(life) * (0.5 + 0.3*frac)))
}

// Renewer keeps a node's certificate fresh: it asks for a new one (same
// key, new CSR) inside the renewal window or when triggered (role change),
// installs it in the NodeTLS so new handshakes use it, and reports it.
type Renewer struct {
	TLS *NodeTLS
	// Request sends the CSR to a manager and returns the signed certificate.
	Request func(ctx context.Context, csrPEM []byte) ([]byte, error)
	// Installed is called after each new certificate is in use (persist it,
	// react to a role change). Optional.
	Installed func(Identity)
	// Retry is the first retry delay after a failed renewal (default 1s;
	// doubles up to a minute).
	Retry time.Duration

	trigger chan struct{}
}

// NewRenewer returns a renewer; call Run.
func NewRenewer(t *NodeTLS, request func(context.Context, []byte) ([]byte, error), installed func(Identity)) *Renewer {
	return &Renewer{TLS: t, Request: request, Installed: installed, trigger: make(chan struct{}, 1)}
}

// Trigger asks for a renewal now (e.g. the node's role changed).
func (r *Renewer) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// Run renews until ctx ends.
func (r *Renewer) Run(ctx context.Context) {
	retry := r.Retry
	if retry <= 0 {
		retry = time.Second
	}
	delay := retry
	var failed bool
	for {
		wait := time.Until(RenewalTime(r.TLS.Leaf(), rand.Float64()))
		if failed {
			wait = delay
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.trigger:
			t.Stop()
		case <-t.C:
		}
		if err := r.RenewNow(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			if failed {
				delay = min(delay*2, time.Minute)
			}
			failed = true
			continue
		}
		failed, delay = false, retry
	}
}

// RenewNow requests and installs a new certificate once.
func (r *Renewer) RenewNow(ctx context.Context) error {
	csr, err := r.TLS.NewCSR()
	if err != nil {
		return err
	}
	certPEM, err := r.Request(ctx, csr)
	if err != nil {
		return err
	}
	if err := r.TLS.SetCertificate(certPEM); err != nil {
		return err
	}
	if r.Installed != nil {
		r.Installed(r.TLS.Identity())
	}
	return nil
}
