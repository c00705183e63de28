package api

import (
	"net/http"

	"github.com/shoal/shoal/errdefs"
)

// registerDistributionRoutes serves GET /distribution/{name}/json, which
// `docker service create` calls to pin an image digest (it only warns when
// this fails).
func (s *Server) registerDistributionRoutes() {
	s.Handle("GET /distribution/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		name, action := splitAction(r.PathValue("rest"), "json")
		if action != "json" {
			return errdefs.NotFound("page not found")
		}
		info, err := s.b.Images.DistributionInspect(r.Context(), name, registryAuth(r))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, info)
	})
}
