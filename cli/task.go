package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

const (
	defaultTaskTableFormat = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}"
	maxTaskErrLength       = 30
)

var taskHeaders = map[string]string{
	"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
	"CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS",
}

// taskListOptions are the flags of every task listing (service ps, node
// ps, stack ps).
type taskListOptions struct {
	quiet, noTrunc, noResolve bool
	format                    string
	filter                    filterFlag
}

func addTaskListFlags(cmd *cobra.Command, o *taskListOptions) {
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Only display task IDs")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Do not truncate output")
	f.BoolVar(&o.noResolve, "no-resolve", false, "Do not map IDs to Names")
	f.StringVar(&o.format, "format", "", "Pretty-print tasks using a Go template")
	f.VarP(&o.filter, "filter", "f", "Filter output based on conditions provided")
}

// idResolver maps node and service IDs to names with a cache, as docker's
// does (GET /nodes/{id}, GET /services/{id}); failures fall back to the ID.
type idResolver struct {
	cl        *client.Client
	noResolve bool
	cache     map[string]string
}

func newIDResolver(cl *client.Client, noResolve bool) *idResolver {
	return &idResolver{cl: cl, noResolve: noResolve, cache: map[string]string{}}
}

func (r *idResolver) node(ctx context.Context, id string) string {
	if r.noResolve || id == "" {
		return id
	}
	if n, ok := r.cache["n/"+id]; ok {
		return n
	}
	name := id
	if res, err := r.cl.NodeInspect(ctx, id, client.NodeInspectOptions{}); err == nil {
		switch {
		case res.Node.Spec.Name != "":
			name = res.Node.Spec.Name
		case res.Node.Description.Hostname != "":
			name = res.Node.Description.Hostname
		}
	}
	r.cache["n/"+id] = name
	return name
}

func (r *idResolver) service(ctx context.Context, id string) string {
	if r.noResolve || id == "" {
		return id
	}
	if n, ok := r.cache["s/"+id]; ok {
		return n
	}
	name := id
	if res, err := r.cl.ServiceInspect(ctx, id, client.ServiceInspectOptions{}); err == nil {
		name = res.Service.Spec.Name
	}
	r.cache["s/"+id] = name
	return name
}

// printTasks resolves names and prints tasks like docker's task.Print.
func (c *CLI) printTasks(ctx context.Context, cl *client.Client, tasks []swarm.Task, o taskListOptions) error {
	res := newIDResolver(cl, o.noResolve)
	trunc := !o.noTrunc
	named := make([]swarm.Task, len(tasks))
	copy(named, tasks)
	nodes := map[string]string{}
	for i, t := range named {
		svc := res.service(ctx, t.ServiceID)
		if t.Slot != 0 {
			named[i].Name = fmt.Sprintf("%v.%v", svc, t.Slot)
		} else {
			named[i].Name = fmt.Sprintf("%v.%v", svc, t.NodeID)
		}
		nodes[t.ID] = res.node(ctx, t.NodeID)
	}
	return writeTasks(c.Out, o.format, o.quiet, trunc, named, nodes, c.now())
}

// writeTasks sorts tasks by name then newest first, and indents history
// rows of the same slot with docker's ` \_ ` in table output.
func writeTasks(out io.Writer, format string, quiet, trunc bool, tasks []swarm.Task, nodes map[string]string, now time.Time) error {
	sort.SliceStable(tasks, func(i, j int) bool {
		if tasks[i].Name != tasks[j].Name {
			return naturalLess(tasks[i].Name, tasks[j].Name)
		}
		return tasks[j].Meta.CreatedAt.Before(tasks[i].Meta.CreatedAt)
	})
	switch {
	case quiet && (format == "" || isTableFormat(format)):
		format = quietFormat
	case format == "" || format == tableFormatKey:
		format = defaultTaskTableFormat
	}
	indent := ""
	if isTableFormat(format) {
		indent = ` \_ `
	}
	rows := make([]any, 0, len(tasks))
	prev := ""
	for _, t := range tasks {
		name := t.Name
		if t.Name == prev {
			name = indent + t.Name
		}
		prev = t.Name
		rows = append(rows, &taskRow{t: t, name: name, node: nodes[t.ID], trunc: trunc, now: now})
	}
	return writeList(out, format, taskHeaders, rows)
}

type taskRow struct {
	t     swarm.Task
	name  string
	node  string
	trunc bool
	now   time.Time
}

func (r *taskRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *taskRow) ID() string {
	if r.trunc {
		return truncateID(r.t.ID)
	}
	return r.t.ID
}
func (r *taskRow) Name() string { return r.name }
func (r *taskRow) Image() string {
	if r.t.Spec.ContainerSpec == nil {
		return ""
	}
	img := r.t.Spec.ContainerSpec.Image
	if r.trunc {
		if ref, err := reference.ParseNormalizedNamed(img); err == nil {
			if nt, ok := ref.(reference.NamedTagged); ok {
				if t, err := reference.WithTag(reference.TrimNamed(nt), nt.Tag()); err == nil {
					img = reference.FamiliarString(t)
				}
			}
		}
	}
	return img
}
func (r *taskRow) Node() string         { return r.node }
func (r *taskRow) DesiredState() string { return prettyPrint(string(r.t.DesiredState)) }
func (r *taskRow) CurrentState() string {
	return fmt.Sprintf("%s %s ago", prettyPrint(string(r.t.Status.State)),
		strings.ToLower(humanDuration(r.now.Sub(r.t.Status.Timestamp))))
}
func (r *taskRow) Error() string {
	e := r.t.Status.Err
	if r.trunc {
		e = ellipsis(e, maxTaskErrLength)
	}
	if e != "" {
		e = `"` + e + `"`
	}
	return e
}
func (r *taskRow) Ports() string {
	var ports []string
	for _, p := range r.t.Status.PortStatus.Ports {
		// Ingress ports are the service's (service ls shows them); a
		// task's ingress entry is its node-internal endpoint, which docker
		// does not show either.
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			continue
		}
		ports = append(ports, fmt.Sprintf("*:%d->%d/%s", p.PublishedPort, p.TargetPort, p.Protocol))
	}
	return strings.Join(ports, ",")
}
