package api

// ServiceBackend serves the services routes. Its owner fills in the methods.
type ServiceBackend interface{}

func (s *Server) registerServiceRoutes() {}
