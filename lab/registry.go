package lab

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/shoal/shoal/errdefs"
)

// ImageSource writes a `docker save` tarball to w; Up pushes every tagged
// image in it to the lab registry (demo.WriteTar fits).
type ImageSource func(w io.Writer) error

// registryAlive asks GET /v2/ (the registry API's version check).
func registryAlive(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v2/", nil)
	if err != nil {
		return false
	}
	resp, err := directHTTP.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}

// directHTTP never uses a proxy: the lab registry is on a local bridge.
var directHTTP = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// pushImages pushes every tagged image of the tarball src writes to the
// registry at addr ("IP:PORT"), as addr/REPO:TAG, without a daemon. It
// returns the references pushed.
func pushImages(ctx context.Context, addr string, src ImageSource, tmpDir string) ([]string, error) {
	f, err := os.CreateTemp(tmpDir, "images-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	err = src(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write image tarball: %w", err)
	}
	opener := func() (io.ReadCloser, error) { return os.Open(f.Name()) }
	mf, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "read image tarball")
	}
	var pushed []string
	for _, d := range mf {
		for _, t := range d.RepoTags {
			src, err := name.NewTag(t)
			if err != nil {
				return pushed, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "image tag %q", t)
			}
			img, err := tarball.Image(opener, &src)
			if err != nil {
				return pushed, fmt.Errorf("image %s: %w", t, err)
			}
			ref := addr + "/" + repoPath(src) + ":" + src.TagStr()
			dst, err := name.NewTag(ref, name.Insecure)
			if err != nil {
				return pushed, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "image tag %q", ref)
			}
			if err := remote.Write(dst, img, remote.WithContext(ctx), remote.WithTransport(directHTTP.Transport)); err != nil {
				return pushed, fmt.Errorf("push %s: %w", ref, err)
			}
			pushed = append(pushed, ref)
		}
	}
	return pushed, nil
}

// repoPath is the repository without its registry, and without Docker
// Hub's implicit "library/" ("busybox" stays "busybox").
func repoPath(t name.Tag) string {
	r := t.RepositoryStr()
	if t.RegistryStr() == name.DefaultRegistry {
		r = strings.TrimPrefix(r, "library/")
	}
	return r
}
