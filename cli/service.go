package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func newServiceCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Manage Swarm services"}
	ps := newServicePsCommand(c)
	// `docker service tasks` (1.12) is what older tutorials use.
	tasks := newServicePsCommand(c)
	tasks.Use, tasks.Hidden = "tasks [OPTIONS] SERVICE [SERVICE...]", true
	cmd.AddCommand(newServiceCreateCommand(c), newServiceUpdateCommand(c), newServiceScaleCommand(c),
		newServiceRollbackCommand(c), newServiceRmCommand(c), newServiceLsCommand(c), newServiceInspectCommand(c),
		ps, tasks, newServiceLogsCommand(c), newServiceHistoryCommand(c))
	return cmd
}

// registryAuthFor returns the X-Registry-Auth value docker would send for
// image, only when --with-registry-auth is given.
func registryAuthFor(with bool, image string) string {
	if !with {
		return ""
	}
	return encodedRegistryAuth(image)
}

func newServiceCreateCommand(c *CLI) *cobra.Command {
	o := &serviceOptions{}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new service",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			spec, err := o.toServiceSpec(ctx, cmd.Flags(), args, clientNetworkResolver(cl))
			if err != nil {
				return err
			}
			if spec.TaskTemplate.ContainerSpec.Secrets, err = resolveSecrets(ctx, cl, o.secrets); err != nil {
				return err
			}
			if spec.TaskTemplate.ContainerSpec.Configs, err = resolveConfigs(ctx, cl, o.configs); err != nil {
				return err
			}
			res, err := cl.ServiceCreate(ctx, client.ServiceCreateOptions{
				Spec:                spec,
				EncodedRegistryAuth: registryAuthFor(o.withRegistryAuth, args[0]),
				QueryRegistry:       !o.noResolveImage,
			})
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(c.Err, w)
			}
			fmt.Fprintln(c.Out, res.ID)
			if o.detach {
				return nil
			}
			return c.waitOnService(ctx, cl, res.ID, o.quiet)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	addServiceFlags(f, o, false)
	return cmd
}

func newServiceUpdateCommand(c *CLI) *cobra.Command {
	o := &serviceOptions{}
	cmd := &cobra.Command{
		Use:   "update [OPTIONS] SERVICE",
		Short: "Update a service",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f := cmd.Flags()
			if o.rollbackNow {
				other := false
				cmd.LocalFlags().VisitAll(func(fl *pflag.Flag) {
					if !fl.Changed {
						return
					}
					switch fl.Name {
					case "rollback", "detach", "quiet":
					default:
						other = true
					}
				})
				if other {
					return errors.New("other flags may not be combined with --rollback")
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ServiceInspect(ctx, args[0], client.ServiceInspectOptions{})
			if err != nil {
				return err
			}
			spec := res.Service.Spec
			if err := o.updateServiceSpec(ctx, f, &spec, clientNetworkResolver(cl)); err != nil {
				return err
			}
			cs := spec.TaskTemplate.ContainerSpec
			if flagChanged(f, "secret-add", "secret-rm") {
				add, err := resolveSecrets(ctx, cl, o.secrets)
				if err != nil {
					return err
				}
				cs.Secrets = mergeSecretRefs(cs.Secrets, add, o.secretRm)
			}
			if flagChanged(f, "config-add", "config-rm") {
				add, err := resolveConfigs(ctx, cl, o.configs)
				if err != nil {
					return err
				}
				cs.Configs = mergeConfigRefs(cs.Configs, add, o.configRm)
			}
			opts := client.ServiceUpdateOptions{Version: res.Service.Version, Spec: spec,
				QueryRegistry: f.Changed("image") && !o.noResolveImage}
			if o.withRegistryAuth {
				opts.EncodedRegistryAuth = encodedRegistryAuth(cs.Image)
			} else {
				opts.RegistryAuthFrom = swarm.RegistryAuthFromSpec
			}
			if o.rollbackNow {
				opts.Rollback = "previous"
			}
			upd, err := cl.ServiceUpdate(ctx, res.Service.ID, opts)
			if err != nil {
				return err
			}
			for _, w := range upd.Warnings {
				fmt.Fprintln(c.Err, w)
			}
			fmt.Fprintln(c.Out, args[0])
			if o.detach {
				return nil
			}
			return c.waitOnService(ctx, cl, args[0], o.quiet)
		},
	}
	addServiceFlags(cmd.Flags(), o, true)
	return cmd
}

func scaleArgs(cmd *cobra.Command, args []string) error {
	if err := minArgs(1)(cmd, args); err != nil {
		return err
	}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); !ok || k == "" || v == "" {
			return fmt.Errorf("invalid scale specifier '%s'.\nSee '%s --help'.\n\nUsage:  %s\n\n%s", a, cmd.CommandPath(), cmd.UseLine(), cmd.Short)
		}
	}
	return nil
}

