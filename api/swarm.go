package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// SwarmBackend serves /swarm/* and /nodes/* (package cluster implements
// it). Errors carry docker's texts; their kinds become statuses here.
type SwarmBackend interface {
	// Init creates a swarm and returns this node's ID.
	Init(ctx context.Context, req swarm.InitRequest) (string, error)
	// Join returns once the node is a member (ControlAvailable is right).
	Join(ctx context.Context, req swarm.JoinRequest) error
	Leave(ctx context.Context, force bool) error
	Inspect(ctx context.Context) (swarm.Swarm, error)
	Update(ctx context.Context, version uint64, spec swarm.Spec, rotateWorkerToken, rotateManagerToken, rotateManagerUnlockKey bool) error
	UnlockKey(ctx context.Context) (string, error)
	Unlock(ctx context.Context, key string) error
	Nodes(ctx context.Context, args filters.Args) ([]swarm.Node, error)
	// Node finds a node by ID, name or ID prefix.
	Node(ctx context.Context, ref string) (swarm.Node, error)
	UpdateNode(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error
	RemoveNode(ctx context.Context, ref string, force bool) error
}

// versionParam reads the required ?version= of updates as docker does.
func versionParam(r *http.Request, what string) (uint64, error) {
	raw := r.URL.Query().Get("version")
	v, err := strconv.ParseUint(raw, 10, 64)
	if err != nil {
		return 0, errdefs.InvalidParameter("invalid %s version '%s': %v", what, raw, err)
	}
	return v, nil
}

func (s *Server) registerSwarmRoutes() {
	b := s.b.Swarm
	s.Handle("POST /swarm/init", func(w http.ResponseWriter, r *http.Request) error {
		var req swarm.InitRequest
		if err := DecodeJSON(r, &req, false); err != nil {
			return err
		}
		id, err := b.Init(r.Context(), req)
		if err != nil {
			return err
		}
		// docker swarm init decodes a JSON string.
		return WriteJSON(w, http.StatusOK, id)
	})
	s.Handle("POST /swarm/join", func(w http.ResponseWriter, r *http.Request) error {
		var req swarm.JoinRequest
		if err := DecodeJSON(r, &req, false); err != nil {
			return err
		}
		if err := b.Join(r.Context(), req); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("POST /swarm/leave", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Leave(r.Context(), BoolValue(r, "force")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("GET /swarm", func(w http.ResponseWriter, r *http.Request) error {
		sw, err := b.Inspect(r.Context())
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, sw)
	})
	s.Handle("POST /swarm/update", func(w http.ResponseWriter, r *http.Request) error {
		version, err := versionParam(r, "swarm")
		if err != nil {
			return err
		}
		var spec swarm.Spec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		err = b.Update(r.Context(), version, spec,
			BoolValue(r, "rotateWorkerToken"), BoolValue(r, "rotateManagerToken"), BoolValue(r, "rotateManagerUnlockKey"))
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("GET /swarm/unlockkey", func(w http.ResponseWriter, r *http.Request) error {
		key, err := b.UnlockKey(r.Context())
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, swarm.UnlockKeyResponse{UnlockKey: key})
	})
	s.Handle("POST /swarm/unlock", func(w http.ResponseWriter, r *http.Request) error {
		var req swarm.UnlockRequest
		if err := DecodeJSON(r, &req, false); err != nil {
			return err
		}
		if err := b.Unlock(r.Context(), req.UnlockKey); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("GET /nodes", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		nodes, err := b.Nodes(r.Context(), args)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, nodes)
	})
	s.Handle("GET /nodes/{id}", func(w http.ResponseWriter, r *http.Request) error {
		n, err := b.Node(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, n)
	})
	s.Handle("POST /nodes/{id}/update", func(w http.ResponseWriter, r *http.Request) error {
		version, err := versionParam(r, "node")
		if err != nil {
			return err
		}
		var spec swarm.NodeSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		if err := b.UpdateNode(r.Context(), r.PathValue("id"), version, spec); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("DELETE /nodes/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.RemoveNode(r.Context(), r.PathValue("id"), BoolValue(r, "force")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
}
