package lab

import (
	"io"
	"log"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/shoal/shoal/errdefs"
)

// The lab registry itself is `shoal registry serve`; here the push runs
// against go-containerregistry's in-memory registry on loopback.
func TestPushImages(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	imgs := map[string]v1.Image{}
	refs := map[name.Reference]v1.Image{}
	for _, tag := range []string{"demo/busybox:latest", "demo/hostname:latest", "busybox:1.36"} {
		img, err := random.Image(1024, 2)
		if err != nil {
			t.Fatal(err)
		}
		imgs[tag] = img
		ref, err := name.ParseReference(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = img
	}
	src := func(w io.Writer) error { return tarball.MultiRefWrite(refs, w) }
	pushed, err := pushImages(t.Context(), addr, src, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		addr + "/demo/busybox:latest":  true,
		addr + "/demo/hostname:latest": true,
		addr + "/busybox:1.36":         true, // no "library/" added
	}
	got := map[string]bool{}
	for _, r := range pushed {
		got[r] = true
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pushed %v, want %v", pushed, want)
	}
	for tag, img := range imgs {
		ref, err := name.ParseReference(addr+"/"+tag, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		remoteImg, err := remote.Image(ref)
		if err != nil {
			t.Fatalf("pull %s: %v", ref, err)
		}
		d1, _ := img.Digest()
		d2, _ := remoteImg.Digest()
		if d1 != d2 {
			t.Errorf("%s: pushed digest %s, local %s", tag, d2, d1)
		}
	}

	bad := func(w io.Writer) error { _, err := w.Write([]byte("not a tarball")); return err }
	if _, err := pushImages(t.Context(), addr, bad, t.TempDir()); !errdefs.IsInvalidParameter(err) {
		t.Errorf("bad tarball: %v, want InvalidParameter", err)
	}
}
