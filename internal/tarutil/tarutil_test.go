package tarutil

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteTree(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "d"), 0o755)
	os.WriteFile(filepath.Join(root, "d", "f"), []byte("body"), 0o640)
	os.Symlink("/etc/passwd", filepath.Join(root, "link"))
	for _, tc := range []struct {
		name string
		want string // entries: name type [content]
	}{
		{"top", "top/ dir|top/d/ dir|top/d/f reg body|top/link sym /etc/passwd"},
		{"", "d/ dir|d/f reg body|link sym /etc/passwd"},
	} {
		var buf bytes.Buffer
		if err := WriteTree(&buf, root, tc.name); err != nil {
			t.Fatal(err)
		}
		var got []string
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			e := h.Name
			switch h.Typeflag {
			case tar.TypeDir:
				e += " dir"
			case tar.TypeReg:
				b, _ := io.ReadAll(tr)
				e += " reg " + string(b)
			case tar.TypeSymlink:
				e += " sym " + h.Linkname
			}
			got = append(got, e)
		}
		if strings.Join(got, "|") != tc.want {
			t.Errorf("name %q: %q, want %q", tc.name, strings.Join(got, "|"), tc.want)
		}
	}
}
