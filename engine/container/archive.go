package container

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/tarutil"
)

// `docker cp`: the archive endpoints read and write a container's files
// from the host. A path resolves to the container's root filesystem (its
// overlay, mounted for the time of the call if the container does not
// run), or to the host side of the bind mount or volume it lies in, or to
// the hostname/hosts/resolv.conf the engine writes; always inside that
// base, symlinks resolved as the container would see them. tmpfs mounts
// live only in the container and are refused.

// hostPath resolves ctrPath for c, whose op lock the caller holds.
// cleanup undoes a temporary rootfs mount.
func (s *Service) hostPath(ctx context.Context, c *ctr, ctrPath string) (p string, cleanup func(), err error) {
	if !path.IsAbs(ctrPath) {
		return "", nil, errdefs.InvalidParameter("path %q is not absolute", ctrPath)
	}
	clean := path.Clean(ctrPath)
	c.mu.Lock()
	mounts := append([]runtime.Mount(nil), c.rec.Mounts...)
	c.mu.Unlock()

	// The innermost mount holding the path.
	var best *runtime.Mount
	for i := range mounts {
		m := &mounts[i]
		if clean == m.Destination || strings.HasPrefix(clean, strings.TrimSuffix(m.Destination, "/")+"/") {
			if best == nil || len(m.Destination) > len(best.Destination) {
				best = m
			}
		}
	}
	if best != nil {
		rel := strings.TrimPrefix(clean, best.Destination)
		switch best.Type {
		case mount.TypeBind:
			p, err := runtime.SecureJoin(best.Source, rel)
			return p, func() {}, err
		case mount.TypeVolume:
			p, err := runtime.SecureJoin(s.vols.path(best.Source), rel)
			return p, func() {}, err
		default:
			return "", nil, errdefs.InvalidParameter("%s is on a %s mount, which only the container sees", ctrPath, best.Type)
		}
	}
	for _, f := range []struct{ dest, name string }{{"/etc/hostname", hostnameFile}, {"/etc/hosts", hostsFile}, {"/etc/resolv.conf", resolvFile}} {
		if clean == f.dest {
			if p := filepath.Join(c.bundle, f.name); fileExists(p) {
				return p, func() {}, nil
			}
		}
	}

	root, cleanup, err := s.rootfsPath(ctx, c)
	if err != nil {
		return "", nil, err
	}
	p, err = runtime.SecureJoin(root, clean)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	return p, cleanup, nil
}

// rootfsPath returns c's mounted root filesystem, mounting it for the
// caller (who holds c.op) when the container does not run; cleanup undoes
// that.
func (s *Service) rootfsPath(ctx context.Context, c *ctr) (string, func(), error) {
	c.mu.Lock()
	imageID, mounted := c.rec.Image, c.mounted
	c.mu.Unlock()
	cleanup := func() {}
	if !mounted {
		img, err := s.cfg.Images.Get(ctx, imageID)
		if err != nil {
			return "", nil, err
		}
		if err := mountRootfs(c.dir, img.LayerDirs); err != nil {
			return "", nil, err
		}
		c.mu.Lock()
		c.mounted = true
		c.mu.Unlock()
		cleanup = func() { s.unmount(c) }
	}
	return filepath.Join(c.dir, rootfsDir), cleanup, nil
}

func fileExists(p string) bool { _, err := os.Lstat(p); return err == nil }

// statPath is docker's PathStat of host path p shown as ctrPath.
func statPath(p, ctrPath string) (*container.PathStat, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.NotFound("Could not find the file %s in container", ctrPath)
	}
	if err != nil {
		return nil, errdefs.System("stat %s: %v", ctrPath, err)
	}
	st := &container.PathStat{Name: path.Base(ctrPath), Size: fi.Size(), Mode: fi.Mode(), Mtime: fi.ModTime()}
	if fi.Mode()&fs.ModeSymlink != 0 {
		st.LinkTarget, _ = os.Readlink(p)
	}
	return st, nil
}

// ArchiveStat is HEAD /containers/{id}/archive.
func (s *Service) ArchiveStat(ctx context.Context, ref, ctrPath string) (*container.PathStat, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	p, cleanup, err := s.hostPath(ctx, c, ctrPath)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return statPath(p, ctrPath)
}

