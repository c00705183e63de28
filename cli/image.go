package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/jsonmessage"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// displayJSONStream renders a daemon progress stream (pull, push, load,
// import) the way docker does: live bars on a terminal, plain lines
// otherwise. An error message in the stream becomes the returned error.
func displayJSONStream(in io.Reader, out io.Writer) error {
	fd, isTerm := terminalFd(out)
	return jsonmessage.DisplayJSONMessagesStream(in, out, uintptr(fd), isTerm, nil)
}

// encodedRegistryAuth finds credentials for ref's registry in the docker
// client config (~/.docker/config.json "auths"), base64url-encoded as the
// X-Registry-Auth header wants; "{}" when there are none.
func encodedRegistryAuth(ref string) string {
	const empty = "e30="
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return empty
	}
	host := reference.Domain(named)
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return empty
		}
		dir = filepath.Join(home, ".docker")
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return empty
	}
	var cfg struct {
		Auths map[string]struct {
			Auth string `json:"auth"`
		} `json:"auths"`
	}
	if json.Unmarshal(data, &cfg) != nil {
		return empty
	}
	keys := []string{host}
	if host == "docker.io" {
		keys = append(keys, "https://index.docker.io/v1/")
	}
	for _, k := range keys {
		a, ok := cfg.Auths[k]
		if !ok || a.Auth == "" {
			continue
		}
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			continue
		}
		user, pass, _ := strings.Cut(string(dec), ":")
		b, _ := json.Marshal(registry.AuthConfig{Username: user, Password: pass, ServerAddress: k})
		return base64.URLEncoding.EncodeToString(b)
	}
	return empty
}

// pullImage pulls ref, rendering progress to out.
func (c *CLI) pullImage(ctx context.Context, cl *client.Client, ref string, platform *ocispec.Platform, out io.Writer) error {
	opts := client.ImagePullOptions{RegistryAuth: encodedRegistryAuth(ref)}
	if platform != nil {
		opts.Platforms = []ocispec.Platform{*platform}
	}
	resp, err := cl.ImagePull(ctx, ref, opts)
	if err != nil {
		return err
	}
	defer resp.Close()
	return displayJSONStream(resp, out)
}

