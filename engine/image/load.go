package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// Loaded is one image a load stored.
type Loaded struct {
	ID   string
	Tags []string // familiar form, as "Loaded image: X" prints them
}

// archiveImage is one image found in an archive, before anything is stored.
type archiveImage struct {
	configPath string
	config     []byte
	manifest   []byte // the archive's own manifest (OCI layout), kept if usable
	layers     []archiveLayer
	tags       []reference.NamedTagged
}

type archiveLayer struct {
	path      string
	digest    digest.Digest // "" when the archive does not say (docker-save layer.tar)
	mediaType string
}

// Load imports every image of a docker-save or OCI-layout tarball (plain
// or gzipped). It is all or nothing for bad input: the archive is unpacked
// into staging, every image, config and layer is checked against its
// digests, and only then are images and tags made visible. On error, what
// the load had added is collected again.
func (s *Store) Load(ctx context.Context, r io.Reader) (loaded []Loaded, err error) {
	stage, err := os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), "load-")
	if err != nil {
		return nil, err
	}
	defer removeAll(stage)
	if err := extractArchive(ctx, r, stage); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(stage)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	var imgs []archiveImage
	switch {
	case exists(root, "manifest.json"):
		imgs, err = readDockerArchive(root)
	case exists(root, "index.json"):
		imgs, err = readOCILayout(root)
	default:
		err = errdefs.InvalidParameter("invalid archive: it holds neither manifest.json (docker save) nor index.json (OCI layout)")
	}
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errdefs.InvalidParameter("invalid archive: no images in it")
	}

	l := s.newLease()
	defer func() { l.release(err != nil) }()
	prepared := make([]newImage, 0, len(imgs))
	for _, ai := range imgs {
		ni, err := s.prepareArchiveImage(ctx, l, root, ai)
		if err != nil {
			return nil, err
		}
		prepared = append(prepared, ni)
	}
	for i, ni := range prepared {
		e, err := s.commitImage(l, ni)
		if err != nil {
			return nil, err
		}
		ld := Loaded{ID: e.rec.ID}
		for _, t := range imgs[i].tags {
			ld.Tags = append(ld.Tags, reference.FamiliarString(t))
		}
		loaded = append(loaded, ld)
	}
	return loaded, nil
}

func exists(root *os.Root, name string) bool {
	_, err := root.Stat(name)
	return err == nil
}

func invalidArchive(err error, format string, args ...any) error {
	return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid archive: "+format, args...)
}

// extractArchive unpacks the outer archive into dir. Only files,
// directories and links that stay inside dir are accepted.
func extractArchive(ctx context.Context, r io.Reader, dir string) error {
	br := bufio.NewReaderSize(ctxReader{ctx, r}, 64<<10)
	var src io.Reader = br
	if head, _ := br.Peek(2); sniff(head) == compGzip {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return invalidArchive(err, "bad gzip stream")
		}
		defer zr.Close()
		src = zr
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tail := &tailReader{r: src}
	tr := tar.NewReader(tail)
	n := 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if !tail.endsWithZeroBlock() {
				return errdefs.InvalidParameter("invalid archive: truncated tar stream (no end-of-archive marker)")
			}
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return invalidArchive(err, "bad tar stream")
		}
		n++
		name := cleanName(hdr.Name)
		if name == "" {
			continue
		}
		if d := path.Dir(name); d != "." {
			if err := root.MkdirAll(d, 0o700); err != nil {
				return invalidArchive(err, "entry %q", hdr.Name)
			}
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = root.MkdirAll(name, 0o700)
		case tar.TypeReg, tar.TypeRegA:
			var f *os.File
			f, err = root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
			if err == nil {
				_, err = io.Copy(f, tr)
				if cerr := f.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		case tar.TypeSymlink:
			err = root.Symlink(hdr.Linkname, name)
		case tar.TypeLink:
			err = root.Link(cleanName(hdr.Linkname), name)
		case tar.TypeXGlobalHeader:
		default:
			err = fmt.Errorf("unsupported entry type %q", hdr.Typeflag)
		}
		if err != nil {
			return invalidArchive(err, "entry %q", hdr.Name)
		}
	}
	if n == 0 {
		return errdefs.InvalidParameter("invalid archive: empty tar stream")
	}
	return nil
}

func readArchiveFile(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.Open(cleanName(name))
	if err != nil {
		return nil, invalidArchive(err, "missing %s", name)
	}
	defer f.Close()
	b, err := readAllLimit(f, limit)
	if err != nil {
		return nil, invalidArchive(err, "reading %s", name)
	}
	return b, nil
}

