package image

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/filters"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"

	"github.com/shoal/shoal/errdefs"
)

// Tag points target ("repo[:tag]", tag defaults to latest) at the image
// source names. An existing tag moves, as with docker.
func (s *Store) Tag(ctx context.Context, source, target string) error {
	tagged, err := parseTagTarget(target)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, _, err := s.resolveLocked(source)
	if err != nil {
		return err
	}
	e.rec.Hidden = false
	e.rec.LastTagTime = time.Now().UTC()
	if err := s.writeRecordLocked(e.rec); err != nil {
		return err
	}
	s.refs[tagged.String()] = e.rec.ID
	return s.saveRefsLocked()
}

// Conflict kinds, as docker's image delete knows them.
const (
	conflictRunning = 1 << iota
	conflictActiveReference
	conflictStopped
	conflictHard = conflictRunning
	conflictSoft = conflictActiveReference | conflictStopped
)

type deleteConflict struct {
	hard, used bool
	msg        string
}

// resolveWithUsage resolves name and asks the usage checker about it
// without holding the store lock, then returns with the lock held and the
// resolution confirmed.
func (s *Store) resolveWithUsage(name string) (e *entry, matched string, u Usage, used bool, err error) {
	for attempt := 0; ; attempt++ {
		s.mu.RLock()
		e, _, err = s.resolveLocked(name)
		usage := s.usage
		s.mu.RUnlock()
		if err != nil {
			return nil, "", u, false, err
		}
		id := e.rec.ID
		if usage != nil {
			u, used = usage(id)
		}
		s.mu.Lock()
		e, matched, err = s.resolveLocked(name)
		if err != nil {
			s.mu.Unlock()
			return nil, "", u, false, err
		}
		if e.rec.ID == id || attempt == 2 {
			if e.rec.ID != id {
				used, u = false, Usage{}
				if usage != nil {
					u, used = usage(e.rec.ID) // retries exhausted: ask under the lock
				}
			}
			return e, matched, u, used, nil
		}
		s.mu.Unlock()
	}
}

// Remove answers DELETE /images/{name} with docker's semantics: a name
// untags (and deletes the image when that was its last reference); an ID
// deletes, refusing without force when the image has several references or
// a stopped container uses it, and always when a running one does.
func (s *Store) Remove(ctx context.Context, name string, force, prune bool) ([]imagetypes.DeleteResponse, error) {
	recs, err := s.remove(name, force)
	if err != nil {
		return nil, err
	}
	s.collect()
	return recs, nil
}

