package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

const defaultNodeTableFormat = "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}"

var nodeHeaders = map[string]string{
	"ID": "ID", "Self": "", "Hostname": "HOSTNAME", "Status": "STATUS", "Availability": "AVAILABILITY",
	"ManagerStatus": "MANAGER STATUS", "EngineVersion": "ENGINE VERSION", "TLSStatus": "TLS STATUS",
}

// nodeRow is one `node ls` row.
type nodeRow struct {
	n    swarm.Node
	info swarm.Info
}

func (r *nodeRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *nodeRow) ID() string                   { return r.n.ID }
func (r *nodeRow) Self() bool                   { return r.n.ID == r.info.NodeID }
func (r *nodeRow) Hostname() string             { return r.n.Description.Hostname }
func (r *nodeRow) Status() string               { return prettyPrint(string(r.n.Status.State)) }
func (r *nodeRow) Availability() string         { return prettyPrint(string(r.n.Spec.Availability)) }
func (r *nodeRow) EngineVersion() string        { return r.n.Description.Engine.EngineVersion }
func (r *nodeRow) ManagerStatus() string {
	if r.n.ManagerStatus == nil {
		return ""
	}
	if r.n.ManagerStatus.Leader {
		return "Leader"
	}
	return prettyPrint(string(r.n.ManagerStatus.Reachability))
}
func (r *nodeRow) TLSStatus() string {
	if r.info.Cluster == nil || emptyTLS(r.info.Cluster.TLSInfo) || emptyTLS(r.n.Description.TLSInfo) {
		return "Unknown"
	}
	a, b := r.n.Description.TLSInfo, r.info.Cluster.TLSInfo
	if a.TrustRoot == b.TrustRoot && bytes.Equal(a.CertIssuerSubject, b.CertIssuerSubject) && bytes.Equal(a.CertIssuerPublicKey, b.CertIssuerPublicKey) {
		return "Ready"
	}
	return "Needs Rotation"
}

func emptyTLS(t swarm.TLSInfo) bool {
	return t.TrustRoot == "" && len(t.CertIssuerSubject) == 0 && len(t.CertIssuerPublicKey) == 0
}

// writeNodes renders `node ls` (sorted by hostname like docker).
func writeNodes(out io.Writer, format string, quiet bool, nodes []swarm.Node, info swarm.Info) error {
	switch {
	case quiet && (format == "" || isTableFormat(format)):
		format = quietFormat
	case format == "" || format == tableFormatKey:
		format = defaultNodeTableFormat
	}
	sort.SliceStable(nodes, func(i, j int) bool {
		return naturalLess(nodes[i].Description.Hostname, nodes[j].Description.Hostname)
	})
	rows := make([]any, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, &nodeRow{n: n, info: info})
	}
	return writeList(out, format, nodeHeaders, rows)
}

// nodeReference resolves "self" to this daemon's node ID.
func nodeReference(ctx context.Context, cl *client.Client, ref string) (string, error) {
	if ref != "self" {
		return ref, nil
	}
	info, err := cl.Info(ctx, client.InfoOptions{})
	if err != nil {
		return "", err
	}
	if info.Info.Swarm.NodeID == "" {
		if _, err := cl.NodeList(ctx, client.NodeListOptions{}); err != nil {
			return "", err
		}
		return "", errors.New("node ID not found in /info")
	}
	return info.Info.Swarm.NodeID, nil
}

func newNodeCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage Swarm nodes"}
	cmd.AddCommand(newNodeLsCommand(c), newNodeInspectCommand(c), newNodeUpdateCommand(c),
		newNodeRoleCommand(c, true), newNodeRoleCommand(c, false), newNodeRmCommand(c), newNodePsCommand(c))
	return cmd
}

