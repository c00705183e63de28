package image

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/registry"
)

func startRegistry(t *testing.T) string {
	t.Helper()
	h, err := registry.New(registry.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func messages(t testing.TB, b []byte) []Message {
	t.Helper()
	var out []Message
	dec := json.NewDecoder(bytes.NewReader(b))
	for dec.More() {
		var m Message
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("bad progress stream %q: %v", b, err)
		}
		out = append(out, m)
	}
	return out
}

func hasStatus(ms []Message, s string) bool {
	for _, m := range ms {
		if strings.Contains(m.Status, s) {
			return true
		}
	}
	return false
}

func TestPushPullThroughRegistry(t *testing.T) {
	reg := startRegistry(t)
	a := newTestStore(t)
	ti := timg{tags: []string{"app:1"}, layers: [][]byte{baseLayer(t), appLayer(t)}, cmd: []string{"sh"}}
	mustLoad(t, a, dockerSave(t, ti))
	target := reg + "/shimg/app:1"
	if err := a.Tag(ctx, "app:1", target); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := a.Push(ctx, target, nil, &out); err != nil {
		t.Fatalf("push: %v", err)
	}
	ms := messages(t, out.Bytes())
	if ms[0].Status != "The push refers to repository ["+reg+"/shimg/app]" || !hasStatus(ms, "Pushed") {
		t.Fatalf("push progress: %s", out.String())
	}
	last := ms[len(ms)-1]
	aux, _ := json.Marshal(last.Aux)
	var res PushResult
	json.Unmarshal(aux, &res)
	local, _ := a.Get(ctx, target)
	if res.Tag != "1" || res.Digest != local.ManifestDigest || res.Size == 0 {
		t.Fatalf("aux %s, manifest %s", aux, local.ManifestDigest)
	}
	if !reflect.DeepEqual(local.RepoDigests, []string{reg + "/shimg/app@" + res.Digest}) {
		t.Fatalf("RepoDigests after push %v", local.RepoDigests)
	}
	// The registry holds exactly the stored compressed blobs.
	ref, _ := name.ParseReference(target)
	rimg, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	rm, _ := rimg.Manifest()
	a.mu.RLock()
	stored := a.images[local.ID].manifest
	a.mu.RUnlock()
	for i, l := range rm.Layers {
		if l.Digest.String() != stored.Layers[i].Digest.String() {
			t.Fatalf("registry layer %d is %s, stored %s", i, l.Digest, stored.Layers[i].Digest)
		}
	}
	// Pushing again finds every layer there.
	out.Reset()
	if err := a.Push(ctx, reg+"/shimg/app", nil, &out); err != nil { // no tag: all tags
		t.Fatal(err)
	}
	if ms := messages(t, out.Bytes()); !hasStatus(ms, "Layer already exists") || hasStatus(ms, "Pushed") {
		t.Fatalf("second push: %s", out.String())
	}

	b := newTestStore(t)
	out.Reset()
	img, err := b.Pull(ctx, target, nil, &out)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if img.ID != ti.id() || !reflect.DeepEqual(img.RepoTags, []string{target}) || !reflect.DeepEqual(img.RepoDigests, local.RepoDigests) {
		t.Fatalf("pulled %+v", img)
	}
	ms = messages(t, out.Bytes())
	if ms[0].Status != "Pulling from shimg/app" || ms[0].ID != "1" || !hasStatus(ms, "Pull complete") ||
		ms[len(ms)-1].Status != "Status: Downloaded newer image for "+target {
		t.Fatalf("pull progress: %s", out.String())
	}
	checkFile(t, filepath.Join(img.LayerDirs[1], "app/run"), "echo hi\n")
	out.Reset()
	if _, err := b.Pull(ctx, target, nil, &out); err != nil {
		t.Fatal(err)
	}
	if ms := messages(t, out.Bytes()); ms[len(ms)-1].Status != "Status: Image is up to date for "+target || !hasStatus(ms, "Already exists") {
		t.Fatalf("second pull: %s", out.String())
	}
	// By digest too.
	if img2, err := b.Get(ctx, reg+"/shimg/app@"+res.Digest); err != nil || img2.ID != img.ID {
		t.Fatalf("by digest: %v", err)
	}
	// The pulled image pushes back with the same manifest digest.
	if err := b.Tag(ctx, target, reg+"/shimg/copy:x"); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := b.Push(ctx, reg+"/shimg/copy:x", nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), res.Digest) {
		t.Fatalf("re-push digest differs: %s", out.String())
	}
}

