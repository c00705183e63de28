// Package api serves the Docker Engine HTTP API over the node's backends.
//
// Requests arrive as /v1.NN/<path> or <path>; the version prefix is checked
// and stripped here, and handlers read the negotiated version with
// VersionFrom. Each backend (system, containers, images, cluster, networks)
// registers its own routes from its own file; handlers return errors and
// WriteError maps their kinds to statuses once.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/version"
)

// HandlerFunc is an API handler: it writes a reply or returns an error.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Backends are what the server serves. A nil backend leaves its routes out.
type Backends struct {
	System     SystemBackend
	Containers ContainerBackend
	Images     ImageBackend
	Swarm      SwarmBackend   // /swarm/*, /nodes/*
	Services   ServiceBackend // /services/*, /tasks/*
	Secrets    SecretBackend  // /secrets/*, /configs/*
	Networks   NetworkBackend
	Events     EventBackend // GET /events
	Volumes    VolumeBackend
	Archive    ArchiveBackend // docker cp
	Commit     CommitBackend
	Auth       AuthBackend // docker login
}

// Server is the Docker Engine API handler.
type Server struct {
	mux *http.ServeMux
	b   Backends
	log *slog.Logger
}

// New builds a server over b.
func New(b Backends, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	s := &Server{mux: http.NewServeMux(), b: b, log: log}
	// Unknown paths answer as docker does, in JSON.
	s.Handle("/", func(w http.ResponseWriter, r *http.Request) error {
		return errdefs.NotFound("page not found")
	})
	s.registerSystemRoutes()
	if b.Containers != nil {
		s.registerContainerRoutes()
	}
	if b.Images != nil {
		s.registerImageRoutes()
	}
	if b.Swarm != nil {
		s.registerSwarmRoutes()
	}
	if b.Services != nil {
		s.registerServiceRoutes()
	}
	if b.Secrets != nil {
		s.registerSecretRoutes()
	}
	if b.Networks != nil {
		s.registerNetworkRoutes()
	}
	if b.Events != nil {
		s.registerEventRoutes()
	}
	if b.Volumes != nil {
		s.registerVolumeRoutes()
	}
	if b.Archive != nil {
		s.registerArchiveRoutes()
	}
	if b.Commit != nil {
		s.registerCommitRoutes()
	}
	if b.Auth != nil {
		s.registerAuthRoutes()
	}
	return s
}

// Handle registers h for a Go ServeMux pattern ("GET /containers/{id}/json").
func (s *Server) Handle(pattern string, h HandlerFunc) {
	s.mux.Handle(pattern, s.wrap(h))
}

func (s *Server) wrap(h HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			if st := statusOf(err); st >= 500 {
				s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
			} else {
				s.log.Debug("request refused", "method", r.Method, "path", r.URL.Path, "status", st, "err", err)
			}
			WriteError(w, err)
		}
	})
}

var versionPrefix = regexp.MustCompile(`^/v(\d+\.\d+)(/.*)$`)

type versionKey struct{}

// VersionFrom returns the API version of the request (the server's own when
// the path carried none).
func VersionFrom(ctx context.Context) string {
	if v, ok := ctx.Value(versionKey{}).(string); ok {
		return v
	}
	return version.APIVersion
}

// VersionLess reports whether API version a is older than b ("1.41" < "1.47").
func VersionLess(a, b string) bool {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := 0; i < 2; i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// ServeHTTP negotiates the version, sets docker's common headers and routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Api-Version", version.APIVersion)
	h.Set("Docker-Experimental", "false")
	h.Set("Ostype", "linux")
	h.Set("Server", "Docker/"+version.Version+" (linux)")

	ver := version.APIVersion
	if m := versionPrefix.FindStringSubmatch(r.URL.Path); m != nil {
		ver = m[1]
		if VersionLess(version.APIVersion, ver) {
			WriteError(w, errdefs.InvalidParameter("client version %s is too new. Maximum supported API version is %s", ver, version.APIVersion))
			return
		}
		if VersionLess(ver, version.MinAPIVersion) {
			WriteError(w, errdefs.InvalidParameter("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", ver, version.MinAPIVersion))
			return
		}
		r.URL.Path = m[2]
		r.URL.RawPath = ""
	}
	r = r.WithContext(context.WithValue(r.Context(), versionKey{}, ver))
	s.mux.ServeHTTP(w, r)
	s.log.Debug("api", "method", r.Method, "path", r.URL.Path, "took", time.Since(start))
}
