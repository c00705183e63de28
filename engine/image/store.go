// Package image is the node's content-addressed image store: blobs by sha256,
// image records and repository references, and layers unpacked once per
// diffID for overlayfs. It loads and saves docker-save and OCI-layout
// archives, imports root filesystems, and pulls from and pushes to
// registries with go-containerregistry.
package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// Config configures the store.
type Config struct {
	Root               string   // e.g. /var/lib/shoal/image
	InsecureRegistries []string // host[:port] or CIDR, as dockerd's --insecure-registry
	Log                *slog.Logger
}

// Image is a stored image as the container runtime needs it. It is a copy:
// callers may keep and change it.
type Image struct {
	ID             string // "sha256:<config digest>"
	RepoTags       []string
	RepoDigests    []string
	Config         ocispec.Image
	LayerDirs      []string // unpacked layer directories, lowest first
	ManifestDigest string   // the stored manifest (what a push sends)
	Size           int64    // sum of the uncompressed layer sizes
}

// Usage tells which container uses an image.
type Usage struct {
	Container string // ID or name
	// State is "running", "stopped", or "" when the checker cannot tell.
	// A running container makes removal fail even with force.
	State string
}

// Store holds images. It is safe for concurrent use.
type Store struct {
	cfg        Config
	log        *slog.Logger
	privileged bool
	insecure   insecureSet

	mu     sync.RWMutex
	images map[string]*entry // by ID
	refs   map[string]string // normalized reference -> image ID
	layers map[digest.Digest]layerMeta
	leases map[digest.Digest]int // content in use by operations in flight
	usage  func(imageID string) (Usage, bool)

	lmu    sync.Mutex
	llocks map[digest.Digest]*layerLock

	unpacks atomic.Int64 // layers unpacked since open (tests check once-per-diffID)
}

type imageRecord struct {
	ID          string        `json:"id"`
	Manifest    digest.Digest `json:"manifest"`
	Added       time.Time     `json:"added"`
	LastTagTime time.Time     `json:"lastTagTime,omitzero"`
	// Hidden marks an image removed with force while a container still
	// used it: it keeps its layers, resolves only by full ID, and goes at
	// the next collection once no container uses it (docker keeps such
	// layers alive the same way).
	Hidden bool `json:"hidden,omitempty"`
}

type entry struct {
	rec          imageRecord
	manifest     ocispec.Manifest
	manifestSize int64
	rawConfig    []byte
	config       ocispec.Image
}

func (e *entry) diffIDs() []digest.Digest { return e.config.RootFS.DiffIDs }

const (
	maxConfigSize   = 8 << 20
	maxManifestSize = 4 << 20
)

