// Package image is the node's content-addressed image store. (Stub: the owner
// of this package replaces it.)
package image

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/shoal/shoal/errdefs"
)

// Config configures the store.
type Config struct {
	Root               string   // e.g. /var/lib/shoal/image
	InsecureRegistries []string // host[:port] or CIDR, as dockerd's --insecure-registry
}

// Image is a stored image as the container runtime needs it.
type Image struct {
	ID        string // "sha256:<config digest>"
	RepoTags  []string
	Config    ocispec.Image
	LayerDirs []string // unpacked layer directories, lowest first
}

// Store holds images.
type Store struct {
	cfg   Config
	inUse func(imageID string) (containerRef string, used bool)
}

// NewStore opens (creating if needed) the store under cfg.Root.
func NewStore(cfg Config) (*Store, error) { return &Store{cfg: cfg}, nil }

// SetUsageChecker lets the store refuse to remove images containers use.
func (s *Store) SetUsageChecker(f func(imageID string) (containerRef string, used bool)) { s.inUse = f }

// Get resolves a name[:tag], name@digest, full or short ID.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	return nil, errdefs.NotFound("No such image: %s", ref)
}

// Count returns the number of images (for /info).
func (s *Store) Count() int { return 0 }
