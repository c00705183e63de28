package api

import (
	"net/http"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

func (s *Server) registerExecRoutes() {
	b := s.b.Containers
	s.Handle("POST /containers/{id}/exec", func(w http.ResponseWriter, r *http.Request) error {
		var req container.ExecCreateRequest
		if err := DecodeJSON(r, &req, false); err != nil {
			return err
		}
		id, err := b.ExecCreate(r.Context(), r.PathValue("id"), req)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, common.IDResponse{ID: id})
	})
	s.Handle("POST /exec/{id}/start", func(w http.ResponseWriter, r *http.Request) error {
		var req container.ExecStartRequest
		if err := DecodeJSON(r, &req, true); err != nil {
			return err
		}
		id := r.PathValue("id")
		ins, err := b.ExecInspect(r.Context(), id)
		if err != nil {
			return err
		}
		if ins.Running || ins.ExitCode != nil {
			return errdefs.Conflict("Error: Exec command %s is already running", id)
		}
		c, err := b.Inspect(r.Context(), ins.ContainerID)
		if err != nil {
			return err
		}
		if c.State == nil || !c.State.Running || c.State.Restarting {
			return errdefs.Conflict("Container %s is not running", ins.ContainerID)
		}
		if c.State.Paused {
			return errdefs.Conflict("Container %s is paused, unpause the container before exec", ins.ContainerID)
		}
		if req.Detach {
			if err := b.ExecStart(r.Context(), id, backend.ExecStartOptions{Detach: true}); err != nil {
				return err
			}
			w.WriteHeader(http.StatusOK)
			return nil
		}
		tty := ins.ProcessConfig != nil && ins.ProcessConfig.Tty
		conn, err := hijack(w, r, streamType(r, tty))
		if err != nil {
			return err
		}
		defer conn.Close()
		opts := backend.ExecStartOptions{Stdout: conn, ConsoleSize: consoleSize(req.ConsoleSize)}
		if ins.OpenStdin {
			opts.Stdin = conn
		}
		if err := b.ExecStart(r.Context(), id, opts); err != nil {
			writeStreamError(conn, tty, err)
		}
		return nil
	})
	s.Handle("POST /exec/{id}/resize", func(w http.ResponseWriter, r *http.Request) error {
		h, wd, err := sizeParams(r)
		if err != nil {
			return err
		}
		return b.ExecResize(r.Context(), r.PathValue("id"), h, wd)
	})
	s.Handle("GET /exec/{id}/json", func(w http.ResponseWriter, r *http.Request) error {
		resp, err := b.ExecInspect(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, resp)
	})
}
