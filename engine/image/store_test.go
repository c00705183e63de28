package image

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/shoal/shoal/errdefs"
)

var ctx = context.Background()

func TestResolve(t *testing.T) {
	s := newTestStore(t)
	bb := timg{tags: []string{"busybox:latest", "localhost:5000/demo/busybox:v1"}, layers: [][]byte{baseLayer(t)}}
	other := timg{tags: []string{"other:1"}, layers: [][]byte{appLayer(t)}}
	mustLoad(t, s, dockerSave(t, bb, other))
	// A digest reference, as a pull records it.
	c, err := reference.WithDigest(reference.TrimNamed(mustNamed(t, "busybox")), digest.FromString("manifest"))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	s.refs[c.String()] = bb.id()
	s.mu.Unlock()

	id := bb.id()
	hex := strings.TrimPrefix(id, "sha256:")
	tests := []struct {
		ref  string
		want string // image ID, "" for not found
	}{
		{"busybox", id},
		{"busybox:latest", id},
		{"library/busybox", id},
		{"docker.io/library/busybox:latest", id},
		{"busybox@" + digest.FromString("manifest").String(), id},
		{"localhost:5000/demo/busybox:v1", id},
		{"localhost:5000/demo/busybox", ""}, // means :latest, which does not exist
		{id, id},
		{hex, id},
		{hex[:12], id},
		{"sha256:" + hex[:12], id},
		{"other:1", other.id()},
		{"other", ""},
		{"busybox:nope", ""},
		{"nothing", ""},
		{strings.Repeat("0", 64), ""},
	}
	for _, tc := range tests {
		t.Run(tc.ref, func(t *testing.T) {
			img, err := s.Get(ctx, tc.ref)
			if tc.want == "" {
				if !errdefs.IsNotFound(err) {
					t.Fatalf("Get(%q) = %v, %v; want NotFound", tc.ref, img, err)
				}
				if want := "No such image: " + tc.ref; err.Error() != want {
					t.Fatalf("message %q, want %q", err.Error(), want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tc.ref, err)
			}
			if img.ID != tc.want {
				t.Fatalf("Get(%q) = %s, want %s", tc.ref, img.ID, tc.want)
			}
		})
	}
	img, _ := s.Get(ctx, "busybox")
	if want := []string{"busybox:latest", "localhost:5000/demo/busybox:v1"}; !reflect.DeepEqual(img.RepoTags, want) {
		t.Fatalf("RepoTags %v, want %v", img.RepoTags, want)
	}
	if len(img.RepoDigests) != 1 || !strings.HasPrefix(img.RepoDigests[0], "busybox@sha256:") {
		t.Fatalf("RepoDigests %v", img.RepoDigests)
	}
	if _, err := s.Get(ctx, ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("empty name: %v", err)
	}
}

func TestResolveAmbiguousShortID(t *testing.T) {
	s := newTestStore(t)
	// Find two images whose IDs share a first hex digit.
	byFirst := map[byte]timg{}
	for i := 0; ; i++ {
		ti := timg{layers: [][]byte{baseLayer(t)}, created: time.Unix(int64(1700000000+i), 0).UTC()}
		h := strings.TrimPrefix(ti.id(), "sha256:")
		if prev, ok := byFirst[h[0]]; ok {
			mustLoad(t, s, dockerSave(t, prev, ti))
			if _, err := s.Get(ctx, h[:1]); !errdefs.IsNotFound(err) {
				t.Fatalf("ambiguous prefix: %v", err)
			}
			if img, err := s.Get(ctx, h[:20]); err != nil || img.ID != ti.id() {
				t.Fatalf("unique prefix: %v %v", img, err)
			}
			return
		}
		byFirst[h[0]] = ti
	}
}

func mustNamed(t testing.TB, s string) reference.Named {
	t.Helper()
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestLoadDockerSave(t *testing.T) {
	s := newTestStore(t)
	ti := timg{tags: []string{"demo/app:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}, cmd: []string{"sh"}}
	ld := mustLoad(t, s, dockerSave(t, ti))
	if len(ld) != 1 || ld[0].ID != ti.id() || !reflect.DeepEqual(ld[0].Tags, []string{"demo/app:1"}) {
		t.Fatalf("loaded %+v", ld)
	}
	img, err := s.Get(ctx, "demo/app:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.LayerDirs) != 2 {
		t.Fatalf("LayerDirs %v", img.LayerDirs)
	}
	checkFile(t, filepath.Join(img.LayerDirs[0], "bin/sh"), "#!fake shell\n")
	checkFile(t, filepath.Join(img.LayerDirs[1], "app/run"), "echo hi\n")
	if l, err := os.Readlink(filepath.Join(img.LayerDirs[0], "bin/ls")); err != nil || l != "sh" {
		t.Fatalf("symlink: %q %v", l, err)
	}
	if !reflect.DeepEqual(img.Config.Config.Cmd, []string{"sh"}) {
		t.Fatalf("config cmd %v", img.Config.Config.Cmd)
	}
	// Layers are kept gzipped, once: the manifest names the compressed blobs.
	s.mu.RLock()
	e := s.images[img.ID]
	s.mu.RUnlock()
	for _, l := range e.manifest.Layers {
		b, err := os.ReadFile(s.blobPath(l.Digest))
		if err != nil || sniff(b) != compGzip || digest.FromBytes(b) != l.Digest {
			t.Fatalf("layer blob %s: gzip=%v err=%v", l.Digest, sniff(b) == compGzip, err)
		}
	}
	if img.Size != int64(len(baseLayer(t))+len(appLayer(t))) {
		t.Fatalf("size %d", img.Size)
	}
}

func checkFile(t testing.TB, p, want string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("%s = %q, want %q", p, b, want)
	}
}

func TestLoadOCILayout(t *testing.T) {
	s := newTestStore(t)
	tagged := timg{tags: []string{"localhost:5000/oci/app:v2"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	untagged := timg{layers: [][]byte{appLayer(t)}}
	ld := mustLoad(t, s, ociLayout(t, tagged, untagged))
	if len(ld) != 2 {
		t.Fatalf("loaded %+v", ld)
	}
	img, err := s.Get(ctx, "localhost:5000/oci/app:v2")
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != tagged.id() {
		t.Fatalf("ID %s want %s", img.ID, tagged.id())
	}
	checkFile(t, filepath.Join(img.LayerDirs[1], "app/run"), "echo hi\n")
	if _, err := s.Get(ctx, untagged.id()); err != nil {
		t.Fatalf("untagged image: %v", err)
	}
	// Compressed layers in the layout are kept as they were, manifest too.
	s.mu.RLock()
	md := s.images[img.ID].rec.Manifest
	s.mu.RUnlock()
	if !bytes.Contains(ociLayout(t, tagged), []byte(md.Encoded())) {
		t.Fatalf("manifest %s is not the archive's", md)
	}
}

func TestLoadRejectsBadArchivesAtomically(t *testing.T) {
	good := timg{tags: []string{"good:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	full := dockerSave(t, good)
	oci := ociLayout(t, good)
	corruptLayer := func(b []byte) []byte {
		// Same length, one byte of file content changed: the diffID fails.
		out := bytes.Clone(b)
		i := bytes.Index(out, []byte("echo hi"))
		out[i] = 'E'
		return out
	}
	wrongDiffID := good
	wrongDiffID.layers = [][]byte{baseLayer(t), appLayer(t)}
	cases := map[string][]byte{
		"empty":               {},
		"not a tar":           []byte(strings.Repeat("garbage ", 200)),
		"truncated at 10%":    full[:len(full)/10],
		"truncated at 60%":    full[:len(full)*6/10],
		"truncated last byte": full[:len(full)-1024-1],
		"corrupt layer":       corruptLayer(full),
		"oci truncated":       oci[:len(oci)/2],
		"oci corrupt blob":    corruptBlob(t, oci),
		"no manifest":         writeTar(t, []tarFile{{"hello.txt", []byte("hi")}}),
		"missing layer": writeTar(t, []tarFile{
			{strings.TrimPrefix(good.id(), "sha256:") + ".json", good.config()},
			{"manifest.json", []byte(`[{"Config":"` + strings.TrimPrefix(good.id(), "sha256:") + `.json","RepoTags":["good:1"],"Layers":["nope/layer.tar","nope2/layer.tar"]}]`)},
		}),
		"bad tag": dockerSave(t, timg{tags: []string{"UPPER:case"}, layers: good.layers}),
		"layer escaping its directory": dockerSave(t, timg{tags: []string{"esc:1"}, layers: [][]byte{
			baseLayer(t), layerTar(t, symlink("out", "/tmp"), reg("out/shimg-escape", "x"))}}),
	}
	for name, tarball := range cases {
		t.Run(name, func(t *testing.T) {
			s := newTestStore(t)
			// A prior image must survive untouched.
			mustLoad(t, s, dockerSave(t, timg{tags: []string{"prior:1"}, layers: [][]byte{layerTar(t, reg("x", "y"))}}))
			before := contentState(t, s)
			_, err := s.Load(ctx, bytes.NewReader(tarball))
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("Load = %v, want an invalid-parameter error", err)
			}
			if after := contentState(t, s); !reflect.DeepEqual(before, after) {
				t.Fatalf("store changed by a failed load:\nbefore %v\nafter  %v", before, after)
			}
			if n := s.Count(); n != 1 {
				t.Fatalf("Count = %d", n)
			}
			if _, err := s.Get(ctx, "good:1"); !errdefs.IsNotFound(err) {
				t.Fatalf("good:1 visible after failed load: %v", err)
			}
			tmp, _ := os.ReadDir(filepath.Join(s.cfg.Root, "tmp"))
			if len(tmp) != 0 {
				t.Fatalf("staging left behind: %v", tmp)
			}
		})
	}
}

// corruptBlob flips a byte inside the first gzip layer of an OCI layout.
func corruptBlob(t testing.TB, oci []byte) []byte {
	out := bytes.Clone(oci)
	i := bytes.Index(out, []byte{0x1f, 0x8b, 0x08})
	if i < 0 {
		t.Fatal("no gzip blob in layout")
	}
	out[i+20] ^= 0xff
	return out
}

func TestUnpackOncePerDiffID(t *testing.T) {
	s := newTestStore(t)
	a := timg{tags: []string{"a:1"}, layers: [][]byte{baseLayer(t)}}
	b := timg{tags: []string{"b:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	mustLoad(t, s, dockerSave(t, a))
	if n := s.unpacks.Load(); n != 1 {
		t.Fatalf("unpacks after first load = %d", n)
	}
	mustLoad(t, s, dockerSave(t, b))
	mustLoad(t, s, ociLayout(t, b))
	mustLoad(t, s, dockerSave(t, a, b))
	if n := s.unpacks.Load(); n != 2 {
		t.Fatalf("unpacks = %d, want 2 (one per distinct diffID)", n)
	}
	ia, _ := s.Get(ctx, "a:1")
	ib, _ := s.Get(ctx, "b:1")
	if ia.LayerDirs[0] != ib.LayerDirs[0] {
		t.Fatalf("shared layer unpacked twice: %s vs %s", ia.LayerDirs[0], ib.LayerDirs[0])
	}

	// Concurrent loads of the same new layer still unpack it once.
	s2 := newTestStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s2.Load(ctx, bytes.NewReader(dockerSave(t, b)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s2.unpacks.Load(); n != 2 {
		t.Fatalf("concurrent unpacks = %d, want 2", n)
	}
}

func TestTagAndRemove(t *testing.T) {
	a := timg{tags: []string{"app:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	type usage struct {
		u    Usage
		used bool
	}
	cases := []struct {
		name    string
		tags    []string // extra tags added before removing
		usage   usage
		remove  string // "ID" means the image ID
		force   bool
		wantErr string // substring of a Conflict error
		want    []string
		gone    bool // image deleted
	}{
		{name: "untag one of two", tags: []string{"app:2"}, remove: "app:1", want: []string{"Untagged: app:1"}},
		{name: "last tag deletes", remove: "app:1", want: []string{"Untagged: app:1", "Deleted: ID"}, gone: true},
		{name: "by ID single tag", remove: "ID", want: []string{"Untagged: app:1", "Deleted: ID"}, gone: true},
		{name: "by ID multiple tags", tags: []string{"other/app:2"}, remove: "ID", wantErr: "(must be forced) - image is referenced in multiple repositories"},
		{name: "by ID multiple tags forced", tags: []string{"other/app:2"}, remove: "ID", force: true, want: []string{"Untagged: app:1", "Untagged: other/app:2", "Deleted: ID"}, gone: true},
		{name: "stopped container by ID", usage: usage{Usage{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "stopped"}, true}, remove: "ID",
			wantErr: "(must be forced) - image is being used by stopped container 0123456789ab"},
		{name: "stopped container by name", usage: usage{Usage{"web", "stopped"}, true}, remove: "app:1",
			wantErr: `unable to remove repository reference "app:1" (must force) - container web is using its referenced image`},
		{name: "stopped container forced", usage: usage{Usage{"web", "stopped"}, true}, remove: "ID", force: true, want: []string{"Untagged: app:1", "Deleted: ID"}, gone: true},
		{name: "running container by ID forced", usage: usage{Usage{"web", "running"}, true}, remove: "ID", force: true,
			wantErr: "(cannot be forced) - image is being used by running container web"},
		{name: "running container by name forced untags", usage: usage{Usage{"web", "running"}, true}, remove: "app:1", force: true, want: []string{"Untagged: app:1"}},
		{name: "unknown state", usage: usage{Usage{Container: "web"}, true}, remove: "ID", wantErr: "image is being used by container web"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestStore(t)
			mustLoad(t, s, dockerSave(t, a))
			s.SetUsageFunc(func(id string) (Usage, bool) {
				if id == a.id() {
					return tc.usage.u, tc.usage.used
				}
				return Usage{}, false
			})
			for _, tag := range tc.tags {
				if err := s.Tag(ctx, "app:1", tag); err != nil {
					t.Fatal(err)
				}
			}
			name := tc.remove
			if name == "ID" {
				name = a.id()
			}
			recs, err := s.Remove(ctx, name, tc.force, true)
			if tc.wantErr != "" {
				if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Remove = %v, want conflict containing %q", err, tc.wantErr)
				}
				if _, err := s.Get(ctx, a.id()); err != nil {
					t.Fatalf("image gone after refused removal: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range recs {
				if r.Untagged != "" {
					got = append(got, "Untagged: "+r.Untagged)
				}
				if r.Deleted != "" {
					got = append(got, "Deleted: "+strings.Replace(r.Deleted, a.id(), "ID", 1))
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("records %v, want %v", got, tc.want)
			}
			_, err = s.Get(ctx, a.id())
			if tc.gone {
				if tc.usage.used {
					// Hidden, layers kept for the container until it goes.
					if err != nil {
						t.Fatalf("a used image must stay reachable by ID: %v", err)
					}
					if s.Count() != 0 {
						t.Fatalf("hidden image counted")
					}
					img, _ := s.Get(ctx, a.id())
					if _, err := os.Stat(img.LayerDirs[0]); err != nil {
						t.Fatalf("layers of a used image removed: %v", err)
					}
					// Once unused, the next collection removes it.
					s.SetUsageFunc(func(string) (Usage, bool) { return Usage{}, false })
					s.collect()
					if _, err := s.Get(ctx, a.id()); !errdefs.IsNotFound(err) {
						t.Fatalf("hidden image not collected: %v", err)
					}
				} else if !errdefs.IsNotFound(err) {
					t.Fatalf("image still there: %v", err)
				}
				if st := contentState(t, s); len(st) != 1 || st[0] != "refs.json" {
					t.Fatalf("content left after delete: %v", st)
				}
			} else if err != nil {
				t.Fatalf("image gone: %v", err)
			}
		})
	}
}

func TestTagValidation(t *testing.T) {
	s := newTestStore(t)
	mustLoad(t, s, dockerSave(t, timg{tags: []string{"app:1"}, layers: [][]byte{baseLayer(t)}}))
	for _, bad := range []string{"UPPER", "app@sha256:" + strings.Repeat("a", 64), strings.Repeat("a", 64), "bad tag"} {
		if err := s.Tag(ctx, "app:1", bad); !errdefs.IsInvalidParameter(err) {
			t.Errorf("Tag(%q) = %v, want invalid parameter", bad, err)
		}
	}
	if err := s.Tag(ctx, "nope", "x:1"); !errdefs.IsNotFound(err) {
		t.Errorf("tag of unknown image: %v", err)
	}
	// Moving a tag leaves the previous image dangling, as docker does.
	mustLoad(t, s, dockerSave(t, timg{tags: []string{"other:1"}, layers: [][]byte{appLayer(t)}}))
	if err := s.Tag(ctx, "other:1", "app:1"); err != nil {
		t.Fatal(err)
	}
	img, _ := s.Get(ctx, "app:1")
	if img.ID != (timg{layers: [][]byte{appLayer(t)}}).id() {
		t.Fatalf("tag did not move")
	}
}

func TestPersistenceAcrossRestart(t *testing.T) {
	root := filepath.Join(t.TempDir(), "shimg-store")
	s, err := NewStore(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ti := timg{tags: []string{"app:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	mustLoad(t, s, dockerSave(t, ti))
	if err := s.Tag(ctx, "app:1", "localhost:5000/app:2"); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a crash: staging, a half-unpacked layer and an image record
	// whose layers never arrived.
	os.MkdirAll(filepath.Join(root, "tmp", "layer-123", "fs"), 0o700)
	os.MkdirAll(filepath.Join(root, "layers", "sha256", strings.Repeat("a", 64), "fs"), 0o700)
	os.WriteFile(filepath.Join(root, "images", strings.Repeat("b", 64)+".json"), []byte(`{"id":"sha256:`+strings.Repeat("b", 64)+`","manifest":"sha256:`+strings.Repeat("c", 64)+`"}`), 0o600)

	s2, err := NewStore(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	img, err := s2.Get(ctx, "localhost:5000/app:2")
	if err != nil || img.ID != ti.id() {
		t.Fatalf("after restart: %v %v", img, err)
	}
	if s2.Count() != 1 {
		t.Fatalf("Count = %d", s2.Count())
	}
	for _, p := range []string{"tmp/layer-123", "layers/sha256/" + strings.Repeat("a", 64), "images/" + strings.Repeat("b", 64) + ".json"} {
		if _, err := os.Stat(filepath.Join(root, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("crash leftover %s not cleaned: %v", p, err)
		}
	}
}

func TestSaveRoundTrip(t *testing.T) {
	s := newTestStore(t)
	a := timg{tags: []string{"app:1", "app:2"}, layers: [][]byte{baseLayer(t), appLayer(t)}}
	b := timg{tags: []string{"localhost:5000/b:x"}, layers: [][]byte{baseLayer(t)}}
	mustLoad(t, s, dockerSave(t, a, b))
	var out bytes.Buffer
	if err := s.Save(ctx, []string{"app", "localhost:5000/b:x"}, &out); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := s.Save(ctx, []string{"app", "localhost:5000/b:x"}, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), again.Bytes()) {
		t.Fatalf("save is not deterministic")
	}
	s2 := newTestStore(t)
	ld := mustLoad(t, s2, out.Bytes())
	if len(ld) != 2 || ld[0].ID != a.id() || ld[1].ID != b.id() {
		t.Fatalf("loaded %+v", ld)
	}
	img, err := s2.Get(ctx, "app:2")
	if err != nil || img.ID != a.id() {
		t.Fatalf("app:2 after round trip: %v", err)
	}
	checkFile(t, filepath.Join(img.LayerDirs[1], "app/run"), "echo hi\n")
	// The OCI side of the same archive (index.json) loads on its own too.
	s3 := newTestStore(t)
	if _, err := s3.Load(ctx, bytes.NewReader(withoutFile(t, out.Bytes(), "manifest.json"))); err != nil {
		t.Fatalf("loading the OCI layout of a save: %v", err)
	}
	if img, err := s3.Get(ctx, "localhost:5000/b:x"); err != nil || img.ID != b.id() {
		t.Fatalf("OCI side: %v", err)
	}

	if err := s.Save(ctx, []string{"app:1", "nope"}, &out); !errdefs.IsNotFound(err) {
		t.Fatalf("save of unknown image: %v", err)
	}
}

func withoutFile(t testing.TB, tarball []byte, name string) []byte {
	t.Helper()
	var files []tarFile
	tr := newTarFiles(t, tarball)
	for _, f := range tr {
		if f.name != name && !strings.HasSuffix(f.name, "/") {
			files = append(files, f)
		}
	}
	return writeTar(t, files)
}

func TestImport(t *testing.T) {
	s := newTestStore(t)
	rootfs := layerTar(t, dir("bin/"), reg("bin/hello", "hello\n"))
	img, err := s.Import(ctx, bytes.NewReader(gzipBytes(t, rootfs)), ImportOptions{
		Repo: "imported", Tag: "v1",
		Changes: []string{`CMD ["/bin/hello","x"]`, "ENV A=1 B=\"two words\"", "WORKDIR /bin", "EXPOSE 80 53/udp", "USER nobody", "ENTRYPOINT /bin/hello"},
		Message: "from test",
	})
	if err != nil {
		t.Fatal(err)
	}
	c := img.Config.Config
	if !reflect.DeepEqual(c.Cmd, []string{"/bin/hello", "x"}) || !reflect.DeepEqual(c.Entrypoint, []string{"/bin/sh", "-c", "/bin/hello"}) ||
		!reflect.DeepEqual(c.Env, []string{"A=1", "B=two words"}) || c.WorkingDir != "/bin" || c.User != "nobody" ||
		len(c.ExposedPorts) != 2 {
		t.Fatalf("config %+v", c)
	}
	if img.Config.RootFS.DiffIDs[0] != digest.FromBytes(rootfs) {
		t.Fatalf("diffID %s", img.Config.RootFS.DiffIDs[0])
	}
	checkFile(t, filepath.Join(img.LayerDirs[0], "bin/hello"), "hello\n")
	if got, _ := s.Get(ctx, "imported:v1"); got == nil || got.ID != img.ID {
		t.Fatalf("import tag missing")
	}
	before := contentState(t, s)
	for name, src := range map[string][]byte{"garbage": []byte("not a tarball at all, sorry"), "empty": nil, "truncated": rootfs[:700]} {
		if _, err := s.Import(ctx, bytes.NewReader(src), ImportOptions{Repo: "bad"}); !errdefs.IsInvalidParameter(err) {
			t.Errorf("import of %s: %v", name, err)
		}
	}
	if _, err := s.Import(ctx, bytes.NewReader(rootfs), ImportOptions{Changes: []string{"RUN rm -rf /"}}); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad change: %v", err)
	}
	if after := contentState(t, s); !reflect.DeepEqual(before, after) {
		t.Fatalf("failed imports left content:\n%v\n%v", before, after)
	}
}

func TestListFilters(t *testing.T) {
	s := newTestStore(t)
	old := timg{tags: []string{"app:old"}, layers: [][]byte{baseLayer(t)}, labels: map[string]string{"tier": "web"}, created: time.Unix(1600000000, 0).UTC()}
	mid := timg{tags: []string{"localhost:5000/app:mid"}, layers: [][]byte{baseLayer(t)}, created: time.Unix(1650000000, 0).UTC()}
	dangling := timg{layers: [][]byte{appLayer(t)}, created: time.Unix(1700000000, 0).UTC()}
	mustLoad(t, s, dockerSave(t, old, mid, dangling))
	tests := []struct {
		filter string
		want   []string
	}{
		{"", []string{dangling.id(), mid.id(), old.id()}},
		{`{"dangling":{"true":true}}`, []string{dangling.id()}},
		{`{"dangling":{"false":true}}`, []string{mid.id(), old.id()}},
		{`{"label":{"tier=web":true}}`, []string{old.id()}},
		{`{"label":{"tier":true}}`, []string{old.id()}},
		{`{"reference":{"app":true}}`, []string{old.id()}},
		{`{"reference":{"*/app:*":true}}`, []string{mid.id()}},
		{`{"before":{"localhost:5000/app:mid":true}}`, []string{old.id()}},
		{`{"since":{"app:old":true}}`, []string{dangling.id(), mid.id()}},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			args := mustFilters(t, tc.filter)
			list, err := s.List(ctx, args)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, im := range list {
				got = append(got, im.ID)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v want %v", got, tc.want)
			}
		})
	}
	if _, err := s.List(ctx, mustFilters(t, `{"nope":{"x":true}}`)); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("unknown filter: %v", err)
	}
	if _, err := s.List(ctx, mustFilters(t, `{"dangling":{"maybe":true}}`)); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad dangling: %v", err)
	}
}

func TestInspectAndHistory(t *testing.T) {
	s := newTestStore(t)
	ti := timg{tags: []string{"app:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}, cmd: []string{"sh"}}
	mustLoad(t, s, dockerSave(t, ti))
	in, err := s.Inspect(ctx, "app:1")
	if err != nil {
		t.Fatal(err)
	}
	if in.ID != ti.id() || in.Os != "linux" || in.Config == nil || !reflect.DeepEqual(in.Config.Cmd, []string{"sh"}) ||
		len(in.RootFS.Layers) != 2 || in.RootFS.Type != "layers" || !reflect.DeepEqual(in.RepoTags, []string{"app:1"}) || in.Created == "" {
		t.Fatalf("inspect %+v", in)
	}
	h, err := s.History(ctx, "app:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 2 || h[0].ID != ti.id() || h[1].ID != "<missing>" || h[0].Size != int64(len(appLayer(t))) || !reflect.DeepEqual(h[0].Tags, []string{"app:1"}) {
		t.Fatalf("history %+v", h)
	}
	if _, err := s.Inspect(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	s := newTestStore(t)
	kept := timg{tags: []string{"kept:1"}, layers: [][]byte{baseLayer(t)}}
	dangling := timg{layers: [][]byte{appLayer(t)}}
	mustLoad(t, s, dockerSave(t, kept, dangling))
	rep, err := s.Prune(ctx, mustFilters(t, ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.ImagesDeleted) != 1 || rep.ImagesDeleted[0].Deleted != dangling.id() || rep.SpaceReclaimed != uint64(len(appLayer(t))) {
		t.Fatalf("prune %+v", rep)
	}
	s.SetUsageChecker(func(string) (string, bool) { return "c1", true })
	rep, err = s.Prune(ctx, mustFilters(t, `{"dangling":{"false":true}}`))
	if err != nil || len(rep.ImagesDeleted) != 0 {
		t.Fatalf("prune of a used image: %+v %v", rep, err)
	}
}
