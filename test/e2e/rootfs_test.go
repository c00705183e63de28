package e2e

import (
	"archive/tar"
	"io"
	"os"
	"time"
)

// writeBusyboxRootfs writes a minimal root filesystem tarball (busybox and
// the applets the tests use), like a `docker export` would.
func writeBusyboxRootfs(w io.Writer) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	mtime := time.Unix(1700000000, 0)
	dirs := []string{"bin/", "tmp/", "etc/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mtime}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), ModTime: mtime}); err != nil {
		return err
	}
	if _, err := tw.Write(bb); err != nil {
		return err
	}
	for _, applet := range []string{"sh", "echo", "cat", "ls", "true"} {
		if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mtime}); err != nil {
			return err
		}
	}
	return tw.Close()
}