func newServiceScaleCommand(c *CLI) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "scale SERVICE=REPLICAS [SERVICE=REPLICAS...]",
		Short: "Scale one or multiple replicated services",
		Args:  scaleArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var errs []string
			var scaled []string
			for _, a := range args {
				name, nStr, _ := strings.Cut(a, "=")
				n, err := strconv.ParseUint(nStr, 10, 64)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: invalid replicas value %s: %v", name, nStr, err))
					continue
				}
				warnings, err := scaleService(ctx, cl, name, n)
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s: %s", name, c.errorText(err)))
					continue
				}
				for _, w := range warnings {
					fmt.Fprintln(c.Err, w)
				}
				fmt.Fprintf(c.Out, "%s scaled to %d\n", name, n)
				scaled = append(scaled, name)
			}
			if !detach {
				for _, name := range scaled {
					if err := c.waitOnService(ctx, cl, name, false); err != nil {
						errs = append(errs, fmt.Sprintf("%s: %s", name, c.errorText(err)))
					}
				}
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Exit immediately instead of waiting for the service to converge")
	return cmd
}

// scaleService is GET /services/{name}?insertDefaults=false then POST
// /services/{id}/update?version=N with the replica count changed.
func scaleService(ctx context.Context, cl *client.Client, name string, n uint64) ([]string, error) {
	res, err := cl.ServiceInspect(ctx, name, client.ServiceInspectOptions{})
	if err != nil {
		return nil, err
	}
	mode := &res.Service.Spec.Mode
	switch {
	case mode.Replicated != nil:
		mode.Replicated.Replicas = &n
	case mode.ReplicatedJob != nil:
		mode.ReplicatedJob.TotalCompletions = &n
	default:
		return nil, errors.New("scale can only be used with replicated or replicated-job mode")
	}
	upd, err := cl.ServiceUpdate(ctx, res.Service.ID, client.ServiceUpdateOptions{Version: res.Service.Version, Spec: res.Service.Spec})
	if err != nil {
		return nil, err
	}
	return upd.Warnings, nil
}

func newServiceRollbackCommand(c *CLI) *cobra.Command {
	var detach, quiet bool
	var to uint64
	cmd := &cobra.Command{
		Use:   "rollback [OPTIONS] SERVICE",
		Short: "Revert changes to a service's configuration",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ServiceInspect(ctx, args[0], client.ServiceInspectOptions{})
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("to") {
				if err := c.rollbackTo(ctx, res.Service, to); err != nil {
					return err
				}
			} else {
				upd, err := cl.ServiceUpdate(ctx, res.Service.ID, client.ServiceUpdateOptions{Version: res.Service.Version, Spec: res.Service.Spec, Rollback: "previous"})
				if err != nil {
					return err
				}
				for _, w := range upd.Warnings {
					fmt.Fprintln(c.Err, w)
				}
			}
			fmt.Fprintln(c.Out, args[0])
			if detach {
				return nil
			}
			return c.waitOnService(ctx, cl, args[0], quiet)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Exit immediately instead of waiting for the service to converge")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress progress output")
	cmd.Flags().Uint64Var(&to, "to", 0, "Roll back to this VERSION from `service history` (Shoal)")
	return cmd
}

func newServiceRmCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:     "rm SERVICE [SERVICE...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more services",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(id string) error {
				_, err := cl.ServiceRemove(cmd.Context(), id, client.ServiceRemoveOptions{})
				return err
			})
		},
	}
}

