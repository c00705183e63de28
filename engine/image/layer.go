package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/errdefs"
)

// layerMeta describes one unpacked layer (layers/sha256/<diffID>/meta.json).
type layerMeta struct {
	DiffID digest.Digest `json:"diffID"`
	// Size is the length of the uncompressed layer tar.
	Size int64 `json:"size"`
	// Blob is the compressed blob the layer was first stored from; a later
	// image with the same diffID from a plain tar reuses it.
	Blob ocispec.Descriptor `json:"blob"`
	// Whiteouts is "overlay" (converted) or "aufs" (markers kept, see unpack.go).
	Whiteouts string `json:"whiteouts"`
}

const (
	whiteoutsOverlay = "overlay"
	whiteoutsAUFS    = "aufs"
)

// layerFS is the directory a container mounts as an overlay lowerdir.
func (s *Store) layerFS(diffID digest.Digest) string {
	return filepath.Join(s.layerPath(diffID), "fs")
}

// layerInput is one layer as a source (archive, registry, import) has it.
type layerInput struct {
	open      func() (io.ReadCloser, error)
	digest    digest.Digest // expected digest of the stream as given ("" unknown)
	mediaType string        // as declared by the source ("" unknown)
	diffID    digest.Digest // expected uncompressed digest ("" unknown: import)
	// progress, if set, wraps the source stream (download progress).
	progress func(io.Reader) io.Reader
}

type layerResult struct {
	blob ocispec.Descriptor
	meta layerMeta
	// existed reports that nothing had to be read: blob and layer were there.
	existed bool
}

type compression int

const (
	compNone compression = iota
	compGzip
	compZstd
)

func sniff(b []byte) compression {
	switch {
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return compGzip
	case bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return compZstd
	}
	return compNone
}

// addLayer stores one layer: its compressed blob (a plain tar is gzipped
// once and the result kept, so a push sends the stored bytes) and, unless
// its diffID is already unpacked, the unpacked tree. The stream is read
// once and never held in memory. Everything is staged under tmp/ and
// renamed into place only after the digests check out.
func (s *Store) addLayer(ctx context.Context, l *lease, in layerInput) (layerResult, error) {
	if in.diffID != "" {
		l.add(in.diffID)
		unlock := s.lockLayer(in.diffID)
		defer unlock()
		if meta, ok := s.layerMetaOf(in.diffID); ok {
			// Lease before looking, so a collection cannot race the check.
			if in.digest != "" {
				l.add(in.digest)
			}
			l.add(meta.Blob.Digest)
			switch {
			case in.digest != "" && s.hasBlob(in.digest):
				fi, err := os.Stat(s.blobPath(in.digest))
				if err != nil {
					return layerResult{}, err
				}
				return layerResult{blob: ocispec.Descriptor{MediaType: layerMediaType(in.mediaType, in.digest == in.diffID), Digest: in.digest, Size: fi.Size()}, meta: meta, existed: true}, nil
			case (in.digest == "" || in.digest == in.diffID) && s.hasBlob(meta.Blob.Digest):
				// A plain tar of a layer we hold: reuse the blob we compressed before.
				return layerResult{blob: meta.Blob, meta: meta, existed: true}, nil
			}
			// The layer is unpacked but this source's blob is new to us.
			return s.ingestLayer(ctx, l, in, false)
		}
		return s.ingestLayer(ctx, l, in, true)
	}
	return s.ingestLayer(ctx, l, in, true)
}

