// Package registry is a private image registry speaking the OCI
// distribution API (what `docker push`/`pull` and go-containerregistry
// use), with all state on disk so it survives restarts:
//
//	blobs/sha256/<hex>                  content, manifests included
//	uploads/<id>                        upload sessions (never visible as blobs)
//	repos/<name>/_manifests/sha256/<hex> the repository has this manifest (file holds its media type)
//	repos/<name>/_tags/<tag>            the tag's manifest digest
//
// Repository path components cannot start with "_", so the bookkeeping
// directories never clash with a nested repository name. Every visible
// file appears by rename(2): a blob only after its digest was verified, a
// manifest only after every blob it references is present.
package registry

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Config configures a registry.
type Config struct {
	Root string // storage directory
	Log  *slog.Logger
}

type registry struct {
	root string
	log  *slog.Logger

	umu      sync.Mutex
	sessions map[string]*sync.Mutex // upload id -> its lock
}

var (
	nameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)
	tagRe  = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
)

const maxManifest = 4 << 20

// Media types the registry checks references of.
const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerForeign  = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

// New opens (creating) a registry under cfg.Root. Upload sessions left by a
// previous run are dropped: they never became blobs.
func New(cfg Config) (http.Handler, error) {
	if cfg.Root == "" {
		return nil, errors.New("registry: empty root")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.RemoveAll(filepath.Join(cfg.Root, "uploads")); err != nil {
		return nil, err
	}
	for _, d := range []string{"blobs/sha256", "uploads", "repos"} {
		if err := os.MkdirAll(filepath.Join(cfg.Root, d), 0o755); err != nil {
			return nil, err
		}
	}
	return &registry{root: cfg.Root, log: cfg.Log, sessions: map[string]*sync.Mutex{}}, nil
}

// Server is a registry listening on a TCP address.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Start serves a registry on addr ("host:port", port 0 picks one).
func Start(addr string, cfg Config) (*Server, error) {
	h, err := New(cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{srv: &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second}, ln: ln, done: make(chan error, 1)}
	go func() { s.done <- s.srv.Serve(ln) }()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, letting requests in flight finish for a while.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Serve runs a registry on addr until ctx ends.
func Serve(ctx context.Context, addr string, cfg Config) error {
	s, err := Start(addr, cfg)
	if err != nil {
		return err
	}
	if cfg.Log != nil {
		cfg.Log.Info("registry listening", "addr", s.Addr(), "root", cfg.Root)
	}
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-s.done:
		return err
	}
}

// regError is an error in the distribution API's JSON form.
type regError struct {
	status int
	code   string
	msg    string
	detail any
}

func (e *regError) Error() string { return e.code + ": " + e.msg }

func errf(status int, code, format string, args ...any) *regError {
	return &regError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

var (
	errBlobUnknown     = func(d string) *regError { return &regError{404, "BLOB_UNKNOWN", "blob unknown to registry", d} }
	errManifestUnknown = func(r string) *regError { return &regError{404, "MANIFEST_UNKNOWN", "manifest unknown", r} }
	errUploadUnknown   = &regError{status: 404, code: "BLOB_UPLOAD_UNKNOWN", msg: "blob upload unknown to registry"}
)

func writeError(w http.ResponseWriter, e *regError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	type item struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	_ = json.NewEncoder(w).Encode(map[string][]item{"errors": {{e.code, e.msg, e.detail}}})
}

func (g *registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if err := g.route(w, r); err != nil {
		var re *regError
		if !errors.As(err, &re) {
			g.log.Error("registry request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			re = errf(http.StatusInternalServerError, "UNKNOWN", "%v", err)
		}
		writeError(w, re)
	}
}

func (g *registry) route(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if p == "/v2" || p == "/v2/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return nil
	}
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		return errf(http.StatusNotFound, "NOT_FOUND", "not found")
	}
	if rest == "_catalog" {
		return g.catalog(w, r)
	}
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	n := len(segs)
	name := func(k int) (string, error) {
		nm := strings.Join(segs[:n-k], "/")
		if !nameRe.MatchString(nm) || len(nm) > 255 {
			return "", &regError{400, "NAME_INVALID", "invalid repository name", nm}
		}
		return nm, nil
	}
	switch {
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		nm, err := name(2)
		if err != nil {
			return err
		}
		return g.tagsList(w, r, nm)
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		nm, err := name(2)
		if err != nil {
			return err
		}
		if r.Method != http.MethodPost {
			return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
		}
		return g.startUpload(w, r, nm)
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
		nm, err := name(3)
		if err != nil {
			return err
		}
		return g.upload(w, r, nm, segs[n-1])
	case n >= 3 && segs[n-2] == "blobs":
		nm, err := name(2)
		if err != nil {
			return err
		}
		return g.blob(w, r, nm, segs[n-1])
	case n >= 3 && segs[n-2] == "manifests":
		nm, err := name(2)
		if err != nil {
			return err
		}
		return g.manifest(w, r, nm, segs[n-1])
	}
	return errf(http.StatusNotFound, "NOT_FOUND", "not found")
}

func (g *registry) blobPath(d digest.Digest) string {
	return filepath.Join(g.root, "blobs", "sha256", d.Encoded())
}

func (g *registry) repoDir(name string) string {
	return filepath.Join(g.root, "repos", filepath.FromSlash(name))
}

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil || d.Algorithm() != digest.SHA256 {
		return "", &regError{400, "DIGEST_INVALID", "provided digest did not match uploaded content", s}
	}
	return d, nil
}