func TestPullErrors(t *testing.T) {
	reg := startRegistry(t)
	s := newTestStore(t)
	var out bytes.Buffer
	_, err := s.Pull(ctx, reg+"/shimg/nope:latest", nil, &out)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "manifest for "+reg+"/shimg/nope:latest not found") {
		t.Fatalf("pull of unknown image: %v", err)
	}
	if out.Len() != 0 {
		t.Fatalf("progress written before the manifest was found: %s", out.String())
	}
	if _, err := s.Pull(ctx, "Not A Ref", nil, &out); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad ref: %v", err)
	}
	if err := s.Push(ctx, reg+"/shimg/none:1", nil, &out); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "An image does not exist locally with the tag") {
		t.Fatalf("push of unknown image: %v", err)
	}
	if st := contentState(t, s); len(st) != 0 {
		t.Fatalf("failed pulls left content: %v", st)
	}
}

func TestPullIndexPicksPlatform(t *testing.T) {
	reg := startRegistry(t)
	mk := func(arch string) v1.Image {
		img, err := random.Image(512, 2)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mine, theirs := mk(runtime.GOARCH), mk(other)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: theirs, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref, _ := name.ParseReference(reg + "/shimg/multi:1")
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t)
	img, err := s.Pull(ctx, ref.String(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cd, _ := mine.ConfigName()
	if img.ID != cd.String() {
		t.Fatalf("pulled %s, want this platform's %s", img.ID, cd)
	}
	idxDigest, _ := idx.Digest()
	if !reflect.DeepEqual(img.RepoDigests, []string{reg + "/shimg/multi@" + idxDigest.String()}) {
		t.Fatalf("RepoDigests %v (want the index digest)", img.RepoDigests)
	}
	di, err := s.DistributionInspect(ctx, ref.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if di.Descriptor.Digest != digest.Digest(idxDigest.String()) || len(di.Platforms) != 2 {
		t.Fatalf("distribution inspect %+v", di)
	}
	if _, err := s.DistributionInspect(ctx, reg+"/shimg/none:1", nil); !errdefs.IsNotFound(err) {
		t.Fatalf("distribution inspect of unknown: %v", err)
	}
}

func TestInsecureRegistries(t *testing.T) {
	set, err := parseInsecure([]string{"myreg:5000", "10.20.0.0/16", "http://plain.example/"})
	if err != nil {
		t.Fatal(err)
	}
	// Names resolve through a fake: tests send no DNS queries.
	set.lookup = func(_ context.Context, host string) ([]net.IPAddr, error) {
		switch host {
		case "inside.lab":
			return []net.IPAddr{{IP: net.ParseIP("10.20.9.9")}}, nil
		case "loop.lab":
			return []net.IPAddr{{IP: net.ParseIP("127.0.0.2")}}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	for host, want := range map[string]bool{
		"inside.lab:5000": true,
		"loop.lab:5000":   true,
		"outside.lab":     false,
		"myreg:5000":      true,
		"myreg:5001":      false,
		"10.20.3.4:5000":  true,
		"10.21.3.4:5000":  false,
		"127.0.0.1:5000":  true,
		"127.9.9.9":       true,
		"[::1]:5000":      true,
		"localhost:5000":  true,
		"plain.example":   true,
		"192.168.1.1:443": false,
	} {
		if got := set.match(context.Background(), host); got != want {
			t.Errorf("match(%q) = %v, want %v", host, got, want)
		}
	}
	if _, err := parseInsecure([]string{"bad/entry/x"}); err == nil {
		t.Errorf("bad entry accepted")
	}
	// A registry not listed is never spoken to over plain HTTP.
	rt := httpsOnly{rt: http.DefaultTransport, host: "10.1.1.1:5000"}
	req, _ := http.NewRequest(http.MethodGet, "http://10.1.1.1:5000/v2/", nil)
	if _, err := rt.RoundTrip(req); err == nil || !strings.Contains(err.Error(), "--insecure-registry 10.1.1.1:5000") {
		t.Fatalf("plain HTTP not refused: %v", err)
	}
}

func TestPullUncompressedLayers(t *testing.T) {
	reg := startRegistry(t)
	plain := static.NewLayer(appLayer(t), types.OCIUncompressedLayer)
	img, err := mutate.AppendLayers(empty.Image, plain)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	ref, _ := name.ParseReference(reg + "/shimg/plain:1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	s := newTestStore(t)
	got, err := s.Pull(ctx, ref.String(), nil, nil)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	checkFile(t, filepath.Join(got.LayerDirs[0], "app/run"), "echo hi\n")
	// Stored gzipped once; a push sends the stored blob.
	s.mu.RLock()
	l := s.images[got.ID].manifest.Layers[0]
	s.mu.RUnlock()
	if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" || !s.hasBlob(l.Digest) {
		t.Fatalf("stored layer %+v", l)
	}
	if err := s.Push(ctx, ref.String(), nil, nil); err != nil {
		t.Fatalf("push back: %v", err)
	}
}
