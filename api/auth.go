package api

import (
	"context"
	"net/http"

	"github.com/moby/moby/api/types/registry"
)

// AuthBackend checks registry credentials (`docker login`).
type AuthBackend interface {
	Login(ctx context.Context, auth registry.AuthConfig) (*registry.AuthResponse, error)
}

func (s *Server) registerAuthRoutes() {
	s.Handle("POST /auth", func(w http.ResponseWriter, r *http.Request) error {
		var a registry.AuthConfig
		if err := DecodeJSON(r, &a, false); err != nil {
			return err
		}
		res, err := s.b.Auth.Login(r.Context(), a)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, res)
	})
}
