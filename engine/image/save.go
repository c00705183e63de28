package image

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/distribution/reference"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type savedImage struct {
	e    *entry
	tags []string // normalized tag references
}

// Save writes the named images as one tarball in the layout docker 25+
// writes: an OCI layout (index.json, oci-layout, blobs/sha256) plus the
// docker-save manifest.json and repositories, with uncompressed layers.
// Both `docker load` and Load accept it. Every name is resolved before the
// first byte is written, so an unknown name fails cleanly.
func (s *Store) Save(ctx context.Context, names []string, w io.Writer) error {
	imgs, err := s.resolveForSave(names)
	if err != nil {
		return err
	}
	// Pin what we read so a concurrent removal cannot collect it mid-write.
	l := s.newLease()
	defer l.release(false)
	s.mu.RLock()
	metas := map[digest.Digest]layerMeta{}
	var pin []digest.Digest
	for _, si := range imgs {
		pin = append(pin, si.e.manifest.Config.Digest)
		for i, d := range si.e.diffIDs() {
			metas[d] = s.layers[d]
			pin = append(pin, si.e.manifest.Layers[i].Digest)
		}
	}
	s.mu.RUnlock()
	for _, d := range pin {
		l.add(d)
	}

	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0).UTC()
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	written := map[digest.Digest]bool{}
	var index ocispec.Index
	index.SchemaVersion = 2
	index.MediaType = ocispec.MediaTypeImageIndex
	var dockerManifest []dockerManifestEntry
	repos := map[string]map[string]string{}
	for _, si := range imgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		e := si.e
		cfgDigest := digest.Digest(e.rec.ID)
		if !written[cfgDigest] {
			if err := file("blobs/sha256/"+cfgDigest.Encoded(), e.rawConfig); err != nil {
				return err
			}
			written[cfgDigest] = true
		}
		var layerPaths []string
		var layerDescs []ocispec.Descriptor
		for i, d := range e.diffIDs() {
			p := "blobs/sha256/" + d.Encoded()
			layerPaths = append(layerPaths, p)
			layerDescs = append(layerDescs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: d, Size: metas[d].Size})
			if written[d] {
				continue
			}
			if err := s.writePlainLayer(tw, p, e.manifest.Layers[i], metas[d], epoch); err != nil {
				return err
			}
			written[d] = true
		}
		mb := synthManifestPlain(e, layerDescs)
		md := digest.FromBytes(mb)
		if !written[md] {
			if err := file("blobs/sha256/"+md.Encoded(), mb); err != nil {
				return err
			}
			written[md] = true
		}
		mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		dm := dockerManifestEntry{Config: "blobs/sha256/" + cfgDigest.Encoded(), RepoTags: []string{}, Layers: layerPaths}
		if len(si.tags) == 0 {
			index.Manifests = append(index.Manifests, mdesc)
		}
		for _, t := range si.tags {
			named, err := reference.ParseNormalizedNamed(t)
			if err != nil {
				continue
			}
			tagged, ok := named.(reference.NamedTagged)
			if !ok {
				continue
			}
			d := mdesc
			d.Annotations = map[string]string{annotationContainerdName: t, ocispec.AnnotationRefName: tagged.Tag()}
			index.Manifests = append(index.Manifests, d)
			dm.RepoTags = append(dm.RepoTags, reference.FamiliarString(named))
			fam := reference.FamiliarName(named)
			if repos[fam] == nil {
				repos[fam] = map[string]string{}
			}
			if ids := e.diffIDs(); len(ids) > 0 {
				repos[fam][tagged.Tag()] = ids[len(ids)-1].Encoded()
			}
		}
		dockerManifest = append(dockerManifest, dm)
	}
	ib, _ := json.Marshal(index)
	if err := file("index.json", ib); err != nil {
		return err
	}
	dmb, _ := json.Marshal(dockerManifest)
	if err := file("manifest.json", dmb); err != nil {
		return err
	}
	if err := file(ocispec.ImageLayoutFile, []byte(`{"imageLayoutVersion":"`+ocispec.ImageLayoutVersion+`"}`)); err != nil {
		return err
	}
	if len(repos) > 0 {
		rb, _ := json.Marshal(repos)
		if err := file("repositories", rb); err != nil {
			return err
		}
	}
	return tw.Close()
}

// resolveForSave maps names to images and the tags to record for them. A
// bare repository name saves every tag of it, as docker does.
func (s *Store) resolveForSave(names []string) ([]savedImage, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []savedImage
	pos := map[string]int{}
	add := func(e *entry, tag string) {
		i, ok := pos[e.rec.ID]
		if !ok {
			i = len(out)
			pos[e.rec.ID] = i
			out = append(out, savedImage{e: e})
		}
		if tag == "" {
			return
		}
		for _, t := range out[i].tags {
			if t == tag {
				return
			}
		}
		out[i].tags = append(out[i].tags, tag)
	}
	for _, n := range names {
		if named, err := reference.ParseNormalizedNamed(n); err == nil && reference.IsNameOnly(named) && !fullIDRe.MatchString(n) {
			found := false
			for _, r := range sortedKeys(s.refs) {
				if !isCanonical(r) && refName(r) == named.Name() {
					add(s.images[s.refs[r]], r)
					found = true
				}
			}
			if found {
				continue
			}
		}
		e, matched, err := s.resolveLocked(n)
		if err != nil {
			return nil, err
		}
		if isCanonical(matched) {
			matched = ""
		}
		add(e, matched)
	}
	return out, nil
}

// synthManifestPlain is the manifest of an image with uncompressed layers,
// as an OCI layout in a save carries it.
func synthManifestPlain(e *entry, layers []ocispec.Descriptor) []byte {
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest(e.rec.ID), Size: int64(len(e.rawConfig))},
		Layers:    layers,
	}
	b, _ := json.Marshal(m)
	return b
}

func (s *Store) writePlainLayer(tw *tar.Writer, name string, blob ocispec.Descriptor, meta layerMeta, mtime time.Time) error {
	rc, err := s.openPlainLayer(blob.Digest)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: meta.Size, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
		return err
	}
	n, err := io.Copy(tw, rc)
	if err != nil {
		return fmt.Errorf("layer %s: %w", meta.DiffID, err)
	}
	if n != meta.Size {
		return fmt.Errorf("layer %s: %d bytes, expected %d", meta.DiffID, n, meta.Size)
	}
	return nil
}

// openPlainLayer opens a stored layer blob as its uncompressed tar.
func (s *Store) openPlainLayer(d digest.Digest) (io.ReadCloser, error) {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(4)
	switch sniff(head) {
	case compGzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	case compZstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr, func() error { zr.Close(); return f.Close() }}, nil
	}
	return readCloser{br, f.Close}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