// blobDigest is the digest an OCI-layout path promises ("blobs/sha256/<hex>").
func blobDigest(p string) digest.Digest {
	p = cleanName(p)
	if hex, ok := strings.CutPrefix(p, "blobs/sha256/"); ok {
		if d, ok := validDigest("sha256:" + hex); ok {
			return d
		}
	}
	return ""
}

type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func readDockerArchive(root *os.Root) ([]archiveImage, error) {
	b, err := readArchiveFile(root, "manifest.json", maxManifestSize)
	if err != nil {
		return nil, err
	}
	var entries []dockerManifestEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, invalidArchive(err, "manifest.json")
	}
	var out []archiveImage
	for _, me := range entries {
		ai := archiveImage{configPath: me.Config}
		if ai.config, err = readArchiveFile(root, me.Config, maxConfigSize); err != nil {
			return nil, err
		}
		if want := blobDigest(me.Config); want != "" {
			if err := verifyDigest(want, digest.FromBytes(ai.config), me.Config); err != nil {
				return nil, invalidArchive(err, "config")
			}
		}
		for _, t := range me.RepoTags {
			tagged, err := parseTagTarget(t)
			if err != nil {
				return nil, invalidArchive(err, "tag %q", t)
			}
			ai.tags = append(ai.tags, tagged)
		}
		for _, lp := range me.Layers {
			ai.layers = append(ai.layers, archiveLayer{path: cleanName(lp), digest: blobDigest(lp)})
		}
		out = append(out, ai)
	}
	return out, nil
}

const (
	annotationContainerdName = "io.containerd.image.name"
	mediaTypeDockerManifest  = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList      = "application/vnd.docker.distribution.manifest.list.v2+json"
)

func readOCILayout(root *os.Root) ([]archiveImage, error) {
	b, err := readArchiveFile(root, "index.json", maxManifestSize)
	if err != nil {
		return nil, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, invalidArchive(err, "index.json")
	}
	byDigest := map[digest.Digest]*archiveImage{}
	var order []digest.Digest
	var walk func(descs []ocispec.Descriptor, depth int) error
	walk = func(descs []ocispec.Descriptor, depth int) error {
		if depth > 4 {
			return errdefs.InvalidParameter("invalid archive: indexes nested too deep")
		}
		for _, d := range descs {
			switch d.MediaType {
			case ocispec.MediaTypeImageIndex, mediaTypeDockerList:
				nb, err := readBlobFile(root, d)
				if err != nil {
					return err
				}
				var child ocispec.Index
				if err := json.Unmarshal(nb, &child); err != nil {
					return invalidArchive(err, "index %s", d.Digest)
				}
				if err := walk(pickPlatform(child.Manifests), depth+1); err != nil {
					return err
				}
			case ocispec.MediaTypeImageManifest, mediaTypeDockerManifest:
				if d.Platform != nil && !platformMatches(*d.Platform) {
					continue
				}
				ai, ok := byDigest[d.Digest]
				if !ok {
					mb, err := readBlobFile(root, d)
					if err != nil {
						return err
					}
					ai, err = ociImage(root, mb)
					if err != nil {
						return err
					}
					byDigest[d.Digest] = ai
					order = append(order, d.Digest)
				}
				if t := ociTag(d.Annotations); t != nil {
					ai.tags = append(ai.tags, t)
				}
			}
		}
		return nil
	}
	if err := walk(idx.Manifests, 0); err != nil {
		return nil, err
	}
	out := make([]archiveImage, 0, len(order))
	for _, d := range order {
		out = append(out, *byDigest[d])
	}
	return out, nil
}

func readBlobFile(root *os.Root, d ocispec.Descriptor) ([]byte, error) {
	if _, ok := validDigest(d.Digest.String()); !ok {
		return nil, errdefs.InvalidParameter("invalid archive: unsupported digest %q", d.Digest)
	}
	b, err := readArchiveFile(root, "blobs/sha256/"+d.Digest.Encoded(), maxManifestSize)
	if err != nil {
		return nil, err
	}
	if err := verifyDigest(d.Digest, digest.FromBytes(b), "blob"); err != nil {
		return nil, invalidArchive(err, "blob %s", d.Digest)
	}
	return b, nil
}

func ociImage(root *os.Root, mb []byte) (*archiveImage, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, invalidArchive(err, "manifest")
	}
	cb, err := readBlobFile(root, m.Config)
	if err != nil {
		return nil, err
	}
	ai := &archiveImage{configPath: "blobs/sha256/" + m.Config.Digest.Encoded(), config: cb, manifest: mb}
	for _, l := range m.Layers {
		if _, ok := validDigest(l.Digest.String()); !ok {
			return nil, errdefs.InvalidParameter("invalid archive: unsupported layer digest %q", l.Digest)
		}
		ai.layers = append(ai.layers, archiveLayer{path: "blobs/sha256/" + l.Digest.Encoded(), digest: l.Digest, mediaType: l.MediaType})
	}
	return ai, nil
}

