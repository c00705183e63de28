package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	composeloader "github.com/compose-spec/compose-go/v2/loader"
	composetypes "github.com/compose-spec/compose-go/v2/types"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// Stacks are client-side, as in docker: resources are named
// "<stack>_<name>" and carry the namespace label.
const (
	labelNamespace = "com.docker.stack.namespace"
	labelImage     = "com.docker.stack.image"
)

func stackFilter(ns string) client.Filters {
	return make(client.Filters).Add("label", labelNamespace+"="+ns)
}

func newStackCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "stack", Short: "Manage Swarm stacks"}
	cmd.AddCommand(newStackDeployCommand(c), newStackLsCommand(c), newStackServicesCommand(c), newStackPsCommand(c), newStackRmCommand(c))
	return cmd
}

// loadCompose reads compose files ("-" is stdin) with environment
// interpolation, naming the project after the stack.
func (c *CLI) loadCompose(ctx context.Context, files []string, stack string) (*composetypes.Project, error) {
	if len(files) == 0 {
		return nil, errors.New("specify a Compose file (with --compose-file)")
	}
	var cfgFiles []composetypes.ConfigFile
	workDir := ""
	for _, f := range files {
		data, err := c.readAllFrom(f)
		if err != nil {
			return nil, err
		}
		name := f
		if f == "-" {
			name = "stdin"
		}
		if workDir == "" {
			if f == "-" {
				workDir, _ = os.Getwd()
			} else {
				abs, err := filepath.Abs(f)
				if err != nil {
					return nil, err
				}
				workDir = filepath.Dir(abs)
			}
		}
		cfgFiles = append(cfgFiles, composetypes.ConfigFile{Filename: name, Content: data})
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return composeloader.LoadWithContext(ctx, composetypes.ConfigDetails{WorkingDir: workDir, ConfigFiles: cfgFiles, Environment: env},
		func(o *composeloader.Options) {
			o.SetProjectName(stack, true)
			o.SkipConsistencyCheck = false
		})
}

func stackLabels(ns string, in map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range in {
		out[k] = v
	}
	out[labelNamespace] = ns
	return out
}

type stackDeployOptions struct {
	files                          []string
	prune, detach, quiet, withAuth bool
	resolveImage                   string
}

func newStackDeployCommand(c *CLI) *cobra.Command {
	var o stackDeployOptions
	cmd := &cobra.Command{
		Use:     "deploy [OPTIONS] STACK",
		Aliases: []string{"up"},
		Short:   "Deploy a new stack or update an existing stack",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			project, err := c.loadCompose(ctx, o.files, args[0])
			if err != nil {
				return err
			}
			switch o.resolveImage {
			case "always", "changed", "never":
			default:
				return fmt.Errorf("invalid option %s for flag --resolve-image", o.resolveImage)
			}
			if o.detach && !cmd.Flags().Changed("detach") {
				fmt.Fprintln(c.Err, "Since --detach=false was not specified, tasks will be created in the background.\n"+
					"In a future release, --detach=false will become the default.")
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.deployStack(ctx, cl, args[0], project, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&o.files, "compose-file", "c", nil, `Path to a Compose file, or "-" to read from stdin`)
	f.BoolVar(&o.prune, "prune", false, "Prune services that are no longer referenced")
	f.BoolVarP(&o.detach, "detach", "d", true, "Exit immediately instead of waiting for the stack services to converge")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress progress output")
	f.StringVar(&o.resolveImage, "resolve-image", "always", `Query the registry to resolve image digest and supported platforms ("always", "changed", "never")`)
	f.BoolVar(&o.withAuth, "with-registry-auth", false, "Send registry authentication details to Swarm agents")
	return cmd
}

func (c *CLI) deployStack(ctx context.Context, cl *client.Client, ns string, p *composetypes.Project, o stackDeployOptions) error {
	info, err := cl.Info(ctx, client.InfoOptions{})
	if err != nil {
		return err
	}
	if !info.Info.Swarm.ControlAvailable {
		return errors.New(`this node is not a swarm manager. Use "shoal swarm init" or "shoal swarm join" to connect this node to swarm and try again`)
	}
	var unsupported []string
	for _, name := range sortedKeys(p.Services) {
		if p.Services[name].Build != nil {
			unsupported = append(unsupported, "build")
			break
		}
	}
	if len(unsupported) > 0 {
		fmt.Fprintf(c.Err, "Ignoring unsupported options: %s\n\n", strings.Join(unsupported, ", "))
	}

	if o.prune {
		keep := map[string]bool{}
		for name := range p.Services {
			keep[ns+"_"+name] = true
		}
		existing, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: stackFilter(ns)})
		if err != nil {
			return err
		}
		for _, s := range existing.Items {
			if !keep[s.Spec.Name] {
				fmt.Fprintln(c.Out, "Removing service", s.Spec.Name)
				if _, err := cl.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{}); err != nil {
					fmt.Fprintf(c.Err, "Failed to remove service %s: %s\n", s.ID, err)
				}
			}
		}
	}

	// Networks the services use: external ones must exist with swarm
	// scope; the others are created unless already there.
	used := map[string]bool{}
	for _, s := range p.Services {
		for n := range s.Networks {
			used[n] = true
		}
		if len(s.Networks) == 0 {
			used["default"] = true
		}
	}
	existingNets, err := cl.NetworkList(ctx, client.NetworkListOptions{Filters: stackFilter(ns)})
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, n := range existingNets.Items {
		have[n.Name] = true
	}
	for _, key := range sortedKeys(used) {
		nw := p.Networks[key]
		name := nw.Name
		if name == "" {
			name = ns + "_" + key
		}
		if nw.External {
			res, err := cl.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
			switch {
			case isNotFound(err):
				return fmt.Errorf("network %q is declared as external, but could not be found. You need to create a swarm-scoped network before the stack is deployed", name)
			case err != nil:
				return err
			case res.Network.Scope != "swarm":
				return fmt.Errorf("network %q is declared as external, but it is not in the right scope: %q instead of \"swarm\"", name, res.Network.Scope)
			}
			continue
		}
		if have[name] {
			continue
		}
		opts := client.NetworkCreateOptions{Labels: stackLabels(ns, nw.Labels), Driver: nw.Driver, Options: nw.DriverOpts,
			Internal: nw.Internal, Attachable: nw.Attachable}
		if opts.Driver == "" {
			opts.Driver = "overlay"
		}
		if nw.Ipam.Driver != "" || len(nw.Ipam.Config) > 0 {
			opts.IPAM = &network.IPAM{Driver: nw.Ipam.Driver}
			for _, pool := range nw.Ipam.Config {
				sn, _ := netip.ParsePrefix(pool.Subnet)
				gw, _ := netip.ParseAddr(pool.Gateway)
				ir, _ := netip.ParsePrefix(pool.IPRange)
				opts.IPAM.Config = append(opts.IPAM.Config, network.IPAMConfig{Subnet: sn, Gateway: gw, IPRange: ir})
			}
		}
		fmt.Fprintln(c.Out, "Creating network", name)
		if _, err := cl.NetworkCreate(ctx, name, opts); err != nil {
			return fmt.Errorf("failed to create network %s: %w", name, err)
		}
	}

	if err := c.deployStackSecrets(ctx, cl, ns, p); err != nil {
		return err
	}
	if err := c.deployStackConfigs(ctx, cl, ns, p); err != nil {
		return err
	}

	// Convert every service first (resolving secret and config IDs), then
	// create or update them, as docker does.
	var specs []swarm.ServiceSpec
	for _, key := range sortedKeys(p.Services) {
		spec, err := convertComposeService(ns, p, p.Services[key])
		if err != nil {
			return fmt.Errorf("service %s: %w", key, err)
		}
		if spec.TaskTemplate.ContainerSpec.Secrets, err = stackSecretRefs(ctx, cl, ns, p, p.Services[key]); err != nil {
			return fmt.Errorf("service %s: %w", key, err)
		}
		if spec.TaskTemplate.ContainerSpec.Configs, err = stackConfigRefs(ctx, cl, ns, p, p.Services[key]); err != nil {
			return fmt.Errorf("service %s: %w", key, err)
		}
		specs = append(specs, spec)
	}
	existing, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: stackFilter(ns)})
	if err != nil {
		return err
	}
	byName := map[string]swarm.Service{}
	for _, s := range existing.Items {
		byName[s.Spec.Name] = s
	}
	var ids []string
	for _, spec := range specs {
		image := spec.TaskTemplate.ContainerSpec.Image
		auth := registryAuthFor(o.withAuth, image)
		if svc, ok := byName[spec.Name]; ok {
			fmt.Fprintf(c.Out, "Updating service %s (id: %s)\n", spec.Name, svc.ID)
			upd := client.ServiceUpdateOptions{Version: svc.Version, EncodedRegistryAuth: auth}
			switch o.resolveImage {
			case "always":
				upd.QueryRegistry = true
			case "changed":
				if image != svc.Spec.Labels[labelImage] {
					upd.QueryRegistry = true
				} else if svc.Spec.TaskTemplate.ContainerSpec != nil {
					spec.TaskTemplate.ContainerSpec.Image = svc.Spec.TaskTemplate.ContainerSpec.Image
				}
			default:
				if image == svc.Spec.Labels[labelImage] && svc.Spec.TaskTemplate.ContainerSpec != nil {
					spec.TaskTemplate.ContainerSpec.Image = svc.Spec.TaskTemplate.ContainerSpec.Image
				}
			}
			spec.TaskTemplate.ForceUpdate = svc.Spec.TaskTemplate.ForceUpdate
			upd.Spec = spec
			res, err := cl.ServiceUpdate(ctx, svc.ID, upd)
			if err != nil {
				return fmt.Errorf("failed to update service %s: %w", spec.Name, err)
			}
			for _, w := range res.Warnings {
				fmt.Fprintln(c.Err, w)
			}
			ids = append(ids, svc.ID)
			continue
		}
		fmt.Fprintln(c.Out, "Creating service", spec.Name)
		res, err := cl.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec, EncodedRegistryAuth: auth,
			QueryRegistry: o.resolveImage == "always" || o.resolveImage == "changed"})
		if err != nil {
			return fmt.Errorf("failed to create service %s: %w", spec.Name, err)
		}
		for _, w := range res.Warnings {
			fmt.Fprintln(c.Err, w)
		}
		ids = append(ids, res.ID)
	}
	if o.detach {
		return nil
	}
	var errs []string
	for _, id := range ids {
		if err := c.waitOnService(ctx, cl, id, o.quiet); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", id, err))
		}
	}
	return joinErrors(errs)
}

