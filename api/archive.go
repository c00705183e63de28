package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/errdefs"
)

// ArchiveBackend copies files out of and into containers (`docker cp`).
type ArchiveBackend interface {
	ArchiveStat(ctx context.Context, ref, path string) (*container.PathStat, error)
	ArchiveGet(ctx context.Context, ref, path string) (io.ReadCloser, *container.PathStat, error)
	ArchivePut(ctx context.Context, ref, path string, noOverwriteDirNonDir, copyUIDGID bool, in io.Reader) error
	// Changes is `docker diff`; Export is `docker export`.
	Changes(ctx context.Context, ref string) ([]container.FilesystemChange, error)
	Export(ctx context.Context, ref string) (io.ReadCloser, error)
}

// pathStatHeader carries a PathStat, base64 JSON, as dockerd sends it.
const pathStatHeader = "X-Docker-Container-Path-Stat"

func setPathStat(w http.ResponseWriter, st *container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w.Header().Set(pathStatHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

func (s *Server) registerArchiveRoutes() {
	b := s.b.Archive
	path := func(r *http.Request) (string, error) {
		p := r.URL.Query().Get("path")
		if p == "" {
			return "", errdefs.InvalidParameter("path cannot be empty")
		}
		return p, nil
	}
	s.Handle("HEAD /containers/{id}/archive", func(w http.ResponseWriter, r *http.Request) error {
		p, err := path(r)
		if err != nil {
			return err
		}
		st, err := b.ArchiveStat(r.Context(), r.PathValue("id"), p)
		if err != nil {
			return err
		}
		if err := setPathStat(w, st); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("GET /containers/{id}/archive", func(w http.ResponseWriter, r *http.Request) error {
		p, err := path(r)
		if err != nil {
			return err
		}
		rc, st, err := b.ArchiveGet(r.Context(), r.PathValue("id"), p)
		if err != nil {
			return err
		}
		defer rc.Close()
		if err := setPathStat(w, st); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, rc)
		return nil
	})
	s.Handle("GET /containers/{id}/changes", func(w http.ResponseWriter, r *http.Request) error {
		ch, err := b.Changes(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, ch)
	})
	s.Handle("GET /containers/{id}/export", func(w http.ResponseWriter, r *http.Request) error {
		rc, err := b.Export(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, rc)
		return nil
	})
	s.Handle("PUT /containers/{id}/archive", func(w http.ResponseWriter, r *http.Request) error {
		p, err := path(r)
		if err != nil {
			return err
		}
		if err := b.ArchivePut(r.Context(), r.PathValue("id"), p, BoolValue(r, "noOverwriteDirNonDir"), BoolValue(r, "copyUIDGID"), r.Body); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
}