// ArchiveGet is GET /containers/{id}/archive: a tar of the path (a file,
// or a directory with its content), named by the path's last element.
func (s *Service) ArchiveGet(ctx context.Context, ref, ctrPath string) (io.ReadCloser, *container.PathStat, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	c.op.Lock()
	p, cleanup, err := s.hostPath(ctx, c, ctrPath)
	if err != nil {
		c.op.Unlock()
		return nil, nil, err
	}
	st, err := statPath(p, ctrPath)
	if err != nil {
		cleanup()
		c.op.Unlock()
		return nil, nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer c.op.Unlock()
		defer cleanup()
		pw.CloseWithError(writeTar(pw, p, st.Name))
	}()
	return pr, st, nil
}

// writeTar archives host path p as name (recursively for a directory;
// name "" for entries relative to p). Symlinks are archived as links.
func writeTar(w io.Writer, p, name string) error { return tarutil.WriteTree(w, p, name) }

// ArchivePut is PUT /containers/{id}/archive: extracts a tar into the
// directory at ctrPath. Files belong to the container's root unless
// copyUIDGID keeps the archive's owners; noOverwriteDirNonDir refuses to
// replace a directory with a file or the reverse.
func (s *Service) ArchivePut(ctx context.Context, ref, ctrPath string, noOverwriteDirNonDir, copyUIDGID bool, in io.Reader) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	readOnly := c.rec.HostConfig != nil && c.rec.HostConfig.ReadonlyRootfs
	c.mu.Unlock()
	dir, cleanup, err := s.hostPath(ctx, c, ctrPath)
	if err != nil {
		return err
	}
	defer cleanup()
	if fi, err := os.Stat(dir); err != nil {
		return errdefs.NotFound("Could not find the file %s in container", ctrPath)
	} else if !fi.IsDir() {
		return errdefs.InvalidParameter("extraction point is not a directory: %s", ctrPath)
	}
	rootfs := filepath.Join(c.dir, rootfsDir)
	if readOnly && (dir == rootfs || strings.HasPrefix(dir, rootfs+string(filepath.Separator))) {
		return errdefs.Forbidden("container rootfs is marked read-only")
	}
	return extractTar(in, dir, noOverwriteDirNonDir, copyUIDGID)
}

// extractTar unpacks r under dir, every entry kept inside dir.
func extractTar(r io.Reader, dir string, noOverwriteDirNonDir, copyUIDGID bool) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errdefs.InvalidParameter("reading the archive: %v", err)
		}
		name := path.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		target, err := runtime.SecureJoin(dir, name)
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(target); err == nil {
			isDir := h.Typeflag == tar.TypeDir
			if noOverwriteDirNonDir && fi.IsDir() != isDir {
				return errdefs.InvalidParameter("cannot overwrite %s %q with %s", kind(fi.IsDir()), name, kind(isDir))
			}
			if !(fi.IsDir() && isDir) {
				if err := os.RemoveAll(target); err != nil {
					return errdefs.System("replacing %s: %v", name, err)
				}
			}
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return errdefs.System("extracting %s: %v", name, err)
		}
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode.Perm()); err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
			if err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, target); err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
		case tar.TypeLink:
			src, err := runtime.SecureJoin(dir, path.Clean("/"+h.Linkname))
			if err != nil {
				return err
			}
			if err := os.Link(src, target); err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
		default:
			continue // devices, fifos: not through docker cp here
		}
		uid, gid := 0, 0
		if copyUIDGID {
			uid, gid = h.Uid, h.Gid
		}
		if err := os.Lchown(target, uid, gid); err != nil {
			return errdefs.System("extracting %s: %v", name, err)
		}
		if h.Typeflag != tar.TypeSymlink {
			if err := os.Chmod(target, mode.Perm()|mode&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return errdefs.System("extracting %s: %v", name, err)
			}
			_ = os.Chtimes(target, h.ModTime, h.ModTime)
		}
	}
}

func kind(dir bool) string {
	if dir {
		return "directory"
	}
	return "non-directory"
}

