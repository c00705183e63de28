// Package demo builds the demo images from the host's static busybox
// (Debian's busybox-static): there is no image registry on the internet to
// pull from, so the tutorials' images are made here, as docker-save
// tarballs that any daemon loads.
//
// The tarballs are deterministic: entries sorted, fixed times and owners,
// so image IDs are the same on every run with the same busybox binary.
package demo

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
var BusyboxPath = "/bin/busybox"

// Epoch is the fixed time of every file and config in the demo images.
var Epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Names lists the demo images, all tagged :latest.
var Names = []string{"demo/busybox", "demo/hostname", "demo/dnstools"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// hostnameScript serves the container's hostname at / on port 80, like
// the francois/apache-hostname image the swarm tutorials use.
const hostnameScript = `#!/bin/sh
# Answer GET / on port 80 with this container's hostname.
mkdir -p /www
hostname > /www/index.html
# PID 1 ignores signals it has no handler for, and httpd installs none:
# the shell stays PID 1 so "docker stop" ends it at once, not after 10 s.
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
httpd -f -p 80 -h /www &
pid=$!
wait $pid
`

// dnstoolsCmd keeps demo/dnstools alive until it is stopped.
const dnstoolsCmd = "trap 'exit 0' TERM INT; sleep infinity & wait"

// file is one entry of a layer.
type file struct {
	name    string
	mode    int64
	typ     byte
	link    string
	data    []byte
	srcPath string // regular file streamed from the host
	size    int64
}

type imageSpec struct {
	name    string
	layers  [][]file
	config  ocispec.ImageConfig
	history []string
}

// CheckBusybox fails clearly unless BusyboxPath is a static busybox.
func CheckBusybox() error {
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		return fmt.Errorf("demo images need a static busybox at %s (apt-get install busybox-static): %w", BusyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; demo images need the static one (apt-get install busybox-static)", BusyboxPath)
		}
	}
	return nil
}

func applets() ([]string, error) {
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", BusyboxPath, err)
	}
	var names []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			names = append(names, a)
		}
	}
	sort.Strings(names)
	return names, nil
}

// baseLayer is busybox with every applet linked into /bin, a minimal /etc
// with root and nobody, and the usual top-level directories.
func baseLayer() ([]file, error) {
	if err := CheckBusybox(); err != nil {
		return nil, err
	}
	fi, err := os.Stat(BusyboxPath)
	if err != nil {
		return nil, err
	}
	names, err := applets()
	if err != nil {
		return nil, err
	}
	dir := func(n string, mode int64) file { return file{name: n, mode: mode, typ: tar.TypeDir} }
	reg := func(n string, mode int64, data string) file {
		return file{name: n, mode: mode, typ: tar.TypeReg, data: []byte(data)}
	}
	files := []file{
		dir("bin/", 0o755), dir("dev/", 0o755), dir("etc/", 0o755), dir("home/", 0o755),
		dir("proc/", 0o555), dir("root/", 0o700), dir("sbin/", 0o755), dir("sys/", 0o555),
		dir("tmp/", 0o1777), dir("usr/", 0o755), dir("usr/bin/", 0o755), dir("usr/sbin/", 0o755),
		dir("var/", 0o755), dir("var/www/", 0o755),
		{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, srcPath: BusyboxPath, size: fi.Size()},
		reg("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
		reg("etc/group", 0o644, "root:x:0:\nnobody:x:65534:\n"),
		reg("etc/nsswitch.conf", 0o644, "hosts: files dns\n"),
		{name: "usr/bin/env", mode: 0o777, typ: tar.TypeSymlink, link: "/bin/busybox"},
	}
	for _, a := range names {
		files = append(files, file{name: "bin/" + a, mode: 0o777, typ: tar.TypeSymlink, link: "busybox"})
	}
	return files, nil
}

func specs(names []string) ([]imageSpec, error) {
	if len(names) == 0 {
		names = Names
	}
	base, err := baseLayer()
	if err != nil {
		return nil, err
	}
	env := []string{"PATH=" + defaultPath}
	all := map[string]imageSpec{
		"demo/busybox": {
			name:    "demo/busybox",
			layers:  [][]file{base},
			config:  ocispec.ImageConfig{Env: env, Cmd: []string{"sh"}},
			history: []string{"ADD busybox-static and applet links /", `CMD ["sh"]`},
		},
		"demo/hostname": {
			name: "demo/hostname",
			layers: [][]file{base, {
				{name: "hostname-httpd.sh", mode: 0o755, typ: tar.TypeReg, data: []byte(hostnameScript)},
				{name: "www/", mode: 0o755, typ: tar.TypeDir},
			}},
			config: ocispec.ImageConfig{
				Env:          env,
				Entrypoint:   []string{"/hostname-httpd.sh"},
				ExposedPorts: map[string]struct{}{"80/tcp": {}},
				StopSignal:   "SIGTERM",
			},
			history: []string{"ADD busybox-static and applet links /", "COPY hostname-httpd.sh /", `ENTRYPOINT ["/hostname-httpd.sh"]`, "EXPOSE 80/tcp"},
		},
		"demo/dnstools": {
			name:   "demo/dnstools",
			layers: [][]file{base},
			// A trap, so that stopping it does not wait for SIGKILL.
			config:  ocispec.ImageConfig{Env: env, Cmd: []string{"sh", "-c", dnstoolsCmd}},
			history: []string{"ADD busybox-static and applet links /", `CMD ["sh","-c","` + dnstoolsCmd + `"]`},
		},
	}
	var out []imageSpec
	seen := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSuffix(n, ":latest")
		sp, ok := all[n]
		if !ok {
			return nil, fmt.Errorf("unknown demo image %q (have %s)", n, strings.Join(Names, ", "))
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, sp)
		}
	}
	return out, nil
}

