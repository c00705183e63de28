// Package tarutil writes file-system entries into tar archives, the one
// way the engine (docker cp, export, commit) and the CLI (cp, build
// contexts) all need.
package tarutil

import (
	"archive/tar"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteEntry writes the entry at path, described by fi, as name: its
// header (a symlink as a link, never followed; a directory with a trailing
// slash), then a regular file's content. adjust, if set, may change the
// header before it is written (owners, name).
func WriteEntry(tw *tar.Writer, path, name string, fi fs.FileInfo, adjust func(*tar.Header)) error {
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = os.Readlink(path); err != nil {
			return err
		}
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = filepath.ToSlash(name)
	if fi.IsDir() && h.Name != "" && h.Name[len(h.Name)-1] != '/' {
		h.Name += "/"
	}
	h.Uname, h.Gname = "", ""
	if adjust != nil {
		adjust(h)
	}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(tw, f)
	return err
}

// WriteTree archives the tree at root with entries named under name
// (name "" names them relative to root, without an entry for root).
func WriteTree(w io.Writer, root, name string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if name == "" && rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return WriteEntry(tw, p, filepath.Join(name, rel), fi, nil)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
