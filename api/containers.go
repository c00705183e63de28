package api

// ContainerBackend serves the containers routes. Its owner fills in the methods.
type ContainerBackend interface{}

func (s *Server) registerContainerRoutes() {}
