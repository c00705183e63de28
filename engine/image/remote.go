package image

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	registrytypes "github.com/moby/moby/api/types/registry"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/version"
)

// insecureSet is dockerd's --insecure-registry: exact "host[:port]" names
// and CIDRs, plus loopback, which docker always treats as insecure.
type insecureSet struct {
	hosts  map[string]bool
	nets   []*net.IPNet
	lookup func(ctx context.Context, host string) ([]net.IPAddr, error)
}

func parseInsecure(list []string) (insecureSet, error) {
	s := insecureSet{hosts: map[string]bool{}, lookup: net.DefaultResolver.LookupIPAddr}
	for _, c := range []string{"127.0.0.0/8", "::1/128"} {
		_, n, _ := net.ParseCIDR(c)
		s.nets = append(s.nets, n)
	}
	for _, e := range list {
		e = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(e), "http://"), "https://"), "/")
		if e == "" {
			continue
		}
		if _, n, err := net.ParseCIDR(e); err == nil {
			s.nets = append(s.nets, n)
			continue
		}
		if strings.ContainsAny(e, "/ ") {
			return s, fmt.Errorf("invalid insecure registry %q: want host[:port] or CIDR", e)
		}
		s.hosts[e] = true
	}
	return s, nil
}

// match reports whether the registry at hostport may be spoken to over
// plain HTTP (or TLS without verification). Names are resolved to check
// CIDRs, as docker does.
func (s insecureSet) match(ctx context.Context, hostport string) bool {
	if s.hosts[hostport] {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else if host == "localhost" {
		ips = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		addrs, err := s.lookup(ctx, host)
		if err != nil {
			return false
		}
		for _, a := range addrs {
			ips = append(ips, a.IP)
		}
	}
	for _, ip := range ips {
		for _, n := range s.nets {
			if n.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// httpsOnly refuses plain HTTP: go-containerregistry falls back to it for
// private and loopback addresses on its own, docker does not.
type httpsOnly struct {
	rt   http.RoundTripper
	host string
}

func (h httpsOnly) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" {
		return nil, fmt.Errorf("registry %s is reachable only over plain HTTP, which is refused: start shoald with --insecure-registry %s to allow it", h.host, h.host)
	}
	return h.rt.RoundTrip(req)
}

type remoteCtx struct {
	opts     []remote.Option
	insecure bool
}

func (s *Store) remoteFor(ctx context.Context, named reference.Named, auth *registrytypes.AuthConfig) remoteCtx {
	host := reference.Domain(named)
	insecure := s.insecure.match(ctx, host)
	base := http.DefaultTransport.(*http.Transport).Clone()
	var rt http.RoundTripper = base
	if insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --insecure-registry asks for exactly this
	} else {
		rt = httpsOnly{rt: base, host: host}
	}
	return remoteCtx{
		insecure: insecure,
		opts: []remote.Option{
			remote.WithContext(ctx),
			remote.WithTransport(rt),
			remote.WithAuth(authenticator(auth)),
			remote.WithUserAgent("shoal/" + version.Version),
			remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 3}),
			remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}),
		},
	}
}

func authenticator(a *registrytypes.AuthConfig) authn.Authenticator {
	if a == nil || *a == (registrytypes.AuthConfig{}) {
		return authn.Anonymous
	}
	return authn.FromConfig(authn.AuthConfig{
		Username:      a.Username,
		Password:      a.Password,
		Auth:          a.Auth,
		IdentityToken: a.IdentityToken,
		RegistryToken: a.RegistryToken,
	})
}

func ggcrRef(named reference.Named, insecure bool) (name.Reference, error) {
	opts := []name.Option{name.WeakValidation}
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(named.String(), opts...)
	if err != nil {
		return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference %q", named.String())
	}
	return r, nil
}

// remoteError gives registry failures their kinds.
func remoteError(err error, what string) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errdefs.KindOf(err) != errdefs.KindUnknown {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		// Docker's wording: "manifest for X not found: manifest unknown: ...".
		detail := err.Error()
		if len(te.Errors) > 0 {
			d := te.Errors[0]
			detail = strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " ")) + ": " + d.Message
		}
		switch te.StatusCode {
		case http.StatusNotFound:
			return errdefs.Wrap(errdefs.KindNotFound, fmt.Errorf("%s not found: %s", what, detail))
		case http.StatusUnauthorized:
			return errdefs.Wrap(errdefs.KindUnauthorized, fmt.Errorf("%s: %s", what, detail))
		case http.StatusForbidden:
			return errdefs.Wrap(errdefs.KindForbidden, fmt.Errorf("%s: %s", what, detail))
		case http.StatusBadRequest:
			return errdefs.Wrap(errdefs.KindInvalidParameter, fmt.Errorf("%s: %s", what, detail))
		}
	}
	return err
}