// writeLayer writes a layer tarball; called twice per layer (digest, then
// content) so nothing is held in memory.
func writeLayer(w io.Writer, files []file) error {
	sorted := append([]file(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	tw := tar.NewWriter(w)
	for _, f := range sorted {
		hdr := &tar.Header{
			Typeflag: f.typ, Name: f.name, Mode: f.mode, Linkname: f.link,
			ModTime: Epoch, Uname: "root", Gname: "root", Format: tar.FormatPAX,
		}
		if f.typ == tar.TypeReg {
			hdr.Size = int64(len(f.data))
			if f.srcPath != "" {
				hdr.Size = f.size
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if f.typ != tar.TypeReg {
			continue
		}
		if f.srcPath == "" {
			if _, err := tw.Write(f.data); err != nil {
				return err
			}
			continue
		}
		src, err := os.Open(f.srcPath)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f.srcPath, err)
		}
	}
	return tw.Close()
}

type countHash struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (c *countHash) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// WriteTar writes a docker-save tarball holding the named demo images (all
// of them when none is named), ready for `docker load` or POST /images/load.
func WriteTar(w io.Writer, names ...string) error {
	imgs, err := specs(names)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	written := map[string]bool{}
	var manifest []dockerManifest
	repos := map[string]map[string]string{}
	for _, img := range imgs {
		var diffIDs []digest.Digest
		var paths []string
		for _, layer := range img.layers {
			ch := &countHash{h: sha256.New()}
			if err := writeLayer(ch, layer); err != nil {
				return err
			}
			hexID := hex.EncodeToString(ch.h.Sum(nil))
			diffIDs = append(diffIDs, digest.NewDigestFromEncoded(digest.SHA256, hexID))
			p := hexID + "/layer.tar"
			paths = append(paths, p)
			if written[p] {
				continue
			}
			written[p] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: hexID + "/", Mode: 0o755, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, Size: ch.n, ModTime: Epoch, Format: tar.FormatPAX}); err != nil {
				return err
			}
			if err := writeLayer(tw, layer); err != nil {
				return err
			}
		}
		cfg := configFor(img, diffIDs)
		cb, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		cfgName := digest.FromBytes(cb).Encoded() + ".json"
		if err := put(cfgName, cb); err != nil {
			return err
		}
		manifest = append(manifest, dockerManifest{Config: cfgName, RepoTags: []string{img.name + ":latest"}, Layers: paths})
		repos[img.name] = map[string]string{"latest": diffIDs[len(diffIDs)-1].Encoded()}
	}
	mb, _ := json.Marshal(manifest)
	if err := put("manifest.json", mb); err != nil {
		return err
	}
	rb, _ := json.Marshal(repos)
	if err := put("repositories", rb); err != nil {
		return err
	}
	return tw.Close()
}

func configFor(img imageSpec, diffIDs []digest.Digest) ocispec.Image {
	created := Epoch
	cfg := ocispec.Image{
		Created:  &created,
		Author:   "shoal demo",
		Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   img.config,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	layer := 0
	for _, h := range img.history {
		empty := !strings.HasPrefix(h, "ADD ") && !strings.HasPrefix(h, "COPY ")
		if !empty {
			layer++
		}
		cfg.History = append(cfg.History, ocispec.History{Created: &created, CreatedBy: h, EmptyLayer: empty})
	}
	return cfg
}

// Load builds the named demo images and loads them into the daemon cl talks
// to (POST /images/load), printing the daemon's "Loaded image" lines to out.
func Load(ctx context.Context, cl *client.Client, out io.Writer, names ...string) error {
	if _, err := specs(names); err != nil {
		return err // fail before starting a request
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(WriteTar(pw, names...)) }()
	resp, err := cl.ImageLoad(ctx, pr, client.ImageLoadWithQuiet(true))
	if err != nil {
		pr.CloseWithError(err)
		return err
	}
	defer resp.Close()
	return PrintMessages(resp, out)
}

// PrintMessages copies a daemon's JSON message stream to out as text and
// returns the error the stream ends with, if any.
func PrintMessages(r io.Reader, out io.Writer) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Stream string `json:"stream"`
			Status string `json:"status"`
			ID     string `json:"id"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
			Aux json.RawMessage `json:"aux"`
		}
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case m.Error != nil:
			return errors.New(m.Error.Message)
		case m.Stream != "":
			fmt.Fprint(out, m.Stream)
		case m.Status != "" && m.ID != "":
			if m.Status != "Downloading" && m.Status != "Pushing" {
				fmt.Fprintf(out, "%s: %s\n", m.ID, m.Status)
			}
		case m.Status != "":
			fmt.Fprintln(out, m.Status)
		}
	}
}
