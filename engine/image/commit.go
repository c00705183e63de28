package image

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// CommitOptions are the parameters of POST /commit beyond the layer.
type CommitOptions struct {
	Parent  string // the container's image ID
	Repo    string // optional target repository (may carry a tag)
	Tag     string
	Comment string
	Author  string
	// Config is the new image's run configuration (the container's, with
	// the request's overrides); Changes are Dockerfile instructions
	// applied on top.
	Config  ocispec.ImageConfig
	Changes []string
}

// Commit makes an image of Parent's layers plus one more read from layer
// (a tar with OCI whiteouts, as `docker commit` takes from a container).
func (s *Store) Commit(ctx context.Context, layer io.Reader, opts CommitOptions) (img *Image, err error) {
	var tags []reference.NamedTagged
	if opts.Repo != "" {
		target := opts.Repo
		if opts.Tag != "" {
			named, err := reference.ParseNormalizedNamed(opts.Repo)
			if err != nil {
				return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference format %q", opts.Repo)
			}
			target = reference.FamiliarName(named) + ":" + opts.Tag
		}
		t, err := parseTagTarget(target)
		if err != nil {
			return nil, err
		}
		tags = append(tags, t)
	}
	ic := opts.Config
	if err := applyChanges(&ic, opts.Changes); err != nil {
		return nil, err
	}

	s.mu.RLock()
	parent := s.images[opts.Parent]
	var blobs []ocispec.Descriptor
	var parentCfg ocispec.Image
	if parent != nil {
		parentCfg = parent.config
		for _, d := range parent.diffIDs() {
			blobs = append(blobs, s.layers[d].Blob)
		}
	}
	s.mu.RUnlock()
	if parent == nil {
		return nil, errdefs.NotFound("No such image: %s", opts.Parent)
	}

	l := s.newLease()
	defer func() { l.release(err != nil) }()
	for _, b := range blobs {
		l.add(b.Digest)
	}
	res, err := s.addLayer(ctx, l, layerInput{open: func() (io.ReadCloser, error) { return io.NopCloser(layer), nil }})
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	cfg := ocispec.Image{
		Created:  &now,
		Author:   opts.Author,
		Platform: parentCfg.Platform,
		Config:   ic,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: append(append([]digest.Digest(nil), parentCfg.RootFS.DiffIDs...), res.meta.DiffID)},
		History:  append(append([]ocispec.History(nil), parentCfg.History...), ocispec.History{Created: &now, Author: opts.Author, Comment: opts.Comment}),
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	e, err := s.commitImage(l, newImage{manifest: synthManifest(cb, append(blobs, res.blob)), config: cb, tags: tags})
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.imageLocked(e), nil
}