// ---- service ls ----

const defaultServiceTableFormat = "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"

var serviceHeaders = map[string]string{"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS"}

type serviceRow struct{ s swarm.Service }

func (r *serviceRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *serviceRow) ID() string                   { return truncateID(r.s.ID) }
func (r *serviceRow) Name() string                 { return r.s.Spec.Name }
func (r *serviceRow) Mode() string {
	m := r.s.Spec.Mode
	switch {
	case m.Global != nil:
		return "global"
	case m.Replicated != nil:
		return "replicated"
	case m.ReplicatedJob != nil:
		return "replicated job"
	case m.GlobalJob != nil:
		return "global job"
	}
	return ""
}
func (r *serviceRow) Replicas() string {
	var running, desired, completed uint64
	if st := r.s.ServiceStatus; st != nil {
		running, desired, completed = st.RunningTasks, st.DesiredTasks, st.CompletedTasks
	}
	m := r.s.Spec.Mode
	if m.ReplicatedJob != nil {
		var total uint64
		if m.ReplicatedJob.TotalCompletions != nil {
			total = *m.ReplicatedJob.TotalCompletions
		}
		return fmt.Sprintf("%d/%d (%d/%d completed)", running, desired, completed, total)
	}
	if m.GlobalJob != nil {
		return fmt.Sprintf("%d/%d (%d/%d completed)", running, desired, completed, desired+completed)
	}
	if m.Replicated != nil && r.s.Spec.TaskTemplate.Placement != nil && r.s.Spec.TaskTemplate.Placement.MaxReplicas > 0 {
		return fmt.Sprintf("%d/%d (max %d per node)", running, desired, r.s.Spec.TaskTemplate.Placement.MaxReplicas)
	}
	return fmt.Sprintf("%d/%d", running, desired)
}
func (r *serviceRow) Image() string {
	if r.s.Spec.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	return familiarTagged(r.s.Spec.TaskTemplate.ContainerSpec.Image)
}
func (r *serviceRow) Ports() string { return servicePorts(r.s.Endpoint.Ports) }

// servicePorts renders ingress ports as "*:8080->80/tcp", grouping ranges.
func servicePorts(in []swarm.PortConfig) string {
	if in == nil {
		return ""
	}
	ports := append([]swarm.PortConfig(nil), in...)
	sort.Slice(ports, func(i, j int) bool {
		if ports[i].Protocol == ports[j].Protocol {
			return ports[i].PublishedPort < ports[j].PublishedPort
		}
		return ports[i].Protocol < ports[j].Protocol
	})
	type prange struct {
		pStart, pEnd, tStart, tEnd uint32
		proto                      string
	}
	str := func(p prange) string {
		pub := strconv.FormatUint(uint64(p.pStart), 10)
		if p.pEnd > p.pStart {
			pub = fmt.Sprintf("%d-%d", p.pStart, p.pEnd)
		}
		tgt := strconv.FormatUint(uint64(p.tStart), 10)
		if p.tEnd > p.tStart {
			tgt = fmt.Sprintf("%d-%d", p.tStart, p.tEnd)
		}
		return fmt.Sprintf("*:%s->%s/%s", pub, tgt, p.proto)
	}
	var out []string
	var pr prange
	for _, p := range ports {
		if p.PublishMode != swarm.PortConfigPublishModeIngress && p.PublishMode != "" {
			continue
		}
		isRange := pr.tEnd != pr.tStart
		overlaps := p.TargetPort <= pr.tEnd
		if string(p.Protocol) != pr.proto || p.PublishedPort-pr.pEnd > 1 || p.TargetPort-pr.tEnd > 1 || (isRange && overlaps) {
			if pr.pStart > 0 {
				out = append(out, str(pr))
			}
			pr = prange{p.PublishedPort, p.PublishedPort, p.TargetPort, p.TargetPort, string(p.Protocol)}
			continue
		}
		pr.pEnd, pr.tEnd = p.PublishedPort, p.TargetPort
	}
	if pr.pStart > 0 {
		out = append(out, str(pr))
	}
	return strings.Join(out, ", ")
}

