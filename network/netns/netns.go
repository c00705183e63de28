// Package netns creates, enters and removes network namespaces pinned to a
// file by a bind mount (as `ip netns add` does, but at any path), so a
// namespace outlives the processes in it and the daemon that made it.
package netns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is an open handle on a pinned network namespace.
type NS struct {
	path string
	fd   int
}

// Path is the pin file.
func (n *NS) Path() string { return n.path }

// Fd is an open descriptor of the namespace, valid until Close.
func (n *NS) Fd() int { return n.fd }

// Handle is the namespace as the netns/netlink libraries take it.
func (n *NS) Handle() vnetns.NsHandle { return vnetns.NsHandle(n.fd) }

// Close closes the descriptor; the namespace stays pinned.
func (n *NS) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}

// Netlink opens a rtnetlink handle whose socket lives in the namespace.
func (n *NS) Netlink() (*netlink.Handle, error) {
	return netlink.NewHandleAt(n.Handle(), unix.NETLINK_ROUTE)
}

// Do runs fn on an OS thread switched into the namespace. Anything fn starts
// on other goroutines does not run in the namespace.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// A thread whose namespace we cannot restore must die with this
		// goroutine: returning without UnlockOSThread makes the runtime
		// terminate it instead of reusing it.
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			errc <- fmt.Errorf("current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.path, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns: %w", err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Create makes a new network namespace pinned at path (which must not exist)
// with its loopback up, and returns it open.
func Create(path string) (*NS, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	type result struct {
		fd  int
		err error
	}
	resc := make(chan result, 1)
	go func() {
		// Unshare only this thread and never unlock it: the runtime kills the
		// thread when the goroutine ends, so no other goroutine inherits the
		// new namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			resc <- result{-1, fmt.Errorf("unshare netns: %w", err)}
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			resc <- result{-1, fmt.Errorf("pin netns at %s: %w", path, err)}
			return
		}
		// Bring lo up from inside: cheaper than a second handle later.
		if lo, err := netlink.LinkByName("lo"); err == nil {
			err = netlink.LinkSetUp(lo)
			if err != nil {
				resc <- result{-1, fmt.Errorf("lo up: %w", err)}
				return
			}
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			resc <- result{-1, err}
			return
		}
		resc <- result{fd, nil}
	}()
	r := <-resc
	if r.err != nil {
		_ = Remove(path)
		return nil, r.err
	}
	return &NS{path: path, fd: r.fd}, nil
}

// Open opens a pinned namespace.
func Open(path string) (*NS, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if !isNetNS(fd) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a network namespace", path)
	}
	return &NS{path: path, fd: fd}, nil
}

// IsPinned reports whether path is a pinned network namespace.
func IsPinned(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return isNetNS(fd)
}

func isNetNS(fd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// Remove unpins the namespace at path and deletes the file. The namespace
// itself goes away when no process or descriptor holds it. A missing or
// unmounted path is not an error.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// PrepareDir creates dir and makes it a shared mount point, as iproute2 does
// for /run/netns: pins made in it then propagate to (and unpins from) mount
// namespaces created later, so a copy in another namespace does not keep a
// removed network namespace alive. Idempotent.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	mounted, err := IsMountPoint(dir)
	if err != nil {
		return err
	}
	if !mounted {
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}

// RemoveDir unpins every namespace file in dir, then unmounts and removes
// dir itself. A missing dir is not an error.
func RemoveDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, e := range entries {
		errs = append(errs, Remove(filepath.Join(dir, e.Name())))
	}
	if mounted, _ := IsMountPoint(dir); mounted {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", dir, err))
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// IsMountPoint reports whether path is a mount point in this mount
// namespace, from /proc/self/mountinfo (bind mounts of a directory onto
// itself share its device, so stat cannot tell).
func IsMountPoint(path string) (bool, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false, err
	}
	if p, err := filepath.EvalSymlinks(abs); err == nil {
		abs = p
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountPath(fields[4]) == abs {
			return true, nil
		}
	}
	return false, sc.Err()
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for space ...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