func (s *Store) remove(name string, force bool) ([]imagetypes.DeleteResponse, error) {
	e, matched, usage, used, err := s.resolveWithUsage(name)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	id := e.rec.ID
	check := func(mask int) *deleteConflict {
		if mask&conflictRunning != 0 && used && usage.State == "running" {
			return &deleteConflict{hard: true, used: true, msg: "image is being used by running container " + shortRef(usage.Container)}
		}
		if mask&conflictActiveReference != 0 {
			if tags, digests := refsFor(s.refs, id); len(tags)+len(digests) > 0 {
				return &deleteConflict{msg: "image is referenced in multiple repositories"}
			}
		}
		if mask&conflictStopped != 0 && used && usage.State != "running" {
			state := usage.State + " "
			if usage.State == "" {
				state = ""
			}
			return &deleteConflict{used: true, msg: "image is being used by " + state + "container " + shortRef(usage.Container)}
		}
		return nil
	}
	conflictError := func(c *deleteConflict) error {
		force := "must be forced"
		if c.hard {
			force = "cannot be forced"
		}
		return errdefs.Conflict("conflict: unable to delete %s (%s) - %s", shortID(id), force, c.msg)
	}
	allRefs := func() []string {
		tags, digests := refsFor(s.refs, id)
		return append(tags, digests...)
	}
	var records []imagetypes.DeleteResponse
	untag := func(r string) {
		delete(s.refs, r)
		records = append(records, imagetypes.DeleteResponse{Untagged: familiar(r)})
	}

	removedRepositoryRef := false
	if matched != "" {
		if !force && used && isSingleReference(allRefs()) {
			return nil, errdefs.Conflict("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", name, shortRef(usage.Container), shortID(id))
		}
		untag(matched)
		if !isCanonical(matched) {
			// The last tag of a repository takes its digests with it.
			repo := refName(matched)
			tags, digests := refsFor(s.refs, id)
			sameRepoTag := false
			for _, t := range tags {
				if refName(t) == repo {
					sameRepoTag = true
				}
			}
			if !sameRepoTag {
				for _, d := range digests {
					if refName(d) == repo {
						untag(d)
					}
				}
			}
		}
		if len(allRefs()) > 0 {
			return records, s.saveRefsLocked()
		}
		removedRepositoryRef = true
	} else if refs := allRefs(); isSingleReference(refs) {
		mask := conflictHard
		if !force {
			mask |= conflictSoft &^ conflictActiveReference
		}
		if c := check(mask); c != nil {
			return nil, conflictError(c)
		}
		for _, r := range refs {
			untag(r)
		}
	}

	mask := conflictHard
	if !force {
		mask |= conflictSoft
	}
	if c := check(mask); c != nil {
		if removedRepositoryRef {
			// Untagged, and the image stays (dangling) for its container.
			return records, s.saveRefsLocked()
		}
		if err := s.saveRefsLocked(); err != nil {
			return nil, err
		}
		return nil, conflictError(c)
	}
	for _, r := range allRefs() {
		untag(r)
	}
	if used {
		// Forced past a container that uses it: hide the image and keep
		// its layers until no container needs them.
		e.rec.Hidden = true
		if err := s.writeRecordLocked(e.rec); err != nil {
			return nil, err
		}
		if err := s.saveRefsLocked(); err != nil {
			return nil, err
		}
	} else if err := s.deleteImageLocked(id); err != nil {
		return nil, err
	}
	return append(records, imagetypes.DeleteResponse{Deleted: id}), nil
}

// Prune answers POST /images/prune: it removes unused dangling images, or
// every unused image with dangling=false. Filters: dangling, label.
func (s *Store) Prune(ctx context.Context, args filters.Args) (*imagetypes.PruneReport, error) {
	for _, k := range args.Keys() {
		if k != "dangling" && k != "label" && k != "label!" {
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	danglingOnly := true
	if args.Contains("dangling") {
		switch {
		case args.ExactMatch("dangling", "false") || args.ExactMatch("dangling", "0"):
			danglingOnly = false
		case args.ExactMatch("dangling", "true") || args.ExactMatch("dangling", "1"):
		default:
			return nil, errdefs.InvalidParameter("invalid filter 'dangling=%v'", args.Get("dangling"))
		}
	}
	s.mu.RLock()
	usage := s.usage
	var candidates []string
	for id, e := range s.images {
		if e.rec.Hidden {
			continue
		}
		tags, digests := refsFor(s.refs, id)
		if danglingOnly && len(tags)+len(digests) > 0 {
			continue
		}
		if args.Contains("label") && !args.MatchKVList("label", e.config.Config.Labels) {
			continue
		}
		if args.Contains("label!") && args.MatchKVList("label!", e.config.Config.Labels) {
			continue
		}
		candidates = append(candidates, id)
	}
	sizes := map[digest.Digest]int64{}
	for d, m := range s.layers {
		sizes[d] = m.Size
	}
	s.mu.RUnlock()

	report := &imagetypes.PruneReport{ImagesDeleted: []imagetypes.DeleteResponse{}}
	for _, id := range candidates {
		if usage != nil {
			if _, used := usage(id); used {
				continue
			}
		}
		recs, err := s.remove(id, true)
		if err != nil {
			if errdefs.IsConflict(err) || errdefs.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("pruning %s: %w", shortID(id), err)
		}
		report.ImagesDeleted = append(report.ImagesDeleted, recs...)
	}
	for _, d := range s.collect() {
		report.SpaceReclaimed += uint64(sizes[d])
	}
	return report, nil
}
