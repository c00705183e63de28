package controlapi

import (
	"regexp"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// Service-spec validation and defaults, with swarmkit's messages so users
// see what docker would tell them.

var validName = regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)

func validateAnnotations(a swarm.Annotations) error {
	if a.Name == "" {
		return errdefs.InvalidParameter("meta: name must be provided")
	}
	if len(a.Name) > 63 || !validName.MatchString(a.Name) {
		return errdefs.InvalidParameter("name must be valid as a DNS name component")
	}
	return nil
}

const (
	minNanoCPUs    = 1e6     // 0.001 CPU
	minMemoryBytes = 4 << 20 // 4 MiB
	maxSecretSize  = 500 << 10
)

func validateResources(r *swarm.ResourceRequirements) error {
	if r == nil {
		return nil
	}
	check := func(cpu, mem int64) error {
		if cpu != 0 && cpu < minNanoCPUs {
			return errdefs.InvalidParameter("invalid cpu value %g: Must be at least %g", float64(cpu)/1e9, float64(minNanoCPUs)/1e9)
		}
		if cpu < 0 || mem < 0 {
			return errdefs.InvalidParameter("invalid resources: negative values are not allowed")
		}
		if mem != 0 && mem < minMemoryBytes {
			return errdefs.InvalidParameter("invalid memory value %d: Must be at least 4MiB", mem)
		}
		return nil
	}
	if r.Reservations != nil {
		if err := check(r.Reservations.NanoCPUs, r.Reservations.MemoryBytes); err != nil {
			return err
		}
	}
	if r.Limits != nil {
		if err := check(r.Limits.NanoCPUs, r.Limits.MemoryBytes); err != nil {
			return err
		}
		if r.Limits.Pids < 0 {
			return errdefs.InvalidParameter("invalid pids limit %d: must not be negative", r.Limits.Pids)
		}
	}
	if r.Limits != nil && r.Reservations != nil {
		if r.Limits.MemoryBytes != 0 && r.Reservations.MemoryBytes > r.Limits.MemoryBytes {
			return errdefs.InvalidParameter("invalid resources: memory reservation %d is larger than memory limit %d", r.Reservations.MemoryBytes, r.Limits.MemoryBytes)
		}
		if r.Limits.NanoCPUs != 0 && r.Reservations.NanoCPUs > r.Limits.NanoCPUs {
			return errdefs.InvalidParameter("invalid resources: cpu reservation %g is larger than cpu limit %g", float64(r.Reservations.NanoCPUs)/1e9, float64(r.Limits.NanoCPUs)/1e9)
		}
	}
	return nil
}

func validateRestartPolicy(p *swarm.RestartPolicy) error {
	if p == nil {
		return nil
	}
	switch p.Condition {
	case "", swarm.RestartPolicyConditionNone, swarm.RestartPolicyConditionOnFailure, swarm.RestartPolicyConditionAny:
	default:
		return errdefs.InvalidParameter("TaskSpec: invalid restart condition %q: must be none, on-failure or any", p.Condition)
	}
	if p.Delay != nil && *p.Delay < 0 {
		return errdefs.InvalidParameter("TaskSpec: restart-delay cannot be negative")
	}
	if p.Window != nil && *p.Window < 0 {
		return errdefs.InvalidParameter("TaskSpec: restart-window cannot be negative")
	}
	return nil
}

func validateUpdateConfig(what string, u *swarm.UpdateConfig) error {
	if u == nil {
		return nil
	}
	if u.Delay < 0 {
		return errdefs.InvalidParameter("TaskSpec: %s-delay cannot be negative", what)
	}
	if u.Monitor < 0 {
		return errdefs.InvalidParameter("TaskSpec: %s-monitor cannot be negative", what)
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		return errdefs.InvalidParameter("TaskSpec: %s-maxfailureratio cannot be less than 0 or bigger than 1", what)
	}
	switch u.FailureAction {
	case "", swarm.UpdateFailureActionPause, swarm.UpdateFailureActionContinue:
	case swarm.UpdateFailureActionRollback:
		if what == "rollback" {
			return errdefs.InvalidParameter("TaskSpec: rollback-failure-action cannot be rollback")
		}
	default:
		return errdefs.InvalidParameter("TaskSpec: invalid %s-failure-action %q", what, u.FailureAction)
	}
	switch u.Order {
	case "", swarm.UpdateOrderStopFirst, swarm.UpdateOrderStartFirst:
	default:
		return errdefs.InvalidParameter("TaskSpec: invalid %s-order %q: must be stop-first or start-first", what, u.Order)
	}
	return nil
}