func newPullCommand(c *CLI) *cobra.Command {
	var all, quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			named, err := reference.ParseNormalizedNamed(args[0])
			if err != nil {
				return err
			}
			if all && !reference.IsNameOnly(named) {
				return errors.New("tag can't be used with --all-tags/-a")
			}
			if !all && reference.IsNameOnly(named) {
				named = reference.TagNameOnly(named)
				if tagged, ok := named.(reference.Tagged); ok && !quiet {
					fmt.Fprintf(c.Out, "Using default tag: %s\n", tagged.Tag())
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var plat *ocispec.Platform
			if platform != "" {
				p, err := parsePlatform(platform)
				if err != nil {
					return err
				}
				plat = &p
			}
			opts := client.ImagePullOptions{All: all, RegistryAuth: encodedRegistryAuth(args[0])}
			if plat != nil {
				opts.Platforms = []ocispec.Platform{*plat}
			}
			resp, err := cl.ImagePull(cmd.Context(), reference.FamiliarString(named), opts)
			if err != nil {
				return err
			}
			defer resp.Close()
			out := c.Out
			if quiet {
				out = io.Discard
			}
			if err := displayJSONStream(resp, out); err != nil {
				return err
			}
			fmt.Fprintln(c.Out, named.String())
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Download all tagged images in the repository")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	return cmd
}

func newPushCommand(c *CLI) *cobra.Command {
	var all, quiet bool
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			named, err := reference.ParseNormalizedNamed(args[0])
			if err != nil {
				return err
			}
			if all && !reference.IsNameOnly(named) {
				return fmt.Errorf("tag can't be used with --all-tags/-a")
			}
			if !all && reference.IsNameOnly(named) {
				named = reference.TagNameOnly(named)
				if tagged, ok := named.(reference.Tagged); ok && !quiet {
					fmt.Fprintf(c.Out, "Using default tag: %s\n", tagged.Tag())
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			resp, err := cl.ImagePush(cmd.Context(), reference.FamiliarString(named), client.ImagePushOptions{All: all, RegistryAuth: encodedRegistryAuth(args[0])})
			if err != nil {
				return err
			}
			defer resp.Close()
			out := c.Out
			if quiet {
				out = io.Discard
			}
			if err := displayJSONStream(resp, out); err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(c.Out, named.String())
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&all, "all-tags", "a", false, "Push all tags of an image to the repository")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress verbose output")
	return cmd
}

func newLoadCommand(c *CLI) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [OPTIONS]",
		Short: "Load an image from a tar archive or STDIN",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var in io.Reader = c.In
			if input != "" {
				f, err := os.Open(input)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			} else if isTerminal(c.In) {
				return errors.New("requested load from stdin, but stdin is empty")
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if !isTerminal(c.Out) {
				quiet = true
			}
			res, err := cl.ImageLoad(cmd.Context(), in, client.ImageLoadWithQuiet(quiet))
			if err != nil {
				return err
			}
			defer res.Close()
			return displayJSONStream(res, c.Out)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "Read from tar archive file, instead of STDIN")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress the load output")
	return cmd
}

func newSaveCommand(c *CLI) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "save [OPTIONS] IMAGE [IMAGE...]",
		Short: "Save one or more images to a tar archive (streamed to STDOUT by default)",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.writeArchive(output, "save image", func(cl *client.Client) (io.ReadCloser, error) {
				return cl.ImageSave(cmd.Context(), args)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "Write to a file, instead of STDOUT")
	return cmd
}

// writeArchive streams the archive open returns (save, export) to output,
// or to stdout when output is "" and stdout is not a terminal; what is
// "save image" or "export container" for error messages.
func (c *CLI) writeArchive(output, what string, open func(*client.Client) (io.ReadCloser, error)) error {
	if output == "" && isTerminal(c.Out) {
		return errors.New("cowardly refusing to save to a terminal. Use the -o flag or redirect")
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	rc, err := open(cl)
	if err != nil {
		return err
	}
	defer rc.Close()
	if output == "" {
		_, err := io.Copy(c.Out, rc)
		return err
	}
	return writeFileAtomic(output, what, rc)
}

// writeFileAtomic writes r to path via a temp file so a failure leaves no
// partial archive behind.
func writeFileAtomic(path, what string, r io.Reader) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".shoal-save-")
	if err != nil {
		return fmt.Errorf("failed to %s: %w", what, err)
	}
	tmp := f.Name()
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("failed to %s: %w", what, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

func newImportCommand(c *CLI) *cobra.Command {
	var changes []string
	var message, platform string
	cmd := &cobra.Command{
		Use:   "import [OPTIONS] file|URL|- [REPOSITORY[:TAG]]",
		Short: "Import the contents from a tarball to create a filesystem image",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := client.ImageImportSource{}
			switch {
			case args[0] == "-":
				src.Source, src.SourceName = c.In, "-"
			case strings.HasPrefix(args[0], "http://") || strings.HasPrefix(args[0], "https://"):
				src.SourceName = args[0]
			default:
				f, err := os.Open(args[0])
				if err != nil {
					return err
				}
				defer f.Close()
				src.Source, src.SourceName = f, "-"
			}
			ref := ""
			if len(args) == 2 {
				ref = args[1]
			}
			opts := client.ImageImportOptions{Message: message}
			for _, ch := range changes {
				opts.Changes = append(opts.Changes, strings.ReplaceAll(ch, "=", " "))
			}
			if platform != "" {
				p, err := parsePlatform(platform)
				if err != nil {
					return err
				}
				opts.Platform = p
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			rc, err := cl.ImageImport(cmd.Context(), src, ref, opts)
			if err != nil {
				return err
			}
			defer rc.Close()
			return displayJSONStream(rc, c.Out)
		},
	}
	cmd.Flags().StringArrayVarP(&changes, "change", "c", nil, "Apply Dockerfile instruction to the created image")
	cmd.Flags().StringVarP(&message, "message", "m", "", "Set commit message for imported image")
	cmd.Flags().StringVar(&platform, "platform", "", "Set platform if server is multi-platform capable")
	return cmd
}

func newTagCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]",
		Short: "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			_, err = cl.ImageTag(cmd.Context(), client.ImageTagOptions{Source: args[0], Target: args[1]})
			return err
		},
	}
}

