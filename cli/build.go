package cli

import (
	"archive/tar"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/shoal/shoal/internal/tarutil"
)

// newBuildCommand is the classic (v1 builder) `build`: the context
// directory is sent as a tar to POST /build and the daemon's progress
// stream is rendered like docker's.
func newBuildCommand(c *CLI) *cobra.Command {
	var tags, buildArgs, labels []string
	var file, target, network string
	var noCache, pull, quiet, rm, forceRm bool
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body io.Reader
			if args[0] == "-" {
				body = c.In
			} else {
				ctxDir := args[0]
				st, err := os.Stat(ctxDir)
				if err != nil {
					return fmt.Errorf("unable to prepare context: %w", err)
				}
				if !st.IsDir() {
					return fmt.Errorf("unable to prepare context: path %q must be a directory", ctxDir)
				}
				tarball, err := tarContext(ctxDir)
				if err != nil {
					return fmt.Errorf("unable to prepare context: %w", err)
				}
				body = tarball
			}
			bargs := map[string]*string{}
			for _, a := range buildArgs {
				k, v, ok := strings.Cut(a, "=")
				if !ok {
					if env, set := os.LookupEnv(k); set {
						v, ok = env, true
					}
				}
				if ok {
					val := v
					bargs[k] = &val
				} else {
					bargs[k] = nil
				}
			}
			l, err := buildLabels(nil, labels)
			if err != nil {
				return err
			}
			dockerfile := file
			if dockerfile != "" && args[0] != "-" {
				if rel, err := filepath.Rel(args[0], dockerfile); err == nil && !strings.HasPrefix(rel, "..") {
					dockerfile = filepath.ToSlash(rel)
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ImageBuild(cmd.Context(), body, client.ImageBuildOptions{
				Tags: tags, Dockerfile: dockerfile, BuildArgs: bargs, Labels: l, NoCache: noCache, PullParent: pull,
				SuppressOutput: quiet, Remove: rm, ForceRemove: forceRm, Target: target, NetworkMode: network,
				Version: build.BuilderV1,
			})
			if err != nil {
				return err
			}
			defer res.Body.Close()
			out := c.Out
			if quiet {
				out = io.Discard
			}
			return displayJSONStream(res.Body, out)
		},
	}
	f := cmd.Flags()
	f.StringArrayVarP(&tags, "tag", "t", nil, `Name and optionally a tag in the "name:tag" format`)
	f.StringVarP(&file, "file", "f", "", `Name of the Dockerfile (Default is "PATH/Dockerfile")`)
	f.StringArrayVar(&buildArgs, "build-arg", nil, "Set build-time variables")
	f.StringArrayVar(&labels, "label", nil, "Set metadata for an image")
	f.StringVar(&target, "target", "", "Set the target build stage to build")
	f.StringVar(&network, "network", "", "Set the networking mode for the RUN instructions during build")
	f.BoolVar(&noCache, "no-cache", false, "Do not use cache when building the image")
	f.BoolVar(&pull, "pull", false, "Always attempt to pull a newer version of the image")
	f.BoolVarP(&quiet, "quiet", "q", false, "Suppress the build output and print image ID on success")
	f.BoolVar(&rm, "rm", true, "Remove intermediate containers after a successful build")
	f.BoolVar(&forceRm, "force-rm", false, "Always remove intermediate containers")
	return cmd
}

// tarContext archives dir for the daemon, skipping .dockerignore matches
// (simple glob patterns, one per line; "!" exceptions are not supported).
func tarContext(dir string) (io.Reader, error) {
	ignore, err := readDockerignore(dir)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if ignored(ignore, rel) && rel != "Dockerfile" && rel != ".dockerignore" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return tarutil.WriteEntry(tw, path, rel, info, func(h *tar.Header) { h.Uid, h.Gid = 0, 0 })
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

func readDockerignore(dir string) ([]string, error) {
	f, err := os.Open(filepath.Join(dir, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pats []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "!") {
			continue
		}
		pats = append(pats, filepath.ToSlash(filepath.Clean(strings.TrimPrefix(l, "/"))))
	}
	return pats, sc.Err()
}

func ignored(pats []string, rel string) bool {
	for _, p := range pats {
		if ok, _ := filepath.Match(p, rel); ok {
			return true
		}
		if strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}
