package image

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// The on-disk layout under Config.Root:
//
//	blobs/sha256/<hex>         content-addressed blobs: manifests, configs, compressed layers
//	layers/sha256/<diffID>/    one unpacked layer: fs/ (the overlay lowerdir) and meta.json
//	images/<id>.json           one record per image (its manifest digest)
//	refs.json                  repository references (tags and digests) -> image ID
//	tmp/                       staging; emptied at start-up
//
// Everything becomes visible by rename(2) from tmp/, so a crash or a bad
// input leaves at most unreferenced content, which gc removes.

func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.cfg.Root, "blobs", "sha256", d.Encoded())
}

func (s *Store) layerPath(diffID digest.Digest) string {
	return filepath.Join(s.cfg.Root, "layers", "sha256", diffID.Encoded())
}

func (s *Store) hasBlob(d digest.Digest) bool {
	_, err := os.Stat(s.blobPath(d))
	return err == nil
}

func (s *Store) readBlob(d digest.Digest, limit int64) ([]byte, error) {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimit(f, limit)
}

// putBlob stores small content (configs, manifests) by its digest.
func (s *Store) putBlob(data []byte) (digest.Digest, error) {
	d := digest.FromBytes(data)
	if s.hasBlob(d) {
		return d, nil
	}
	return d, writeFileAtomic(s.blobPath(d), data, filepath.Join(s.cfg.Root, "tmp"))
}

// commitBlob moves a verified temp file to its content address.
func (s *Store) commitBlob(tmp string, d digest.Digest) error {
	if s.hasBlob(d) {
		return os.Remove(tmp)
	}
	if err := os.MkdirAll(filepath.Dir(s.blobPath(d)), 0o700); err != nil {
		return err
	}
	return os.Rename(tmp, s.blobPath(d))
}

// writeFileAtomic writes data to a temp file in tmpDir, syncs it and renames
// it over path, so readers see the old or the new content, never a part.
func writeFileAtomic(path string, data []byte, tmpDir string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if tmpDir == "" {
		tmpDir = filepath.Dir(path)
	}
	f, err := os.CreateTemp(tmpDir, ".write-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

var errTooLarge = errors.New("content too large")

func readAllLimit(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// removeAll removes a tree, making directories writable first if a plain
// RemoveAll fails (read-only directories unpacked without root).
func removeAll(path string) error {
	if err := os.RemoveAll(path); err == nil {
		return nil
	}
	_ = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
	return os.RemoveAll(path)
}

// digester hashes and counts what passes through it.
type digester struct {
	h hash.Hash
	n int64
}

func newDigester() *digester { return &digester{h: sha256.New()} }

func (d *digester) Write(p []byte) (int, error) {
	d.h.Write(p)
	d.n += int64(len(p))
	return len(p), nil
}

func (d *digester) Digest() digest.Digest {
	return digest.Digest("sha256:" + hex.EncodeToString(d.h.Sum(nil)))
}

func verifyDigest(want, got digest.Digest, what string) error {
	if want != "" && want != got {
		return fmt.Errorf("%s: digest mismatch: expected %s, got %s", what, want, got)
	}
	return nil
}