func (g *registry) hasBlob(d digest.Digest) bool {
	fi, err := os.Stat(g.blobPath(d))
	return err == nil && fi.Mode().IsRegular()
}

// --- blobs

func (g *registry) blob(w http.ResponseWriter, r *http.Request, name, ref string) error {
	d, err := parseDigest(ref)
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		f, err := os.Open(g.blobPath(d))
		if err != nil {
			if os.IsNotExist(err) {
				return errBlobUnknown(d.String())
			}
			return err
		}
		defer f.Close()
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Etag", `"`+d.String()+`"`)
		w.Header().Set("Cache-Control", "max-age=31536000")
		http.ServeContent(w, r, "", time.Time{}, f)
		return nil
	}
	return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "blob deletion is not supported")
}

// --- uploads

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (g *registry) uploadPath(id string) string { return filepath.Join(g.root, "uploads", id) }

func (g *registry) lockSession(id string) func() {
	g.umu.Lock()
	m, ok := g.sessions[id]
	if !ok {
		m = &sync.Mutex{}
		g.sessions[id] = m
	}
	g.umu.Unlock()
	m.Lock()
	return m.Unlock
}

func (g *registry) forgetSession(id string) {
	g.umu.Lock()
	delete(g.sessions, id)
	g.umu.Unlock()
}

var idRe = regexp.MustCompile(`^[a-f0-9]{32}$`)

func (g *registry) startUpload(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		d, err := parseDigest(m)
		if err != nil {
			return err
		}
		if g.hasBlob(d) {
			w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
			w.Header().Set("Docker-Content-Digest", d.String())
			w.WriteHeader(http.StatusCreated)
			return nil
		}
	}
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		f, err := os.CreateTemp(filepath.Join(g.root, "uploads"), "mono-")
		if err != nil {
			return err
		}
		tmp := f.Name()
		defer os.Remove(tmp)
		_, err = io.Copy(f, r.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return &regError{400, "BLOB_UPLOAD_INVALID", "blob upload invalid", err.Error()}
		}
		if err := g.commit(tmp, d); err != nil {
			return err
		}
		w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
		w.Header().Set("Docker-Content-Digest", d.String())
		w.WriteHeader(http.StatusCreated)
		return nil
	}
	id := newID()
	f, err := os.Create(g.uploadPath(id))
	if err != nil {
		return err
	}
	f.Close()
	w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
	w.Header().Set("Docker-Upload-UUID", id)
	w.Header().Set("Range", "0-0")
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// commit verifies tmp against d and renames it into the blob store.
func (g *registry) commit(tmp string, d digest.Digest) error {
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.String() {
		return &regError{400, "DIGEST_INVALID", "provided digest did not match uploaded content", map[string]string{"expected": d.String(), "actual": got}}
	}
	if g.hasBlob(d) {
		return os.Remove(tmp)
	}
	return os.Rename(tmp, g.blobPath(d))
}

