package api

import (
	"context"
	"net/http"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
)

// SystemBackend answers the node-wide queries.
type SystemBackend interface {
	// Info is GET /info, with the Swarm part filled from the cluster.
	Info(ctx context.Context) (*system.Info, error)
	// Version is GET /version.
	Version(ctx context.Context) system.VersionResponse
	// SwarmState is the Swarm header of /_ping: "inactive", "pending",
	// "error", "locked", "active/worker" or "active/manager".
	SwarmState() string
	// DiskUsage is GET /system/df.
	DiskUsage(ctx context.Context) (*DiskUsage, error)
}

// DiskUsage is GET /system/df's answer in the layout API versions up to
// 1.51 use (1.52 regrouped it).
type DiskUsage struct {
	LayersSize int64
	Images     []*image.Summary
	Containers []*container.Summary
	Volumes    []*volume.Volume
	BuildCache []*build.CacheRecord
}

func (s *Server) registerSystemRoutes() {
	ping := func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
		w.Header().Set("Pragma", "no-cache")
		w.Header().Set("Builder-Version", "1")
		if s.b.System != nil {
			w.Header().Set("Swarm", s.b.System.SwarmState())
		} else {
			w.Header().Set("Swarm", "inactive")
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.Method == http.MethodHead {
			w.Header().Set("Content-Length", "0")
			return nil
		}
		_, err := w.Write([]byte("OK"))
		return err
	}
	s.Handle("GET /_ping", ping)
	s.Handle("HEAD /_ping", ping)
	if s.b.System == nil {
		return
	}
	s.Handle("GET /version", func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, s.b.System.Version(r.Context()))
	})
	// This engine has no builder, so no build cache (`docker system prune`
	// and `builder prune` prune it too), and no plugins.
	s.Handle("POST /build/prune", func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
	})
	s.Handle("GET /plugins", func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, []struct{}{})
	})
	s.Handle("GET /system/df", func(w http.ResponseWriter, r *http.Request) error {
		du, err := s.b.System.DiskUsage(r.Context())
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, du)
	})
	s.Handle("GET /info", func(w http.ResponseWriter, r *http.Request) error {
		info, err := s.b.System.Info(r.Context())
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, info)
	})
}