func (s *Store) ingestLayer(ctx context.Context, l *lease, in layerInput, unpack bool) (res layerResult, err error) {
	rc, err := in.open()
	if err != nil {
		return res, err
	}
	defer rc.Close()
	var src io.Reader = ctxReader{ctx, rc}
	if in.progress != nil {
		src = in.progress(src)
	}
	stage, err := os.MkdirTemp(filepath.Join(s.cfg.Root, "tmp"), "layer-")
	if err != nil {
		return res, err
	}
	defer func() {
		if stage != "" {
			_ = removeAll(stage)
		}
	}()
	blobFile, err := os.Create(filepath.Join(stage, "blob"))
	if err != nil {
		return res, err
	}
	defer blobFile.Close()

	br := bufio.NewReaderSize(src, 64<<10)
	head, _ := br.Peek(4)
	kind := sniff(head)
	raw := newDigester()
	var plain io.Reader
	var gz *gzip.Writer
	gzD := newDigester()
	switch kind {
	case compGzip, compZstd:
		tee := io.TeeReader(br, io.MultiWriter(raw, blobFile))
		var dec io.Reader
		if kind == compGzip {
			zr, err := gzip.NewReader(tee)
			if err != nil {
				return res, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid gzip layer")
			}
			defer zr.Close()
			dec = zr
		} else {
			zr, err := zstd.NewReader(tee, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return res, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid zstd layer")
			}
			defer zr.Close()
			dec = zr
		}
		// Drain the compressed stream too, so its digest covers every byte.
		plain = io.MultiReader(dec, drainer{tee})
	default:
		gz, _ = gzip.NewWriterLevel(io.MultiWriter(blobFile, gzD), gzip.DefaultCompression)
		plain = io.TeeReader(io.TeeReader(br, raw), gz)
	}
	diff := newDigester()
	tail := &tailReader{r: plain}
	var tarStream io.Reader = io.TeeReader(tail, diff)

	fsDir := filepath.Join(stage, "fs")
	if unpack {
		if err := os.Mkdir(fsDir, 0o755); err != nil {
			return res, err
		}
		if err := unpackLayer(tarStream, fsDir, s.privileged); err != nil {
			return res, classifyReadErr(ctx, err)
		}
	} else if err := checkTar(tarStream); err != nil {
		return res, classifyReadErr(ctx, err)
	}
	if in.diffID == "" && !tail.endsWithZeroBlock() {
		// Nothing to check the content against (import): at least refuse
		// a stream cut at an entry boundary.
		return res, errdefs.InvalidParameter("invalid layer: truncated tar stream (no end-of-archive marker)")
	}
	if _, err := io.Copy(io.Discard, tarStream); err != nil {
		return res, classifyReadErr(ctx, err)
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return res, err
		}
	}
	if err := blobFile.Sync(); err != nil {
		return res, err
	}
	if err := blobFile.Close(); err != nil {
		return res, err
	}

	if err := verifyDigest(in.digest, raw.Digest(), "layer"); err != nil {
		return res, errdefs.Wrap(errdefs.KindInvalidParameter, err)
	}
	diffID := diff.Digest()
	if err := verifyDigest(in.diffID, diffID, "layer "+shortID(in.diffID.String())+" (diffID)"); err != nil {
		return res, errdefs.Wrap(errdefs.KindInvalidParameter, err)
	}
	if kind == compNone {
		res.blob = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: gzD.Digest(), Size: gzD.n}
	} else {
		mt := in.mediaType
		if mt == "" || mt == ocispec.MediaTypeImageLayer {
			mt = ocispec.MediaTypeImageLayerGzip
			if kind == compZstd {
				mt = ocispec.MediaTypeImageLayerZstd
			}
		}
		res.blob = ocispec.Descriptor{MediaType: mt, Digest: raw.Digest(), Size: raw.n}
	}
	l.add(res.blob.Digest)
	if err := s.commitBlob(filepath.Join(stage, "blob"), res.blob.Digest); err != nil {
		return res, err
	}

	l.add(diffID)
	if in.diffID == "" {
		// Import: the diffID was unknown until now, so take its lock here.
		unlock := s.lockLayer(diffID)
		defer unlock()
	}
	if meta, ok := s.layerMetaOf(diffID); ok {
		res.meta = meta
		return res, nil
	}
	if !unpack {
		return res, fmt.Errorf("layer %s vanished while adding its blob", diffID)
	}
	meta := layerMeta{DiffID: diffID, Size: diff.n, Blob: res.blob, Whiteouts: whiteoutsOverlay}
	if !s.privileged {
		meta.Whiteouts = whiteoutsAUFS
	}
	mb, _ := json.Marshal(meta)
	if err := os.WriteFile(filepath.Join(stage, "meta.json"), mb, 0o600); err != nil {
		return res, err
	}
	_ = os.Remove(filepath.Join(stage, "blob"))
	if err := os.MkdirAll(filepath.Dir(s.layerPath(diffID)), 0o700); err != nil {
		return res, err
	}
	if err := os.Rename(stage, s.layerPath(diffID)); err != nil {
		return res, err
	}
	stage = ""
	s.unpacks.Add(1)
	s.mu.Lock()
	s.layers[diffID] = meta
	s.mu.Unlock()
	res.meta = meta
	return res, nil
}

// checkTar reads a tar stream to its end without extracting it.
func checkTar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("invalid layer tar: %w", err)
		}
	}
}

// classifyReadErr marks errors of a source stream as bad input unless the
// request itself went away.
func classifyReadErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errdefs.KindOf(err) != errdefs.KindUnknown {
		return err
	}
	for _, local := range []error{syscall.ENOSPC, syscall.EDQUOT, syscall.EIO, syscall.EROFS, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE} {
		if errors.Is(err, local) {
			return err // the node's trouble, not the input's
		}
	}
	return errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid layer")
}

func layerMediaType(declared string, plain bool) string {
	if declared != "" {
		return declared
	}
	if plain {
		return ocispec.MediaTypeImageLayer
	}
	return ocispec.MediaTypeImageLayerGzip
}

func (s *Store) layerMetaOf(diffID digest.Digest) (layerMeta, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.layers[diffID]
	return m, ok
}

// lockLayer serializes work on one diffID so it is unpacked at most once.
func (s *Store) lockLayer(diffID digest.Digest) func() {
	s.lmu.Lock()
	e, ok := s.llocks[diffID]
	if !ok {
		e = &layerLock{}
		s.llocks[diffID] = e
	}
	e.n++
	s.lmu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		s.lmu.Lock()
		e.n--
		if e.n == 0 {
			delete(s.llocks, diffID)
		}
		s.lmu.Unlock()
	}
}

type layerLock struct {
	mu sync.Mutex
	n  int
}

// ctxReader stops a long copy when the request is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// drainer reads r to its end and reports EOF without data: appended after a
// decompressor, it makes the raw digest cover trailing bytes.
type drainer struct{ r io.Reader }

func (d drainer) Read(p []byte) (int, error) {
	if _, err := io.Copy(io.Discard, d.r); err != nil {
		return 0, err
	}
	return 0, io.EOF
}
