package api

import (
	"context"
	"net/http"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"
)

// CommitRequest is POST /commit: a new image from a container.
type CommitRequest struct {
	Container string
	Repo, Tag string
	Comment   string
	Author    string
	Pause     bool
	Changes   []string
	// Config overrides the container's run configuration (optional).
	Config *container.Config
}

// CommitBackend makes images of containers (`docker commit`).
type CommitBackend interface {
	Commit(ctx context.Context, req CommitRequest) (imageID string, err error)
}

func (s *Server) registerCommitRoutes() {
	s.Handle("POST /commit", func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		req := CommitRequest{
			Container: q.Get("container"), Repo: q.Get("repo"), Tag: q.Get("tag"),
			Comment: q.Get("comment"), Author: q.Get("author"),
			Pause: q.Get("pause") == "" || BoolValue(r, "pause"), Changes: q["changes"],
		}
		var cfg container.Config
		if err := DecodeJSON(r, &cfg, true); err != nil {
			return err
		}
		req.Config = &cfg
		id, err := s.b.Commit.Commit(r.Context(), req)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, common.IDResponse{ID: id})
	})
}
