package image

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	registrytypes "github.com/moby/moby/api/types/registry"

	"github.com/shoal/shoal/errdefs"
)

// Login is POST /auth (`docker login`): it checks the credentials against
// the registry (its /v2/ ping and token exchange), as dockerd does. The
// engine keeps nothing: the client stores the credentials and sends them
// with each pull and push.
func (s *Store) Login(ctx context.Context, auth registrytypes.AuthConfig) (*registrytypes.AuthResponse, error) {
	host := strings.TrimSuffix(auth.ServerAddress, "/")
	host = strings.TrimPrefix(strings.TrimPrefix(host, "https://"), "http://")
	if i := strings.Index(host, "/"); i >= 0 {
		host = host[:i] // "https://index.docker.io/v1/" → the host
	}
	if host == "" || host == "docker.io" {
		host = name.DefaultRegistry
	}
	insecure := s.insecure.match(ctx, host)
	opts := []name.Option{name.WeakValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid registry %q", auth.ServerAddress)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	var rt http.RoundTripper = base
	if insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure-registry asks for exactly this
	} else {
		rt = httpsOnly{rt: base, host: host}
	}
	if _, err := transport.NewWithContext(ctx, reg, authenticator(&auth), rt, []string{reg.Scope(transport.PullScope)}); err != nil {
		return nil, errdefs.Wrapf(errdefs.KindUnauthorized, err, "login to %s failed", host)
	}
	return &registrytypes.AuthResponse{Status: "Login Succeeded"}, nil
}
