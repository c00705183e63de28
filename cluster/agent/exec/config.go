package exec

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"
	"text/template"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// Labels docker puts on task containers.
const (
	LabelTask           = "com.docker.swarm.task"
	LabelTaskID         = "com.docker.swarm.task.id"
	LabelTaskName       = "com.docker.swarm.task.name"
	LabelNodeID         = "com.docker.swarm.node.id"
	LabelServiceID      = "com.docker.swarm.service.id"
	LabelServiceName    = "com.docker.swarm.service.name"
	LabelStackNamespace = "com.docker.stack.namespace"
)

// DefaultStopGracePeriod is docker's stop timeout for tasks, in seconds.
const DefaultStopGracePeriod = 10

// Spec is a container to create for a task.
type Spec struct {
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Networking *network.NetworkingConfig
}

// TaskName is docker's name for a task's container:
// <service>.<slot>.<task ID>, or <service>.<node ID>.<task ID> for global
// services (no slot).
func TaskName(a wire.Assignment) string {
	t := a.Task
	if t.Annotations.Name != "" {
		return t.Annotations.Name
	}
	slot := strconv.Itoa(t.Slot)
	if t.Slot == 0 {
		slot = t.NodeID
	}
	svc := a.Service.Name
	if svc == "" {
		svc = t.ServiceID
	}
	return svc + "." + slot + "." + t.ID
}

// StopGracePeriod is how long a task's container gets to stop before it
// is killed, in whole seconds (rounded up).
func StopGracePeriod(a wire.Assignment) int {
	cs := a.Task.Spec.ContainerSpec
	if cs == nil || cs.StopGracePeriod == nil {
		return DefaultStopGracePeriod
	}
	d := *cs.StopGracePeriod
	if d <= 0 {
		return 0
	}
	s := int(d / 1e9)
	if d%1e9 != 0 {
		s++
	}
	return s
}

// templateContext is what {{...}} in hostname, env and mounts may use, as
// docker's: .Service.ID/Name/Labels, .Node.ID/Hostname/Platform, .Task.ID/
// Name/Slot. Only plain fields: templates cannot call methods.
type templateContext struct {
	Service struct {
		ID     string
		Name   string
		Labels map[string]string
	}
	Node struct {
		ID       string
		Hostname string
		Platform struct {
			Architecture string
			OS           string
		}
	}
	Task struct {
		ID   string
		Name string
		Slot string
	}
}

func newTemplateContext(a wire.Assignment, node swarm.NodeDescription) *templateContext {
	var c templateContext
	c.Service.ID = a.Task.ServiceID
	c.Service.Name = a.Service.Name
	c.Service.Labels = a.Service.Labels
	c.Node.ID = a.Task.NodeID
	c.Node.Hostname = node.Hostname
	c.Node.Platform.Architecture = node.Platform.Architecture
	c.Node.Platform.OS = node.Platform.OS
	c.Task.ID = a.Task.ID
	c.Task.Name = TaskName(a)
	if a.Task.Slot != 0 {
		c.Task.Slot = strconv.Itoa(a.Task.Slot)
	} else {
		c.Task.Slot = a.Task.NodeID
	}
	return &c
}

var templateFuncs = template.FuncMap{
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
}

