package api

// ClusterBackend serves the cluster routes. Its owner fills in the methods.
type ClusterBackend interface{}

func (s *Server) registerClusterRoutes() {}