func validateMode(m swarm.ServiceMode) error {
	n := 0
	if m.Replicated != nil {
		n++
	}
	if m.Global != nil {
		n++
	}
	if m.ReplicatedJob != nil {
		n++
	}
	if m.GlobalJob != nil {
		n++
	}
	if n > 1 {
		return errdefs.InvalidParameter("service mode must be exactly one of replicated, global, replicated-job or global-job")
	}
	if m.ReplicatedJob != nil || m.GlobalJob != nil {
		return errdefs.NotImplemented("job modes are not supported")
	}
	return nil
}

func validateContainerSpec(ts swarm.TaskSpec) error {
	if ts.PluginSpec != nil || ts.NetworkAttachmentSpec != nil {
		return errdefs.InvalidParameter("TaskSpec: only container tasks are supported")
	}
	c := ts.ContainerSpec
	if c == nil || c.Image == "" {
		return errdefs.InvalidParameter("ContainerSpec: image reference must be provided")
	}
	if c.StopGracePeriod != nil && *c.StopGracePeriod < 0 {
		return errdefs.InvalidParameter("ContainerSpec: stop-grace-period cannot be negative")
	}
	for _, m := range c.Mounts {
		if m.Target == "" {
			return errdefs.InvalidParameter("ContainerSpec: mount target must be provided")
		}
		switch m.Type {
		case "bind":
			if m.Source == "" {
				return errdefs.InvalidParameter("ContainerSpec: invalid bind mount source, source is required")
			}
		case "volume", "tmpfs", "":
		default:
			return errdefs.InvalidParameter("ContainerSpec: invalid mount type %q", m.Type)
		}
	}
	return nil
}