func (c *templateContext) expand(field, s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	tmpl, err := template.New(field).Funcs(templateFuncs).Option("missingkey=error").Parse(s)
	if err != nil {
		return "", errdefs.InvalidParameter("invalid template in %s %q: %v", field, s, err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, c); err != nil {
		return "", errdefs.InvalidParameter("cannot expand template in %s %q: %v", field, s, err)
	}
	return buf.String(), nil
}

// Translate turns an assignment into the container to create, as docker's
// swarm executor does. Errors are InvalidParameter (the task is rejected).
func Translate(a wire.Assignment, node swarm.NodeDescription) (*Spec, error) {
	cs := a.Task.Spec.ContainerSpec
	if cs == nil {
		return nil, errdefs.InvalidParameter("task %s has no container spec", a.Task.ID)
	}
	if cs.Image == "" {
		return nil, errdefs.InvalidParameter("task %s: no image specified", a.Task.ID)
	}
	tc := newTemplateContext(a, node)
	hostname, err := tc.expand("hostname", cs.Hostname)
	if err != nil {
		return nil, err
	}
	env := make([]string, 0, len(cs.Env))
	for _, e := range cs.Env {
		k, v, ok := strings.Cut(e, "=")
		if ok {
			if v, err = tc.expand("env "+k, v); err != nil {
				return nil, err
			}
			e = k + "=" + v
		}
		env = append(env, e)
	}
	mounts, err := translateMounts(tc, cs.Mounts)
	if err != nil {
		return nil, err
	}

	cfg := &container.Config{
		Hostname:    hostname,
		User:        cs.User,
		Env:         env,
		WorkingDir:  cs.Dir,
		Image:       cs.Image,
		Tty:         cs.TTY,
		OpenStdin:   cs.OpenStdin,
		StopSignal:  cs.StopSignal,
		Labels:      taskLabels(a),
		Healthcheck: cs.Healthcheck,
	}
	grace := StopGracePeriod(a)
	cfg.StopTimeout = &grace
	if len(cs.Command) > 0 {
		// Command replaces the image's entrypoint; Args are its arguments.
		cfg.Entrypoint = append([]string(nil), cs.Command...)
		cfg.Cmd = append([]string(nil), cs.Args...)
	} else if len(cs.Args) > 0 {
		cfg.Cmd = append([]string(nil), cs.Args...)
	}

	hc := &container.HostConfig{
		// The orchestrator restarts tasks, never the engine.
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		NetworkMode:    network.NetworkBridge,
		Mounts:         mounts,
		ReadonlyRootfs: cs.ReadOnly,
		Init:           cs.Init,
		GroupAdd:       cs.Groups,
		Sysctls:        cs.Sysctls,
		CapAdd:         cs.CapabilityAdd,
		CapDrop:        cs.CapabilityDrop,
		OomScoreAdj:    int(cs.OomScoreAdj),
		Resources:      resources(a.Task.Spec.Resources),
	}
	hc.Ulimits = cs.Ulimits
	if cs.DNSConfig != nil {
		hc.DNS = cs.DNSConfig.Nameservers
		hc.DNSSearch = cs.DNSConfig.Search
		hc.DNSOptions = cs.DNSConfig.Options
	}
	// Swarm's hosts entries are "IP name [aliases...]"; the engine's are
	// "name:IP".
	for _, h := range cs.Hosts {
		f := strings.Fields(h)
		if len(f) < 2 {
			return nil, errdefs.InvalidParameter("invalid hosts entry %q: want \"IP hostname [aliases...]\"", h)
		}
		for _, name := range f[1:] {
			hc.ExtraHosts = append(hc.ExtraHosts, name+":"+f[0])
		}
	}
	if p := cs.Privileges; p != nil {
		if p.NoNewPrivileges {
			hc.SecurityOpt = append(hc.SecurityOpt, "no-new-privileges=true")
		}
		if p.Seccomp != nil && p.Seccomp.Mode == swarm.SeccompModeUnconfined {
			hc.SecurityOpt = append(hc.SecurityOpt, "seccomp=unconfined")
		}
		if p.AppArmor != nil && p.AppArmor.Mode == swarm.AppArmorModeDisabled {
			hc.SecurityOpt = append(hc.SecurityOpt, "apparmor=unconfined")
		}
	}
	if ld := a.Task.Spec.LogDriver; ld != nil && ld.Name != "" {
		hc.LogConfig = container.LogConfig{Type: ld.Name, Config: ld.Options}
	}
	if err := hostPorts(a.Service.Ports, cfg, hc); err != nil {
		return nil, err
	}
	return &Spec{
		Name:       TaskName(a),
		Config:     cfg,
		HostConfig: hc,
		Networking: &network.NetworkingConfig{},
	}, nil
}

// taskLabels: the spec's labels, then the task's, then the system labels,
// which win.
func taskLabels(a wire.Assignment) map[string]string {
	l := map[string]string{}
	if ns, ok := a.Service.Labels[LabelStackNamespace]; ok {
		l[LabelStackNamespace] = ns
	}
	for k, v := range a.Task.Spec.ContainerSpec.Labels {
		l[k] = v
	}
	for k, v := range a.Task.Annotations.Labels {
		l[k] = v
	}
	l[LabelTask] = ""
	l[LabelTaskID] = a.Task.ID
	l[LabelTaskName] = TaskName(a)
	l[LabelNodeID] = a.Task.NodeID
	l[LabelServiceID] = a.Task.ServiceID
	l[LabelServiceName] = a.Service.Name
	return l
}

func resources(r *swarm.ResourceRequirements) container.Resources {
	var res container.Resources
	if r == nil {
		return res
	}
	if r.Limits != nil {
		res.Memory = r.Limits.MemoryBytes
		res.NanoCPUs = r.Limits.NanoCPUs
		if r.Limits.Pids > 0 {
			p := r.Limits.Pids
			res.PidsLimit = &p
		}
	}
	if r.SwapBytes != nil && res.Memory > 0 {
		if *r.SwapBytes < 0 {
			res.MemorySwap = -1
		} else {
			// The engine's MemorySwap is memory plus swap.
			res.MemorySwap = res.Memory + *r.SwapBytes
		}
	}
	if r.MemorySwappiness != nil && *r.MemorySwappiness >= 0 {
		v := *r.MemorySwappiness
		res.MemorySwappiness = &v
	}
	return res
}

func translateMounts(tc *templateContext, in []mount.Mount) ([]mount.Mount, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]mount.Mount, 0, len(in))
	for _, m := range in {
		var err error
		if m.Source, err = tc.expand("mount source", m.Source); err != nil {
			return nil, err
		}
		if m.Target, err = tc.expand("mount target", m.Target); err != nil {
			return nil, err
		}
		if m.Target == "" || !path.IsAbs(m.Target) {
			return nil, errdefs.InvalidParameter("invalid mount target %q: must be an absolute path", m.Target)
		}
		switch m.Type {
		case mount.TypeBind:
			if !path.IsAbs(m.Source) {
				return nil, errdefs.InvalidParameter("invalid bind mount source %q: must be an absolute path", m.Source)
			}
		case mount.TypeVolume:
		case mount.TypeTmpfs:
			if m.Source != "" {
				return nil, errdefs.InvalidParameter("invalid tmpfs mount: source must be empty")
			}
		default:
			return nil, errdefs.InvalidParameter("mount type %q is not supported", m.Type)
		}
		out = append(out, m)
	}
	return out, nil
}