// ociTag reads an index entry's name: containerd's full name, or the OCI
// ref.name when it is a full reference (a bare tag names no repository).
func ociTag(ann map[string]string) reference.NamedTagged {
	name := ann[annotationContainerdName]
	if name == "" {
		if rn := ann[ocispec.AnnotationRefName]; strings.ContainsAny(rn, "/:") {
			name = rn
		}
	}
	if name == "" {
		return nil
	}
	t, err := parseTagTarget(name)
	if err != nil {
		return nil
	}
	return t
}

func platformMatches(p ocispec.Platform) bool {
	return (p.OS == "" || p.OS == "linux") && (p.Architecture == "" || p.Architecture == runtime.GOARCH)
}

// pickPlatform keeps the manifests for this node's platform.
func pickPlatform(descs []ocispec.Descriptor) []ocispec.Descriptor {
	var out []ocispec.Descriptor
	for _, d := range descs {
		if d.Platform == nil || platformMatches(*d.Platform) {
			out = append(out, d)
			break
		}
	}
	return out
}

// prepareArchiveImage stores an archive image's layers and returns the image
// ready to commit.
func (s *Store) prepareArchiveImage(ctx context.Context, l *lease, root *os.Root, ai archiveImage) (newImage, error) {
	var cfg ocispec.Image
	if err := json.Unmarshal(ai.config, &cfg); err != nil {
		return newImage{}, invalidArchive(err, "config %s", ai.configPath)
	}
	if cfg.RootFS.Type != "layers" {
		return newImage{}, errdefs.InvalidParameter("invalid archive: config %s: rootfs type %q is not \"layers\"", ai.configPath, cfg.RootFS.Type)
	}
	if len(cfg.RootFS.DiffIDs) != len(ai.layers) {
		return newImage{}, errdefs.InvalidParameter("invalid archive: config %s lists %d layers, the manifest %d", ai.configPath, len(cfg.RootFS.DiffIDs), len(ai.layers))
	}
	descs := make([]ocispec.Descriptor, 0, len(ai.layers))
	keep := ai.manifest != nil
	for i, al := range ai.layers {
		if _, err := root.Stat(al.path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return newImage{}, errdefs.InvalidParameter("invalid archive: layer %s is missing", al.path)
			}
			return newImage{}, invalidArchive(err, "layer %s", al.path)
		}
		p := al.path
		res, err := s.addLayer(ctx, l, layerInput{
			open:      func() (io.ReadCloser, error) { return root.Open(p) },
			digest:    al.digest,
			mediaType: al.mediaType,
			diffID:    cfg.RootFS.DiffIDs[i],
		})
		if err != nil {
			return newImage{}, fmt.Errorf("layer %s: %w", al.path, err)
		}
		if res.blob.Digest != al.digest {
			keep = false // stored compressed: the archive's manifest no longer fits
		}
		descs = append(descs, res.blob)
	}
	ni := newImage{manifest: ai.manifest, config: ai.config, tags: ai.tags}
	if !keep {
		ni.manifest = synthManifest(ai.config, descs)
	}
	return ni, nil
}

// synthManifest builds the OCI manifest of a config and its layer blobs.
func synthManifest(config []byte, layers []ocispec.Descriptor) []byte {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(config),
			Size:      int64(len(config)),
		},
		Layers: layers,
	}
	b, _ := json.Marshal(m)
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// tailReader remembers the last block read. archive/tar accepts a stream
// that stops at an entry boundary without the end-of-archive zero blocks;
// a truncated upload would pass as a shorter archive, so we check for them.
type tailReader struct {
	r    io.Reader
	last [512]byte
	n    int // valid bytes in last
}

func (t *tailReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n >= len(t.last) {
		copy(t.last[:], p[n-len(t.last):n])
		t.n = len(t.last)
	} else if n > 0 {
		keep := min(t.n, len(t.last)-n)
		copy(t.last[:], t.last[t.n-keep:t.n])
		copy(t.last[keep:], p[:n])
		t.n = keep + n
	}
	return n, err
}

func (t *tailReader) endsWithZeroBlock() bool {
	if t.n < len(t.last) {
		return false
	}
	for _, b := range t.last {
		if b != 0 {
			return false
		}
	}
	return true
}
