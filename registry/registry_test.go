package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func newServer(t *testing.T, root string) *httptest.Server {
	t.Helper()
	h, err := New(Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func host(srv *httptest.Server) string { return strings.TrimPrefix(srv.URL, "http://") }

func mustRef(t *testing.T, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func digestOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

func TestPushPullRoundTrip(t *testing.T) {
	srv := newServer(t, t.TempDir())
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	ref := mustRef(t, host(srv)+"/shimg/demo/busybox:latest")
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	// A second tag of the same image reuses every blob.
	if err := remote.Write(mustRef(t, host(srv)+"/shimg/demo/busybox:v2"), img); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(ref)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	wantD, _ := img.Digest()
	gotD, err := got.Digest()
	if err != nil || gotD != wantD {
		t.Fatalf("digest %v (%v), want %v", gotD, err, wantD)
	}
	layers, _ := got.Layers()
	wantLayers, _ := img.Layers()
	for i, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		wd, _ := wantLayers[i].Digest()
		if digestOf(b) != wd.String() {
			t.Fatalf("layer %d content differs", i)
		}
	}
	tags, err := remote.List(ref.Context())
	if err != nil || !reflect.DeepEqual(tags, []string{"latest", "v2"}) {
		t.Fatalf("tags %v %v", tags, err)
	}
	reg, _ := name.NewRegistry(host(srv), name.Insecure)
	repos, err := remote.Catalog(t.Context(), reg)
	if err != nil || !reflect.DeepEqual(repos, []string{"shimg/demo/busybox"}) {
		t.Fatalf("catalog %v %v", repos, err)
	}

	// An index and its children.
	idx, err := random.Index(1024, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	iref := mustRef(t, host(srv)+"/shimg/multi:1")
	if err := remote.WriteIndex(iref, idx); err != nil {
		t.Fatalf("push index: %v", err)
	}
	desc, err := remote.Get(iref)
	if err != nil || !desc.MediaType.IsIndex() {
		t.Fatalf("get index: %v %v", desc, err)
	}
	wantI, _ := idx.Digest()
	if desc.Digest != wantI {
		t.Fatalf("index digest %v want %v", desc.Digest, wantI)
	}
}

type regErrors struct {
	Errors []struct {
		Code   string          `json:"code"`
		Detail json.RawMessage `json:"detail"`
	} `json:"errors"`
}

func do(t *testing.T, method, url, ctype string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func errCode(t *testing.T, b []byte) string {
	t.Helper()
	var e regErrors
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not a registry error: %s", b)
	}
	return e.Errors[0].Code
}

func TestManifestWithMissingBlobsRefused(t *testing.T) {
	srv := newServer(t, t.TempDir())
	config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	// Upload the config only; the layer is missing.
	resp, _ := do(t, http.MethodPost, srv.URL+"/v2/shimg/app/blobs/uploads/?digest="+digestOf(config), "application/octet-stream", bytes.NewReader(config))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("monolithic upload: %d", resp.StatusCode)
	}
	missing := digestOf([]byte("not uploaded"))
	manifest := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digestOf(config) + `","size":` + jsonInt(len(config)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"` + missing + `","size":12}]}`
	resp, b := do(t, http.MethodPut, srv.URL+"/v2/shimg/app/manifests/latest", "application/vnd.oci.image.manifest.v1+json", strings.NewReader(manifest))
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "MANIFEST_BLOB_UNKNOWN" || !strings.Contains(string(b), missing) {
		t.Fatalf("PUT = %d %s, want 400 MANIFEST_BLOB_UNKNOWN naming the blob", resp.StatusCode, b)
	}
	resp, b = do(t, http.MethodGet, srv.URL+"/v2/shimg/app/manifests/latest", "", nil)
	if resp.StatusCode != http.StatusNotFound || errCode(t, b) != "MANIFEST_UNKNOWN" {
		t.Fatalf("refused manifest visible: %d %s", resp.StatusCode, b)
	}
	// An index whose child manifest is unknown is refused the same way.
	index := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + missing + `","size":12}]}`
	resp, b = do(t, http.MethodPut, srv.URL+"/v2/shimg/app/manifests/multi", "application/vnd.oci.image.index.v1+json", strings.NewReader(index))
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "MANIFEST_BLOB_UNKNOWN" {
		t.Fatalf("index PUT = %d %s", resp.StatusCode, b)
	}
	// A digest reference must match the body.
	resp, b = do(t, http.MethodPut, srv.URL+"/v2/shimg/app/manifests/"+missing, "application/vnd.oci.image.index.v1+json", strings.NewReader(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`))
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "DIGEST_INVALID" {
		t.Fatalf("digest mismatch PUT = %d %s", resp.StatusCode, b)
	}
}

func jsonInt(n int) string { b, _ := json.Marshal(n); return string(b) }

type failingReader struct {
	data []byte
	sent bool
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.sent {
		return 0, errors.New("client went away")
	}
	f.sent = true
	return copy(p, f.data), nil
}

func TestIncompleteUploadsNeverVisible(t *testing.T) {
	srv := newServer(t, t.TempDir())
	blob := bytes.Repeat([]byte("shimg-blob "), 1000)
	d := digestOf(blob)
	blobURL := srv.URL + "/v2/shimg/app/blobs/" + d
	head := func() int {
		resp, _ := do(t, http.MethodHead, blobURL, "", nil)
		return resp.StatusCode
	}

	// A chunked upload stopped half-way.
	resp, _ := do(t, http.MethodPost, srv.URL+"/v2/shimg/app/blobs/uploads/", "", nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("start: %d", resp.StatusCode)
	}
	loc := srv.URL + resp.Header.Get("Location")
	resp, _ = do(t, http.MethodPatch, loc, "application/octet-stream", bytes.NewReader(blob[:len(blob)/2]))
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Range") != "0-"+jsonInt(len(blob)/2-1) {
		t.Fatalf("patch: %d range %q", resp.StatusCode, resp.Header.Get("Range"))
	}
	if st := head(); st != http.StatusNotFound {
		t.Fatalf("half-uploaded blob visible: %d", st)
	}
	// A chunk that does not continue the upload is refused.
	req, _ := http.NewRequest(http.MethodPatch, loc, bytes.NewReader(blob[:10]))
	req.Header.Set("Content-Range", "0-9")
	r2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("bad range: %d", r2.StatusCode)
	}
	// Finishing with the digest of the whole blob over half of it fails.
	resp, b := do(t, http.MethodPut, loc+"?digest="+d, "application/octet-stream", nil)
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "DIGEST_INVALID" {
		t.Fatalf("short PUT = %d %s", resp.StatusCode, b)
	}
	if st := head(); st != http.StatusNotFound {
		t.Fatalf("blob visible after digest mismatch: %d", st)
	}
	// The session is gone after a failed commit.
	if resp, _ := do(t, http.MethodGet, loc, "", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("session survived: %d", resp.StatusCode)
	}

	// A monolithic upload whose body breaks off.
	req, _ = http.NewRequest(http.MethodPost, srv.URL+"/v2/shimg/app/blobs/uploads/?digest="+d, &failingReader{data: blob[:100]})
	req.ContentLength = int64(len(blob))
	if r3, err := http.DefaultClient.Do(req); err == nil {
		r3.Body.Close()
	}
	if st := head(); st != http.StatusNotFound {
		t.Fatalf("interrupted upload visible: %d", st)
	}

	// And a whole upload works.
	resp, _ = do(t, http.MethodPost, srv.URL+"/v2/shimg/app/blobs/uploads/", "", nil)
	loc = srv.URL + resp.Header.Get("Location")
	do(t, http.MethodPatch, loc, "application/octet-stream", bytes.NewReader(blob[:100]))
	resp, _ = do(t, http.MethodPut, loc+"?digest="+d, "application/octet-stream", bytes.NewReader(blob[100:]))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != d {
		t.Fatalf("complete upload: %d", resp.StatusCode)
	}
	resp, b = do(t, http.MethodGet, blobURL, "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, blob) {
		t.Fatalf("GET blob: %d, %d bytes", resp.StatusCode, len(b))
	}
	// Cross-repository mount of a known blob.
	resp, _ = do(t, http.MethodPost, srv.URL+"/v2/shimg/other/blobs/uploads/?mount="+d+"&from=shimg/app", "", nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("mount: %d", resp.StatusCode)
	}
}

func TestRestartPersistence(t *testing.T) {
	root := t.TempDir()
	srv := newServer(t, root)
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustRef(t, host(srv)+"/shimg/keep:v1"), img); err != nil {
		t.Fatal(err)
	}
	// Leave an upload session open across the restart.
	resp, _ := do(t, http.MethodPost, srv.URL+"/v2/shimg/keep/blobs/uploads/", "", nil)
	do(t, http.MethodPatch, srv.URL+resp.Header.Get("Location"), "application/octet-stream", strings.NewReader("partial"))
	srv.Close()

	srv2 := newServer(t, root)
	got, err := remote.Image(mustRef(t, host(srv2)+"/shimg/keep:v1"))
	if err != nil {
		t.Fatalf("pull after restart: %v", err)
	}
	d1, _ := img.Digest()
	d2, _ := got.Digest()
	if d1 != d2 {
		t.Fatalf("digest after restart %v want %v", d2, d1)
	}
	if _, err := got.RawConfigFile(); err != nil {
		t.Fatal(err)
	}
	ls, _ := got.Layers()
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatalf("layer after restart: %v", err)
		}
		rc.Close()
	}
	tags, err := remote.List(mustRef(t, host(srv2)+"/shimg/keep:v1").Context())
	if err != nil || !reflect.DeepEqual(tags, []string{"v1"}) {
		t.Fatalf("tags %v %v", tags, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "uploads")); len(ents) != 0 {
		t.Fatalf("stale uploads kept: %v", ents)
	}
}

func TestNamesAndListings(t *testing.T) {
	srv := newServer(t, t.TempDir())
	resp, b := do(t, http.MethodGet, srv.URL+"/v2/Bad/Name/tags/list", "", nil)
	if resp.StatusCode != http.StatusBadRequest || errCode(t, b) != "NAME_INVALID" {
		t.Fatalf("bad name: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, http.MethodGet, srv.URL+"/v2/shimg/none/tags/list", "", nil)
	if resp.StatusCode != http.StatusNotFound || errCode(t, b) != "NAME_UNKNOWN" {
		t.Fatalf("unknown repo: %d %s", resp.StatusCode, b)
	}
	resp, _ = do(t, http.MethodGet, srv.URL+"/v2/", "", nil)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("/v2/: %d", resp.StatusCode)
	}
	for _, repo := range []string{"shimg/a", "shimg/b/blobs", "shimg/c"} {
		img, _ := random.Image(64, 1)
		for _, tag := range []string{"1", "2", "3"} {
			if err := remote.Write(mustRef(t, host(srv)+"/"+repo+":"+tag), img); err != nil {
				t.Fatal(err)
			}
		}
	}
	resp, b = do(t, http.MethodGet, srv.URL+"/v2/_catalog?n=2", "", nil)
	if string(b) != `{"repositories":["shimg/a","shimg/b/blobs"]}`+"\n" || !strings.Contains(resp.Header.Get("Link"), "last=shimg/b/blobs") {
		t.Fatalf("catalog page: %s link %q", b, resp.Header.Get("Link"))
	}
	_, b = do(t, http.MethodGet, srv.URL+"/v2/_catalog?n=2&last=shimg/b/blobs", "", nil)
	if string(b) != `{"repositories":["shimg/c"]}`+"\n" {
		t.Fatalf("catalog page 2: %s", b)
	}
	_, b = do(t, http.MethodGet, srv.URL+"/v2/shimg/b/blobs/tags/list?n=1&last=1", "", nil)
	if string(b) != `{"name":"shimg/b/blobs","tags":["2"]}`+"\n" {
		t.Fatalf("tags page: %s", b)
	}
	// Deleting a tag and a manifest.
	ref := mustRef(t, host(srv)+"/shimg/a:1")
	if err := remote.Delete(ref); err != nil {
		t.Fatalf("delete tag: %v", err)
	}
	tags, _ := remote.List(ref.Context())
	if !reflect.DeepEqual(tags, []string{"2", "3"}) {
		t.Fatalf("tags after delete %v", tags)
	}
	desc, err := remote.Get(mustRef(t, host(srv)+"/shimg/a:2"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(ref.Context().Digest(desc.Digest.String())); err != nil {
		t.Fatalf("delete manifest: %v", err)
	}
	tags, _ = remote.List(ref.Context())
	if len(tags) != 0 {
		t.Fatalf("tags of a deleted manifest remain: %v", tags)
	}
}