// Changes is GET /containers/{id}/changes (`docker diff`): what the
// container's writable layer holds against its image, from the overlay's
// upper directory: whiteouts are deletions, paths the image has are
// changes, the rest additions. The files the engine mounts over
// (hostname, hosts, resolv.conf) are not the container's changes.
func (s *Service) Changes(ctx context.Context, ref string) ([]container.FilesystemChange, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	imageID := c.rec.Image
	c.mu.Unlock()
	img, err := s.cfg.Images.Get(ctx, imageID)
	if err != nil {
		return nil, err
	}
	upper := filepath.Join(c.dir, upperDir)
	inImage := func(rel string) bool {
		for _, l := range img.LayerDirs {
			if fileExists(filepath.Join(l, rel)) {
				return true
			}
		}
		return false
	}
	skip := map[string]bool{"/etc/hostname": true, "/etc/hosts": true, "/etc/resolv.conf": true}
	out := []container.FilesystemChange{}
	err = filepath.WalkDir(upper, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(upper, fp)
		if rel == "." {
			return nil
		}
		p := "/" + filepath.ToSlash(rel)
		if skip[p] {
			return nil
		}
		kind := container.ChangeAdd
		if fi, err := d.Info(); err == nil && fi.Mode()&fs.ModeCharDevice != 0 && isWhiteout(fi) {
			kind = container.ChangeDelete
		} else if inImage(rel) {
			kind = container.ChangeModify
		}
		out = append(out, container.FilesystemChange{Kind: kind, Path: p})
		return nil
	})
	if err != nil {
		return nil, errdefs.System("reading the changes of %s: %v", ref, err)
	}
	return out, nil
}

// isWhiteout: overlay marks a deleted lower file with a 0:0 char device.
func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Rdev == 0
}

// Export is GET /containers/{id}/export: a tar of the container's whole
// filesystem as it sees it (without its mounts).
func (s *Service) Export(ctx context.Context, ref string) (io.ReadCloser, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.op.Lock()
	root, cleanup, err := s.rootfsPath(ctx, c)
	if err != nil {
		c.op.Unlock()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer c.op.Unlock()
		defer cleanup()
		pw.CloseWithError(writeTar(pw, root, ""))
	}()
	return pr, nil
}

// CommitSource is what `docker commit` takes from a container: its image,
// its configuration, and its writable layer as a tar with OCI whiteouts.
type CommitSource struct {
	ImageID string
	Config  container.Config
	Layer   io.ReadCloser
}

// ChangesLayer is a container's writable layer as an image layer: the
// overlay upper directory, whiteout devices as ".wh." files, opaque
// directories marked ".wh..wh..opq"; without the files the engine mounts
// over. The container should not change while it is read (pause it).
func (s *Service) ChangesLayer(ctx context.Context, ref string) (*CommitSource, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	src := &CommitSource{ImageID: c.rec.Image, Config: *c.rec.Config}
	c.mu.Unlock()
	upper := filepath.Join(c.dir, upperDir)
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeLayerTar(pw, upper)) }()
	src.Layer = pr
	return src, nil
}

func writeLayerTar(w io.Writer, upper string) error {
	skip := map[string]bool{"etc/hostname": true, "etc/hosts": true, "etc/resolv.conf": true}
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(upper, func(fp string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(upper, fp)
		if rel == "." || skip[filepath.ToSlash(rel)] {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if fi.Mode()&fs.ModeCharDevice != 0 && isWhiteout(fi) {
			return tw.WriteHeader(&tar.Header{Name: path.Join(path.Dir(name), ".wh."+path.Base(name)), Typeflag: tar.TypeReg, Mode: 0o600, ModTime: fi.ModTime()})
		}
		if err := tarutil.WriteEntry(tw, fp, name, fi, nil); err != nil {
			return err
		}
		if fi.IsDir() && isOpaque(fp) {
			return tw.WriteHeader(&tar.Header{Name: name + "/.wh..wh..opq", Typeflag: tar.TypeReg, Mode: 0o600, ModTime: fi.ModTime()})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// isOpaque: overlay marks a directory that hides the lower ones' content.
func isOpaque(dir string) bool {
	buf := make([]byte, 1)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	return err == nil && n == 1 && buf[0] == 'y'
}
