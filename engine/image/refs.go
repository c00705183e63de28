package image

import (
	"regexp"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/shoal/shoal/errdefs"
)

var (
	fullIDRe  = regexp.MustCompile(`^(sha256:)?[a-f0-9]{64}$`)
	idPrefixR = regexp.MustCompile(`^(sha256:)?[a-f0-9]{1,64}$`)
)

// parseRef normalizes a user-given image name as docker does: "busybox"
// becomes docker.io/library/busybox:latest; digests are kept.
func parseRef(s string) (reference.Named, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference format %q", s)
	}
	return reference.TagNameOnly(named), nil
}

// parseTagTarget validates a reference used as the target of tag, load or
// import: it must name a repository with a tag, never a digest or an ID.
func parseTagTarget(s string) (reference.NamedTagged, error) {
	if fullIDRe.MatchString(s) && !strings.HasPrefix(s, "sha256:") {
		return nil, errdefs.InvalidParameter("invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s)
	}
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference format %q", s)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, errdefs.InvalidParameter("refusing to create a tag with a digest reference")
	}
	tagged, ok := reference.TagNameOnly(named).(reference.NamedTagged)
	if !ok {
		return nil, errdefs.InvalidParameter("invalid tag reference %q", s)
	}
	return tagged, nil
}

// familiar is the short form docker prints ("busybox:latest").
func familiar(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.FamiliarString(named)
}

func isCanonical(ref string) bool { return strings.Contains(ref, "@") }

// refName is the repository part of a stored reference.
func refName(ref string) string {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return named.Name()
}

// shortID is the 12-character form docker prints.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// shortRef shortens container IDs in messages and leaves names alone.
func shortRef(s string) string {
	if fullIDRe.MatchString(s) {
		return shortID(s)
	}
	return s
}

// refsFor lists the stored references of id, tags before digests, sorted.
func refsFor(refs map[string]string, id string) (tags, digests []string) {
	for r, i := range refs {
		if i != id {
			continue
		}
		if isCanonical(r) {
			digests = append(digests, r)
		} else {
			tags = append(tags, r)
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// isSingleReference mirrors docker: true when the references of an image are
// at most one tag plus digests of that same repository.
func isSingleReference(refs []string) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	single := ""
	canonical := map[string]bool{}
	for _, r := range refs {
		if isCanonical(r) {
			canonical[refName(r)] = true
		} else if single == "" {
			single = r
		} else {
			return false
		}
	}
	if single == "" {
		single = refs[0]
	}
	return len(canonical) == 1 && canonical[refName(single)]
}

func validDigest(s string) (digest.Digest, bool) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", false
	}
	return d, true
}