func writeServices(out io.Writer, format string, quiet bool, services []swarm.Service) error {
	switch {
	case quiet && (format == "" || isTableFormat(format)):
		format = quietFormat
	case format == "" || format == tableFormatKey:
		format = defaultServiceTableFormat
	}
	sort.SliceStable(services, func(i, j int) bool { return naturalLess(services[i].Spec.Name, services[j].Spec.Name) })
	rows := make([]any, 0, len(services))
	for _, s := range services {
		rows = append(rows, &serviceRow{s: s})
	}
	return writeList(out, format, serviceHeaders, rows)
}

// listServicesWithStatus is GET /services?status=true; for daemons that do
// not fill ServiceStatus it counts running tasks itself, like docker.
func listServicesWithStatus(ctx context.Context, cl *client.Client, filters client.Filters) ([]swarm.Service, error) {
	res, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: filters, Status: true})
	if err != nil {
		return nil, err
	}
	missing := false
	for _, s := range res.Items {
		if s.ServiceStatus == nil {
			missing = true
		}
	}
	if !missing || len(res.Items) == 0 {
		return res.Items, nil
	}
	tf := client.Filters{}
	for _, s := range res.Items {
		tf.Add("service", s.ID)
	}
	tasks, err := cl.TaskList(ctx, client.TaskListOptions{Filters: tf})
	if err != nil {
		return nil, err
	}
	nodes, err := cl.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, err
	}
	active := map[string]bool{}
	for _, n := range nodes.Items {
		if n.Status.State != swarm.NodeStateDown {
			active[n.ID] = true
		}
	}
	for i := range res.Items {
		s := &res.Items[i]
		if s.ServiceStatus != nil {
			continue
		}
		st := &swarm.ServiceStatus{}
		if s.Spec.Mode.Replicated != nil && s.Spec.Mode.Replicated.Replicas != nil {
			st.DesiredTasks = *s.Spec.Mode.Replicated.Replicas
		}
		for _, t := range tasks.Items {
			if t.ServiceID != s.ID {
				continue
			}
			if s.Spec.Mode.Global != nil && t.DesiredState != swarm.TaskStateShutdown && active[t.NodeID] {
				st.DesiredTasks++
			}
			if t.Status.State == swarm.TaskStateRunning && active[t.NodeID] {
				st.RunningTasks++
			}
		}
		s.ServiceStatus = st
	}
	return res.Items, nil
}

func newServiceLsCommand(c *CLI) *cobra.Command {
	var quiet bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List services",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var services []swarm.Service
			if quiet {
				res, err := cl.ServiceList(cmd.Context(), client.ServiceListOptions{Filters: filter.filters()})
				if err != nil {
					return err
				}
				services = res.Items
			} else if services, err = listServicesWithStatus(cmd.Context(), cl, filter.filters()); err != nil {
				return err
			}
			return writeServices(c.Out, format, quiet, services)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

// ---- service ps ----

// serviceTaskFilter matches each argument to a service by full ID, full
// name, then unique ID prefix (docker's order) and builds the task filter.
func serviceTaskFilter(ctx context.Context, cl *client.Client, refs []string, base client.Filters) (client.Filters, []string, error) {
	byID, byName := client.Filters{}, client.Filters{}
	for _, r := range refs {
		byID.Add("id", r)
		byName.Add("name", r)
	}
	idRes, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: byID})
	if err != nil {
		return nil, nil, err
	}
	nameRes, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: byName})
	if err != nil {
		return nil, nil, err
	}
	var notFound []string
	count := 0
next:
	for _, r := range refs {
		for _, s := range idRes.Items {
			if s.ID == r {
				base.Add("service", s.ID)
				count++
				continue next
			}
		}
		for _, s := range nameRes.Items {
			if s.Spec.Name == r {
				base.Add("service", s.ID)
				count++
				continue next
			}
		}
		found := false
		for _, s := range idRes.Items {
			if strings.HasPrefix(s.ID, r) {
				if found {
					return nil, nil, errors.New("multiple services found with provided prefix: " + r)
				}
				base.Add("service", s.ID)
				count++
				found = true
			}
		}
		if !found {
			notFound = append(notFound, "no such service: "+r)
		}
	}
	if count == 0 {
		return nil, nil, errors.New(strings.Join(notFound, "\n"))
	}
	return base, notFound, nil
}

