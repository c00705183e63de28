package container

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
)

// volumes are docker "local" volumes: ROOT/NAME/_data.
type volumes struct {
	root string
	mu   sync.Mutex
}

// ensure creates volume name if missing; created reports a new volume.
func (v *volumes) ensure(name string, meta volumeMeta) (path string, created bool, err error) {
	if !runtime.ValidVolumeName(name) {
		return "", false, errdefs.InvalidParameter("invalid volume name %q", name)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	data := filepath.Join(v.root, name, "_data")
	if _, err := os.Stat(data); err == nil {
		return data, false, nil
	}
	if err := os.MkdirAll(data, 0o755); err != nil {
		return "", false, errdefs.System("creating volume %s: %v", name, err)
	}
	if meta.CreatedAt.IsZero() {
		meta.CreatedAt = time.Now().UTC()
	}
	if err := writeVolumeMeta(filepath.Join(v.root, name), meta); err != nil {
		os.RemoveAll(filepath.Join(v.root, name))
		return "", false, errdefs.System("creating volume %s: %v", name, err)
	}
	return data, true, nil
}

func (v *volumes) path(name string) string { return filepath.Join(v.root, name, "_data") }

func (v *volumes) remove(name string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return os.RemoveAll(filepath.Join(v.root, name))
}

// prepareMounts makes every user mount ready on the host (volumes created
// and seeded from the image, missing -v bind sources created) and renders
// them for the spec.
func (s *Service) prepareMounts(rootfs string, ms []runtime.Mount) ([]specs.Mount, error) {
	out := make([]specs.Mount, 0, len(ms))
	for _, m := range ms {
		switch m.Type {
		case mount.TypeBind:
			if _, err := os.Stat(m.Source); errors.Is(err, os.ErrNotExist) {
				if !m.CreateSource {
					return nil, errdefs.InvalidParameter("invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
				}
				if err := os.MkdirAll(m.Source, 0o755); err != nil {
					return nil, errdefs.System("creating bind source %s: %v", m.Source, err)
				}
			}
		case mount.TypeVolume:
			p, created, err := s.vols.ensure(m.Source, volumeMeta{Anonymous: m.Anonymous})
			if err != nil {
				return nil, err
			}
			if created && !m.NoCopy {
				// Like docker, a new volume starts with what the image has
				// at the mount point.
				src, err := runtime.SecureJoin(rootfs, m.Destination)
				if err == nil {
					if err := copyTree(src, p); err != nil {
						return nil, errdefs.System("copying image content into volume %s: %v", m.Source, err)
					}
				}
			}
			m.Source = p
		}
		out = append(out, runtime.SpecMount(m))
	}
	return out, nil
}

// copyTree copies the content of src (if it is a directory) into dst,
// keeping modes, owners and symlinks. Devices and sockets are skipped.
func copyTree(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil || !fi.IsDir() {
		return nil
	}
	copyOwnerMode(fi, dst)
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			if err := os.Mkdir(target, fi.Mode().Perm()); err != nil && !os.IsExist(err) {
				return err
			}
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				os.Lchown(target, int(st.Uid), int(st.Gid))
			}
			return nil
		case fi.Mode().IsRegular():
			if err := copyFile(p, target, fi.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		copyOwnerMode(fi, target)
		return nil
	})
}

func copyOwnerMode(fi os.FileInfo, target string) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		os.Lchown(target, int(st.Uid), int(st.Gid))
	}
	os.Chmod(target, fi.Mode()&(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky))
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
