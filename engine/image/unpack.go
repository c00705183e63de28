package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Whiteouts. Image layers mark deletions AUFS-style: ".wh.NAME" hides NAME
// from lower layers and ".wh..wh..opq" makes its directory opaque. Overlayfs
// wants a 0/0 character device named NAME and the xattr
// trusted.overlay.opaque=y, and both need CAP_MKNOD/CAP_SYS_ADMIN.
//
// Decision: a privileged store (root, the real daemon) converts while
// unpacking. An unprivileged one (unit tests) keeps the AUFS marker files
// verbatim, which loses nothing, and records that in the layer's meta.json;
// a later privileged NewStore over the same root converts such layers in
// place (convertAUFS) before any container can mount them. Device nodes
// other than whiteouts are skipped without privilege, and file ownership is
// only applied with it.
const (
	whPrefix    = ".wh."
	whMetaPref  = ".wh..wh."
	whOpaque    = ".wh..wh..opq"
	opaqueXattr = "trusted.overlay.opaque"
)

type dirAttrs struct {
	name string
	hdr  *tar.Header
}

type unpacker struct {
	root       *os.Root
	privileged bool
	dirs       []dirAttrs
}

// unpackLayer extracts the tar stream r into the empty directory dir.
// Entries cannot escape dir: names are cleaned and every path operation goes
// through an os.Root, which refuses to follow symlinks out of it.
func unpackLayer(r io.Reader, dir string, privileged bool) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, privileged: privileged}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("invalid layer tar: %w", err)
		}
		if err := u.entry(tr, hdr); err != nil {
			return fmt.Errorf("unpacking %q: %w", hdr.Name, err)
		}
	}
	// Directory metadata last, deepest first, so adding children did not
	// disturb mtimes and read-only directories were writable while filled.
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		if err := u.setAttrs(d.name, d.hdr, nil); err != nil {
			return fmt.Errorf("directory %q: %w", d.name, err)
		}
	}
	return nil
}

func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func (u *unpacker) entry(tr *tar.Reader, hdr *tar.Header) error {
	name := cleanName(hdr.Name)
	if name == "" || hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if first, _, _ := strings.Cut(name, "/"); strings.HasPrefix(first, whMetaPref) {
		return nil // AUFS bookkeeping (.wh..wh.plnk/...): no meaning here
	}
	parent, base := path.Dir(name), path.Base(name)
	if err := u.mkdirAll(parent); err != nil {
		return err
	}
	if strings.HasPrefix(base, whPrefix) {
		switch {
		case base == whOpaque:
			return u.opaque(parent)
		case strings.HasPrefix(base, whMetaPref):
			return nil
		default:
			return u.whiteout(parent, base[len(whPrefix):])
		}
	}
	if fi, err := u.root.Lstat(name); err == nil {
		if !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
			if err := u.root.RemoveAll(name); err != nil {
				return err
			}
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := u.root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		u.dirs = append(u.dirs, dirAttrs{name: name, hdr: hdr})
		return nil
	case tar.TypeReg, tar.TypeRegA:
		f, err := u.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, tr); err != nil {
			f.Close()
			return err
		}
		err = u.setAttrs(name, hdr, f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return u.root.Chtimes(name, atime(hdr), hdr.ModTime)
	case tar.TypeSymlink:
		if err := u.root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		if u.privileged {
			return u.root.Lchown(name, hdr.Uid, hdr.Gid)
		}
		return nil
	case tar.TypeLink:
		target := cleanName(hdr.Linkname)
		if target == "" {
			return fmt.Errorf("hard link to the layer root")
		}
		return u.root.Link(target, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		if hdr.Typeflag != tar.TypeFifo && !u.privileged {
			return nil
		}
		if err := u.mknod(parent, base, mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
		if u.privileged {
			return u.root.Lchown(name, hdr.Uid, hdr.Gid)
		}
		return nil
	}
	return nil // other types (sparse, GNU extensions archive/tar does not fold) carry no file
}

// mkdirAll creates missing parents with docker's implicit 0755 root:root.
func (u *unpacker) mkdirAll(dir string) error {
	if dir == "." || dir == "" {
		return nil
	}
	if fi, err := u.root.Lstat(dir); err == nil {
		if fi.IsDir() {
			return nil
		}
		// A parent may be a symlink to a directory inside the layer.
		if fi2, err := u.root.Stat(dir); err == nil && fi2.IsDir() {
			return nil
		}
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := u.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	if err := u.root.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return nil
}

// setAttrs applies ownership, mode, xattrs and (for directories) times.
// Ownership first: chown clears setuid bits and file capabilities.
func (u *unpacker) setAttrs(name string, hdr *tar.Header, f *os.File) error {
	if u.privileged {
		if err := u.root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
			return err
		}
	}
	if err := u.root.Chmod(name, tarMode(hdr)); err != nil {
		return err
	}
	var xattrs [][2]string
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			xattrs = append(xattrs, [2]string{x, v})
		}
	}
	if len(xattrs) > 0 {
		if f == nil {
			df, err := u.root.Open(name)
			if err != nil {
				return err
			}
			defer df.Close()
			f = df
		}
		for _, x := range xattrs {
			err := unix.Fsetxattr(int(f.Fd()), x[0], []byte(x[1]), 0)
			if err != nil && (u.privileged && !errors.Is(err, unix.ENOTSUP)) {
				return fmt.Errorf("xattr %s: %w", x[0], err)
			}
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return u.root.Chtimes(name, atime(hdr), hdr.ModTime)
	}
	return nil
}

func tarMode(hdr *tar.Header) os.FileMode {
	m := os.FileMode(hdr.Mode).Perm()
	if hdr.Mode&04000 != 0 {
		m |= os.ModeSetuid
	}
	if hdr.Mode&02000 != 0 {
		m |= os.ModeSetgid
	}
	if hdr.Mode&01000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

func atime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

func (u *unpacker) whiteout(dir, name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("invalid whiteout name")
	}
	target := path.Join(dir, name)
	if err := u.root.RemoveAll(target); err != nil {
		return err
	}
	if !u.privileged {
		return u.root.WriteFile(path.Join(dir, whPrefix+name), nil, 0o600)
	}
	return u.mknod(dir, name, unix.S_IFCHR, 0)
}

func (u *unpacker) opaque(dir string) error {
	if !u.privileged {
		return u.root.WriteFile(path.Join(dir, whOpaque), nil, 0o600)
	}
	f, err := u.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fsetxattr(int(f.Fd()), opaqueXattr, []byte("y"), 0)
}

func (u *unpacker) mknod(dir, name string, mode uint32, dev int) error {
	f, err := u.root.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Mknodat(int(f.Fd()), name, mode, dev)
}

// convertAUFS turns AUFS whiteout markers left by an unprivileged unpack into
// overlay whiteouts. It needs root.
func convertAUFS(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	u := &unpacker{root: root, privileged: true}
	var markers []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasPrefix(d.Name(), whPrefix) {
			rel, _ := filepath.Rel(dir, p)
			markers = append(markers, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range markers {
		parent, base := path.Dir(m), path.Base(m)
		if err := root.Remove(m); err != nil {
			return err
		}
		if base == whOpaque {
			err = u.opaque(parent)
		} else if !strings.HasPrefix(base, whMetaPref) {
			err = u.whiteout(parent, base[len(whPrefix):])
		}
		if err != nil {
			return fmt.Errorf("converting %s: %w", m, err)
		}
	}
	return nil
}
