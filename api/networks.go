package api

import (
	"net/http"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/errdefs"
)

// NetworkBackend serves /networks: the node's predefined local networks
// (bridge, host, none). User-defined networks (overlay, extra bridges) are
// not built yet, and their routes say so.
type NetworkBackend interface {
	Networks() []network.Summary
	Inspect() network.Inspect // the bridge network, with its containers
}

var networkFilters = []string{"name", "id", "driver", "scope", "type", "label", "dangling"}

func matchNetwork(n network.Network, args filters.Args) bool {
	if args.Contains("name") && !args.Match("name", n.Name) {
		return false
	}
	if args.Contains("id") && !args.FuzzyMatch("id", n.ID) {
		return false
	}
	if args.Contains("driver") && !args.ExactMatch("driver", n.Driver) {
		return false
	}
	if args.Contains("scope") && !args.ExactMatch("scope", n.Scope) {
		return false
	}
	if args.Contains("type") && !args.ExactMatch("type", "builtin") {
		return false
	}
	if args.Contains("label") && !args.MatchKVList("label", n.Labels) {
		return false
	}
	return true
}

func (s *Server) findNetwork(ref string) (network.Inspect, error) {
	b := s.b.Networks
	var matches []network.Summary
	for _, n := range b.Networks() {
		if n.Name == ref || n.ID == ref {
			matches = []network.Summary{n}
			break
		}
		if ref != "" && strings.HasPrefix(n.ID, ref) {
			matches = append(matches, n)
		}
	}
	switch len(matches) {
	case 0:
		return network.Inspect{}, errdefs.NotFound("network %s not found", ref)
	case 1:
	default:
		return network.Inspect{}, errdefs.InvalidParameter("network %s is ambiguous (%d matches found based on ID prefix)", ref, len(matches))
	}
	if matches[0].Name == "bridge" {
		return b.Inspect(), nil
	}
	return network.Inspect{Network: matches[0].Network, Containers: map[string]network.EndpointResource{}}, nil
}

func (s *Server) registerNetworkRoutes() {
	s.Handle("GET /networks", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		if err := ValidateFilters(args, networkFilters...); err != nil {
			return err
		}
		out := []network.Summary{}
		for _, n := range s.b.Networks.Networks() {
			if matchNetwork(n.Network, args) {
				out = append(out, n)
			}
		}
		return WriteJSON(w, http.StatusOK, out)
	})
	s.Handle("GET /networks/{id}", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.findNetwork(r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, n)
	})
	s.Handle("DELETE /networks/{id}", func(w http.ResponseWriter, r *http.Request) error {
		n, err := s.findNetwork(r.PathValue("id"))
		if err != nil {
			return err
		}
		return errdefs.Forbidden("%s is a pre-defined network and cannot be removed", n.Name)
	})
	notYet := func(w http.ResponseWriter, r *http.Request) error {
		return errdefs.NotImplemented("user-defined networks (overlay, attachable, extra bridges) are not implemented in this version of Shoal: containers use the node bridge, host or none; services use the node bridge with host-mode published ports")
	}
	s.Handle("POST /networks/create", notYet)
	s.Handle("POST /networks/{id}/connect", notYet)
	s.Handle("POST /networks/{id}/disconnect", notYet)
	s.Handle("POST /networks/prune", func(w http.ResponseWriter, r *http.Request) error {
		return WriteJSON(w, http.StatusOK, network.PruneReport{NetworksDeleted: []string{}})
	})
}