// NewStore opens (creating if needed) the store under cfg.Root. It clears
// staging leftovers, drops records whose content is incomplete (a crash
// between renames) and collects unreferenced content.
func NewStore(cfg Config) (*Store, error) {
	if cfg.Root == "" {
		return nil, errors.New("image store: empty root")
	}
	s := &Store{
		cfg:        cfg,
		log:        cfg.Log,
		privileged: os.Geteuid() == 0,
		images:     map[string]*entry{},
		refs:       map[string]string{},
		layers:     map[digest.Digest]layerMeta{},
		leases:     map[digest.Digest]int{},
		llocks:     map[digest.Digest]*layerLock{},
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	var err error
	if s.insecure, err = parseInsecure(cfg.InsecureRegistries); err != nil {
		return nil, err
	}
	if err := removeAll(filepath.Join(cfg.Root, "tmp")); err != nil {
		return nil, err
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.Root, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := s.loadLayers(); err != nil {
		return nil, err
	}
	if err := s.loadImages(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.gcLocked()
	s.mu.Unlock()
	return s, nil
}

func (s *Store) loadLayers() error {
	dir := filepath.Join(s.cfg.Root, "layers", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(filepath.Join(p, "meta.json"))
		var m layerMeta
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil || m.DiffID.Encoded() != de.Name() {
			s.log.Warn("image store: dropping unreadable layer", "dir", p, "err", err)
			_ = removeAll(p)
			continue
		}
		if m.Whiteouts == whiteoutsAUFS && s.privileged {
			if err := convertAUFS(filepath.Join(p, "fs")); err != nil {
				return fmt.Errorf("converting whiteouts of layer %s: %w", m.DiffID, err)
			}
			m.Whiteouts = whiteoutsOverlay
			mb, _ := json.Marshal(m)
			if err := writeFileAtomic(filepath.Join(p, "meta.json"), mb, filepath.Join(s.cfg.Root, "tmp")); err != nil {
				return err
			}
		}
		s.layers[m.DiffID] = m
	}
	return nil
}

func (s *Store) loadImages() error {
	dir := filepath.Join(s.cfg.Root, "images")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, de := range ents {
		if !strings.HasSuffix(de.Name(), ".json") {
			continue
		}
		p := filepath.Join(dir, de.Name())
		b, err := os.ReadFile(p)
		var rec imageRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		var e *entry
		if err == nil {
			e, err = s.loadEntry(rec)
		}
		if err != nil {
			s.log.Warn("image store: dropping incomplete image", "record", p, "err", err)
			_ = os.Remove(p)
			continue
		}
		s.images[rec.ID] = e
	}
	b, err := os.ReadFile(filepath.Join(s.cfg.Root, "refs.json"))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err == nil {
		var refs map[string]string
		if err := json.Unmarshal(b, &refs); err != nil {
			return fmt.Errorf("image store: refs.json: %w", err)
		}
		for r, id := range refs {
			if e, ok := s.images[id]; ok && !e.rec.Hidden {
				s.refs[r] = id
			}
		}
	}
	return nil
}

// loadEntry reads an image's manifest and config and checks its layers.
func (s *Store) loadEntry(rec imageRecord) (*entry, error) {
	mb, err := s.readBlob(rec.Manifest, maxManifestSize)
	if err != nil {
		return nil, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, err
	}
	cb, err := s.readBlob(m.Config.Digest, maxConfigSize)
	if err != nil {
		return nil, err
	}
	if id := digest.FromBytes(cb).String(); id != rec.ID {
		return nil, fmt.Errorf("config digest %s does not match image ID %s", id, rec.ID)
	}
	e := &entry{rec: rec, manifest: m, manifestSize: int64(len(mb)), rawConfig: cb}
	if err := json.Unmarshal(cb, &e.config); err != nil {
		return nil, err
	}
	if len(e.diffIDs()) != len(m.Layers) {
		return nil, fmt.Errorf("manifest has %d layers, config %d", len(m.Layers), len(e.diffIDs()))
	}
	for i, d := range e.diffIDs() {
		if _, ok := s.layers[d]; !ok {
			return nil, fmt.Errorf("layer %s is missing", d)
		}
		if !s.hasBlob(m.Layers[i].Digest) {
			return nil, fmt.Errorf("layer blob %s is missing", m.Layers[i].Digest)
		}
	}
	return e, nil
}

// SetUsageChecker lets the store refuse to remove images containers use.
// The checker cannot tell running from stopped containers; SetUsageFunc can.
func (s *Store) SetUsageChecker(f func(imageID string) (containerRef string, used bool)) {
	s.SetUsageFunc(func(id string) (Usage, bool) {
		ref, used := f(id)
		return Usage{Container: ref}, used
	})
}

// SetUsageFunc is SetUsageChecker with the container's state.
func (s *Store) SetUsageFunc(f func(imageID string) (Usage, bool)) {
	s.mu.Lock()
	s.usage = f
	s.mu.Unlock()
}

// Get resolves a name[:tag], name@digest, full or short ID, as docker does.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, _, err := s.resolveLocked(ref)
	if err != nil {
		return nil, err
	}
	return s.imageLocked(e), nil
}

// Count returns the number of images (for /info).
func (s *Store) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, e := range s.images {
		if !e.rec.Hidden {
			n++
		}
	}
	return n
}

// resolveLocked finds the image ref names. matched is the normalized
// reference that named it, or "" when ref was an ID.
func (s *Store) resolveLocked(ref string) (e *entry, matched string, err error) {
	if ref == "" {
		return nil, "", errdefs.InvalidParameter("image name cannot be blank")
	}
	if fullIDRe.MatchString(ref) {
		if e, ok := s.images["sha256:"+strings.TrimPrefix(ref, "sha256:")]; ok {
			return e, "", nil
		}
	}
	if named, err := reference.ParseNormalizedNamed(ref); err == nil {
		named = reference.TagNameOnly(named)
		if id, ok := s.refs[named.String()]; ok {
			if e, ok := s.images[id]; ok {
				return e, named.String(), nil
			}
		}
	}
	if idPrefixR.MatchString(ref) {
		prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
		var found *entry
		for id, e := range s.images {
			if e.rec.Hidden || !strings.HasPrefix(id, prefix) {
				continue
			}
			if found != nil {
				return nil, "", errdefs.NotFound("No such image: %s (ambiguous short ID)", ref)
			}
			found = e
		}
		if found != nil {
			return found, "", nil
		}
	}
	return nil, "", errdefs.NotFound("No such image: %s", ref)
}

func (s *Store) imageLocked(e *entry) *Image {
	tags, digests := refsFor(s.refs, e.rec.ID)
	img := &Image{
		ID:             e.rec.ID,
		RepoTags:       familiarAll(tags),
		RepoDigests:    familiarAll(digests),
		ManifestDigest: e.rec.Manifest.String(),
	}
	// A fresh decode, so callers cannot alias the cached config.
	_ = json.Unmarshal(e.rawConfig, &img.Config)
	for _, d := range e.diffIDs() {
		img.LayerDirs = append(img.LayerDirs, s.layerFS(d))
		img.Size += s.layers[d].Size
	}
	return img
}

func (s *Store) sizeLocked(e *entry) int64 {
	var n int64
	for _, d := range e.diffIDs() {
		n += s.layers[d].Size
	}
	return n
}

func familiarAll(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, familiar(r))
	}
	return out
}