// fileObjectContent reads a compose secret/config body from its file,
// environment variable or inline content.
func fileObjectContent(o composetypes.FileObjectConfig, env map[string]string) ([]byte, error) {
	switch {
	case o.File != "":
		return os.ReadFile(o.File)
	case o.Environment != "":
		v, ok := env[o.Environment]
		if !ok {
			return nil, fmt.Errorf("environment variable %q not set", o.Environment)
		}
		return []byte(v), nil
	default:
		return []byte(o.Content), nil
	}
}

func (c *CLI) deployStackSecrets(ctx context.Context, cl *client.Client, ns string, p *composetypes.Project) error {
	for _, key := range sortedKeys(p.Secrets) {
		s := composetypes.FileObjectConfig(p.Secrets[key])
		if s.External {
			continue
		}
		data, err := fileObjectContent(s, p.Environment)
		if err != nil {
			return err
		}
		spec := swarm.SecretSpec{Annotations: swarm.Annotations{Name: s.Name, Labels: stackLabels(ns, s.Labels)}, Data: data}
		if s.Driver != "" {
			spec.Driver = &swarm.Driver{Name: s.Driver, Options: s.DriverOpts}
		}
		if s.TemplateDriver != "" {
			spec.Templating = &swarm.Driver{Name: s.TemplateDriver}
		}
		res, err := cl.SecretInspect(ctx, spec.Name, client.SecretInspectOptions{})
		switch {
		case err == nil:
			if _, err := cl.SecretUpdate(ctx, res.Secret.ID, client.SecretUpdateOptions{Version: res.Secret.Version, Spec: spec}); err != nil {
				return fmt.Errorf("failed to update secret %s: %w", spec.Name, err)
			}
		case isNotFound(err):
			fmt.Fprintln(c.Out, "Creating secret", spec.Name)
			if _, err := cl.SecretCreate(ctx, client.SecretCreateOptions{Spec: spec}); err != nil {
				return fmt.Errorf("failed to create secret %s: %w", spec.Name, err)
			}
		default:
			return err
		}
	}
	return nil
}