// Pull fetches ref from its registry (this node's platform from an index),
// storing compressed blobs and unpacking each new layer once. Progress goes
// to progress as docker's JSON messages; nothing is written before the
// manifest was found, so a caller can still answer a plain 404.
func (s *Store) Pull(ctx context.Context, ref string, auth *registrytypes.AuthConfig, progressW io.Writer) (img *Image, err error) {
	named, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	rc := s.remoteFor(ctx, named, auth)
	gref, err := ggcrRef(named, rc.insecure)
	if err != nil {
		return nil, err
	}
	puller, err := remote.NewPuller(rc.opts...)
	if err != nil {
		return nil, err
	}
	desc, err := puller.Get(ctx, gref)
	if err != nil {
		return nil, remoteError(err, "manifest for "+reference.FamiliarString(named))
	}
	p := newProgress(progressW)
	ident := gref.Identifier()
	p.status(ident, "Pulling from "+reference.Path(named))

	var rimg v1.Image
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, remoteError(err, "index")
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, remoteError(err, "index")
		}
		var chosen *v1.Descriptor
		for i := range im.Manifests {
			m := &im.Manifests[i]
			if m.MediaType.IsImage() && (m.Platform == nil || (m.Platform.OS == "linux" && m.Platform.Architecture == runtime.GOARCH)) {
				chosen = m
				break
			}
		}
		if chosen == nil {
			return nil, errdefs.NotFound("no matching manifest for linux/%s in the manifest list entries", runtime.GOARCH)
		}
		if rimg, err = idx.Image(chosen.Digest); err != nil {
			return nil, remoteError(err, "image")
		}
	case desc.MediaType.IsImage():
		if rimg, err = desc.Image(); err != nil {
			return nil, remoteError(err, "image")
		}
	default:
		return nil, errdefs.InvalidParameter("%s: unsupported manifest media type %s", reference.FamiliarString(named), desc.MediaType)
	}
	rawManifest, err := rimg.RawManifest()
	if err != nil {
		return nil, remoteError(err, "manifest")
	}
	rawConfig, err := rimg.RawConfigFile()
	if err != nil {
		return nil, remoteError(err, "config")
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(rawManifest, &m); err != nil {
		return nil, errdefs.InvalidParameter("bad manifest from registry: %v", err)
	}
	if err := verifyDigest(m.Config.Digest, digest.FromBytes(rawConfig), "config"); err != nil {
		return nil, errdefs.Wrap(errdefs.KindInvalidParameter, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, errdefs.InvalidParameter("bad image config from registry: %v", err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, errdefs.InvalidParameter("bad image from registry: %d layers in manifest, %d in config", len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	id := digest.FromBytes(rawConfig).String()

	l := s.newLease()
	defer func() { l.release(err != nil) }()
	downloaded := false
	keep := true
	descs := make([]ocispec.Descriptor, 0, len(m.Layers))
	for i, ld := range m.Layers {
		if _, ok := validDigest(ld.Digest.String()); !ok {
			return nil, errdefs.InvalidParameter("unsupported layer digest %s", ld.Digest)
		}
		short := shortID(ld.Digest.String())
		h, err := v1.NewHash(ld.Digest.String())
		if err != nil {
			return nil, errdefs.InvalidParameter("bad layer digest %s", ld.Digest)
		}
		size := ld.Size
		res, err := s.addLayer(ctx, l, layerInput{
			open: func() (io.ReadCloser, error) {
				p.status(short, "Pulling fs layer")
				layer, err := rimg.LayerByDigest(h)
				if err != nil {
					return nil, err
				}
				return layer.Compressed()
			},
			digest:    ld.Digest,
			mediaType: ld.MediaType,
			diffID:    cfg.RootFS.DiffIDs[i],
			progress: func(r io.Reader) io.Reader {
				return &counter{r: r, report: func(n int64) { p.bytes(short, "Downloading", n, size) }}
			},
		})
		if err != nil {
			return nil, remoteError(err, "layer "+ld.Digest.String())
		}
		descs = append(descs, res.blob)
		if res.blob.Digest != ld.Digest {
			keep = false // an uncompressed layer, stored gzipped
		}
		if res.existed {
			p.status(short, "Already exists")
			continue
		}
		downloaded = true
		p.status(short, "Download complete")
		p.status(short, "Pull complete")
	}
	ni := newImage{manifest: rawManifest, config: rawConfig}
	if !keep {
		ni.manifest = synthManifest(rawConfig, descs)
	}
	if t, ok := named.(reference.NamedTagged); ok {
		ni.tags = append(ni.tags, t)
	}
	if c, err := reference.WithDigest(reference.TrimNamed(named), digest.Digest(desc.Digest.String())); err == nil {
		ni.digests = append(ni.digests, c)
	}
	s.mu.RLock()
	_, had := s.images[id]
	upToDate := had && s.refs[named.String()] == id
	s.mu.RUnlock()
	e, err := s.commitImage(l, ni)
	if err != nil {
		return nil, err
	}
	p.status("", "Digest: "+desc.Digest.String())
	if upToDate && !downloaded {
		p.status("", "Status: Image is up to date for "+reference.FamiliarString(named))
	} else {
		p.status("", "Status: Downloaded newer image for "+reference.FamiliarString(named))
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.imageLocked(e), nil
}

// PushResult is the final aux message of a push, as docker sends it.
type PushResult struct {
	Tag    string
	Digest string
	Size   int
}

// Push sends the image ref names to its registry: the stored compressed
// blobs, the config and the stored manifest, so the registry's digest is
// the local one. A repository name without tag pushes all its tags.
func (s *Store) Push(ctx context.Context, ref string, auth *registrytypes.AuthConfig, progressW io.Writer) error {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid reference format %q", ref)
	}
	if _, ok := named.(reference.Digested); ok {
		return errdefs.InvalidParameter("cannot push a digest reference")
	}
	type target struct {
		tag string
		e   *entry
	}
	var targets []target
	s.mu.RLock()
	if reference.IsNameOnly(named) {
		for _, r := range sortedKeys(s.refs) {
			if !isCanonical(r) && refName(r) == named.Name() {
				if t, err := reference.ParseNormalizedNamed(r); err == nil {
					targets = append(targets, target{t.(reference.NamedTagged).Tag(), s.images[s.refs[r]]})
				}
			}
		}
	} else if id, ok := s.refs[named.String()]; ok {
		targets = append(targets, target{named.(reference.NamedTagged).Tag(), s.images[id]})
	}
	s.mu.RUnlock()
	if len(targets) == 0 {
		return errdefs.NotFound("An image does not exist locally with the tag: %s", reference.FamiliarString(named))
	}
	rc := s.remoteFor(ctx, named, auth)
	pusher, err := remote.NewPusher(rc.opts...)
	if err != nil {
		return err
	}
	puller, err := remote.NewPuller(rc.opts...)
	if err != nil {
		return err
	}
	p := newProgress(progressW)
	p.status("", "The push refers to repository ["+named.Name()+"]")
	for _, t := range targets {
		tagRef, err := reference.WithTag(reference.TrimNamed(named), t.tag)
		if err != nil {
			return errdefs.Wrap(errdefs.KindInvalidParameter, err)
		}
		gref, err := ggcrRef(tagRef, rc.insecure)
		if err != nil {
			return err
		}
		res, err := s.pushOne(ctx, pusher, puller, gref, t.e, p)
		if err != nil {
			return err
		}
		p.status("", fmt.Sprintf("%s: digest: %s size: %d", t.tag, res.Digest, res.Size))
		p.aux(PushResult{Tag: t.tag, Digest: res.Digest, Size: res.Size})
		if c, err := reference.WithDigest(reference.TrimNamed(named), digest.Digest(res.Digest)); err == nil {
			s.mu.Lock()
			if _, ok := s.images[t.e.rec.ID]; ok && s.refs[c.String()] != t.e.rec.ID {
				s.refs[c.String()] = t.e.rec.ID
				if err := s.saveRefsLocked(); err != nil {
					s.log.Warn("image store: saving repo digest", "err", err)
				}
			}
			s.mu.Unlock()
		}
	}
	return nil
}

func (s *Store) pushOne(ctx context.Context, pusher *remote.Pusher, puller *remote.Puller, gref name.Reference, e *entry, p *progress) (PushResult, error) {
	l := s.newLease()
	defer l.release(false)
	l.add(e.rec.Manifest)
	l.add(e.manifest.Config.Digest)
	for _, d := range e.manifest.Layers {
		l.add(d.Digest)
	}
	for _, d := range e.manifest.Layers {
		if !s.hasBlob(d.Digest) {
			return PushResult{}, errdefs.System("image %s: layer blob %s is missing", shortID(e.rec.ID), d.Digest)
		}
	}
	repo := gref.Context()
	diffIDs := e.diffIDs()
	for i := len(diffIDs) - 1; i >= 0; i-- {
		p.status(shortID(diffIDs[i].String()), "Preparing")
	}
	for i := len(diffIDs) - 1; i >= 0; i-- {
		desc := e.manifest.Layers[i]
		short := shortID(diffIDs[i].String())
		if s.remoteHasBlob(ctx, puller, repo, desc.Digest) {
			p.status(short, "Layer already exists")
			continue
		}
		bl := &blobLayer{s: s, desc: desc, diffID: diffIDs[i], wrap: func(r io.Reader) io.Reader {
			return &counter{r: r, report: func(n int64) { p.bytes(short, "Pushing", n, desc.Size) }}
		}}
		if err := pusher.Upload(ctx, repo, bl); err != nil {
			return PushResult{}, remoteError(err, "layer upload")
		}
		p.status(short, "Pushed")
	}
	cfgDesc := e.manifest.Config
	cfgDesc.Digest = digest.Digest(e.rec.ID)
	if err := pusher.Upload(ctx, repo, &blobLayer{s: s, desc: cfgDesc, diffID: cfgDesc.Digest}); err != nil {
		return PushResult{}, remoteError(err, "config upload")
	}
	mb, err := s.readBlob(e.rec.Manifest, maxManifestSize)
	if err != nil {
		return PushResult{}, err
	}
	mt := e.manifest.MediaType
	if mt == "" {
		mt = ocispec.MediaTypeImageManifest
	}
	if err := pusher.Put(ctx, gref, rawManifest{b: mb, mt: types.MediaType(mt)}); err != nil {
		return PushResult{}, remoteError(err, "manifest upload")
	}
	return PushResult{Digest: e.rec.Manifest.String(), Size: len(mb)}, nil
}

func (s *Store) remoteHasBlob(ctx context.Context, puller *remote.Puller, repo name.Repository, d digest.Digest) bool {
	layer, err := puller.Layer(ctx, repo.Digest(d.String()))
	if err != nil {
		return false
	}
	ex, ok := layer.(interface{ Exists() (bool, error) })
	if !ok {
		return false
	}
	exists, err := ex.Exists()
	return err == nil && exists
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.b, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

// blobLayer is a stored blob as go-containerregistry's v1.Layer.
type blobLayer struct {
	s      *Store
	desc   ocispec.Descriptor
	diffID digest.Digest
	wrap   func(io.Reader) io.Reader
}

func (b *blobLayer) Digest() (v1.Hash, error) { return v1.NewHash(b.desc.Digest.String()) }
func (b *blobLayer) DiffID() (v1.Hash, error) { return v1.NewHash(b.diffID.String()) }
func (b *blobLayer) Size() (int64, error)     { return b.desc.Size, nil }
func (b *blobLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(b.desc.MediaType), nil
}
func (b *blobLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(b.s.blobPath(b.desc.Digest))
	if err != nil {
		return nil, err
	}
	if b.wrap == nil {
		return f, nil
	}
	return readCloser{b.wrap(f), f.Close}, nil
}
func (b *blobLayer) Uncompressed() (io.ReadCloser, error) { return b.s.openPlainLayer(b.desc.Digest) }

// DistributionInspect answers GET /distribution/{name}/json: the registry's
// descriptor for ref and the platforms it offers.
func (s *Store) DistributionInspect(ctx context.Context, ref string, auth *registrytypes.AuthConfig) (*registrytypes.DistributionInspect, error) {
	named, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rc := s.remoteFor(ctx, named, auth)
	gref, err := ggcrRef(named, rc.insecure)
	if err != nil {
		return nil, err
	}
	desc, err := remote.Get(gref, rc.opts...)
	if err != nil {
		return nil, remoteError(err, "manifest for "+reference.FamiliarString(named))
	}
	out := &registrytypes.DistributionInspect{
		Descriptor: ocispec.Descriptor{MediaType: string(desc.MediaType), Digest: digest.Digest(desc.Digest.String()), Size: desc.Size},
		Platforms:  []ocispec.Platform{},
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return nil, remoteError(err, "index")
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return nil, remoteError(err, "index")
		}
		for _, m := range im.Manifests {
			if m.Platform != nil {
				out.Platforms = append(out.Platforms, ocispec.Platform{Architecture: m.Platform.Architecture, OS: m.Platform.OS, OSVersion: m.Platform.OSVersion, OSFeatures: m.Platform.OSFeatures, Variant: m.Platform.Variant})
			}
		}
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return nil, remoteError(err, "image")
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, remoteError(err, "config")
		}
		out.Platforms = append(out.Platforms, ocispec.Platform{Architecture: cf.Architecture, OS: cf.OS, OSVersion: cf.OSVersion, Variant: cf.Variant})
	}
	sort.SliceStable(out.Platforms, func(i, j int) bool { return out.Platforms[i].Architecture < out.Platforms[j].Architecture })
	return out, nil
}
