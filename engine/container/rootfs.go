package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// The container's writable layer lives in its directory; the image layers
// are overlay's lower dirs.
const (
	rootfsDir = "rootfs"
	upperDir  = "upper"
	workDir   = "work"
	emptyDir  = "empty" // lower dir of an image without layers
)

// mountRootfs mounts the overlay root filesystem of a container at
// dir/rootfs over layers (lowest first).
func mountRootfs(dir string, layers []string) error {
	target := filepath.Join(dir, rootfsDir)
	upper := filepath.Join(dir, upperDir)
	work := filepath.Join(dir, workDir)
	for _, d := range []string{target, upper, work} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return errdefs.System("preparing rootfs: %v", err)
		}
	}
	if len(layers) == 0 {
		empty := filepath.Join(dir, emptyDir)
		if err := os.MkdirAll(empty, 0o755); err != nil {
			return errdefs.System("preparing rootfs: %v", err)
		}
		layers = []string{empty}
	}
	lower := make([]string, len(layers))
	for i, l := range layers {
		lower[len(layers)-1-i] = escapeOverlay(l) // overlay lists the top layer first
	}
	data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + escapeOverlay(upper) + ",workdir=" + escapeOverlay(work)
	if len(data) < unix.Getpagesize()-1 {
		if err := unix.Mount("overlay", target, "overlay", 0, data); err != nil {
			return errdefs.System("mounting rootfs: %v", err)
		}
		return nil
	}
	// Too many layers for one page of mount options: the new mount API
	// takes them one by one (kernel 6.8+).
	if err := mountOverlayFsconfig(target, layers, upper, work); err != nil {
		return errdefs.System("mounting rootfs (%d layers): %v", len(layers), err)
	}
	return nil
}

func escapeOverlay(p string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `:`, `\:`).Replace(p)
}

func mountOverlayFsconfig(target string, layers []string, upper, work string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for i := len(layers) - 1; i >= 0; i-- {
		if err := unix.FsconfigSetString(fd, "lowerdir+", layers[i]); err != nil {
			return err
		}
	}
	if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
		return err
	}
	if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
		return err
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return err
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH)
}

// unmountRootfs unmounts a container's root filesystem; not mounted is fine.
func unmountRootfs(dir string) error {
	target := filepath.Join(dir, rootfsDir)
	for i := 0; i < 10; i++ {
		err := unix.Unmount(target, 0)
		switch {
		case err == nil:
			continue // stacked mounts: unmount until nothing is left
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY):
			// Something still holds it (a process in another mount
			// namespace): detach it so it goes away when released.
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return err
			}
			return nil
		default:
			return err
		}
	}
	return nil
}