// lease pins content while an operation adds it, so a concurrent collection
// cannot remove a layer or blob between "it exists" and "an image uses it".
type lease struct {
	s    *Store
	held map[digest.Digest]bool
}

func (s *Store) newLease() *lease { return &lease{s: s, held: map[digest.Digest]bool{}} }

func (l *lease) add(d digest.Digest) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	if !l.held[d] {
		l.held[d] = true
		l.s.leases[d]++
	}
}

// release unpins; after a failed operation it also collects what the
// operation added, so bad input leaves nothing behind.
func (l *lease) release(failed bool) {
	l.s.mu.Lock()
	defer l.s.mu.Unlock()
	for d := range l.held {
		if l.s.leases[d]--; l.s.leases[d] <= 0 {
			delete(l.s.leases, d)
		}
	}
	l.held = nil
	if failed {
		l.s.gcLocked()
	}
}

// newImage is an image about to be committed.
type newImage struct {
	manifest []byte
	config   []byte
	tags     []reference.NamedTagged
	digests  []reference.Canonical
}

// commitImage stores the manifest and config blobs, writes the image record
// (unless the image exists) and points the references at it. Layers and
// layer blobs must already be stored (under l).
func (s *Store) commitImage(l *lease, ni newImage) (*entry, error) {
	l.add(digest.FromBytes(ni.manifest))
	l.add(digest.FromBytes(ni.config))
	md, err := s.putBlob(ni.manifest)
	if err != nil {
		return nil, err
	}
	cd, err := s.putBlob(ni.config)
	if err != nil {
		return nil, err
	}
	id := cd.String()

	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.images[id]
	if !ok || e.rec.Hidden {
		rec := imageRecord{ID: id, Manifest: md, Added: time.Now().UTC()}
		if ok {
			rec = e.rec
			rec.Hidden = false
		}
		ne, err := s.loadEntry(rec)
		if err != nil {
			return nil, err
		}
		if err := s.writeRecordLocked(rec); err != nil {
			return nil, err
		}
		s.images[id] = ne
		e = ne
	}
	changed := false
	for _, t := range ni.tags {
		if s.refs[t.String()] != id {
			s.refs[t.String()] = id
			changed = true
		}
	}
	for _, d := range ni.digests {
		if s.refs[d.String()] != id {
			s.refs[d.String()] = id
			changed = true
		}
	}
	if changed {
		if len(ni.tags) > 0 {
			e.rec.LastTagTime = time.Now().UTC()
			if err := s.writeRecordLocked(e.rec); err != nil {
				return nil, err
			}
		}
		if err := s.saveRefsLocked(); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (s *Store) writeRecordLocked(rec imageRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.cfg.Root, "images", digest.Digest(rec.ID).Encoded()+".json"), b, filepath.Join(s.cfg.Root, "tmp"))
}

