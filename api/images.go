package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/filters"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"

	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/errdefs"
)

// ImageBackend serves the images and distribution routes (engine/image.Store).
type ImageBackend interface {
	List(ctx context.Context, args filters.Args) ([]imagetypes.Summary, error)
	Inspect(ctx context.Context, name string) (*imagetypes.InspectResponse, error)
	History(ctx context.Context, name string) ([]imagetypes.HistoryResponseItem, error)
	Tag(ctx context.Context, source, target string) error
	Remove(ctx context.Context, name string, force, prune bool) ([]imagetypes.DeleteResponse, error)
	Prune(ctx context.Context, args filters.Args) (*imagetypes.PruneReport, error)
	// Load must check the whole archive before storing anything, so a bad
	// one is answered with a plain 400.
	Load(ctx context.Context, r io.Reader) ([]image.Loaded, error)
	// Save must resolve every name before writing, so an unknown one is a 404.
	Save(ctx context.Context, names []string, w io.Writer) error
	Import(ctx context.Context, src io.Reader, opts image.ImportOptions) (*image.Image, error)
	// Pull and Push write docker's JSON progress messages to progress;
	// Pull writes nothing before it found the manifest.
	Pull(ctx context.Context, ref string, auth *registry.AuthConfig, progress io.Writer) (*image.Image, error)
	Push(ctx context.Context, ref string, auth *registry.AuthConfig, progress io.Writer) error
	DistributionInspect(ctx context.Context, ref string, auth *registry.AuthConfig) (*registry.DistributionInspect, error)
}

// Image names hold slashes and ports (localhost:5000/demo/busybox:latest),
// so the routes take the rest of the path and split the action off the end.
func (s *Server) registerImageRoutes() {
	b := s.b.Images
	s.Handle("GET /images/json", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		if f := r.URL.Query().Get("filter"); f != "" { // API < 1.28
			args.Add("reference", f)
		}
		list, err := b.List(r.Context(), args)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("GET /images/get", func(w http.ResponseWriter, r *http.Request) error {
		return s.saveImages(w, r, r.URL.Query()["names"])
	})
	s.Handle("POST /images/load", func(w http.ResponseWriter, r *http.Request) error {
		loaded, err := b.Load(r.Context(), r.Body)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		for _, l := range loaded {
			if len(l.Tags) == 0 {
				_ = enc.Encode(jsonstream.Message{Stream: "Loaded image ID: " + l.ID + "\n"})
			}
			for _, t := range l.Tags {
				_ = enc.Encode(jsonstream.Message{Stream: "Loaded image: " + t + "\n"})
			}
		}
		return nil
	})
	s.Handle("POST /images/create", s.createImage)
	s.Handle("POST /images/prune", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		rep, err := b.Prune(r.Context(), args)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, rep)
	})
	s.Handle("GET /images/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		name, action := splitAction(r.PathValue("rest"), "json", "history", "get")
		switch action {
		case "json":
			img, err := b.Inspect(r.Context(), name)
			if err != nil {
				return err
			}
			return WriteJSON(w, http.StatusOK, img)
		case "history":
			h, err := b.History(r.Context(), name)
			if err != nil {
				return err
			}
			return WriteJSON(w, http.StatusOK, h)
		case "get":
			return s.saveImages(w, r, []string{name})
		}
		return errdefs.NotFound("page not found")
	})
	s.Handle("POST /images/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		name, action := splitAction(r.PathValue("rest"), "tag", "push")
		switch action {
		case "tag":
			q := r.URL.Query()
			repo, tag := q.Get("repo"), q.Get("tag")
			if repo == "" {
				return errdefs.InvalidParameter("repository name must have at least one component")
			}
			target := repo
			if tag != "" {
				target += ":" + tag
			}
			if err := b.Tag(r.Context(), name, target); err != nil {
				return err
			}
			w.WriteHeader(http.StatusCreated)
			return nil
		case "push":
			ref := name
			if tag := r.URL.Query().Get("tag"); tag != "" {
				ref += ":" + tag
			}
			auth := registryAuth(r)
			return streamProgress(w, func(out io.Writer) error { return b.Push(r.Context(), ref, auth, out) })
		}
		return errdefs.NotFound("page not found")
	})
	s.Handle("DELETE /images/{rest...}", func(w http.ResponseWriter, r *http.Request) error {
		recs, err := b.Remove(r.Context(), r.PathValue("rest"), BoolValue(r, "force"), !BoolValue(r, "noprune"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, recs)
	})
	s.registerDistributionRoutes()
}

