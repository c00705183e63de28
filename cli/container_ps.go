package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

const defaultContainerTableFormat = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"

var containerHeaders = map[string]string{
	"ID": "CONTAINER ID", "Names": "NAMES", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
	"RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS", "Size": "SIZE",
	"Labels": "LABELS", "Mounts": "MOUNTS", "LocalVolumes": "LOCAL VOLUMES", "Networks": "NETWORKS",
}

// containerRow is one `ps` row; its methods are the --format fields.
type containerRow struct {
	c     container.Summary
	trunc bool
	now   time.Time
}

func (r *containerRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }

func (r *containerRow) ID() string {
	if r.trunc {
		return truncateID(r.c.ID)
	}
	return r.c.ID
}

func (r *containerRow) Names() string {
	var names []string
	for _, n := range r.c.Names {
		n = strings.TrimPrefix(n, "/")
		if r.trunc {
			// Only the container's own name, not link aliases ("a/b").
			if !strings.Contains(n, "/") {
				return n
			}
			continue
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}

func (r *containerRow) Image() string {
	img := r.c.Image
	if img == "" {
		return "<no image>"
	}
	if !r.trunc {
		return img
	}
	if t := truncateID(r.c.ImageID); t == truncateID(img) {
		return t
	}
	ref, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return img
	}
	if _, ok := ref.(reference.Digested); ok {
		tag := ""
		if t, ok := ref.(reference.Tagged); ok {
			tag = t.Tag()
		}
		ref = reference.TrimNamed(ref)
		if tag != "" {
			if out, err := reference.WithTag(ref, tag); err == nil {
				ref = out
			}
		}
	}
	return reference.FamiliarString(ref)
}

func (r *containerRow) Command() string {
	cmd := r.c.Command
	if r.trunc {
		cmd = ellipsis(cmd, 20)
	}
	return strconv.Quote(cmd)
}

func (r *containerRow) CreatedAt() string { return time.Unix(r.c.Created, 0).String() }

func (r *containerRow) RunningFor() string { return timeAgo(r.now, time.Unix(r.c.Created, 0)) }

func (r *containerRow) Ports() string { return displayablePorts(r.c.Ports) }

// Platform is the image platform the daemon reports, if any.
func (r *containerRow) Platform() *ocispec.Platform {
	if d := r.c.ImageManifestDescriptor; d != nil {
		return d.Platform
	}
	return nil
}

func (r *containerRow) State() string { return string(r.c.State) }

func (r *containerRow) Status() string { return r.c.Status }

func (r *containerRow) Size() string {
	srw := humanSize(r.c.SizeRw)
	if r.c.SizeRootFs > 0 {
		return fmt.Sprintf("%s (virtual %s)", srw, humanSize(r.c.SizeRootFs))
	}
	return srw
}

func (r *containerRow) Labels() string { return sortedKV(r.c.Labels, ",") }

func (r *containerRow) Label(name string) string { return r.c.Labels[name] }

func (r *containerRow) Mounts() string {
	var out []string
	for _, m := range r.c.Mounts {
		name := m.Name
		if name == "" {
			name = m.Source
		}
		if r.trunc {
			name = ellipsis(name, 15)
		}
		out = append(out, name)
	}
	return strings.Join(out, ",")
}

func (r *containerRow) LocalVolumes() string {
	n := 0
	for _, m := range r.c.Mounts {
		if m.Driver == "local" {
			n++
		}
	}
	return strconv.Itoa(n)
}

func (r *containerRow) Networks() string {
	if r.c.NetworkSettings == nil {
		return ""
	}
	var nets []string
	for k := range r.c.NetworkSettings.Networks {
		nets = append(nets, k)
	}
	sort.Strings(nets)
	return strings.Join(nets, ",")
}

// displayablePorts renders ports like docker's ps: ranges grouped,
// "0.0.0.0:8080->80/tcp" for bindings.
func displayablePorts(ports []container.PortSummary) string {
	type group struct{ first, last uint16 }
	ports = append([]container.PortSummary(nil), ports...)
	sort.Slice(ports, func(i, j int) bool {
		a, b := ports[i], ports[j]
		if a.PrivatePort != b.PrivatePort {
			return a.PrivatePort < b.PrivatePort
		}
		if a.IP != b.IP {
			return a.IP.String() < b.IP.String()
		}
		if a.PublicPort != b.PublicPort {
			return a.PublicPort < b.PublicPort
		}
		return a.Type < b.Type
	})
	groups := map[string]*group{}
	var keys, result, hostMappings []string
	for _, p := range ports {
		cur := p.PrivatePort
		key := p.Type
		if p.IP.IsValid() {
			if p.PublicPort != cur {
				hostMappings = append(hostMappings, fmt.Sprintf("%s->%d/%s", net.JoinHostPort(p.IP.String(), strconv.Itoa(int(p.PublicPort))), p.PrivatePort, p.Type))
				continue
			}
			key = p.IP.String() + "/" + p.Type
		}
		g := groups[key]
		if g == nil {
			groups[key] = &group{cur, cur}
			keys = append(keys, key)
			continue
		}
		if cur == g.last+1 {
			g.last = cur
			continue
		}
		result = append(result, formPortGroup(key, g.first, g.last))
		groups[key] = &group{cur, cur}
	}
	for _, k := range keys {
		g := groups[k]
		result = append(result, formPortGroup(k, g.first, g.last))
	}
	return strings.Join(append(result, hostMappings...), ", ")
}

func formPortGroup(key string, start, last uint16) string {
	ip, typ := "", key
	if a, b, ok := strings.Cut(key, "/"); ok {
		ip, typ = a, b
	}
	g := strconv.Itoa(int(start))
	if start != last {
		g = fmt.Sprintf("%s-%d", g, last)
	}
	if ip != "" {
		g = fmt.Sprintf("%s->%s", net.JoinHostPort(ip, g), g)
	}
	return g + "/" + typ
}

func newPsCommand(c *CLI) *cobra.Command {
	var o struct {
		all, quiet, noTrunc, latest, size bool
		last                              int
		format                            string
		filter                            filterFlag
	}
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS]",
		Short: "List containers",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			opts := client.ContainerListOptions{All: o.all, Limit: o.last, Latest: o.latest, Filters: o.filter.filters(), Size: o.size}
			if o.last == -1 {
				opts.Limit = 0
			}
			if opts.Limit != 0 || opts.Latest {
				opts.All = true
			}
			format := o.format
			if format == "" || format == tableFormatKey {
				format = defaultContainerTableFormat
				if o.size {
					format += `\t{{.Size}}`
				}
			}
			if o.quiet && (o.format == "" || isTableFormat(o.format)) {
				format = quietFormat
			}
			if !opts.Size && strings.Contains(format, ".Size") {
				opts.Size = true
			}
			res, err := cl.ContainerList(cmd.Context(), opts)
			if err != nil {
				return err
			}
			now := c.now()
			rows := make([]any, 0, len(res.Items))
			for _, ctr := range res.Items {
				rows = append(rows, &containerRow{c: ctr, trunc: !o.noTrunc, now: now})
			}
			return writeList(c.Out, format, containerHeaders, rows)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "Show all containers (default shows just running)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Only display container IDs")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Don't truncate output")
	f.BoolVarP(&o.latest, "latest", "l", false, "Show the latest created container (includes all states)")
	f.BoolVarP(&o.size, "size", "s", false, "Display total file sizes")
	f.IntVarP(&o.last, "last", "n", -1, "Show n last created containers (includes all states)")
	f.StringVar(&o.format, "format", "", "Format output using a custom template:\n'table':            Print output in table format with column headers (default)\n'table TEMPLATE':   Print output in table format using the given Go template\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.")
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// ---- stats --no-stream ----