func newServicePsCommand(c *CLI) *cobra.Command {
	var o taskListOptions
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] SERVICE [SERVICE...]",
		Short: "List the tasks of one or more services",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			filters, notFound, err := serviceTaskFilter(ctx, cl, args, o.filter.filters())
			if err != nil {
				return err
			}
			if nodes, ok := filters["node"]; ok {
				resolved := map[string]bool{}
				for n := range nodes {
					id, err := nodeReference(ctx, cl, n)
					if err != nil {
						return err
					}
					resolved[id] = true
				}
				filters["node"] = resolved
			}
			res, err := cl.TaskList(ctx, client.TaskListOptions{Filters: filters})
			if err != nil {
				return err
			}
			if o.quiet {
				// `service ps -q` prints full IDs (node/stack ps do not).
				o.noTrunc = true
			}
			if err := c.printTasks(ctx, cl, res.Items, o); err != nil {
				return err
			}
			if len(notFound) > 0 {
				return errors.New(strings.Join(notFound, "\n"))
			}
			return nil
		},
	}
	addTaskListFlags(cmd, &o)
	return cmd
}

// ---- service logs ----

type serviceLogsOptions struct {
	follow, timestamps, noTaskIDs, noTrunc, raw, details, noResolve bool
	since, tail                                                     string
}

func newServiceLogsCommand(c *CLI) *cobra.Command {
	var o serviceLogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] SERVICE|TASK",
		Short: "Fetch the logs of a service or task",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.serviceLogs(cmd.Context(), cl, args[0], o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.noResolve, "no-resolve", false, "Do not map IDs to Names in output")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Do not truncate output")
	f.BoolVar(&o.raw, "raw", false, "Do not neatly format logs")
	f.BoolVar(&o.noTaskIDs, "no-task-ids", false, "Do not include task IDs in output")
	f.BoolVarP(&o.follow, "follow", "f", false, "Follow log output")
	f.StringVar(&o.since, "since", "", `Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)`)
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "Show timestamps")
	f.BoolVar(&o.details, "details", false, "Show extra details provided to logs")
	f.StringVarP(&o.tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	return cmd
}

func digits(n int) int { return len(strconv.Itoa(n)) }

func (c *CLI) serviceLogs(ctx context.Context, cl *client.Client, target string, o serviceLogsOptions) error {
	var body io.ReadCloser
	var tty bool
	padding := 1
	logOpts := client.ServiceLogsOptions{ShowStdout: true, ShowStderr: true, Since: o.since, Timestamps: o.timestamps,
		Follow: o.follow, Tail: o.tail, Details: o.details || !o.raw}
	svc, err := cl.ServiceInspect(ctx, target, client.ServiceInspectOptions{})
	if err != nil {
		if !isNotFound(err) {
			return err
		}
		t, err := cl.TaskInspect(ctx, target, client.TaskInspectOptions{})
		if err != nil {
			if isNotFound(err) {
				return fmt.Errorf("no such task or service: %v", target)
			}
			return err
		}
		tty = t.Task.Spec.ContainerSpec != nil && t.Task.Spec.ContainerSpec.TTY
		padding = digits(t.Task.Slot)
		if tty && !o.raw {
			return errors.New("tty service logs only supported with --raw")
		}
		body, err = cl.TaskLogs(ctx, target, client.TaskLogsOptions(logOpts))
		if err != nil {
			return err
		}
	} else {
		spec := svc.Service.Spec
		tty = spec.TaskTemplate.ContainerSpec != nil && spec.TaskTemplate.ContainerSpec.TTY
		if spec.Mode.Replicated != nil && spec.Mode.Replicated.Replicas != nil {
			padding = digits(int(*spec.Mode.Replicated.Replicas))
		}
		if tty && !o.raw {
			return errors.New("tty service logs only supported with --raw")
		}
		body, err = cl.ServiceLogs(ctx, target, logOpts)
		if err != nil {
			return err
		}
	}
	defer body.Close()
	if tty {
		_, err := io.Copy(c.Out, body)
		return err
	}
	stdout, stderr := c.Out, c.Err
	if !o.raw {
		tf := &taskNameFormatter{cl: cl, o: o, padding: padding, res: newIDResolver(cl, o.noResolve), cache: map[logContext]string{}}
		stdout = &logLineWriter{ctx: ctx, o: o, f: tf, w: stdout}
		stderr = &logLineWriter{ctx: ctx, o: o, f: tf, w: stderr}
	}
	_, err = stdcopy.StdCopy(stdout, stderr, body)
	return err
}

