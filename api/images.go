package api

// ImageBackend serves the images routes. Its owner fills in the methods.
type ImageBackend interface{}

func (s *Server) registerImageRoutes() {}
