package container

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// Prune removes every stopped container matching the filters ("label",
// "label!", "until").
func (s *Service) Prune(ctx context.Context, opts backend.ListOptions) (*container.PruneReport, error) {
	f := opts.Filters
	if err := f.Validate(map[string]bool{"label": true, "label!": true, "until": true}); err != nil {
		return nil, errdefs.InvalidParameter("%s", err.Error())
	}
	var until time.Time
	for _, v := range f.Get("until") {
		if d, err := time.ParseDuration(v); err == nil {
			until = time.Now().Add(-d)
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return nil, errdefs.InvalidParameter("invalid filter 'until=%s'", v)
		}
		until = t
	}
	rep := &container.PruneReport{ContainersDeleted: []string{}}
	for _, c := range s.all() {
		c.mu.Lock()
		r := &c.rec
		skip := r.running() || r.State.Status == container.StateRestarting ||
			!f.MatchKVList("label", r.Config.Labels) ||
			(f.Contains("label!") && f.MatchKVList("label!", r.Config.Labels)) ||
			(!until.IsZero() && !r.Created.Before(until))
		id := r.ID
		c.mu.Unlock()
		if skip {
			continue
		}
		size := dirSize(filepath.Join(c.dir, upperDir))
		if err := s.remove(c, false); err != nil {
			continue
		}
		rep.ContainersDeleted = append(rep.ContainersDeleted, id)
		rep.SpaceReclaimed += uint64(size)
	}
	return rep, nil
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