func (g *registry) upload(w http.ResponseWriter, r *http.Request, name, id string) error {
	if !idRe.MatchString(id) {
		return errUploadUnknown
	}
	unlock := g.lockSession(id)
	defer unlock()
	path := g.uploadPath(id)
	fi, err := os.Stat(path)
	if err != nil {
		return errUploadUnknown
	}
	size := fi.Size()
	progress := func(status int, size int64) {
		w.Header().Set("Location", "/v2/"+name+"/blobs/uploads/"+id)
		w.Header().Set("Docker-Upload-UUID", id)
		end := size - 1
		if end < 0 {
			end = 0
		}
		w.Header().Set("Range", "0-"+strconv.FormatInt(end, 10))
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(status)
	}
	switch r.Method {
	case http.MethodGet:
		progress(http.StatusNoContent, size)
		return nil
	case http.MethodDelete:
		_ = os.Remove(path)
		g.forgetSession(id)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch, http.MethodPut:
		if cr := r.Header.Get("Content-Range"); cr != "" && r.Method == http.MethodPatch {
			start, _, ok := strings.Cut(strings.TrimPrefix(cr, "bytes="), "-")
			if n, err := strconv.ParseInt(start, 10, 64); !ok || err != nil || n != size {
				w.Header().Set("Range", fmt.Sprintf("0-%d", max(size-1, 0)))
				return &regError{http.StatusRequestedRangeNotSatisfiable, "BLOB_UPLOAD_INVALID", "content range does not continue the upload", cr}
			}
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		size += n
		if err != nil {
			// What arrived stays in the session; it never becomes a blob
			// unless a final PUT's digest matches the whole content.
			return &regError{400, "BLOB_UPLOAD_INVALID", "blob upload invalid", err.Error()}
		}
		if r.Method == http.MethodPatch {
			progress(http.StatusAccepted, size)
			return nil
		}
		d, err := parseDigest(r.URL.Query().Get("digest"))
		if err != nil {
			return err
		}
		if err := g.commit(path, d); err != nil {
			var re *regError
			if errors.As(err, &re) {
				_ = os.Remove(path) // a wrong digest ends the session
				g.forgetSession(id)
			}
			return err
		}
		g.forgetSession(id)
		w.Header().Set("Location", "/v2/"+name+"/blobs/"+d.String())
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusCreated)
		return nil
	}
	return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
}

// --- manifests

func (g *registry) revisionPath(name string, d digest.Digest) string {
	return filepath.Join(g.repoDir(name), "_manifests", "sha256", d.Encoded())
}

func (g *registry) tagPath(name, tag string) string {
	return filepath.Join(g.repoDir(name), "_tags", tag)
}

// resolve maps a tag or digest to a manifest digest of the repository.
func (g *registry) resolve(name, ref string) (digest.Digest, string, error) {
	var d digest.Digest
	if strings.Contains(ref, ":") {
		var err error
		if d, err = parseDigest(ref); err != nil {
			return "", "", err
		}
	} else {
		if !tagRe.MatchString(ref) {
			return "", "", &regError{400, "TAG_INVALID", "manifest tag did not match URI", ref}
		}
		b, err := os.ReadFile(g.tagPath(name, ref))
		if err != nil {
			return "", "", errManifestUnknown(ref)
		}
		if d, err = digest.Parse(strings.TrimSpace(string(b))); err != nil {
			return "", "", fmt.Errorf("tag %s of %s is corrupt: %w", ref, name, err)
		}
	}
	mt, err := os.ReadFile(g.revisionPath(name, d))
	if err != nil || !g.hasBlob(d) {
		return "", "", errManifestUnknown(ref)
	}
	return d, string(mt), nil
}