func newNodeLsCommand(c *CLI) *cobra.Command {
	var quiet bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List nodes in the swarm",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.NodeList(ctx, client.NodeListOptions{Filters: filter.filters()})
			if err != nil {
				return err
			}
			var info swarm.Info
			if len(res.Items) > 0 && !quiet {
				i, err := cl.Info(ctx, client.InfoOptions{})
				if err != nil {
					return err
				}
				info = i.Info.Swarm
			}
			return writeNodes(c.Out, format, quiet, res.Items, info)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

const nodePrettyTemplate = `ID:			{{.ID}}
{{- if .Name }}
Name:			{{.Name}}
{{- end }}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Hostname:              	{{.Hostname}}
Joined at:             	{{.CreatedAt}}
Status:
 State:			{{.StatusState}}
 {{- if .HasStatusMessage}}
 Message:              	{{.StatusMessage}}
 {{- end}}
 Availability:         	{{.SpecAvailability}}
 {{- if .Status.Addr}}
 Address:		{{.StatusAddr}}
 {{- end}}
{{- if .HasManagerStatus}}
Manager Status:
 Address:		{{.ManagerStatusAddr}}
 Raft Status:		{{.ManagerStatusReachability}}
 {{- if .IsManagerStatusLeader}}
 Leader:		Yes
 {{- else}}
 Leader:		No
 {{- end}}
{{- end}}
Platform:
 Operating System:	{{.PlatformOS}}
 Architecture:		{{.PlatformArchitecture}}
Resources:
 CPUs:			{{.ResourceNanoCPUs}}
 Memory:		{{.ResourceMemory}}
{{- if .HasEnginePlugins}}
Plugins:
{{- range $k, $v := .EnginePlugins }}
 {{ $k }}:{{if $v }}		{{ $v }}{{ end }}
{{- end }}
{{- end }}
Engine Version:		{{.EngineVersion}}
{{- if .EngineLabels}}
Engine Labels:
{{- range $k, $v := .EngineLabels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{- end }}
{{- if .HasTLSInfo}}
TLS Info:
 TrustRoot:
{{.TLSInfoTrustRoot}}
 Issuer Subject:	{{.TLSInfoCertIssuerSubject}}
 Issuer Public Key:	{{.TLSInfoCertIssuerPublicKey}}
{{- end}}`

// nodePretty is what the --pretty template sees.
type nodePretty struct{ swarm.Node }

func (n *nodePretty) ID() string                  { return n.Node.ID }
func (n *nodePretty) Name() string                { return n.Spec.Name }
func (n *nodePretty) Labels() map[string]string   { return n.Spec.Labels }
func (n *nodePretty) Hostname() string            { return n.Description.Hostname }
func (n *nodePretty) CreatedAt() string           { return prettyPrint(n.Node.CreatedAt.String()) }
func (n *nodePretty) StatusState() string         { return prettyPrint(string(n.Status.State)) }
func (n *nodePretty) HasStatusMessage() bool      { return n.Status.Message != "" }
func (n *nodePretty) StatusMessage() string       { return prettyPrint(n.Status.Message) }
func (n *nodePretty) SpecAvailability() string    { return prettyPrint(string(n.Spec.Availability)) }
func (n *nodePretty) StatusAddr() string          { return n.Status.Addr }
func (n *nodePretty) HasManagerStatus() bool      { return n.Node.ManagerStatus != nil }
func (n *nodePretty) ManagerStatusAddr() string   { return n.Node.ManagerStatus.Addr }
func (n *nodePretty) IsManagerStatusLeader() bool { return n.Node.ManagerStatus.Leader }
func (n *nodePretty) ManagerStatusReachability() string {
	return prettyPrint(string(n.Node.ManagerStatus.Reachability))
}
func (n *nodePretty) PlatformOS() string           { return n.Description.Platform.OS }
func (n *nodePretty) PlatformArchitecture() string { return n.Description.Platform.Architecture }
func (n *nodePretty) ResourceNanoCPUs() int        { return int(n.Description.Resources.NanoCPUs / 1e9) }
func (n *nodePretty) ResourceMemory() string {
	if n.Description.Resources.MemoryBytes == 0 {
		return ""
	}
	return bytesSize(float64(n.Description.Resources.MemoryBytes))
}
func (n *nodePretty) HasEnginePlugins() bool { return len(n.Description.Engine.Plugins) > 0 }
func (n *nodePretty) EnginePlugins() map[string]string {
	byType := map[string][]string{}
	for _, p := range n.Description.Engine.Plugins {
		byType[p.Type] = append(byType[p.Type], p.Name)
	}
	out := map[string]string{}
	for k, v := range byType {
		out[k] = strings.Join(v, ", ")
	}
	return out
}
func (n *nodePretty) EngineLabels() map[string]string { return n.Description.Engine.Labels }
func (n *nodePretty) EngineVersion() string           { return n.Description.Engine.EngineVersion }
func (n *nodePretty) HasTLSInfo() bool                { return !emptyTLS(n.Description.TLSInfo) }
func (n *nodePretty) TLSInfoTrustRoot() string        { return n.Description.TLSInfo.TrustRoot }
func (n *nodePretty) TLSInfoCertIssuerPublicKey() string {
	return base64.StdEncoding.EncodeToString(n.Description.TLSInfo.CertIssuerPublicKey)
}
func (n *nodePretty) TLSInfoCertIssuerSubject() string {
	return base64.StdEncoding.EncodeToString(n.Description.TLSInfo.CertIssuerSubject)
}

// writeNodePretty prints nodes with docker's `node inspect --pretty` layout.
func writeNodePretty(out io.Writer, nodes []swarm.Node) error {
	tmpl, err := parseTemplate(nodePrettyTemplate)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, n := range nodes {
		if err := tmpl.Execute(&buf, &nodePretty{n}); err != nil {
			return err
		}
		buf.WriteString("\n")
	}
	_, err = buf.WriteTo(out)
	return err
}

func newNodeInspectCommand(c *CLI) *cobra.Command {
	var format string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] self|NODE [NODE...]",
		Short: "Display detailed information on one or more nodes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			get := func(ctx context.Context, ref string) (swarm.Node, []byte, error) {
				id, err := nodeReference(ctx, cl, ref)
				if err != nil {
					return swarm.Node{}, nil, err
				}
				r, err := cl.NodeInspect(ctx, id, client.NodeInspectOptions{})
				return r.Node, r.Raw, err
			}
			if pretty {
				format = "pretty"
			}
			if strings.HasPrefix(format, "pretty") && format != "pretty" {
				return errors.New("cannot supply extra formatting options to the pretty template")
			}
			if format == "pretty" {
				var nodes []swarm.Node
				for _, ref := range args {
					n, _, err := get(ctx, ref)
					if err != nil {
						return StatusError{Status: 1, Message: c.errorText(err)}
					}
					nodes = append(nodes, n)
				}
				return writeNodePretty(c.Out, nodes)
			}
			return inspectAll(ctx, c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				return get(ctx, ref)
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}