func newRmiCommand(c *CLI) *cobra.Command {
	var force, noPrune bool
	cmd := &cobra.Command{
		Use:   "rmi [OPTIONS] IMAGE [IMAGE...]",
		Short: "Remove one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var errs []string
			for _, img := range args {
				res, err := cl.ImageRemove(cmd.Context(), img, client.ImageRemoveOptions{Force: force, PruneChildren: !noPrune})
				if err != nil {
					if !(force && isNotFound(err)) {
						errs = append(errs, c.errorText(err))
					}
					continue
				}
				for _, d := range res.Items {
					if d.Deleted != "" {
						fmt.Fprintln(c.Out, "Deleted:", d.Deleted)
					} else {
						fmt.Fprintln(c.Out, "Untagged:", d.Untagged)
					}
				}
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force removal of the image")
	cmd.Flags().BoolVar(&noPrune, "no-prune", false, "Do not delete untagged parents")
	return cmd
}

// ---- images / image ls ----

const (
	defaultImageTableFormat           = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
	defaultImageTableFormatWithDigest = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}\t{{.Size}}"
)

var imageHeaders = map[string]string{
	"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "CreatedSince": "CREATED",
	"CreatedAt": "CREATED AT", "Size": "SIZE", "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE",
	"UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
}

type imageRow struct {
	i                 image.Summary
	repo, tag, digest string
	trunc             bool
	now               time.Time
}

func (r *imageRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *imageRow) ID() string {
	if r.trunc {
		return truncateID(r.i.ID)
	}
	return r.i.ID
}
func (r *imageRow) Repository() string { return r.repo }
func (r *imageRow) Tag() string        { return r.tag }
func (r *imageRow) Digest() string     { return r.digest }
func (r *imageRow) CreatedSince() string {
	if r.i.Created == 0 {
		return ""
	}
	return timeAgo(r.now, time.Unix(r.i.Created, 0))
}
func (r *imageRow) CreatedAt() string   { return time.Unix(r.i.Created, 0).String() }
func (r *imageRow) Size() string        { return humanSize(r.i.Size) }
func (r *imageRow) VirtualSize() string { return units.HumanSize(float64(r.i.Size)) }
func (r *imageRow) Containers() string {
	if r.i.Containers == -1 {
		return "N/A"
	}
	return fmt.Sprint(r.i.Containers)
}
func (r *imageRow) SharedSize() string {
	if r.i.SharedSize == -1 {
		return "N/A"
	}
	return units.HumanSize(float64(r.i.SharedSize))
}
func (r *imageRow) UniqueSize() string {
	if r.i.Size == -1 || r.i.SharedSize == -1 {
		return "N/A"
	}
	return units.HumanSize(float64(r.i.Size - r.i.SharedSize))
}

func isDangling(img image.Summary) bool {
	if len(img.RepoTags) == 0 && len(img.RepoDigests) == 0 {
		return true
	}
	return len(img.RepoTags) == 1 && img.RepoTags[0] == "<none>:<none>" && len(img.RepoDigests) == 1 && img.RepoDigests[0] == "<none>@<none>"
}

// imageRows expands an image into one row per repository:tag, as docker.
func imageRows(img image.Summary, digests, trunc bool, now time.Time) []*imageRow {
	mk := func(repo, tag, dg string) *imageRow {
		return &imageRow{i: img, repo: repo, tag: tag, digest: dg, trunc: trunc, now: now}
	}
	if isDangling(img) {
		return []*imageRow{mk("<none>", "<none>", "<none>")}
	}
	repoTags := map[string][]string{}
	repoDigests := map[string][]string{}
	for _, s := range img.RepoTags {
		ref, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			continue
		}
		if nt, ok := ref.(reference.NamedTagged); ok {
			name := reference.FamiliarName(ref)
			repoTags[name] = append(repoTags[name], nt.Tag())
		}
	}
	for _, s := range img.RepoDigests {
		ref, err := reference.ParseNormalizedNamed(s)
		if err != nil {
			continue
		}
		if cn, ok := ref.(reference.Canonical); ok {
			name := reference.FamiliarName(ref)
			repoDigests[name] = append(repoDigests[name], cn.Digest().String())
		}
	}
	var rows []*imageRow
	for _, repo := range sortedKeys(repoTags) {
		dgs := repoDigests[repo]
		delete(repoDigests, repo)
		if !digests {
			dgs = nil
		}
		for _, tag := range repoTags[repo] {
			if len(dgs) == 0 {
				rows = append(rows, mk(repo, tag, "<none>"))
				continue
			}
			for _, d := range dgs {
				rows = append(rows, mk(repo, tag, d))
			}
		}
	}
	for _, repo := range sortedKeys(repoDigests) {
		if digests {
			for _, d := range repoDigests[repo] {
				rows = append(rows, mk(repo, "<none>", d))
			}
		} else {
			rows = append(rows, mk(repo, "<none>", ""))
		}
	}
	return rows
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func newImagesCommand(c *CLI, use string) *cobra.Command {
	var o struct {
		all, quiet, digests, noTrunc bool
		format                       string
		filter                       filterFlag
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "List images",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			filters := o.filter.filters()
			if len(args) == 1 {
				filters.Add("reference", args[0])
			}
			res, err := cl.ImageList(cmd.Context(), client.ImageListOptions{All: o.all, Filters: filters})
			if err != nil {
				return err
			}
			format := o.format
			switch {
			case o.quiet && (format == "" || isTableFormat(format)):
				format = quietFormat
			case format == "" || format == tableFormatKey:
				format = defaultImageTableFormat
				if o.digests {
					format = defaultImageTableFormatWithDigest
				}
			case isTableFormat(format) && o.digests && !strings.Contains(format, "{{.Digest}}"):
				format += `\t{{.Digest}}`
			}
			now := c.now()
			var rows []any
			for _, img := range res.Items {
				for _, r := range imageRows(img, o.digests || strings.Contains(format, ".Digest"), !o.noTrunc, now) {
					rows = append(rows, r)
				}
			}
			return writeList(c.Out, format, imageHeaders, rows)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "Show all images (default hides intermediate images)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Only show image IDs")
	f.BoolVar(&o.digests, "digests", false, "Show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Don't truncate output")
	f.StringVar(&o.format, "format", "", "Format output using a custom template")
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

func newImageInspectCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return inspectAll(cmd.Context(), c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				var raw bytes.Buffer
				r, err := cl.ImageInspect(ctx, ref, client.ImageInspectWithRawResponse(&raw))
				return r.InspectResponse, raw.Bytes(), err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func newHistoryCommand(c *CLI) *cobra.Command {
	var noTrunc, quiet, human bool
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] IMAGE",
		Short: "Show the history of an image",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ImageHistory(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			now := c.now()
			var rows []any
			for _, h := range res.Items {
				rows = append(rows, &historyRow{h: h, trunc: !noTrunc, human: human, now: now})
			}
			if quiet {
				format = quietFormat
			} else if format == "" || format == tableFormatKey {
				format = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
			}
			return writeList(c.Out, format, map[string]string{"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT",
				"CreatedBy": "CREATED BY", "Size": "SIZE", "Comment": "COMMENT"}, rows)
		},
	}
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Don't truncate output")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only show image IDs")
	cmd.Flags().BoolVarP(&human, "human", "H", true, "Print sizes and dates in human readable format")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

type historyRow struct {
	h            image.HistoryResponseItem
	trunc, human bool
	now          time.Time
}

func (r *historyRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *historyRow) ID() string {
	if r.h.ID == "" || r.h.ID == "<missing>" {
		return "<missing>"
	}
	if r.trunc {
		return truncateID(r.h.ID)
	}
	return r.h.ID
}
func (r *historyRow) CreatedSince() string {
	if !r.human {
		return time.Unix(r.h.Created, 0).Format(time.RFC3339)
	}
	return timeAgo(r.now, time.Unix(r.h.Created, 0))
}
func (r *historyRow) CreatedAt() string { return time.Unix(r.h.Created, 0).Format(time.RFC3339) }
func (r *historyRow) CreatedBy() string {
	s := strings.ReplaceAll(r.h.CreatedBy, "\t", " ")
	if r.trunc {
		s = ellipsis(s, 45)
	}
	return s
}
func (r *historyRow) Size() string {
	if r.human {
		return humanSize(r.h.Size)
	}
	return fmt.Sprint(r.h.Size)
}
func (r *historyRow) Comment() string { return r.h.Comment }