func (c *CLI) deployStackConfigs(ctx context.Context, cl *client.Client, ns string, p *composetypes.Project) error {
	for _, key := range sortedKeys(p.Configs) {
		s := composetypes.FileObjectConfig(p.Configs[key])
		if s.External {
			continue
		}
		data, err := fileObjectContent(s, p.Environment)
		if err != nil {
			return err
		}
		spec := swarm.ConfigSpec{Annotations: swarm.Annotations{Name: s.Name, Labels: stackLabels(ns, s.Labels)}, Data: data}
		if s.TemplateDriver != "" {
			spec.Templating = &swarm.Driver{Name: s.TemplateDriver}
		}
		res, err := cl.ConfigInspect(ctx, spec.Name, client.ConfigInspectOptions{})
		switch {
		case err == nil:
			if _, err := cl.ConfigUpdate(ctx, res.Config.ID, client.ConfigUpdateOptions{Version: res.Config.Version, Spec: spec}); err != nil {
				return fmt.Errorf("failed to update config %s: %w", spec.Name, err)
			}
		case isNotFound(err):
			fmt.Fprintln(c.Out, "Creating config", spec.Name)
			if _, err := cl.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: spec}); err != nil {
				return fmt.Errorf("failed to create config %s: %w", spec.Name, err)
			}
		default:
			return err
		}
	}
	return nil
}

