package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// The lab changes namespaces and cgroups only on OS threads it locks and
// then lets die (a goroutine that exits while locked takes its thread with
// it), so no other goroutine ever runs in a node's namespace by accident.

// onDoomedThread runs f on a fresh locked OS thread that is thrown away
// afterwards.
func onDoomedThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// The main thread is never terminated (Go parks it for good
			// instead), so it would keep the namespaces and cgroups f gives
			// it, and keep them busy. Hold it while another thread, which
			// cannot be this one, does the work.
			errc <- onDoomedThread(f)
			runtime.UnlockOSThread()
			return
		}
		// Deliberately no UnlockOSThread: see above.
		errc <- f()
	}()
	return <-errc
}

// makeNamespace creates a namespace of kind flag (CLONE_NEWNET, CLONE_NEWUTS)
// and pins it by bind-mounting it on path, as `ip netns add` does. setup
// runs inside the new namespace first (e.g. sethostname).
func makeNamespace(path string, flag int, setup func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	kind := map[int]string{unix.CLONE_NEWNET: "net", unix.CLONE_NEWUTS: "uts"}[flag]
	err = onDoomedThread(func() error {
		if err := unix.Unshare(flag); err != nil {
			return fmt.Errorf("unshare %s namespace: %w", kind, err)
		}
		if setup != nil {
			if err := setup(); err != nil {
				return err
			}
		}
		src := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/" + kind
		if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin %s namespace on %s: %w", kind, path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
	}
	return err
}

// removeNamespace unpins and removes a namespace file made by makeNamespace.
func removeNamespace(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// setnsPath moves the calling thread into the namespace pinned at path.
func setnsPath(path string, flag int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, flag); err != nil {
		return fmt.Errorf("enter namespace %s: %w", path, err)
	}
	return nil
}

// placement says where a spawned process starts: which pinned namespaces
// it enters and which cgroups it is born in.
type placement struct {
	Netns string // "" keeps the host's network namespace
	UTS   string // "" keeps the host's hostname
	// CgroupsV1 are v1 cgroup directories. The thread joins them (tasks
	// file) before forking, so the child is born inside and cannot fork
	// anything outside them first.
	CgroupsV1 []string
	// CgroupV2 is a v2 cgroup directory (pure v2 hosts). Writing a thread
	// id there would move the whole calling process, so the child is moved
	// right after it starts instead.
	CgroupV2 string
}

// spawn starts cmd according to p. The caller owns cmd afterwards (Wait).
func spawn(cmd *exec.Cmd, p placement) error {
	err := onDoomedThread(func() error {
		if p.Netns != "" {
			if err := setnsPath(p.Netns, unix.CLONE_NEWNET); err != nil {
				return err
			}
		}
		if p.UTS != "" {
			if err := setnsPath(p.UTS, unix.CLONE_NEWUTS); err != nil {
				return err
			}
		}
		tid := []byte(strconv.Itoa(unix.Gettid()))
		for _, dir := range p.CgroupsV1 {
			if err := os.WriteFile(filepath.Join(dir, "tasks"), tid, 0); err != nil {
				return fmt.Errorf("join cgroup %s: %w", dir, err)
			}
		}
		return cmd.Start()
	})
	if err != nil {
		return err
	}
	if p.CgroupV2 != "" {
		if err := os.WriteFile(filepath.Join(p.CgroupV2, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return fmt.Errorf("join cgroup %s: %w", p.CgroupV2, err)
		}
	}
	return nil
}

// inNetns runs f on a throw-away OS thread in the network namespace pinned
// at path. Sockets f opens stay in that namespace after it returns; f must
// not rely on goroutines it starts running in the namespace.
func inNetns(path string, f func() error) error {
	return onDoomedThread(func() error {
		if err := setnsPath(path, unix.CLONE_NEWNET); err != nil {
			return err
		}
		return f()
	})
}
