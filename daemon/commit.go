package daemon

import (
	"context"

	"github.com/moby/moby/api/types/container"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/errdefs"
)

// Commit is POST /commit (`docker commit`): the container's image plus
// its writable layer, run as the container was configured (the request's
// config and changes on top). A running container is paused meanwhile,
// as docker does, unless pause=false.
func (d *Daemon) Commit(ctx context.Context, req api.CommitRequest) (string, error) {
	if req.Container == "" {
		return "", errdefs.InvalidParameter("container is required")
	}
	ins, err := d.containers.Inspect(ctx, req.Container)
	if err != nil {
		return "", err
	}
	if req.Pause && ins.State != nil && ins.State.Running && !ins.State.Paused {
		if err := d.containers.Pause(ctx, req.Container); err != nil {
			return "", err
		}
		defer d.containers.Unpause(context.WithoutCancel(ctx), req.Container)
	}
	src, err := d.containers.ChangesLayer(ctx, req.Container)
	if err != nil {
		return "", err
	}
	defer src.Layer.Close()
	cfg := imageConfig(src.Config)
	if o := req.Config; o != nil {
		override(&cfg, imageConfig(*o))
	}
	img, err := d.images.Commit(ctx, src.Layer, image.CommitOptions{
		Parent: src.ImageID, Repo: req.Repo, Tag: req.Tag, Comment: req.Comment, Author: req.Author,
		Config: cfg, Changes: req.Changes,
	})
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// imageConfig is the part of a container's configuration an image keeps.
func imageConfig(c container.Config) ocispec.ImageConfig {
	ic := ocispec.ImageConfig{User: c.User, Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd,
		WorkingDir: c.WorkingDir, Labels: c.Labels, StopSignal: c.StopSignal}
	if len(c.ExposedPorts) > 0 {
		ic.ExposedPorts = map[string]struct{}{}
		for p := range c.ExposedPorts {
			ic.ExposedPorts[p.String()] = struct{}{}
		}
	}
	if len(c.Volumes) > 0 {
		ic.Volumes = map[string]struct{}{}
		for v := range c.Volumes {
			ic.Volumes[v] = struct{}{}
		}
	}
	return ic
}

// override sets in dst what o sets.
func override(dst *ocispec.ImageConfig, o ocispec.ImageConfig) {
	if o.User != "" {
		dst.User = o.User
	}
	if len(o.Env) > 0 {
		dst.Env = o.Env
	}
	if len(o.Entrypoint) > 0 {
		dst.Entrypoint = o.Entrypoint
	}
	if len(o.Cmd) > 0 {
		dst.Cmd = o.Cmd
	}
	if o.WorkingDir != "" {
		dst.WorkingDir = o.WorkingDir
	}
	if len(o.Labels) > 0 {
		dst.Labels = o.Labels
	}
	if o.StopSignal != "" {
		dst.StopSignal = o.StopSignal
	}
	if len(o.ExposedPorts) > 0 {
		dst.ExposedPorts = o.ExposedPorts
	}
	if len(o.Volumes) > 0 {
		dst.Volumes = o.Volumes
	}
}