func (s *Store) saveRefsLocked() error {
	b, err := json.MarshalIndent(s.refs, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.cfg.Root, "refs.json"), b, filepath.Join(s.cfg.Root, "tmp"))
}

// deleteImageLocked removes an image record and its references.
func (s *Store) deleteImageLocked(id string) error {
	if err := os.Remove(filepath.Join(s.cfg.Root, "images", digest.Digest(id).Encoded()+".json")); err != nil && !os.IsNotExist(err) {
		return err
	}
	delete(s.images, id)
	for r, i := range s.refs {
		if i == id {
			delete(s.refs, r)
		}
	}
	return s.saveRefsLocked()
}

// collect drops hidden images no container uses any more, then removes
// unreferenced content. The usage checker is called without the store lock:
// the container runtime may hold its own lock while calling Get.
func (s *Store) collect() []digest.Digest {
	s.mu.RLock()
	usage := s.usage
	var hidden []string
	for id, e := range s.images {
		if e.rec.Hidden {
			hidden = append(hidden, id)
		}
	}
	s.mu.RUnlock()
	var unused []string
	if usage != nil {
		for _, id := range hidden {
			if _, used := usage(id); !used {
				unused = append(unused, id)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range unused {
		if e, ok := s.images[id]; ok && e.rec.Hidden {
			if err := s.deleteImageLocked(id); err != nil {
				s.log.Warn("image store: removing hidden image", "id", id, "err", err)
			}
		}
	}
	return s.gcLocked()
}

// gcLocked removes layers and blobs no image references and no operation
// has leased. It returns the removed layers' diffIDs.
func (s *Store) gcLocked() []digest.Digest {
	usedLayers := map[digest.Digest]bool{}
	usedBlobs := map[digest.Digest]bool{}
	for _, e := range s.images {
		usedBlobs[e.rec.Manifest] = true
		usedBlobs[e.manifest.Config.Digest] = true
		for _, l := range e.manifest.Layers {
			usedBlobs[l.Digest] = true
		}
		for _, d := range e.diffIDs() {
			usedLayers[d] = true
		}
	}
	var removed []digest.Digest
	tmp := filepath.Join(s.cfg.Root, "tmp")
	for d, m := range s.layers {
		if usedLayers[d] || s.leases[d] > 0 {
			usedBlobs[m.Blob.Digest] = true
			continue
		}
		// Rename first: a half-removed tree is never visible at its address.
		trash, err := os.MkdirTemp(tmp, "gc-")
		if err == nil {
			err = os.Rename(s.layerPath(d), filepath.Join(trash, "layer"))
		}
		if err != nil && !os.IsNotExist(err) {
			s.log.Warn("image store: removing layer", "diffID", d, "err", err)
			continue
		}
		delete(s.layers, d)
		removed = append(removed, d)
		if trash != "" {
			_ = removeAll(trash)
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.cfg.Root, "blobs", "sha256"))
	if err != nil {
		return removed
	}
	for _, de := range ents {
		d := digest.NewDigestFromEncoded(digest.SHA256, de.Name())
		if usedBlobs[d] || s.leases[d] > 0 {
			continue
		}
		_ = os.Remove(s.blobPath(d))
	}
	return removed
}

// LayersSize is the size of every layer the store holds, each counted
// once however many images share it (`docker system df`).
func (s *Store) LayersSize() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var n int64
	for _, m := range s.layers {
		n += m.Size
	}
	return n
}

// SharedSizes returns, by image ID, the size of the image's layers that
// other images use too (`docker system df`'s SHARED SIZE).
func (s *Store) SharedSizes() map[string]int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	refs := map[digest.Digest]int{}
	for _, e := range s.images {
		seen := map[digest.Digest]bool{}
		for _, d := range e.diffIDs() {
			if !seen[d] {
				seen[d] = true
				refs[d]++
			}
		}
	}
	out := make(map[string]int64, len(s.images))
	for id, e := range s.images {
		seen := map[digest.Digest]bool{}
		var n int64
		for _, d := range e.diffIDs() {
			if !seen[d] && refs[d] > 1 {
				n += s.layers[d].Size
			}
			seen[d] = true
		}
		out[id] = n
	}
	return out
}