// hostPorts publishes the service's ports on the node: host-mode ones on
// their published port (or an ephemeral one when it is 0), and the target
// port of each ingress one on an ephemeral port the routing mesh sends
// that task's share of the traffic to (reported in PortStatus).
func hostPorts(ports []swarm.PortConfig, cfg *container.Config, hc *container.HostConfig) error {
	ingress := map[network.Port]bool{}
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = network.TCP
		}
		if p.TargetPort == 0 || p.TargetPort > 65535 || p.PublishedPort > 65535 {
			return errdefs.InvalidParameter("invalid port %d:%d", p.PublishedPort, p.TargetPort)
		}
		port, ok := network.PortFrom(uint16(p.TargetPort), proto)
		if !ok {
			return errdefs.InvalidParameter("invalid port protocol %q", proto)
		}
		b := network.PortBinding{}
		switch p.PublishMode {
		case swarm.PortConfigPublishModeHost:
			if p.PublishedPort != 0 {
				b.HostPort = strconv.Itoa(int(p.PublishedPort))
			}
		case swarm.PortConfigPublishModeIngress, "":
			if proto != network.TCP && proto != network.UDP {
				return errdefs.InvalidParameter("ingress port %d/%s: the routing mesh carries only tcp and udp", p.PublishedPort, proto)
			}
			// One node port per target, however many published ports
			// lead to it.
			if ingress[port] {
				continue
			}
			ingress[port] = true
		default:
			return errdefs.InvalidParameter("invalid publish mode %q", p.PublishMode)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = network.PortSet{}
			hc.PortBindings = network.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		hc.PortBindings[port] = append(hc.PortBindings[port], b)
	}
	return nil
}

// IngressOwner tells which service publishes proto/port through the
// routing mesh, if any.
type IngressOwner func(proto string, port uint32) (service string, ok bool)

// checkHostPorts refuses host-mode ports the routing mesh holds cluster-wide:
// the node reserves them, so the container could not bind them anyway, and
// this says why.
func checkHostPorts(ports []swarm.PortConfig, owner IngressOwner) error {
	if owner == nil {
		return nil
	}
	for _, p := range ports {
		if p.PublishMode != swarm.PortConfigPublishModeHost || p.PublishedPort == 0 {
			continue
		}
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(network.TCP)
		}
		if svc, ok := owner(proto, p.PublishedPort); ok {
			return errdefs.Conflict("host-mode port %d/%s is already published through the ingress routing mesh by service %s", p.PublishedPort, proto, svc)
		}
	}
	return nil
}

// publishedPorts is what a running task reports in Status.PortStatus, from
// the ports its container was actually given: host-mode ports as docker
// reports them, ingress ones with PublishedPort the node-local port the
// routing mesh forwards to (PublishMode stays ingress, which tells them
// apart).
func publishedPorts(ports []swarm.PortConfig, actual network.PortMap) []swarm.PortConfig {
	var out []swarm.PortConfig
	seen := map[network.Port]bool{}
	for _, p := range ports {
		proto := p.Protocol
		if proto == "" {
			proto = network.TCP
		}
		port, ok := network.PortFrom(uint16(p.TargetPort), proto)
		if !ok {
			continue
		}
		host := uint32(0)
		for _, b := range actual[port] {
			if n, err := strconv.ParseUint(b.HostPort, 10, 16); err == nil && n != 0 {
				if p.PublishMode != swarm.PortConfigPublishModeHost || p.PublishedPort == 0 || uint32(n) == p.PublishedPort {
					host = uint32(n)
					break
				}
			}
		}
		switch p.PublishMode {
		case swarm.PortConfigPublishModeHost:
			if host == 0 {
				host = p.PublishedPort
			}
			if host != 0 {
				p.PublishedPort = host
				out = append(out, p)
			}
		case swarm.PortConfigPublishModeIngress, "":
			if host == 0 || seen[port] {
				continue
			}
			seen[port] = true
			out = append(out, swarm.PortConfig{Name: p.Name, Protocol: proto, TargetPort: p.TargetPort,
				PublishedPort: host, PublishMode: swarm.PortConfigPublishModeIngress})
		}
	}
	return out
}

// exitError is docker's text for a task whose container failed.
func exitError(code int) string { return fmt.Sprintf("task: non-zero exit (%d)", code) }