// stackSecretRefs maps a service's secrets to references with IDs.
func stackSecretRefs(ctx context.Context, cl *client.Client, ns string, p *composetypes.Project, s composetypes.ServiceConfig) ([]*swarm.SecretReference, error) {
	var vals []string
	for _, ref := range s.Secrets {
		obj, ok := p.Secrets[ref.Source]
		if !ok {
			return nil, fmt.Errorf("undefined secret %q", ref.Source)
		}
		name := obj.Name
		if name == "" {
			name = ns + "_" + ref.Source
		}
		// compose-go spells the default target /run/secrets/NAME; swarm
		// (and docker's stack deploy) want the bare file name.
		target := strings.TrimPrefix(ref.Target, "/run/secrets/")
		if target == "" {
			target = ref.Source
		}
		v := fmt.Sprintf("source=%s,target=%s", name, target)
		if ref.UID != "" {
			v += ",uid=" + ref.UID
		}
		if ref.GID != "" {
			v += ",gid=" + ref.GID
		}
		if ref.Mode != nil {
			v += ",mode=0" + strconv.FormatUint(uint64(*ref.Mode), 8)
		}
		vals = append(vals, v)
	}
	return resolveSecrets(ctx, cl, vals)
}

func stackConfigRefs(ctx context.Context, cl *client.Client, ns string, p *composetypes.Project, s composetypes.ServiceConfig) ([]*swarm.ConfigReference, error) {
	var vals []string
	for _, ref := range s.Configs {
		obj, ok := p.Configs[ref.Source]
		if !ok {
			return nil, fmt.Errorf("undefined config %q", ref.Source)
		}
		name := obj.Name
		if name == "" {
			name = ns + "_" + ref.Source
		}
		target := ref.Target
		if target == "" {
			target = "/" + ref.Source
		}
		v := fmt.Sprintf("source=%s,target=%s", name, target)
		if ref.UID != "" {
			v += ",uid=" + ref.UID
		}
		if ref.GID != "" {
			v += ",gid=" + ref.GID
		}
		if ref.Mode != nil {
			v += ",mode=0" + strconv.FormatUint(uint64(*ref.Mode), 8)
		}
		vals = append(vals, v)
	}
	return resolveConfigs(ctx, cl, vals)
}