func (g *registry) manifest(w http.ResponseWriter, r *http.Request, name, ref string) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		d, mt, err := g.resolve(name, ref)
		if err != nil {
			return err
		}
		f, err := os.Open(g.blobPath(d))
		if err != nil {
			return errManifestUnknown(ref)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", mt)
		w.Header().Set("Docker-Content-Digest", d.String())
		w.Header().Set("Etag", `"`+d.String()+`"`)
		w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, err = io.Copy(w, f)
		}
		return err
	case http.MethodPut:
		return g.putManifest(w, r, name, ref)
	case http.MethodDelete:
		return g.deleteManifest(w, name, ref)
	}
	return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
}

type manifestRefs struct {
	MediaType string               `json:"mediaType"`
	Config    *ocispec.Descriptor  `json:"config"`
	Layers    []ocispec.Descriptor `json:"layers"`
	Manifests []ocispec.Descriptor `json:"manifests"`
	Subject   *ocispec.Descriptor  `json:"subject"`
}

func (g *registry) putManifest(w http.ResponseWriter, r *http.Request, name, ref string) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifest+1))
	if err != nil {
		return &regError{400, "MANIFEST_INVALID", "manifest invalid", err.Error()}
	}
	if len(body) > maxManifest {
		return &regError{400, "SIZE_INVALID", "manifest too large", maxManifest}
	}
	var m manifestRefs
	if err := json.Unmarshal(body, &m); err != nil {
		return &regError{400, "MANIFEST_INVALID", "manifest invalid", err.Error()}
	}
	mt := r.Header.Get("Content-Type")
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	if mt == "" || mt == "application/json" || mt == "application/octet-stream" {
		mt = m.MediaType
	}
	switch mt {
	case ocispec.MediaTypeImageManifest, mtDockerManifest:
		if m.Config == nil {
			return &regError{400, "MANIFEST_INVALID", "manifest invalid", "no config"}
		}
		for _, d := range append([]ocispec.Descriptor{*m.Config}, m.Layers...) {
			if d.MediaType == mtDockerForeign || d.MediaType == ocispec.MediaTypeImageLayerNonDistributable || len(d.URLs) > 0 { //nolint:staticcheck // foreign layers live elsewhere
				continue
			}
			if _, err := digest.Parse(d.Digest.String()); err != nil || d.Digest.Algorithm() != digest.SHA256 || !g.hasBlob(d.Digest) {
				return &regError{400, "MANIFEST_BLOB_UNKNOWN", "blob unknown to registry", d.Digest.String()}
			}
		}
	case ocispec.MediaTypeImageIndex, mtDockerList:
		for _, d := range m.Manifests {
			if d.Digest.Validate() != nil || d.Digest.Algorithm() != digest.SHA256 {
				return &regError{400, "MANIFEST_INVALID", "manifest invalid", d.Digest.String()}
			}
			if _, err := os.Stat(g.revisionPath(name, d.Digest)); err != nil {
				return &regError{400, "MANIFEST_BLOB_UNKNOWN", "manifest unknown to registry", d.Digest.String()}
			}
		}
	default:
		return &regError{400, "MANIFEST_INVALID", "manifest invalid", "unsupported media type " + strconv.Quote(mt)}
	}
	d := digest.FromBytes(body)
	tag := ""
	if strings.Contains(ref, ":") {
		want, err := parseDigest(ref)
		if err != nil {
			return err
		}
		if want != d {
			return &regError{400, "DIGEST_INVALID", "provided digest did not match uploaded content", map[string]string{"expected": want.String(), "actual": d.String()}}
		}
	} else {
		if !tagRe.MatchString(ref) {
			return &regError{400, "TAG_INVALID", "manifest tag did not match URI", ref}
		}
		tag = ref
	}
	if !g.hasBlob(d) {
		if err := writeAtomic(g.blobPath(d), body); err != nil {
			return err
		}
	}
	if err := writeAtomic(g.revisionPath(name, d), []byte(mt)); err != nil {
		return err
	}
	if tag != "" {
		if err := writeAtomic(g.tagPath(name, tag), []byte(d.String())); err != nil {
			return err
		}
	}
	w.Header().Set("Location", "/v2/"+name+"/manifests/"+d.String())
	w.Header().Set("Docker-Content-Digest", d.String())
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (g *registry) deleteManifest(w http.ResponseWriter, name, ref string) error {
	if !strings.Contains(ref, ":") {
		if !tagRe.MatchString(ref) {
			return &regError{400, "TAG_INVALID", "invalid tag", ref}
		}
		if err := os.Remove(g.tagPath(name, ref)); err != nil {
			return errManifestUnknown(ref)
		}
		w.WriteHeader(http.StatusAccepted)
		return nil
	}
	d, _, err := g.resolve(name, ref)
	if err != nil {
		return err
	}
	tags, _ := os.ReadDir(filepath.Join(g.repoDir(name), "_tags"))
	for _, t := range tags {
		if b, err := os.ReadFile(g.tagPath(name, t.Name())); err == nil && strings.TrimSpace(string(b)) == d.String() {
			_ = os.Remove(g.tagPath(name, t.Name()))
		}
	}
	if err := os.Remove(g.revisionPath(name, d)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// writeAtomic writes data beside path and renames it into place.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// --- listings

func paginate(w http.ResponseWriter, r *http.Request, all []string, link func(last string, n int) string) ([]string, error) {
	q := r.URL.Query()
	if last := q.Get("last"); last != "" {
		i := sort.SearchStrings(all, last)
		if i < len(all) && all[i] == last {
			i++
		}
		all = all[i:]
	}
	if ns := q.Get("n"); ns != "" {
		n, err := strconv.Atoi(ns)
		if err != nil || n < 0 {
			return nil, &regError{400, "PAGINATION_NUMBER_INVALID", "invalid number of results requested", ns}
		}
		if n < len(all) {
			all = all[:n]
			if n > 0 {
				w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next"`, link(all[n-1], n)))
			}
		}
	}
	return all, nil
}

func (g *registry) tagsList(w http.ResponseWriter, r *http.Request, name string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
	if _, err := os.Stat(filepath.Join(g.repoDir(name), "_manifests")); err != nil {
		return &regError{404, "NAME_UNKNOWN", "repository name not known to registry", map[string]string{"name": name}}
	}
	ents, _ := os.ReadDir(filepath.Join(g.repoDir(name), "_tags"))
	tags := []string{}
	for _, e := range ents {
		if tagRe.MatchString(e.Name()) && e.Type().IsRegular() {
			tags = append(tags, e.Name())
		}
	}
	sort.Strings(tags)
	tags, err := paginate(w, r, tags, func(last string, n int) string {
		return fmt.Sprintf("/v2/%s/tags/list?last=%s&n=%d", name, last, n)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]any{"name": name, "tags": tags})
}

func (g *registry) catalog(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return errf(http.StatusMethodNotAllowed, "UNSUPPORTED", "method not allowed")
	}
	base := filepath.Join(g.root, "repos")
	repos := []string{}
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if d.Name() == "_manifests" || d.Name() == "_tags" {
			if d.Name() == "_manifests" {
				rel, _ := filepath.Rel(base, filepath.Dir(p))
				repos = append(repos, filepath.ToSlash(rel))
			}
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(repos)
	repos, err = paginate(w, r, repos, func(last string, n int) string {
		return fmt.Sprintf("/v2/_catalog?last=%s&n=%d", last, n)
	})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string][]string{"repositories": repos})
}
