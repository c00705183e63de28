package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/shoal/shoal/internal/tarutil"
)

// newCpCommand is docker's `cp` between a container and this machine
// (or a tar stream on stdin/stdout with "-").
func newCpCommand(c *CLI) *cobra.Command {
	var archive bool
	cmd := &cobra.Command{
		Use:   "cp [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n\tshoal cp [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH",
		Short: "Copy files/folders between a container and the local filesystem",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcCtr, srcPath := splitCpArg(args[0])
			dstCtr, dstPath := splitCpArg(args[1])
			cl, err := c.Client()
			if err != nil {
				return err
			}
			switch {
			case srcCtr != "" && dstCtr != "":
				return errors.New("copying between containers is not supported")
			case srcCtr != "":
				return copyFromContainer(cmd, c, cl, srcCtr, srcPath, dstPath)
			case dstCtr != "":
				return copyToContainer(cmd, c, cl, srcPath, dstCtr, dstPath, archive)
			}
			return errors.New("must specify at least one container source")
		},
	}
	cmd.Flags().BoolVarP(&archive, "archive", "a", false, "Archive mode (copy all uid/gid information)")
	cmd.Flags().BoolP("follow-link", "L", false, "Always follow symbol link in SRC_PATH")
	cmd.Flags().BoolP("quiet", "q", false, "Suppress progress output during copy")
	return cmd
}

// splitCpArg splits CONTAINER:PATH; a local path has no colon before its
// first slash.
func splitCpArg(arg string) (ctr, p string) {
	if filepath.IsAbs(arg) || strings.HasPrefix(arg, ".") {
		return "", arg
	}
	if i := strings.Index(arg, ":"); i > 0 && !strings.Contains(arg[:i], "/") {
		return arg[:i], arg[i+1:]
	}
	return "", arg
}

func copyFromContainer(cmd *cobra.Command, c *CLI, cl *client.Client, ctr, src, dst string) error {
	res, err := cl.CopyFromContainer(cmd.Context(), ctr, client.CopyFromContainerOptions{SourcePath: src})
	if err != nil {
		return err
	}
	defer res.Content.Close()
	if dst == "-" {
		_, err := io.Copy(c.Out, res.Content)
		return err
	}
	// Into an existing directory under the source's name; otherwise as
	// dst itself, in its parent.
	dir, rename := dst, ""
	if fi, err := os.Stat(dst); err != nil || !fi.IsDir() {
		dir, rename = filepath.Dir(dst), filepath.Base(dst)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("destination directory %q must exist", dir)
		}
	}
	return extractLocal(res.Content, dir, res.Stat.Name, rename)
}

func copyToContainer(cmd *cobra.Command, c *CLI, cl *client.Client, src, ctr, dst string, archive bool) error {
	if !path.IsAbs(dst) {
		dst = "/" + dst
	}
	ctx := cmd.Context()
	var content io.Reader
	dir := dst
	if src == "-" {
		content = c.In
	} else {
		fi, err := os.Lstat(src)
		if err != nil {
			return fmt.Errorf("could not find the file %s: %w", src, err)
		}
		name := filepath.Base(src)
		st, err := cl.ContainerStatPath(ctx, ctr, client.ContainerStatPathOptions{Path: dst})
		switch {
		case err == nil && st.Stat.Mode.IsDir():
		case err == nil && fi.IsDir():
			return fmt.Errorf("cannot copy a directory over the file %s", dst)
		case err == nil || cerrdefs.IsNotFound(err):
			dir, name = path.Dir(dst), path.Base(dst)
		default:
			return err
		}
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(tarLocal(pw, src, name)) }()
		content = pr
	}
	_, err := cl.CopyToContainer(ctx, ctr, client.CopyToContainerOptions{DestinationPath: dir, Content: content, CopyUIDGID: archive})
	return err
}

// tarLocal archives local path p under the name name.
func tarLocal(w io.Writer, p, name string) error { return tarutil.WriteTree(w, p, name) }

// extractLocal unpacks a container's archive into dir, its root entry
// (root) renamed to rename when set; nothing lands outside dir.
func extractLocal(r io.Reader, dir, root, rename string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if rename != "" && (name == root || strings.HasPrefix(name, root+"/")) {
			name = rename + strings.TrimPrefix(name, root)
		}
		if name == "." || name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("archive entry %q is outside the destination", h.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := h.FileInfo().Mode()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode.Perm()|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			os.Remove(target)
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode.Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			os.Remove(target)
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		default:
			continue
		}
		if h.Typeflag != tar.TypeSymlink {
			_ = os.Chtimes(target, h.ModTime, h.ModTime)
		}
	}
}

// newDiffCommand is docker's `diff`: the container's filesystem changes.
func newDiffCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "diff CONTAINER",
		Short: "Inspect changes to files or directories on a container's filesystem",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerDiff(cmd.Context(), args[0], client.ContainerDiffOptions{})
			if err != nil {
				return err
			}
			for _, ch := range res.Changes {
				fmt.Fprintln(c.Out, ch.Kind.String(), ch.Path)
			}
			return nil
		},
	}
}

// newExportCommand is docker's `export`: the container's filesystem as a
// tar archive.
func newExportCommand(c *CLI) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Export a container's filesystem as a tar archive",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.writeArchive(output, "export container", func(cl *client.Client) (io.ReadCloser, error) {
				return cl.ContainerExport(cmd.Context(), args[0], client.ContainerExportOptions{})
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// newCommitCommand is docker's `commit`: a new image from a container's
// changes.
func newCommitCommand(c *CLI) *cobra.Command {
	var author, message string
	var changes []string
	var pause bool
	cmd := &cobra.Command{
		Use:   "commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]",
		Short: "Create a new image from a container's changes",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			o := client.ContainerCommitOptions{Comment: message, Author: author, Changes: changes, NoPause: !pause}
			if len(args) == 2 {
				o.Reference = args[1]
			}
			res, err := cl.ContainerCommit(cmd.Context(), args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.Out, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&author, "author", "a", "", `Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")`)
	f.StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	f.StringVarP(&message, "message", "m", "", "Commit message")
	f.BoolVarP(&pause, "pause", "p", true, "Pause container during commit")
	return cmd
}