func newNodeUpdateCommand(c *CLI) *cobra.Command {
	var role, avail string
	var labelAdd, labelRm []string
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] NODE",
		Short: "Update a node",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			for _, l := range labelAdd {
				if err := validateLabel(l); err != nil {
					return err
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.updateNodes(cmd.Context(), cl, args, func(n *swarm.Node) error {
				spec := &n.Spec
				if f.Changed("role") {
					switch r := swarm.NodeRole(strings.ToLower(role)); r {
					case swarm.NodeRoleManager, swarm.NodeRoleWorker:
						spec.Role = r
					default:
						return fmt.Errorf("invalid role %q, only worker and manager are supported", role)
					}
				}
				if f.Changed("availability") {
					switch a := swarm.NodeAvailability(strings.ToLower(avail)); a {
					case swarm.NodeAvailabilityActive, swarm.NodeAvailabilityPause, swarm.NodeAvailabilityDrain:
						spec.Availability = a
					default:
						return fmt.Errorf("invalid availability %q, only active, pause and drain are supported", avail)
					}
				}
				if spec.Labels == nil {
					spec.Labels = map[string]string{}
				}
				for k, v := range kvMap(labelAdd) {
					spec.Labels[k] = v
				}
				for _, k := range labelRm {
					if _, ok := spec.Labels[k]; !ok {
						return fmt.Errorf("key %s doesn't exist in node's labels", k)
					}
					delete(spec.Labels, k)
				}
				return nil
			}, func(id string) { fmt.Fprintln(c.Out, id) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "", `Role of the node ("worker", "manager")`)
	f.StringVar(&avail, "availability", "", `Availability of the node ("active", "pause", "drain")`)
	f.StringArrayVar(&labelAdd, "label-add", nil, `Add or update a node label ("key=value")`)
	f.StringArrayVar(&labelRm, "label-rm", nil, "Remove a node label if exists")
	return cmd
}

var errNoRoleChange = errors.New("role was already set to the requested value")

// updateNodes does GET /nodes/{ref}, merges, then POST
// /nodes/{id}/update?version=N with the whole spec, per node.
func (c *CLI) updateNodes(ctx context.Context, cl *client.Client, refs []string, merge func(*swarm.Node) error, ok func(string)) error {
	for _, ref := range refs {
		res, err := cl.NodeInspect(ctx, ref, client.NodeInspectOptions{})
		if err != nil {
			return err
		}
		if err := merge(&res.Node); err != nil {
			if errors.Is(err, errNoRoleChange) {
				continue
			}
			return err
		}
		if _, err := cl.NodeUpdate(ctx, res.Node.ID, client.NodeUpdateOptions{Version: res.Node.Version, Spec: res.Node.Spec}); err != nil {
			return err
		}
		ok(ref)
	}
	return nil
}

func newNodeRoleCommand(c *CLI, promote bool) *cobra.Command {
	use, short := "promote NODE [NODE...]", "Promote one or more nodes to manager in the swarm"
	if !promote {
		use, short = "demote NODE [NODE...]", "Demote one or more nodes from manager in the swarm"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			want := swarm.NodeRoleManager
			if !promote {
				want = swarm.NodeRoleWorker
			}
			return c.updateNodes(cmd.Context(), cl, args, func(n *swarm.Node) error {
				if n.Spec.Role == want {
					if promote {
						fmt.Fprintf(c.Out, "Node %s is already a manager.\n", n.ID)
					} else {
						fmt.Fprintf(c.Out, "Node %s is already a worker.\n", n.ID)
					}
					return errNoRoleChange
				}
				n.Spec.Role = want
				return nil
			}, func(id string) {
				if promote {
					fmt.Fprintf(c.Out, "Node %s promoted to a manager in the swarm.\n", id)
				} else {
					fmt.Fprintf(c.Out, "Manager %s demoted in the swarm.\n", id)
				}
			})
		},
	}
}

func newNodeRmCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] NODE [NODE...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more nodes from the swarm",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(id string) error {
				_, err := cl.NodeRemove(cmd.Context(), id, client.NodeRemoveOptions{Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force remove a node from the swarm")
	return cmd
}

func newNodePsCommand(c *CLI) *cobra.Command {
	var o taskListOptions
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] [NODE...]",
		Short: "List tasks running on one or more nodes, defaults to current node",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if len(args) == 0 {
				args = []string{"self"}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var tasks []swarm.Task
			var errs []string
			for _, ref := range args {
				id, err := nodeReference(ctx, cl, ref)
				if err != nil {
					errs = append(errs, c.errorText(err))
					continue
				}
				n, err := cl.NodeInspect(ctx, id, client.NodeInspectOptions{})
				if err != nil {
					errs = append(errs, c.errorText(err))
					continue
				}
				f := o.filter.filters()
				f.Add("node", n.Node.ID)
				res, err := cl.TaskList(ctx, client.TaskListOptions{Filters: f})
				if err != nil {
					errs = append(errs, c.errorText(err))
					continue
				}
				tasks = append(tasks, res.Items...)
			}
			if len(errs) == 0 || len(tasks) > 0 {
				if err := c.printTasks(ctx, cl, tasks, o); err != nil {
					errs = append(errs, err.Error())
				}
			}
			return joinErrors(errs)
		},
	}
	addTaskListFlags(cmd, &o)
	return cmd
}