func durPtr(d *composetypes.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	v := time.Duration(*d)
	return &v
}

// convertComposeService turns one compose service into the ServiceSpec
// docker's stack deploy would send.
func convertComposeService(ns string, p *composetypes.Project, s composetypes.ServiceConfig) (swarm.ServiceSpec, error) {
	var deploy composetypes.DeployConfig
	if s.Deploy != nil {
		deploy = *s.Deploy
	}
	var spec swarm.ServiceSpec
	mode := swarm.ServiceMode{}
	var replicas *uint64
	if deploy.Replicas != nil {
		if *deploy.Replicas < 0 {
			return spec, fmt.Errorf("invalid replicas value %d", *deploy.Replicas)
		}
		r := uint64(*deploy.Replicas)
		replicas = &r
	}
	switch deploy.Mode {
	case "", "replicated":
		mode.Replicated = &swarm.ReplicatedService{Replicas: replicas}
	case "global":
		if replicas != nil {
			return spec, errors.New("replicas can only be used with replicated or replicated-job mode")
		}
		mode.Global = &swarm.GlobalService{}
	case "replicated-job":
		mode.ReplicatedJob = &swarm.ReplicatedJob{MaxConcurrent: replicas, TotalCompletions: replicas}
	case "global-job":
		mode.GlobalJob = &swarm.GlobalJob{}
	default:
		return spec, fmt.Errorf("unknown mode: %s", deploy.Mode)
	}

	var env []string
	for k, v := range s.Environment {
		if v == nil {
			env = append(env, k)
		} else {
			env = append(env, k+"="+*v)
		}
	}
	sort.Strings(env)

	var ports []swarm.PortConfig
	for _, pc := range s.Ports {
		var published uint64
		if pc.Published != "" {
			var err error
			if published, err = strconv.ParseUint(pc.Published, 10, 16); err != nil {
				return spec, fmt.Errorf("invalid published port %q", pc.Published)
			}
		}
		ports = append(ports, swarm.PortConfig{Protocol: network.IPProtocol(pc.Protocol), TargetPort: pc.Target,
			PublishedPort: uint32(published), PublishMode: swarm.PortConfigPublishMode(pc.Mode)})
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i].Compare(ports[j]) < 0 })

	var mounts []mount.Mount
	for _, v := range s.Volumes {
		m := mount.Mount{Type: mount.Type(v.Type), Source: v.Source, Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case "volume":
			if v.Source != "" {
				vol, ok := p.Volumes[v.Source]
				if !ok {
					return spec, fmt.Errorf("undefined volume %q", v.Source)
				}
				m.Source = vol.Name
				if !vol.External {
					m.VolumeOptions = &mount.VolumeOptions{Labels: stackLabels(ns, vol.Labels)}
					if vol.Driver != "" || len(vol.DriverOpts) > 0 {
						m.VolumeOptions.DriverConfig = &mount.Driver{Name: vol.Driver, Options: vol.DriverOpts}
					}
				}
			}
			if v.Volume != nil && v.Volume.NoCopy {
				if m.VolumeOptions == nil {
					m.VolumeOptions = &mount.VolumeOptions{}
				}
				m.VolumeOptions.NoCopy = true
			}
		case "bind":
			if v.Bind != nil && v.Bind.Propagation != "" {
				m.BindOptions = &mount.BindOptions{Propagation: mount.Propagation(v.Bind.Propagation)}
			}
		case "tmpfs":
			if v.Tmpfs != nil {
				m.TmpfsOptions = &mount.TmpfsOptions{SizeBytes: int64(v.Tmpfs.Size)}
			}
		}
		mounts = append(mounts, m)
	}

	var nets []swarm.NetworkAttachmentConfig
	svcNets := s.Networks
	if len(svcNets) == 0 {
		svcNets = map[string]*composetypes.ServiceNetworkConfig{"default": nil}
	}
	for key, sn := range svcNets {
		nw, ok := p.Networks[key]
		if !ok && key != "default" {
			return spec, fmt.Errorf("undefined network %q", key)
		}
		target := nw.Name
		if target == "" {
			target = ns + "_" + key
		}
		na := swarm.NetworkAttachmentConfig{Target: target}
		if sn != nil {
			na.Aliases = append(na.Aliases, sn.Aliases...)
			na.DriverOpts = sn.DriverOpts
		}
		if target != "host" && target != "bridge" && target != "none" && target != "default" {
			na.Aliases = append(na.Aliases, s.Name)
		}
		nets = append(nets, na)
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Target < nets[j].Target })

	resources := &swarm.ResourceRequirements{}
	if l := deploy.Resources.Limits; l != nil {
		resources.Limits = &swarm.Limit{NanoCPUs: int64(float64(l.NanoCPUs.Value())*1e9 + 0.5), MemoryBytes: int64(l.MemoryBytes), Pids: l.Pids}
	}
	if r := deploy.Resources.Reservations; r != nil {
		resources.Reservations = &swarm.Resources{NanoCPUs: int64(float64(r.NanoCPUs.Value())*1e9 + 0.5), MemoryBytes: int64(r.MemoryBytes)}
	}

	var restart *swarm.RestartPolicy
	if rp := deploy.RestartPolicy; rp != nil {
		restart = &swarm.RestartPolicy{Condition: swarm.RestartPolicyCondition(rp.Condition), Delay: durPtr(rp.Delay), MaxAttempts: rp.MaxAttempts, Window: durPtr(rp.Window)}
	} else if s.Restart != "" {
		pol, err := parseRestartPolicy(s.Restart)
		if err != nil {
			return spec, err
		}
		var max *uint64
		if pol.MaximumRetryCount > 0 {
			v := uint64(pol.MaximumRetryCount)
			max = &v
		}
		switch pol.Name {
		case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
			restart = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, MaxAttempts: max}
		case container.RestartPolicyOnFailure:
			restart = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, MaxAttempts: max}
		}
	}

	updateCfg := func(u *composetypes.UpdateConfig) *swarm.UpdateConfig {
		if u == nil {
			return nil
		}
		par := uint64(1)
		if u.Parallelism != nil {
			par = *u.Parallelism
		}
		return &swarm.UpdateConfig{Parallelism: par, Delay: time.Duration(u.Delay), FailureAction: swarm.FailureAction(u.FailureAction),
			Monitor: time.Duration(u.Monitor), MaxFailureRatio: u.MaxFailureRatio, Order: swarm.UpdateOrder(u.Order)}
	}

	var health *container.HealthConfig
	if h := s.HealthCheck; h != nil {
		if h.Disable {
			health = &container.HealthConfig{Test: []string{"NONE"}}
		} else {
			health = &container.HealthConfig{Test: h.Test}
			if h.Timeout != nil {
				health.Timeout = time.Duration(*h.Timeout)
			}
			if h.Interval != nil {
				health.Interval = time.Duration(*h.Interval)
			}
			if h.StartPeriod != nil {
				health.StartPeriod = time.Duration(*h.StartPeriod)
			}
			if h.Retries != nil {
				health.Retries = int(*h.Retries)
			}
		}
	}

	var hosts []string
	for _, host := range sortedKeys(s.ExtraHosts) {
		for _, ip := range s.ExtraHosts[host] {
			hosts = append(hosts, ip+" "+host)
		}
	}
	var dnsCfg *swarm.DNSConfig
	if len(s.DNS) > 0 || len(s.DNSSearch) > 0 || len(s.DNSOpts) > 0 {
		ns, err := parseDNS(s.DNS)
		if err != nil {
			return spec, err
		}
		dnsCfg = &swarm.DNSConfig{Nameservers: ns, Search: s.DNSSearch, Options: s.DNSOpts}
	}
	var ulimits []*container.Ulimit
	for _, name := range sortedKeys(s.Ulimits) {
		u := s.Ulimits[name]
		if u.Single != 0 {
			ulimits = append(ulimits, &container.Ulimit{Name: name, Soft: int64(u.Single), Hard: int64(u.Single)})
		} else {
			ulimits = append(ulimits, &container.Ulimit{Name: name, Soft: int64(u.Soft), Hard: int64(u.Hard)})
		}
	}
	var logDriver *swarm.Driver
	if s.Logging != nil {
		logDriver = &swarm.Driver{Name: s.Logging.Driver, Options: s.Logging.Options}
	}
	var prefs []swarm.PlacementPreference
	for _, pp := range deploy.Placement.Preferences {
		prefs = append(prefs, swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: pp.Spread}})
	}
	var sysctls map[string]string
	if len(s.Sysctls) > 0 {
		sysctls = map[string]string(s.Sysctls)
	}

	spec = swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: ns + "_" + s.Name, Labels: stackLabels(ns, deploy.Labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image: s.Image, Command: s.Entrypoint, Args: s.Command, Hostname: s.Hostname, Hosts: hosts,
				DNSConfig: dnsCfg, Healthcheck: health, Env: env, Labels: stackLabels(ns, s.Labels), Dir: s.WorkingDir,
				User: s.User, Mounts: mounts, StopGracePeriod: durPtr(s.StopGracePeriod), StopSignal: s.StopSignal,
				TTY: s.Tty, OpenStdin: s.StdinOpen, ReadOnly: s.ReadOnly, Isolation: container.Isolation(s.Isolation),
				Privileges: &swarm.Privileges{},
				Init:       s.Init, Sysctls: sysctls, CapabilityAdd: normalizeCaps(s.CapAdd), CapabilityDrop: normalizeCaps(s.CapDrop),
				Ulimits: ulimits, OomScoreAdj: s.OomScoreAdj,
			},
			LogDriver:     logDriver,
			Resources:     resources,
			RestartPolicy: restart,
			Placement:     &swarm.Placement{Constraints: deploy.Placement.Constraints, Preferences: prefs, MaxReplicas: deploy.Placement.MaxReplicas},
			Networks:      nets,
		},
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionMode(strings.ToLower(deploy.EndpointMode)), Ports: ports},
		Mode:           mode,
		UpdateConfig:   updateCfg(deploy.UpdateConfig),
		RollbackConfig: updateCfg(deploy.RollbackConfig),
	}
	spec.Labels[labelImage] = s.Image
	return spec, nil
}

