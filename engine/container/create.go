package container

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
)

// Create makes a container from an image without starting it. A missing
// image is a NotFound "No such image: X", which makes the docker CLI pull
// and retry.
func (s *Service) Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (string, []string, error) {
	if cfg == nil {
		return "", nil, errdefs.InvalidParameter("Config cannot be empty in order to create a container")
	}
	if cfg.Image == "" {
		return "", nil, errdefs.InvalidParameter("image is required to create a container")
	}
	if hc == nil {
		hc = &container.HostConfig{}
	}
	if s.cfg.Images == nil {
		return "", nil, errdefs.Unavailable("no image store")
	}
	img, err := s.cfg.Images.Get(ctx, cfg.Image)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return "", nil, errdefs.NotFound("No such image: %s", cfg.Image)
		}
		return "", nil, err
	}
	merged := copyConfig(cfg)
	hc = copyHostConfig(hc)
	mergeImageConfig(merged, &img.Config.Config)
	if err := runtime.ValidateConfig(merged); err != nil {
		return "", nil, err
	}
	if err := runtime.ValidateHostConfig(hc, s.ncpu); err != nil {
		return "", nil, err
	}
	if hc.NetworkMode == "" || hc.NetworkMode == network.NetworkDefault {
		hc.NetworkMode = network.NetworkBridge
	}
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = container.RestartPolicyDisabled
	}
	mounts, err := runtime.ParseMounts(merged, hc)
	if err != nil {
		return "", nil, err
	}
	for i := range mounts {
		if mounts[i].Anonymous && mounts[i].Source == "" {
			mounts[i].Source = newID()
		}
	}

	id := newID()
	if merged.Hostname == "" {
		if hc.NetworkMode.IsHost() {
			merged.Hostname, _ = os.Hostname()
		} else {
			merged.Hostname = id[:12]
		}
	}
	args := append(append([]string{}, merged.Entrypoint...), merged.Cmd...)
	rec := record{
		ID:               id,
		Created:          time.Now().UTC(),
		Path:             args[0],
		Args:             args[1:],
		Config:           merged,
		HostConfig:       hc,
		NetworkingConfig: nc,
		Image:            img.ID,
		State:            state{Status: container.StateCreated},
		Mounts:           mounts,
		Cgroup:           "/" + strings.Trim(s.cfg.CgroupParent, "/") + "/" + id,
	}

	s.mu.Lock()
	if name == "" {
		name = generateName(func(n string) bool { _, ok := s.names[n]; return ok })
	} else {
		n, err := normalizeName(name)
		if err != nil {
			s.mu.Unlock()
			return "", nil, err
		}
		name = n
		if other, ok := s.names[name]; ok {
			s.mu.Unlock()
			return "", nil, errdefs.Conflict("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, other)
		}
	}
	rec.Name = name
	c := s.newCtr(rec)
	// Reserve the name before the slow part, so a concurrent create of the
	// same name fails instead of racing.
	s.names[name] = id
	s.mu.Unlock()

	if err := os.MkdirAll(c.dir, 0o710); err != nil {
		s.unreserve(name, id)
		return "", nil, errdefs.System("creating container dir: %v", err)
	}
	if err := c.save(); err != nil {
		os.RemoveAll(c.dir)
		s.unreserve(name, id)
		return "", nil, errdefs.System("saving container: %v", err)
	}
	s.mu.Lock()
	s.byID[id] = c
	s.mu.Unlock()
	s.emit(c, "create", 0, nil)
	return id, []string{}, nil
}

func (s *Service) unreserve(name, id string) {
	s.mu.Lock()
	if s.names[name] == id {
		delete(s.names, name)
	}
	s.mu.Unlock()
}

// mergeImageConfig fills the user's config from the image's, as docker does
// at create (so inspect shows the effective config).
func mergeImageConfig(u *container.Config, img *ocispec.ImageConfig) {
	if u.User == "" {
		u.User = img.User
	}
	if len(img.ExposedPorts) > 0 {
		if u.ExposedPorts == nil {
			u.ExposedPorts = network.PortSet{}
		}
		for p := range img.ExposedPorts {
			if port, err := network.ParsePort(p); err == nil {
				u.ExposedPorts[port] = struct{}{}
			}
		}
	}
	if len(u.Env) == 0 {
		u.Env = append([]string(nil), img.Env...)
	} else {
		for _, ie := range img.Env {
			ik, _, _ := strings.Cut(ie, "=")
			found := false
			for _, ue := range u.Env {
				if uk, _, _ := strings.Cut(ue, "="); uk == ik {
					found = true
					break
				}
			}
			if !found {
				u.Env = append(u.Env, ie)
			}
		}
	}
	if len(img.Labels) > 0 {
		if u.Labels == nil {
			u.Labels = map[string]string{}
		}
		for k, v := range img.Labels {
			if _, ok := u.Labels[k]; !ok {
				u.Labels[k] = v
			}
		}
	}
	if len(u.Entrypoint) == 0 {
		if len(u.Cmd) == 0 {
			u.Cmd = append([]string(nil), img.Cmd...)
			u.ArgsEscaped = img.ArgsEscaped
		}
		if u.Entrypoint == nil {
			u.Entrypoint = append([]string(nil), img.Entrypoint...)
		}
	}
	// --entrypoint "" arrives as [""]: no entrypoint at all.
	if len(u.Entrypoint) == 1 && u.Entrypoint[0] == "" {
		u.Entrypoint = nil
	}
	if len(u.Entrypoint) == 0 {
		u.Entrypoint = nil
	}
	if u.WorkingDir == "" {
		u.WorkingDir = img.WorkingDir
	}
	if len(img.Volumes) > 0 {
		if u.Volumes == nil {
			u.Volumes = map[string]struct{}{}
		}
		for v := range img.Volumes {
			u.Volumes[v] = struct{}{}
		}
	}
	if u.StopSignal == "" {
		u.StopSignal = img.StopSignal
	}
}

// copyConfig copies the parts of cfg that merging changes, so the caller's
// value is left alone.
func copyConfig(cfg *container.Config) *container.Config {
	c := *cfg
	c.Env = append([]string(nil), cfg.Env...)
	if cfg.Cmd != nil {
		c.Cmd = append([]string{}, cfg.Cmd...)
	}
	if cfg.Entrypoint != nil {
		c.Entrypoint = append([]string{}, cfg.Entrypoint...)
	}
	if cfg.Labels != nil {
		c.Labels = make(map[string]string, len(cfg.Labels))
		for k, v := range cfg.Labels {
			c.Labels[k] = v
		}
	}
	if cfg.ExposedPorts != nil {
		c.ExposedPorts = make(network.PortSet, len(cfg.ExposedPorts))
		for k, v := range cfg.ExposedPorts {
			c.ExposedPorts[k] = v
		}
	}
	if cfg.Volumes != nil {
		c.Volumes = make(map[string]struct{}, len(cfg.Volumes))
		for k, v := range cfg.Volumes {
			c.Volumes[k] = v
		}
	}
	return &c
}

func copyHostConfig(hc *container.HostConfig) *container.HostConfig {
	c := *hc
	return &c
}
