package image

import (
	"context"
	"encoding/json"
	"io"
	"runtime"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// ImportOptions are the parameters of POST /images/create?fromSrc=-.
type ImportOptions struct {
	Repo    string   // optional target repository (may carry a tag)
	Tag     string   // optional tag
	Changes []string // Dockerfile instructions: CMD ENTRYPOINT ENV WORKDIR EXPOSE USER LABEL VOLUME STOPSIGNAL
	Message string   // history comment
}

// Import makes a single-layer image of a root filesystem tarball (plain
// or compressed), as `docker import` does.
func (s *Store) Import(ctx context.Context, src io.Reader, opts ImportOptions) (img *Image, err error) {
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
	var ic ocispec.ImageConfig
	if err := applyChanges(&ic, opts.Changes); err != nil {
		return nil, err
	}
	l := s.newLease()
	defer func() { l.release(err != nil) }()
	res, err := s.addLayer(ctx, l, layerInput{open: func() (io.ReadCloser, error) { return io.NopCloser(src), nil }})
	if err != nil {
		return nil, err
	}
	if res.meta.Size == 0 {
		return nil, errdefs.InvalidParameter("invalid archive: empty input")
	}
	now := time.Now().UTC()
	comment := opts.Message
	if comment == "" {
		comment = "Imported from -"
	}
	cfg := ocispec.Image{
		Created:  &now,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   ic,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{res.meta.DiffID}},
		History:  []ocispec.History{{Created: &now, Comment: comment}},
	}
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	e, err := s.commitImage(l, newImage{manifest: synthManifest(cb, []ocispec.Descriptor{res.blob}), config: cb, tags: tags})
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.imageLocked(e), nil
}

// applyChanges applies `docker import --change` instructions.
func applyChanges(c *ocispec.ImageConfig, changes []string) error {
	for _, ch := range changes {
		ch = strings.TrimSpace(ch)
		if ch == "" {
			continue
		}
		instr, rest, _ := strings.Cut(ch, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "CMD", "ENTRYPOINT":
			args, err := execForm(rest)
			if err != nil {
				return err
			}
			if strings.ToUpper(instr) == "CMD" {
				c.Cmd = args
			} else {
				c.Entrypoint = args
			}
		case "ENV":
			kvs, err := keyValues(rest)
			if err != nil {
				return err
			}
			for _, kv := range kvs {
				c.Env = setEnv(c.Env, kv[0], kv[1])
			}
		case "LABEL":
			kvs, err := keyValues(rest)
			if err != nil {
				return err
			}
			if c.Labels == nil {
				c.Labels = map[string]string{}
			}
			for _, kv := range kvs {
				c.Labels[kv[0]] = kv[1]
			}
		case "WORKDIR":
			c.WorkingDir = rest
		case "USER":
			c.User = rest
		case "STOPSIGNAL":
			c.StopSignal = rest
		case "EXPOSE":
			if c.ExposedPorts == nil {
				c.ExposedPorts = map[string]struct{}{}
			}
			for _, p := range strings.Fields(rest) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				c.ExposedPorts[p] = struct{}{}
			}
		case "VOLUME":
			vols := strings.Fields(rest)
			if strings.HasPrefix(rest, "[") {
				if err := json.Unmarshal([]byte(rest), &vols); err != nil {
					return errdefs.InvalidParameter("invalid VOLUME %q: %v", rest, err)
				}
			}
			if c.Volumes == nil {
				c.Volumes = map[string]struct{}{}
			}
			for _, v := range vols {
				c.Volumes[v] = struct{}{}
			}
		default:
			return errdefs.InvalidParameter("%s is not a valid change command", instr)
		}
	}
	return nil
}

// execForm parses ["a","b"] or a shell form, which runs under /bin/sh -c.
func execForm(s string) ([]string, error) {
	if strings.HasPrefix(s, "[") {
		var args []string
		if err := json.Unmarshal([]byte(s), &args); err == nil {
			return args, nil
		}
	}
	if s == "" {
		return nil, errdefs.InvalidParameter("empty command")
	}
	return []string{"/bin/sh", "-c", s}, nil
}

// keyValues parses `k=v k2="v 2"` or the legacy `k v w` form.
func keyValues(s string) ([][2]string, error) {
	words, err := shellWords(s)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errdefs.InvalidParameter("missing key=value")
	}
	if !strings.Contains(words[0], "=") {
		if len(words) < 2 {
			return nil, errdefs.InvalidParameter("%q needs a value", words[0])
		}
		return [][2]string{{words[0], strings.Join(words[1:], " ")}}, nil
	}
	var out [][2]string
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok || k == "" {
			return nil, errdefs.InvalidParameter("invalid key=value %q", w)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	esc := false
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\' && quote != '\'':
			esc = true
			inWord = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '"' || r == '\'':
			quote = r
			inWord = true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || esc {
		return nil, errdefs.InvalidParameter("unterminated quote in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

func setEnv(env []string, k, v string) []string {
	for i, e := range env {
		if strings.HasPrefix(e, k+"=") {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}
