package api

// NetworkBackend serves the networks routes. Its owner fills in the methods.
type NetworkBackend interface{}

func (s *Server) registerNetworkRoutes() {}