// ---- stack ls / services / ps / rm ----

type stackRow struct {
	name     string
	services int
}

func (r *stackRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *stackRow) Name() string                 { return r.name }
func (r *stackRow) Services() string             { return strconv.Itoa(r.services) }

func newStackLsCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List stacks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ServiceList(cmd.Context(), client.ServiceListOptions{Filters: make(client.Filters).Add("label", labelNamespace)})
			if err != nil {
				return err
			}
			counts := map[string]int{}
			for _, s := range res.Items {
				ns, ok := s.Spec.Labels[labelNamespace]
				if !ok {
					return fmt.Errorf("cannot get label %s for service %s", labelNamespace, s.ID)
				}
				counts[ns]++
			}
			names := sortedKeys(counts)
			sort.SliceStable(names, func(i, j int) bool { return naturalLess(names[i], names[j]) })
			var rows []any
			for _, n := range names {
				rows = append(rows, &stackRow{name: n, services: counts[n]})
			}
			if format == "" || format == tableFormatKey {
				format = "table {{.Name}}\t{{.Services}}"
			}
			return writeList(c.Out, format, map[string]string{"Name": "NAME", "Services": "SERVICES"}, rows)
		},
	}
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

func newStackServicesCommand(c *CLI) *cobra.Command {
	var quiet bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:   "services [OPTIONS] STACK",
		Short: "List the services in the stack",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			f := filter.filters()
			f.Add("label", labelNamespace+"="+args[0])
			res, err := cl.ServiceList(cmd.Context(), client.ServiceListOptions{Filters: f, Status: !quiet})
			if err != nil {
				return err
			}
			if len(res.Items) == 0 {
				fmt.Fprintln(c.Err, "Nothing found in stack:", args[0])
				return nil
			}
			return writeServices(c.Out, format, quiet, res.Items)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

func newStackPsCommand(c *CLI) *cobra.Command {
	var o taskListOptions
	cmd := &cobra.Command{
		Use:   "ps [OPTIONS] STACK",
		Short: "List the tasks in the stack",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			f := o.filter.filters()
			f.Add("label", labelNamespace+"="+args[0])
			res, err := cl.TaskList(cmd.Context(), client.TaskListOptions{Filters: f})
			if err != nil {
				return err
			}
			if len(res.Items) == 0 {
				return fmt.Errorf("nothing found in stack: %s", args[0])
			}
			return c.printTasks(cmd.Context(), cl, res.Items, o)
		},
	}
	addTaskListFlags(cmd, &o)
	return cmd
}