type logContext struct{ nodeID, serviceID, taskID string }

// taskNameFormatter renders "name.slot.taskid@node" once per log context.
type taskNameFormatter struct {
	cl      *client.Client
	o       serviceLogsOptions
	padding int
	res     *idResolver
	cache   map[logContext]string
}

func (f *taskNameFormatter) format(ctx context.Context, lc logContext) (string, error) {
	if s, ok := f.cache[lc]; ok {
		return s, nil
	}
	node := f.res.node(ctx, lc.nodeID)
	svc := f.res.service(ctx, lc.serviceID)
	t, err := f.cl.TaskInspect(ctx, lc.taskID, client.TaskInspectOptions{})
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s.%d", svc, t.Task.Slot)
	if !f.o.noTaskIDs {
		if f.o.noTrunc {
			name += "." + t.Task.ID
		} else {
			name += "." + truncateID(t.Task.ID)
		}
	}
	pad := ""
	if n := f.padding - digits(t.Task.Slot); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	s := name + "@" + node + pad
	f.cache[lc] = s
	return s, nil
}

// logLineWriter rewrites each "[timestamp] details message" frame from the
// daemon into docker's "task@node    | message".
type logLineWriter struct {
	ctx context.Context
	o   serviceLogsOptions
	f   *taskNameFormatter
	w   io.Writer
}

func (lw *logLineWriter) Write(buf []byte) (int, error) {
	detailsIdx, nParts := 0, 2
	if lw.o.timestamps {
		detailsIdx, nParts = 1, 3
	}
	parts := bytes.SplitN(buf, []byte(" "), nParts)
	if len(parts) != nParts {
		return 0, fmt.Errorf("invalid context in log message: %v", string(buf))
	}
	details, err := parseLogDetails(string(parts[detailsIdx]))
	if err != nil {
		return 0, err
	}
	lc := logContext{nodeID: details["com.docker.swarm.node.id"], serviceID: details["com.docker.swarm.service.id"], taskID: details["com.docker.swarm.task.id"]}
	switch {
	case lc.nodeID == "":
		return 0, fmt.Errorf("missing node id in details: %v", details)
	case lc.serviceID == "":
		return 0, fmt.Errorf("missing service id in details: %v", details)
	case lc.taskID == "":
		return 0, fmt.Errorf("missing task id in details: %v", details)
	}
	delete(details, "com.docker.swarm.node.id")
	delete(details, "com.docker.swarm.service.id")
	delete(details, "com.docker.swarm.task.id")
	var out []byte
	if lw.o.timestamps {
		out = append(out, parts[0]...)
		out = append(out, ' ')
	}
	name, err := lw.f.format(lw.ctx, lc)
	if err != nil {
		return 0, err
	}
	out = append(out, name+"    | "...)
	if lw.o.details {
		out = append(out, sortedKV(details, ",")...)
		out = append(out, ' ')
	}
	out = append(out, parts[detailsIdx+1]...)
	if _, err := lw.w.Write(out); err != nil {
		return 0, err
	}
	return len(buf), nil
}

