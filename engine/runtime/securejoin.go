package runtime

import (
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// SecureJoin joins unsafePath to root resolving symlinks as if root were
// "/", so a container's symlink cannot point the engine at a host file.
// Missing trailing components are kept as they are.
func SecureJoin(root, unsafePath string) (string, error) {
	root = filepath.Clean(root)
	var resolved string // relative to root, always clean and starting with "/"
	remaining := path.Clean("/" + unsafePath)
	links := 0
	for remaining != "" && remaining != "/" {
		remaining = strings.TrimPrefix(remaining, "/")
		part, rest, _ := strings.Cut(remaining, "/")
		if rest != "" {
			rest = "/" + rest
		}
		remaining = rest
		if part == "" || part == "." {
			continue
		}
		if part == ".." {
			resolved = path.Dir("/" + resolved)
			if resolved == "/" {
				resolved = ""
			}
			continue
		}
		next := resolved + "/" + part
		fi, err := os.Lstat(root + next)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return root + path.Clean(next+remaining), nil
			}
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > 255 {
			return "", &os.PathError{Op: "securejoin", Path: unsafePath, Err: syscall.ELOOP}
		}
		dest, err := os.Readlink(root + next)
		if err != nil {
			return "", err
		}
		if path.IsAbs(dest) {
			resolved = ""
		}
		remaining = "/" + dest + remaining
	}
	if resolved == "" {
		return root, nil
	}
	return root + resolved, nil
}
