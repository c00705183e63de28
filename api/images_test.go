package api

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	imagetypes "github.com/moby/moby/api/types/image"
	registrytypes "github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/demo"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/registry"
)

var _ ImageBackend = (*image.Store)(nil)

type imageAPI struct {
	url   string
	store *image.Store
}

func newImageAPI(t *testing.T) imageAPI {
	t.Helper()
	st, err := image.NewStore(image.Config{Root: filepath.Join(t.TempDir(), "shimg-api")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Backends{Images: st}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	return imageAPI{url: srv.URL, store: st}
}

func (a imageAPI) do(t *testing.T, method, path string, body io.Reader) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, a.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func startTestRegistry(t *testing.T) string {
	t.Helper()
	h, err := registry.New(registry.Config{Root: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// smallImage is a one-layer docker-save tarball.
func smallImage(t *testing.T, tag string) []byte {
	t.Helper()
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "hello", Mode: 0o644, Size: 3})
	tw.Write([]byte("hi\n"))
	tw.Close()
	diff := sha(layer.Bytes())
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{"Cmd":["/hello"]},"rootfs":{"type":"layers","diff_ids":["sha256:` + diff + `"]}}`)
	manifest := `[{"Config":"` + sha(cfg) + `.json","RepoTags":["` + tag + `"],"Layers":["` + diff + `/layer.tar"]}]`
	var out bytes.Buffer
	ow := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		data []byte
	}{{diff + "/layer.tar", layer.Bytes()}, {sha(cfg) + ".json", cfg}, {"manifest.json", []byte(manifest)}} {
		ow.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data))})
		ow.Write(f.data)
	}
	ow.Close()
	return out.Bytes()
}

func TestImageRoutesErrors(t *testing.T) {
	a := newImageAPI(t)
	reg := startTestRegistry(t)
	good := smallImage(t, "shimg/app:1")
	if resp, b := a.do(t, "POST", "/images/load", bytes.NewReader(good)); resp.StatusCode != 200 {
		t.Fatalf("load: %d %s", resp.StatusCode, b)
	}
	a.store.SetUsageFunc(func(id string) (image.Usage, bool) {
		return image.Usage{Container: "shimg-web", State: "stopped"}, true
	})
	img, _ := a.store.Get(context.Background(), "shimg/app:1")
	tests := []struct {
		method, path string
		body         []byte
		status       int
		message      string // substring
	}{
		{"GET", "/v1.51/images/nope/json", nil, 404, "No such image: nope"},
		{"GET", "/images/nope/history", nil, 404, "No such image: nope"},
		{"GET", "/images/nope/get", nil, 404, "No such image: nope"},
		{"GET", "/images/get?names=shimg/app:1&names=nope", nil, 404, "No such image: nope"},
		{"DELETE", "/images/localhost:5000/nope:1", nil, 404, "No such image: localhost:5000/nope:1"},
		{"POST", "/images/nope/tag?repo=x", nil, 404, "No such image: nope"},
		{"POST", "/images/shimg/app:1/tag?repo=BAD", nil, 400, "invalid reference format"},
		{"POST", "/images/shimg/app:1/tag", nil, 400, "repository name must have at least one component"},
		{"DELETE", "/images/" + img.ID, nil, 409, "conflict: unable to delete " + img.ID[7:19] + " (must be forced) - image is being used by stopped container shimg-web"},
		{"DELETE", "/images/shimg/app:1", nil, 409, `unable to remove repository reference "shimg/app:1" (must force)`},
		{"POST", "/images/load", []byte("this is not a tarball, not even close, really not............"), 400, "invalid archive"},
		{"POST", "/images/load", good[:len(good)/2], 400, "invalid archive"},
		{"POST", "/images/load", nil, 400, "invalid archive"},
		{"POST", "/images/create", nil, 400, "fromImage or fromSrc is required"},
		{"POST", "/images/create?fromImage=" + reg + "/shimg/nope&tag=latest", nil, 404, "manifest for " + reg + "/shimg/nope:latest not found"},
		{"POST", "/images/create?fromSrc=-&repo=shimg/imp", []byte("garbage garbage garbage"), 400, "invalid layer"},
		{"POST", "/images/create?fromSrc=http://example.invalid/x.tar", nil, 501, "not supported"},
		{"POST", "/images/" + reg + "/shimg/none/push?tag=1", nil, 404, "An image does not exist locally with the tag: " + reg + "/shimg/none:1"},
		{"GET", "/images/json?filters=" + url.QueryEscape(`{"bogus":{"x":true}}`), nil, 400, "invalid filter 'bogus'"},
		{"GET", "/images/shimg/app:1/nonsense", nil, 404, "page not found"},
		{"GET", "/distribution/" + reg + "/shimg/nope:1/json", nil, 404, "not found"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			var body io.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body)
			}
			resp, b := a.do(t, tc.method, tc.path, body)
			var m struct{ Message string }
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%d body %q is not {\"message\"}", resp.StatusCode, b)
			}
			if resp.StatusCode != tc.status || !strings.Contains(m.Message, tc.message) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, m.Message, tc.status, tc.message)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
		})
	}
	// Bad loads imported nothing.
	var list []imagetypes.Summary
	_, b := a.do(t, "GET", "/images/json", nil)
	json.Unmarshal(b, &list)
	if len(list) != 1 {
		t.Fatalf("images after bad loads: %s", b)
	}
}

func TestImageRoutesFlow(t *testing.T) {
	if err := demo.CheckBusybox(); err != nil {
		t.Skip(err)
	}
	a := newImageAPI(t)
	reg := startTestRegistry(t)
	var tarball bytes.Buffer
	if err := demo.WriteTar(&tarball); err != nil {
		t.Fatal(err)
	}
	resp, b := a.do(t, "POST", "/v1.51/images/load?quiet=0", bytes.NewReader(tarball.Bytes()))
	want := `{"stream":"Loaded image: demo/busybox:latest\n"}` + "\n" + `{"stream":"Loaded image: demo/hostname:latest\n"}` + "\n" + `{"stream":"Loaded image: demo/dnstools:latest\n"}` + "\n"
	if resp.StatusCode != 200 || string(b) != want {
		t.Fatalf("load: %d %s", resp.StatusCode, b)
	}
	var list []imagetypes.Summary
	_, b = a.do(t, "GET", "/images/json", nil)
	if err := json.Unmarshal(b, &list); err != nil || len(list) != 3 {
		t.Fatalf("list: %s", b)
	}

	// Names with a registry port and slashes, through every action.
	target := reg + "/shimg/demo/busybox"
	if resp, b := a.do(t, "POST", "/images/demo/busybox/tag?repo="+target+"&tag=v1", nil); resp.StatusCode != 201 {
		t.Fatalf("tag: %d %s", resp.StatusCode, b)
	}
	var in imagetypes.InspectResponse
	resp, b = a.do(t, "GET", "/images/"+target+":v1/json", nil)
	if err := json.Unmarshal(b, &in); resp.StatusCode != 200 || err != nil || in.Config == nil || in.Config.Cmd[0] != "sh" {
		t.Fatalf("inspect: %d %s", resp.StatusCode, b)
	}
	resp, b = a.do(t, "GET", "/images/"+target+":v1/history", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"CreatedBy":"ADD busybox-static`) {
		t.Fatalf("history: %d %s", resp.StatusCode, b)
	}
	resp, b = a.do(t, "POST", "/images/"+target+"/push?tag=v1", nil)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"aux":{"Tag":"v1","Digest":"sha256:`) {
		t.Fatalf("push: %d %s", resp.StatusCode, b)
	}
	resp, b = a.do(t, "GET", "/distribution/"+target+":v1/json", nil)
	var di registrytypes.DistributionInspect
	if err := json.Unmarshal(b, &di); resp.StatusCode != 200 || err != nil || di.Descriptor.Digest.String() == "" || len(di.Platforms) != 1 {
		t.Fatalf("distribution: %d %s", resp.StatusCode, b)
	}

	// A second node pulls it, through the moby client the CLI uses.
	b2 := newImageAPI(t)
	cl, err := client.New(client.WithHost("tcp://"+strings.TrimPrefix(b2.url, "http://")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pr, err := cl.ImagePull(context.Background(), target+":v1", client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := demo.PrintMessages(pr, &out); err != nil {
		t.Fatalf("pull stream: %v\n%s", err, out.String())
	}
	pr.Close()
	if !strings.Contains(out.String(), "Status: Downloaded newer image for "+target+":v1") {
		t.Fatalf("pull output: %s", out.String())
	}
	pulled, err := b2.store.Get(context.Background(), target+":v1")
	if err != nil || pulled.ID != in.ID {
		t.Fatalf("pulled %v %v", pulled, err)
	}
	_, err = cl.ImagePull(context.Background(), reg+"/shimg/nope:1", client.ImagePullOptions{})
	if err == nil {
		t.Fatalf("pull of unknown image succeeded")
	}

	// Save several images and load them elsewhere.
	resp, b = a.do(t, "GET", "/images/get?names=demo/busybox&names=demo/hostname:latest", nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Fatalf("save: %d", resp.StatusCode)
	}
	c := newImageAPI(t)
	lr, err := client.New(client.WithHost("tcp://"+strings.TrimPrefix(c.url, "http://")), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	res, err := lr.ImageLoad(context.Background(), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := demo.PrintMessages(res, &out); err != nil || out.String() != "Loaded image: demo/busybox:latest\nLoaded image: demo/hostname:latest\n" {
		t.Fatalf("load of save: %v %q", err, out.String())
	}
	res.Close()

	// Import with changes.
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "hello", Mode: 0o755, Size: 2})
	tw.Write([]byte("hi"))
	tw.Close()
	resp, b = a.do(t, "POST", "/images/create?fromSrc=-&repo=shimg/imported&tag=1&changes="+url.QueryEscape(`CMD ["/hello"]`), &rootfs)
	var st struct{ Status string }
	if json.Unmarshal(b, &st); resp.StatusCode != 200 || !strings.HasPrefix(st.Status, "sha256:") {
		t.Fatalf("import: %d %s", resp.StatusCode, b)
	}
	if imp, err := a.store.Get(context.Background(), "shimg/imported:1"); err != nil || imp.Config.Config.Cmd[0] != "/hello" {
		t.Fatalf("imported: %v %v", imp, err)
	}

	// Delete: untag, then the image.
	resp, b = a.do(t, "DELETE", "/images/demo/dnstools", nil)
	var recs []imagetypes.DeleteResponse
	if json.Unmarshal(b, &recs); resp.StatusCode != 200 || len(recs) != 2 || recs[0].Untagged != "demo/dnstools:latest" || recs[1].Deleted == "" {
		t.Fatalf("delete: %d %s", resp.StatusCode, b)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
