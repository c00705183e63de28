package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/volume"

	"github.com/shoal/shoal/errdefs"
)

// The volume API (docker's `local` driver, without mount options): named
// and anonymous volumes under VolumesRoot/NAME/_data, their labels and
// creation time in VolumesRoot/NAME/shoal-volume.json.

const volumeMetaFile = "shoal-volume.json"

type volumeMeta struct {
	CreatedAt time.Time
	Labels    map[string]string `json:",omitempty"`
	Anonymous bool              `json:",omitempty"`
}

func writeVolumeMeta(dir string, m volumeMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, volumeMetaFile), b, 0o600)
}

// readMeta returns name's metadata; volumes from before the metadata file
// get their directory's time.
func (v *volumes) readMeta(name string) (volumeMeta, error) {
	dir := filepath.Join(v.root, name)
	fi, err := os.Stat(filepath.Join(dir, "_data"))
	if err != nil {
		return volumeMeta{}, errdefs.NotFound("get %s: no such volume", name)
	}
	var m volumeMeta
	if b, err := os.ReadFile(filepath.Join(dir, volumeMetaFile)); err == nil {
		_ = json.Unmarshal(b, &m)
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = fi.ModTime().UTC()
	}
	return m, nil
}

// names lists the volumes.
func (v *volumes) names() ([]string, error) {
	entries, err := os.ReadDir(v.root)
	if err != nil && !os.IsNotExist(err) {
		return nil, errdefs.System("listing volumes: %v", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(v.root, e.Name(), "_data")); err == nil {
				out = append(out, e.Name())
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (s *Service) volumeView(name string, m volumeMeta) volume.Volume {
	labels := m.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return volume.Volume{
		Name: name, Driver: "local", Scope: "local", Labels: labels, Options: map[string]string{},
		Mountpoint: s.vols.path(name), CreatedAt: m.CreatedAt.Format(time.RFC3339),
	}
}

// volumeUsers returns the IDs of the containers that mount volume name.
func (s *Service) volumeUsers(name string) []string {
	var ids []string
	for _, c := range s.all() {
		c.mu.Lock()
		for _, m := range c.rec.Mounts {
			if m.Type == mount.TypeVolume && m.Source == name {
				ids = append(ids, c.rec.ID)
				break
			}
		}
		c.mu.Unlock()
	}
	return ids
}

// VolumeCreate is POST /volumes/create. Creating an existing volume returns
// it, as docker does.
func (s *Service) VolumeCreate(ctx context.Context, req volume.CreateRequest) (*volume.Volume, error) {
	if req.Driver != "" && req.Driver != "local" {
		return nil, errdefs.NotFound("plugin %q not found", req.Driver)
	}
	if len(req.DriverOpts) > 0 {
		return nil, errdefs.InvalidParameter("volume options are not supported by this engine's local driver")
	}
	name := req.Name
	if name == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		name = hex.EncodeToString(b[:])
	}
	if _, _, err := s.vols.ensure(name, volumeMeta{Labels: req.Labels}); err != nil {
		return nil, err
	}
	return s.VolumeInspect(ctx, name)
}

// VolumeInspect is GET /volumes/{name}.
func (s *Service) VolumeInspect(ctx context.Context, name string) (*volume.Volume, error) {
	m, err := s.vols.readMeta(name)
	if err != nil {
		return nil, err
	}
	v := s.volumeView(name, m)
	return &v, nil
}

var volumeFilters = map[string]bool{"name": true, "dangling": true, "driver": true, "label": true}

// VolumeList is GET /volumes.
func (s *Service) VolumeList(ctx context.Context, f filters.Args) (*volume.ListResponse, error) {
	for _, k := range f.Keys() {
		if !volumeFilters[k] {
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	dangling, err := boolFilter(f, "dangling")
	if err != nil {
		return nil, err
	}
	names, err := s.vols.names()
	if err != nil {
		return nil, err
	}
	out := &volume.ListResponse{Volumes: []volume.Volume{}, Warnings: []string{}}
	for _, n := range names {
		m, err := s.vols.readMeta(n)
		if err != nil {
			continue // removed meanwhile
		}
		if f.Contains("name") && !f.Match("name", n) {
			continue
		}
		if f.Contains("driver") && !f.ExactMatch("driver", "local") {
			continue
		}
		if !f.MatchKVList("label", m.Labels) {
			continue
		}
		if dangling != nil && *dangling != (len(s.volumeUsers(n)) == 0) {
			continue
		}
		out.Volumes = append(out.Volumes, s.volumeView(n, m))
	}
	return out, nil
}

// boolFilter reads a true/false filter (nil when absent).
func boolFilter(f filters.Args, key string) (*bool, error) {
	if !f.Contains(key) {
		return nil, nil
	}
	var v bool
	switch {
	case f.ExactMatch(key, "true") || f.ExactMatch(key, "1"):
		v = true
	case f.ExactMatch(key, "false") || f.ExactMatch(key, "0"):
	default:
		return nil, errdefs.InvalidParameter("invalid filter '%s=%s'", key, f.Get(key)[0])
	}
	return &v, nil
}

// VolumeRemove is DELETE /volumes/{name}: refused while a container uses
// it, even with force (docker's force only forgives a missing volume).
func (s *Service) VolumeRemove(ctx context.Context, name string, force bool) error {
	if _, err := s.vols.readMeta(name); err != nil {
		if force && errdefs.IsNotFound(err) {
			return nil
		}
		return err
	}
	if users := s.volumeUsers(name); len(users) > 0 {
		return errdefs.Conflict("remove %s: volume is in use - %v", name, users)
	}
	if err := s.vols.remove(name); err != nil {
		return errdefs.System("remove %s: %v", name, err)
	}
	return nil
}

// VolumePrune is POST /volumes/prune: unused anonymous volumes, or every
// unused volume with all=true, as docker since API 1.42.
func (s *Service) VolumePrune(ctx context.Context, f filters.Args) (*volume.PruneReport, error) {
	for _, k := range f.Keys() {
		if k != "label" && k != "label!" && k != "all" {
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	all, err := boolFilter(f, "all")
	if err != nil {
		return nil, err
	}
	names, err := s.vols.names()
	if err != nil {
		return nil, err
	}
	rep := &volume.PruneReport{VolumesDeleted: []string{}}
	for _, n := range names {
		m, err := s.vols.readMeta(n)
		if err != nil || (!m.Anonymous && (all == nil || !*all)) || len(s.volumeUsers(n)) > 0 {
			continue
		}
		if !f.MatchKVList("label", m.Labels) {
			continue
		}
		if f.Contains("label!") && f.MatchKVList("label!", m.Labels) {
			continue
		}
		size := dirSize(s.vols.path(n))
		if err := s.vols.remove(n); err != nil {
			continue
		}
		rep.VolumesDeleted = append(rep.VolumesDeleted, n)
		rep.SpaceReclaimed += uint64(size)
	}
	return rep, nil
}

// VolumeUsage lists every volume with its size and how many containers
// use it (`docker system df`).
func (s *Service) VolumeUsage(ctx context.Context) ([]volume.Volume, error) {
	res, err := s.VolumeList(ctx, filters.NewArgs())
	if err != nil {
		return nil, err
	}
	for i := range res.Volumes {
		v := &res.Volumes[i]
		v.UsageData = &volume.UsageData{Size: dirSize(v.Mountpoint), RefCount: int64(len(s.volumeUsers(v.Name)))}
	}
	return res.Volumes, nil
}