const defaultStatsTableFormat = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

var statsHeaders = map[string]string{
	"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
	"MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}

type statsRow struct {
	id, name, container string
	cpu, mem            float64
	memUsed, memLimit   float64
	netRx, netTx        float64
	blkRead, blkWrite   float64
	pids                uint64
	trunc               bool
}

func (s *statsRow) MarshalJSON() ([]byte, error) { return marshalMethods(s) }
func (s *statsRow) ID() string {
	if s.trunc {
		return truncateID(s.id)
	}
	return s.id
}
func (s *statsRow) Name() string      { return strings.TrimPrefix(s.name, "/") }
func (s *statsRow) Container() string { return s.container }
func (s *statsRow) CPUPerc() string   { return fmt.Sprintf("%.2f%%", s.cpu) }
func (s *statsRow) MemUsage() string {
	return fmt.Sprintf("%s / %s", bytesSize(s.memUsed), bytesSize(s.memLimit))
}
func (s *statsRow) MemPerc() string { return fmt.Sprintf("%.2f%%", s.mem) }
func (s *statsRow) NetIO() string {
	return fmt.Sprintf("%s / %s", humanSizeF(s.netRx), humanSizeF(s.netTx))
}
func (s *statsRow) BlockIO() string {
	return fmt.Sprintf("%s / %s", humanSizeF(s.blkRead), humanSizeF(s.blkWrite))
}
func (s *statsRow) PIDs() string { return strconv.FormatUint(s.pids, 10) }

func humanSizeF(f float64) string { return humanSize(int64(f)) }

func newStatsCommand(c *CLI) *cobra.Command {
	var all, noStream, noTrunc bool
	var format string
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a resource usage statistics of containers (one sample; --no-stream)",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			ids := args
			if len(ids) == 0 {
				res, err := cl.ContainerList(ctx, client.ContainerListOptions{All: all})
				if err != nil {
					return err
				}
				for _, ctr := range res.Items {
					ids = append(ids, ctr.ID)
				}
			}
			var rows []any
			var errs []string
			for _, id := range ids {
				res, err := cl.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false, IncludePreviousSample: true})
				if err != nil {
					errs = append(errs, c.errorText(err))
					continue
				}
				var st container.StatsResponse
				err = json.NewDecoder(res.Body).Decode(&st)
				res.Body.Close()
				if err != nil {
					errs = append(errs, err.Error())
					continue
				}
				rows = append(rows, statsFromResponse(id, &st, !noTrunc))
			}
			if format == "" || format == tableFormatKey {
				format = defaultStatsTableFormat
			}
			if err := writeList(c.Out, format, statsHeaders, rows); err != nil {
				return err
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "Show all containers (default shows just running)")
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Do not truncate output")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func statsFromResponse(arg string, st *container.StatsResponse, trunc bool) *statsRow {
	r := &statsRow{id: st.ID, name: st.Name, container: arg, trunc: trunc}
	if r.id == "" {
		r.id = arg
	}
	cpuDelta := float64(st.CPUStats.CPUUsage.TotalUsage) - float64(st.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(st.CPUStats.SystemUsage) - float64(st.PreCPUStats.SystemUsage)
	online := float64(st.CPUStats.OnlineCPUs)
	if online == 0 {
		online = float64(len(st.CPUStats.CPUUsage.PercpuUsage))
	}
	if sysDelta > 0 && cpuDelta > 0 {
		r.cpu = cpuDelta / sysDelta * online * 100
	}
	used := float64(st.MemoryStats.Usage)
	if v, ok := st.MemoryStats.Stats["inactive_file"]; ok && float64(v) < used {
		used -= float64(v)
	}
	r.memUsed, r.memLimit = used, float64(st.MemoryStats.Limit)
	if r.memLimit > 0 {
		r.mem = used / r.memLimit * 100
	}
	for _, n := range st.Networks {
		r.netRx += float64(n.RxBytes)
		r.netTx += float64(n.TxBytes)
	}
	for _, e := range st.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			r.blkRead += float64(e.Value)
		case "write":
			r.blkWrite += float64(e.Value)
		}
	}
	r.pids = st.PidsStats.Current
	return r
}