func newStackRmCommand(c *CLI) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] STACK [STACK...]",
		Aliases: []string{"remove", "down"},
		Short:   "Remove one or more stacks",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var errs []string
			for _, ns := range args {
				if err := c.removeStack(ctx, cl, ns, detach); err != nil {
					if errors.Is(err, errNothingInStack) {
						continue
					}
					errs = append(errs, err.Error())
				}
			}
			return joinErrors(errs)
		},
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", true, "Do not wait for stack removal")
	return cmd
}

var errNothingInStack = errors.New("nothing found in stack")

// removeStack deletes services, secrets, configs then networks carrying
// the stack's namespace label, reporting each like docker.
func (c *CLI) removeStack(ctx context.Context, cl *client.Client, ns string, detach bool) error {
	f := stackFilter(ns)
	svcs, err := cl.ServiceList(ctx, client.ServiceListOptions{Filters: f})
	if err != nil {
		return err
	}
	nets, err := cl.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		return err
	}
	secs, err := cl.SecretList(ctx, client.SecretListOptions{Filters: f})
	if err != nil {
		return err
	}
	cfgs, err := cl.ConfigList(ctx, client.ConfigListOptions{Filters: f})
	if err != nil {
		return err
	}
	if len(svcs.Items)+len(nets.Items)+len(secs.Items)+len(cfgs.Items) == 0 {
		fmt.Fprintln(c.Err, "Nothing found in stack:", ns)
		return errNothingInStack
	}
	failed := false
	report := func(what, id string, err error) {
		if err != nil {
			failed = true
			fmt.Fprintf(c.Err, "Failed to remove %s %s: %s\n", what, id, c.errorText(err))
		}
	}
	sort.Slice(svcs.Items, func(i, j int) bool { return svcs.Items[i].Spec.Name < svcs.Items[j].Spec.Name })
	for _, s := range svcs.Items {
		fmt.Fprintln(c.Out, "Removing service", s.Spec.Name)
		_, err := cl.ServiceRemove(ctx, s.ID, client.ServiceRemoveOptions{})
		report("service", s.ID, err)
	}
	for _, s := range secs.Items {
		fmt.Fprintln(c.Out, "Removing secret", s.Spec.Name)
		_, err := cl.SecretRemove(ctx, s.ID, client.SecretRemoveOptions{})
		report("secret", s.ID, err)
	}
	for _, s := range cfgs.Items {
		fmt.Fprintln(c.Out, "Removing config", s.Spec.Name)
		_, err := cl.ConfigRemove(ctx, s.ID, client.ConfigRemoveOptions{})
		report("config", s.ID, err)
	}
	for _, n := range nets.Items {
		fmt.Fprintln(c.Out, "Removing network", n.Name)
		_, err := cl.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{})
		report("network", n.ID, err)
	}
	if failed {
		return fmt.Errorf("failed to remove some resources from stack: %s", ns)
	}
	if detach {
		return nil
	}
	for {
		tasks, err := cl.TaskList(ctx, client.TaskListOptions{Filters: f})
		if err != nil {
			return fmt.Errorf("failed to wait on tasks of stack: %s: %w", ns, err)
		}
		done := true
		for _, t := range tasks.Items {
			if !terminalState(t.Status.State) {
				done = false
			}
		}
		if done {
			return nil
		}
		select {
		case <-time.After(c.pollInterval()):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
