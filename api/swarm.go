package api

// SwarmBackend serves the swarm routes. Its owner fills in the methods.
type SwarmBackend interface{}

func (s *Server) registerSwarmRoutes() {}
