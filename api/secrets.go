package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// SecretBackend serves /secrets and /configs (managers only).
type SecretBackend interface {
	CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error)
	GetSecret(ctx context.Context, ref string) (swarm.Secret, error)
	ListSecrets(ctx context.Context, args filters.Args) ([]swarm.Secret, error)
	UpdateSecret(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error
	RemoveSecret(ctx context.Context, ref string) error

	CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error)
	GetConfig(ctx context.Context, ref string) (swarm.Config, error)
	ListConfigs(ctx context.Context, args filters.Args) ([]swarm.Config, error)
	UpdateConfig(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error
	RemoveConfig(ctx context.Context, ref string) error
}

func secretVersion(r *http.Request) (uint64, error) {
	v := r.URL.Query().Get("version")
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, errdefs.InvalidParameter("invalid version %q", v)
	}
	return n, nil
}

func (s *Server) registerSecretRoutes() {
	b := s.b.Secrets
	s.Handle("GET /secrets", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		list, err := b.ListSecrets(r.Context(), args)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("POST /secrets/create", func(w http.ResponseWriter, r *http.Request) error {
		var spec swarm.SecretSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		id, err := b.CreateSecret(r.Context(), spec)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, swarm.SecretCreateResponse{ID: id})
	})
	s.Handle("GET /secrets/{id}", func(w http.ResponseWriter, r *http.Request) error {
		sec, err := b.GetSecret(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, sec)
	})
	s.Handle("POST /secrets/{id}/update", func(w http.ResponseWriter, r *http.Request) error {
		v, err := secretVersion(r)
		if err != nil {
			return err
		}
		var spec swarm.SecretSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		if err := b.UpdateSecret(r.Context(), r.PathValue("id"), v, spec); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("DELETE /secrets/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.RemoveSecret(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})

	s.Handle("GET /configs", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		list, err := b.ListConfigs(r.Context(), args)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("POST /configs/create", func(w http.ResponseWriter, r *http.Request) error {
		var spec swarm.ConfigSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		id, err := b.CreateConfig(r.Context(), spec)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, swarm.ConfigCreateResponse{ID: id})
	})
	s.Handle("GET /configs/{id}", func(w http.ResponseWriter, r *http.Request) error {
		c, err := b.GetConfig(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, c)
	})
	s.Handle("POST /configs/{id}/update", func(w http.ResponseWriter, r *http.Request) error {
		v, err := secretVersion(r)
		if err != nil {
			return err
		}
		var spec swarm.ConfigSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		if err := b.UpdateConfig(r.Context(), r.PathValue("id"), v, spec); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("DELETE /configs/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.RemoveConfig(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}
