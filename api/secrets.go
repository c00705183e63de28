package api

// SecretBackend serves the secrets routes. Its owner fills in the methods.
type SecretBackend interface{}

func (s *Server) registerSecretRoutes() {}
