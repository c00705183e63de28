package image

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/storage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// List answers GET /images/json. Filters: reference, dangling, label,
// before, since.
func (s *Store) List(ctx context.Context, args filters.Args) ([]imagetypes.Summary, error) {
	for _, k := range args.Keys() {
		switch k {
		case "reference", "dangling", "label", "before", "since":
		default:
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	var dangling *bool
	if args.Contains("dangling") {
		switch {
		case args.ExactMatch("dangling", "true") || args.ExactMatch("dangling", "1"):
			t := true
			dangling = &t
		case args.ExactMatch("dangling", "false") || args.ExactMatch("dangling", "0"):
			f := false
			dangling = &f
		default:
			return nil, errdefs.InvalidParameter("invalid filter 'dangling=%s'", strings.Join(args.Get("dangling"), ","))
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var before, since *time.Time
	for _, k := range []string{"before", "since"} {
		for _, v := range args.Get(k) {
			e, _, err := s.resolveLocked(v)
			if err != nil {
				return nil, err
			}
			t := created(e)
			if k == "before" {
				before = &t
			} else {
				since = &t
			}
		}
	}
	out := []imagetypes.Summary{}
	for _, e := range s.images {
		if e.rec.Hidden {
			continue
		}
		tags, digests := refsFor(s.refs, e.rec.ID)
		isDangling := len(tags) == 0 && len(digests) == 0
		if dangling != nil && *dangling != isDangling {
			continue
		}
		if args.Contains("label") && !args.MatchKVList("label", e.config.Config.Labels) {
			continue
		}
		c := created(e)
		if before != nil && !c.Before(*before) {
			continue
		}
		if since != nil && !c.After(*since) {
			continue
		}
		if args.Contains("reference") {
			tags, digests = matchRefs(args.Get("reference"), tags), matchRefs(args.Get("reference"), digests)
			if len(tags) == 0 && len(digests) == 0 {
				continue
			}
		}
		labels := e.config.Config.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		out = append(out, imagetypes.Summary{
			Containers:  -1,
			Created:     c.Unix(),
			ID:          e.rec.ID,
			Labels:      labels,
			RepoDigests: familiarAll(digests),
			RepoTags:    familiarAll(tags),
			SharedSize:  -1,
			Size:        s.sizeLocked(e),
			Descriptor:  &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: e.rec.Manifest, Size: e.manifestSize},
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Created != out[j].Created {
			return out[i].Created > out[j].Created
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func matchRefs(patterns, refs []string) []string {
	var out []string
	for _, r := range refs {
		named, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue
		}
		for _, p := range patterns {
			if ok, _ := reference.FamiliarMatch(p, named); ok {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

func created(e *entry) time.Time {
	if e.config.Created != nil {
		return *e.config.Created
	}
	return e.rec.Added
}

// dockerConfig is the config as docker's inspect shows it.
type dockerConfig struct {
	dockerspec.DockerOCIImage
	Comment string `json:"comment,omitempty"`
}

// Inspect answers GET /images/{name}/json.
func (s *Store) Inspect(ctx context.Context, name string) (*imagetypes.InspectResponse, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, _, err := s.resolveLocked(name)
	if err != nil {
		return nil, err
	}
	var dc dockerConfig
	if err := json.Unmarshal(e.rawConfig, &dc); err != nil {
		return nil, errdefs.System("image %s: bad config: %v", e.rec.ID, err)
	}
	tags, digests := refsFor(s.refs, e.rec.ID)
	resp := &imagetypes.InspectResponse{
		ID:           e.rec.ID,
		RepoTags:     familiarAll(tags),
		RepoDigests:  familiarAll(digests),
		Comment:      dc.Comment,
		Author:       dc.Author,
		Config:       &dc.Config,
		Architecture: dc.Architecture,
		Variant:      dc.Variant,
		Os:           dc.OS,
		OsVersion:    dc.OSVersion,
		Size:         s.sizeLocked(e),
		RootFS:       imagetypes.RootFS{Type: "layers"},
		Metadata:     imagetypes.Metadata{LastTagTime: e.rec.LastTagTime},
		Descriptor:   &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: e.rec.Manifest, Size: e.manifestSize},
	}
	if dc.Created != nil {
		resp.Created = dc.Created.UTC().Format(time.RFC3339Nano)
	}
	var dirs []string
	for _, d := range e.diffIDs() {
		resp.RootFS.Layers = append(resp.RootFS.Layers, d.String())
		dirs = append([]string{s.layerFS(d)}, dirs...) // overlay order: top first
	}
	resp.GraphDriver = &storage.DriverData{Name: "overlay2", Data: map[string]string{"LowerDir": strings.Join(dirs, ":")}}
	return resp, nil
}

// History answers GET /images/{name}/history, newest first.
func (s *Store) History(ctx context.Context, name string) ([]imagetypes.HistoryResponseItem, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, _, err := s.resolveLocked(name)
	if err != nil {
		return nil, err
	}
	tags, _ := refsFor(s.refs, e.rec.ID)
	ids := e.diffIDs()
	hist := e.config.History
	if len(hist) == 0 {
		for range ids {
			hist = append(hist, ocispec.History{Created: e.config.Created})
		}
	}
	var items []imagetypes.HistoryResponseItem
	layer := 0
	for _, h := range hist {
		item := imagetypes.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: nil}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if !h.EmptyLayer && layer < len(ids) {
			item.Size = s.layers[ids[layer]].Size
			layer++
		}
		items = append(items, item)
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	if len(items) > 0 {
		items[0].ID = e.rec.ID
		items[0].Tags = familiarAll(tags)
	}
	return items, nil
}
