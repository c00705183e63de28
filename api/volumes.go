package api

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/volume"
)

// VolumeBackend is the node's local volumes.
type VolumeBackend interface {
	VolumeCreate(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error)
	VolumeInspect(ctx context.Context, name string) (*volume.Volume, error)
	VolumeList(ctx context.Context, f filters.Args) (*volume.ListResponse, error)
	VolumeRemove(ctx context.Context, name string, force bool) error
	VolumePrune(ctx context.Context, f filters.Args) (*volume.PruneReport, error)
}

func (s *Server) registerVolumeRoutes() {
	b := s.b.Volumes
	s.Handle("GET /volumes", func(w http.ResponseWriter, r *http.Request) error {
		f, err := Filters(r)
		if err != nil {
			return err
		}
		res, err := b.VolumeList(r.Context(), f)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, res)
	})
	s.Handle("POST /volumes/create", func(w http.ResponseWriter, r *http.Request) error {
		var req volume.CreateRequest
		if err := DecodeJSON(r, &req, true); err != nil {
			return err
		}
		v, err := b.VolumeCreate(r.Context(), req)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, v)
	})
	s.Handle("POST /volumes/prune", func(w http.ResponseWriter, r *http.Request) error {
		f, err := Filters(r)
		if err != nil {
			return err
		}
		rep, err := b.VolumePrune(r.Context(), f)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, rep)
	})
	s.Handle("GET /volumes/{name}", func(w http.ResponseWriter, r *http.Request) error {
		v, err := b.VolumeInspect(r.Context(), r.PathValue("name"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, v)
	})
	s.Handle("DELETE /volumes/{name}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.VolumeRemove(r.Context(), r.PathValue("name"), BoolValue(r, "force")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