// parseLogDetails parses "k=v,k2=v2" with URL-escaped parts.
func parseLogDetails(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok {
			return nil, errors.New("invalid details format")
		}
		var err error
		if k, err = url.QueryUnescape(k); err != nil {
			return nil, err
		}
		if v, err = url.QueryUnescape(v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, nil
}

// ---- Shoal extension: service history / rollback --to ----

// ServiceHistoryEntry is one past spec of a service, as returned by Shoal's
// GET /services/{id}/history.
type ServiceHistoryEntry struct {
	Version   uint64
	CreatedAt time.Time
	Spec      swarm.ServiceSpec
}

func (c *CLI) serviceHistory(ctx context.Context, id string) ([]ServiceHistoryEntry, error) {
	var out []ServiceHistoryEntry
	err := c.rawRequest(ctx, "GET", "/services/"+url.PathEscape(id)+"/history", nil, nil, &out)
	return out, err
}

// rollbackTo re-applies the spec recorded at VERSION: POST
// /services/{id}/update?version=CUR&rollbackTo=VERSION with that spec as the
// body, so the server can mark it as a rollback.
func (c *CLI) rollbackTo(ctx context.Context, svc swarm.Service, to uint64) error {
	hist, err := c.serviceHistory(ctx, svc.ID)
	if err != nil {
		return err
	}
	for _, h := range hist {
		if h.Version == to {
			q := url.Values{}
			q.Set("version", svc.Version.String())
			q.Set("rollbackTo", strconv.FormatUint(to, 10))
			var resp swarm.ServiceUpdateResponse
			if err := c.rawRequest(ctx, "POST", "/services/"+url.PathEscape(svc.ID)+"/update", q, h.Spec, &resp); err != nil {
				return err
			}
			for _, w := range resp.Warnings {
				fmt.Fprintln(c.Err, w)
			}
			return nil
		}
	}
	return fmt.Errorf("service %s has no version %d in its history", svc.Spec.Name, to)
}

type historyEntryRow struct {
	e   ServiceHistoryEntry
	now time.Time
	cur bool
}

func (r *historyEntryRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *historyEntryRow) Version() string {
	v := strconv.FormatUint(r.e.Version, 10)
	if r.cur {
		v += " *"
	}
	return v
}
func (r *historyEntryRow) Created() string {
	if r.e.CreatedAt.IsZero() {
		return ""
	}
	return timeAgo(r.now, r.e.CreatedAt)
}
func (r *historyEntryRow) Image() string {
	if r.e.Spec.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	return familiarTagged(r.e.Spec.TaskTemplate.ContainerSpec.Image)
}
func (r *historyEntryRow) Mode() string {
	return (&serviceRow{s: swarm.Service{Spec: r.e.Spec}}).Mode()
}
func (r *historyEntryRow) Replicas() string {
	if m := r.e.Spec.Mode.Replicated; m != nil && m.Replicas != nil {
		return strconv.FormatUint(*m.Replicas, 10)
	}
	return ""
}
func (r *historyEntryRow) Ports() string {
	if r.e.Spec.EndpointSpec == nil {
		return ""
	}
	return servicePorts(r.e.Spec.EndpointSpec.Ports)
}

func newServiceHistoryCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "history [OPTIONS] SERVICE",
		Short: "Show the past specifications of a service (Shoal)",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			svc, err := cl.ServiceInspect(ctx, args[0], client.ServiceInspectOptions{})
			if err != nil {
				return err
			}
			hist, err := c.serviceHistory(ctx, svc.Service.ID)
			if err != nil {
				return err
			}
			sort.Slice(hist, func(i, j int) bool { return hist[i].Version > hist[j].Version })
			now := c.now()
			var rows []any
			for i, h := range hist {
				rows = append(rows, &historyEntryRow{e: h, now: now, cur: i == 0})
			}
			if format == "" || format == tableFormatKey {
				format = "table {{.Version}}\t{{.Created}}\t{{.Image}}\t{{.Mode}}\t{{.Replicas}}\t{{.Ports}}"
			}
			return writeList(c.Out, format, map[string]string{"Version": "VERSION", "Created": "CREATED", "Image": "IMAGE",
				"Mode": "MODE", "Replicas": "REPLICAS", "Ports": "PORTS"}, rows)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

// familiarTagged shortens "docker.io/library/nginx:1@sha256:..." to
// "nginx:1" like docker's service and task listings.
func familiarTagged(image string) string {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return image
	}
	if nt, ok := ref.(reference.NamedTagged); ok {
		if t, err := reference.WithTag(reference.TrimNamed(nt), nt.Tag()); err == nil {
			return reference.FamiliarString(t)
		}
	}
	return image
}