func validateEndpointSpec(e *swarm.EndpointSpec) error {
	if e == nil {
		return nil
	}
	switch e.Mode {
	case "", swarm.ResolutionModeVIP, swarm.ResolutionModeDNSRR:
	default:
		return errdefs.InvalidParameter("EndpointSpec: invalid endpoint mode %q", e.Mode)
	}
	seen := map[string]bool{}
	for _, p := range e.Ports {
		if p.TargetPort == 0 || p.TargetPort > 65535 || p.PublishedPort > 65535 {
			return errdefs.InvalidParameter("EndpointSpec: invalid port: target %d, published %d", p.TargetPort, p.PublishedPort)
		}
		switch p.Protocol {
		case "", network.TCP, network.UDP, network.SCTP:
		default:
			return errdefs.InvalidParameter("EndpointSpec: invalid protocol %q", p.Protocol)
		}
		ingress := p.PublishMode == "" || p.PublishMode == swarm.PortConfigPublishModeIngress
		if ingress && e.Mode == swarm.ResolutionModeDNSRR && p.PublishedPort != 0 {
			return errdefs.InvalidParameter("EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
		}
		if p.PublishedPort == 0 {
			continue
		}
		key := string(protocolOf(p)) + "/" + itoa(p.PublishedPort) + "/" + string(p.PublishMode)
		if seen[key] {
			return errdefs.InvalidParameter("EndpointSpec: duplicate published ports provided")
		}
		seen[key] = true
	}
	return nil
}

func protocolOf(p swarm.PortConfig) network.IPProtocol {
	if p.Protocol == "" {
		return network.TCP
	}
	return p.Protocol
}

func itoa(u uint32) string {
	if u == 0 {
		return "0"
	}
	var b [10]byte
	i := len(b)
	for u > 0 {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
	}
	return string(b[i:])
}

// ConstraintValidator checks placement constraints and preferences; the
// scheduler's parser is plugged in (package constraint).
type ConstraintValidator func(p *swarm.Placement) error

// ValidateServiceSpec checks a spec as swarmkit's control API does.
func ValidateServiceSpec(spec *swarm.ServiceSpec, placement ConstraintValidator) error {
	if err := validateAnnotations(spec.Annotations); err != nil {
		return err
	}
	if err := validateMode(spec.Mode); err != nil {
		return err
	}
	ts := spec.TaskTemplate
	if err := validateContainerSpec(ts); err != nil {
		return err
	}
	if err := validateResources(ts.Resources); err != nil {
		return err
	}
	if err := validateRestartPolicy(ts.RestartPolicy); err != nil {
		return err
	}
	if ts.Placement != nil && placement != nil {
		if err := placement(ts.Placement); err != nil {
			return err
		}
	}
	if err := validateUpdateConfig("update", spec.UpdateConfig); err != nil {
		return err
	}
	if err := validateUpdateConfig("rollback", spec.RollbackConfig); err != nil {
		return err
	}
	return validateEndpointSpec(spec.EndpointSpec)
}

// NormalizeServiceSpec fills what the server must always fill: a mode (one
// replica by default; the docker CLI's wait loop fails on an empty mode) and
// a container spec.
func NormalizeServiceSpec(spec *swarm.ServiceSpec) {
	m := &spec.Mode
	if m.Replicated == nil && m.Global == nil && m.ReplicatedJob == nil && m.GlobalJob == nil {
		m.Replicated = &swarm.ReplicatedService{}
	}
	if m.Replicated != nil && m.Replicated.Replicas == nil {
		one := uint64(1)
		m.Replicated = &swarm.ReplicatedService{Replicas: &one}
	}
	if spec.TaskTemplate.ContainerSpec == nil {
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{}
	}
	if spec.Labels == nil {
		spec.Labels = map[string]string{}
	}
}

// Defaults docker's `insertDefaults=true` shows.
var (
	defaultUpdateConfig = swarm.UpdateConfig{
		Parallelism:     1,
		FailureAction:   swarm.UpdateFailureActionPause,
		Monitor:         5 * time.Second,
		MaxFailureRatio: 0,
		Order:           swarm.UpdateOrderStopFirst,
	}
	defaultRestartDelay = 5 * time.Second
	defaultStopGrace    = 10 * time.Second
)

// WithDefaults returns a copy of spec with every default docker fills in for
// `service inspect` (insertDefaults=true).
func WithDefaults(spec swarm.ServiceSpec) swarm.ServiceSpec {
	out := spec
	if out.UpdateConfig == nil {
		u := defaultUpdateConfig
		out.UpdateConfig = &u
	} else {
		u := *out.UpdateConfig
		fillUpdate(&u)
		out.UpdateConfig = &u
	}
	if out.RollbackConfig == nil {
		u := defaultUpdateConfig
		out.RollbackConfig = &u
	} else {
		u := *out.RollbackConfig
		fillUpdate(&u)
		out.RollbackConfig = &u
	}
	ts := out.TaskTemplate
	rp := swarm.RestartPolicy{}
	if ts.RestartPolicy != nil {
		rp = *ts.RestartPolicy
	}
	if rp.Condition == "" {
		rp.Condition = swarm.RestartPolicyConditionAny
	}
	if rp.Delay == nil {
		d := defaultRestartDelay
		rp.Delay = &d
	}
	if rp.MaxAttempts == nil {
		zero := uint64(0)
		rp.MaxAttempts = &zero
	}
	ts.RestartPolicy = &rp
	if ts.Placement == nil {
		ts.Placement = &swarm.Placement{}
	}
	if ts.Resources == nil {
		ts.Resources = &swarm.ResourceRequirements{}
	}
	if ts.ContainerSpec != nil {
		cs := *ts.ContainerSpec
		if cs.StopGracePeriod == nil {
			d := defaultStopGrace
			cs.StopGracePeriod = &d
		}
		if cs.DNSConfig == nil {
			cs.DNSConfig = &swarm.DNSConfig{}
		}
		ts.ContainerSpec = &cs
	}
	out.TaskTemplate = ts
	if out.EndpointSpec == nil {
		out.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP}
	} else if out.EndpointSpec.Mode == "" {
		e := *out.EndpointSpec
		e.Mode = swarm.ResolutionModeVIP
		out.EndpointSpec = &e
	}
	return out
}

func fillUpdate(u *swarm.UpdateConfig) {
	if u.FailureAction == "" {
		u.FailureAction = swarm.UpdateFailureActionPause
	}
	if u.Monitor == 0 {
		u.Monitor = defaultUpdateConfig.Monitor
	}
	if u.Order == "" {
		u.Order = swarm.UpdateOrderStopFirst
	}
}
