// Package container runs containers: lifecycle, logs, exec, attach, restart
// policies, and recovery after a daemon restart. (Stub: the owner replaces it.)
package container

import (
	"log/slog"

	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/network/bridge"
)

// Config wires the container service to the rest of the node.
type Config struct {
	Root         string // e.g. /var/lib/shoal/containers
	ExecRoot     string // e.g. /run/shoal
	CgroupParent string // default "shoal"
	Images       *image.Store
	Network      *bridge.Manager
	Log          *slog.Logger
}

// Service manages the node's containers.
type Service struct{ cfg Config }

// NewService loads existing containers and reconnects to running ones.
func NewService(cfg Config) (*Service, error) { return &Service{cfg: cfg}, nil }

// Close stops watching containers; running containers keep running.
func (s *Service) Close() error { return nil }

// ImageInUse reports whether any container uses imageID.
func (s *Service) ImageInUse(imageID string) (string, bool) { return "", false }

// Counts returns how many containers exist, run, are paused and stopped (for /info).
func (s *Service) Counts() (total, running, paused, stopped int) { return 0, 0, 0, 0 }
