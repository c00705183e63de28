package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tentry is one entry of a test layer.
type tentry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
}

func reg(name, body string) tentry {
	return tentry{name: name, typ: tar.TypeReg, body: body, mode: 0o644}
}
func dir(name string) tentry { return tentry{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) tentry {
	return tentry{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}

func layerTar(t testing.TB, entries ...tentry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: e.mode, ModTime: time.Unix(1700000000, 0)}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// timg is a test image: its layers as plain tars.
type timg struct {
	tags   []string
	layers [][]byte
	cmd    []string
	labels map[string]string
	// created distinguishes images with the same layers.
	created time.Time
}

func (ti timg) config() []byte {
	c := ti.created
	if c.IsZero() {
		c = time.Unix(1700000000, 0).UTC()
	}
	cfg := ocispec.Image{
		Created:  &c,
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   ocispec.ImageConfig{Cmd: ti.cmd, Labels: ti.labels},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range ti.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l))
		cfg.History = append(cfg.History, ocispec.History{Created: &c, CreatedBy: "test"})
	}
	b, _ := json.Marshal(cfg)
	return b
}

func (ti timg) id() string { return digest.FromBytes(ti.config()).String() }

type tarFile struct {
	name string
	data []byte
}

func writeTar(t testing.TB, files []tarFile) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerSave builds a legacy docker-save tarball (layer.tar per layer,
// manifest.json last, as docker writes it).
func dockerSave(t testing.TB, imgs ...timg) []byte {
	t.Helper()
	var files []tarFile
	seen := map[string]bool{}
	var manifest []dockerManifestEntry
	for _, ti := range imgs {
		cfg := ti.config()
		cfgName := digest.FromBytes(cfg).Encoded() + ".json"
		files = append(files, tarFile{cfgName, cfg})
		me := dockerManifestEntry{Config: cfgName, RepoTags: ti.tags}
		for _, l := range ti.layers {
			p := digest.FromBytes(l).Encoded() + "/layer.tar"
			me.Layers = append(me.Layers, p)
			if !seen[p] {
				seen[p] = true
				files = append(files, tarFile{p, l})
			}
		}
		manifest = append(manifest, me)
	}
	mb, _ := json.Marshal(manifest)
	files = append(files, tarFile{"manifest.json", mb})
	return writeTar(t, files)
}

// ociLayout builds an OCI-layout tarball with gzipped layers.
func ociLayout(t testing.TB, imgs ...timg) []byte {
	t.Helper()
	blobs := map[digest.Digest][]byte{}
	var idx ocispec.Index
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	for _, ti := range imgs {
		cfg := ti.config()
		cd := digest.FromBytes(cfg)
		blobs[cd] = cfg
		m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cfg))}}
		for _, l := range ti.layers {
			gz := gzipBytes(t, l)
			d := digest.FromBytes(gz)
			blobs[d] = gz
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(gz))})
		}
		mb, _ := json.Marshal(m)
		md := digest.FromBytes(mb)
		blobs[md] = mb
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb))}
		if len(ti.tags) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, tag := range ti.tags {
			d := desc
			d.Annotations = map[string]string{ocispec.AnnotationRefName: tag}
			idx.Manifests = append(idx.Manifests, d)
		}
	}
	var files []tarFile
	keys := make([]string, 0, len(blobs))
	for d := range blobs {
		keys = append(keys, d.String())
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := digest.Digest(k)
		files = append(files, tarFile{"blobs/sha256/" + d.Encoded(), blobs[d]})
	}
	ib, _ := json.Marshal(idx)
	files = append(files, tarFile{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}, tarFile{"index.json", ib})
	return writeTar(t, files)
}

func newTestStore(t testing.TB) *Store {
	t.Helper()
	s, err := NewStore(Config{Root: filepath.Join(t.TempDir(), "shimg-store")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLoad(t testing.TB, s *Store, tarball []byte) []Loaded {
	t.Helper()
	ld, err := s.Load(context.Background(), bytes.NewReader(tarball))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return ld
}

// contentState lists everything a store has on disk outside tmp/, so tests
// can assert that a failed operation left nothing behind.
func contentState(t testing.TB, s *Store) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(s.cfg.Root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.cfg.Root, p)
		if rel == "tmp" && d.IsDir() {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(out)
	return out
}

var (
	baseLayer = func(t testing.TB) []byte {
		return layerTar(t, dir("bin/"), reg("bin/sh", "#!fake shell\n"), dir("etc/"), reg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), symlink("bin/ls", "sh"))
	}
	appLayer = func(t testing.TB) []byte {
		return layerTar(t, dir("app/"), reg("app/run", "echo hi\n"))
	}
)

func mustFilters(t testing.TB, s string) filters.Args {
	t.Helper()
	args, err := filters.FromJSON(s)
	if err != nil {
		t.Fatal(err)
	}
	return args
}

// newTarFiles reads every regular file of a tarball.
func newTarFiles(t testing.TB, tarball []byte) []tarFile {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(tarball))
	var out []tarFile
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarFile{hdr.Name, b})
	}
}