// createImage is POST /images/create: a pull (fromImage) or an import of
// a root filesystem tarball from the body (fromSrc=-).
func (s *Server) createImage(w http.ResponseWriter, r *http.Request) error {
	b := s.b.Images
	q := r.URL.Query()
	if src := q.Get("fromSrc"); src != "" {
		if src != "-" {
			return errdefs.NotImplemented("importing from a URL is not supported: send the tarball in the body with fromSrc=-")
		}
		img, err := b.Import(r.Context(), r.Body, image.ImportOptions{
			Repo: q.Get("repo"), Tag: q.Get("tag"), Changes: q["changes"], Message: q.Get("message"),
		})
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		return json.NewEncoder(w).Encode(jsonstream.Message{Status: img.ID})
	}
	from := q.Get("fromImage")
	if from == "" {
		return errdefs.InvalidParameter("fromImage or fromSrc is required")
	}
	ref := from
	if tag := q.Get("tag"); tag != "" {
		named, err := reference.ParseNormalizedNamed(from)
		if err != nil {
			return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference format %q", from)
		}
		if d, err := digest.Parse(tag); err == nil {
			c, err := reference.WithDigest(reference.TrimNamed(named), d)
			if err != nil {
				return errdefs.Wrap(errdefs.KindInvalidParameter, err)
			}
			ref = c.String()
		} else {
			t, err := reference.WithTag(reference.TrimNamed(named), tag)
			if err != nil {
				return errdefs.Wrap(errdefs.KindInvalidParameter, err)
			}
			ref = t.String()
		}
	}
	auth := registryAuth(r)
	return streamProgress(w, func(out io.Writer) error {
		_, err := b.Pull(r.Context(), ref, auth, out)
		return err
	})
}

func (s *Server) saveImages(w http.ResponseWriter, r *http.Request, names []string) error {
	if len(names) == 0 {
		return errdefs.InvalidParameter("no image names given")
	}
	sw := &lazyWriter{w: w, contentType: "application/x-tar"}
	err := s.b.Images.Save(r.Context(), names, sw)
	if err != nil && sw.started {
		// Half a tarball went out: cut the connection so the client cannot
		// take it for a whole one.
		s.log.Error("image save failed mid-stream", "names", names, "err", err)
		panic(http.ErrAbortHandler)
	}
	return err
}

// streamProgress runs op with a JSON progress stream. Errors before the
// first message get a plain status and {"message"} (the docker CLI relies
// on a 404 for an unknown image); later ones end the stream as docker does.
func streamProgress(w http.ResponseWriter, op func(io.Writer) error) error {
	sw := &lazyWriter{w: w, contentType: "application/json", flush: true}
	err := op(sw)
	if err == nil {
		if !sw.started {
			sw.start()
		}
		return nil
	}
	if !sw.started {
		return err
	}
	return image.WriteStreamError(sw, err)
}

// lazyWriter sends the 200 header with the first byte, so an operation
// that fails before producing output can still answer with an error status.
type lazyWriter struct {
	w           http.ResponseWriter
	contentType string
	flush       bool
	started     bool
}

func (l *lazyWriter) start() {
	l.w.Header().Set("Content-Type", l.contentType)
	l.w.WriteHeader(http.StatusOK)
	l.started = true
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	n, err := l.w.Write(p)
	if l.flush {
		if f, ok := l.w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return n, err
}

// splitAction splits "NAME/ACTION" for one of actions.
func splitAction(rest string, actions ...string) (name, action string) {
	for _, a := range actions {
		if n, ok := strings.CutSuffix(rest, "/"+a); ok && n != "" {
			return n, a
		}
	}
	return rest, ""
}

// registryAuth decodes X-Registry-Auth (base64url JSON). Like docker, a
// malformed header counts as no credentials.
func registryAuth(r *http.Request) *registry.AuthConfig {
	h := strings.TrimSpace(r.Header.Get(registry.AuthHeader))
	if h == "" {
		return nil
	}
	for _, enc := range []*base64.Encoding{base64.URLEncoding, base64.StdEncoding, base64.RawURLEncoding, base64.RawStdEncoding} {
		b, err := enc.DecodeString(h)
		if err != nil {
			continue
		}
		var a registry.AuthConfig
		if json.Unmarshal(b, &a) == nil {
			return &a
		}
	}
	return nil
}
