package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// servicePrettyTemplate is docker's `service inspect --pretty` layout.
const servicePrettyTemplate = `
ID:		{{.ID}}
Name:		{{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Service Mode:
{{- if .IsModeGlobal }}	Global
{{- else if .IsModeReplicated }}	Replicated
{{- if .ModeReplicatedReplicas }}
 Replicas:	{{ .ModeReplicatedReplicas }}
{{- end }}{{ end }}
{{- if .HasUpdateStatus }}
UpdateStatus:
 State:		{{ .UpdateStatusState }}
{{- if .HasUpdateStatusStarted }}
 Started:	{{ .UpdateStatusStarted }}
{{- end }}
{{- if .UpdateIsCompleted }}
 Completed:	{{ .UpdateStatusCompleted }}
{{- end }}
 Message:	{{ .UpdateStatusMessage }}
{{- end }}
Placement:
{{- if .TaskPlacementConstraints }}
 Constraints:	{{ .TaskPlacementConstraints }}
{{- end }}
{{- if .TaskPlacementPreferences }}
 Preferences:   {{ .TaskPlacementPreferences }}
{{- end }}
{{- if .MaxReplicas }}
 Max Replicas Per Node:   {{ .MaxReplicas }}
{{- end }}
{{- if .HasUpdateConfig }}
UpdateConfig:
 Parallelism:	{{ .UpdateParallelism }}
{{- if .HasUpdateDelay}}
 Delay:		{{ .UpdateDelay }}
{{- end }}
 On failure:	{{ .UpdateOnFailure }}
{{- if .HasUpdateMonitor}}
 Monitoring Period: {{ .UpdateMonitor }}
{{- end }}
 Max failure ratio: {{ .UpdateMaxFailureRatio }}
 Update order:      {{ .UpdateOrder }}
{{- end }}
{{- if .HasRollbackConfig }}
RollbackConfig:
 Parallelism:	{{ .RollbackParallelism }}
{{- if .HasRollbackDelay}}
 Delay:		{{ .RollbackDelay }}
{{- end }}
 On failure:	{{ .RollbackOnFailure }}
{{- if .HasRollbackMonitor}}
 Monitoring Period: {{ .RollbackMonitor }}
{{- end }}
 Max failure ratio: {{ .RollbackMaxFailureRatio }}
 Rollback order:    {{ .RollbackOrder }}
{{- end }}
ContainerSpec:
 Image:		{{ .ContainerImage }}
{{- if .ContainerArgs }}
 Args:		{{ range $arg := .ContainerArgs }}{{ $arg }} {{ end }}
{{- end -}}
{{- if .ContainerEnv }}
 Env:		{{ range $env := .ContainerEnv }}{{ $env }} {{ end }}
{{- end -}}
{{- if .ContainerWorkDir }}
 Dir:		{{ .ContainerWorkDir }}
{{- end -}}
{{- if .HasContainerInit }}
 Init:		{{ .ContainerInit }}
{{- end -}}
{{- if .ContainerUser }}
 User: {{ .ContainerUser }}
{{- end }}
{{- if .HasCapabilities }}
Capabilities:
{{- if .HasCapabilityAdd }}
 Add: {{ .CapabilityAdd }}
{{- end }}
{{- if .HasCapabilityDrop }}
 Drop: {{ .CapabilityDrop }}
{{- end }}
{{- end }}
{{- if .ContainerSysCtls }}
SysCtls:
{{- range $k, $v := .ContainerSysCtls }}
 {{ $k }}{{if $v }}: {{ $v }}{{ end }}
{{- end }}{{ end }}
{{- if .ContainerUlimits }}
Ulimits:
{{- range $k, $v := .ContainerUlimits }}
 {{ $k }}: {{ $v }}
{{- end }}{{ end }}
{{- if .ContainerMounts }}
Mounts:
{{- end }}
{{- range $mount := .ContainerMounts }}
 Target:	{{ $mount.Target }}
  Source:	{{ $mount.Source }}
  ReadOnly:	{{ $mount.ReadOnly }}
  Type:		{{ $mount.Type }}
{{- end -}}
{{- if .Configs}}
Configs:
{{- range $config := .Configs }}
 Target:	{{$config.File.Name}}
  Source:	{{$config.ConfigName}}
{{- end }}{{ end }}
{{- if .Secrets }}
Secrets:
{{- range $secret := .Secrets }}
 Target:	{{$secret.File.Name}}
  Source:	{{$secret.SecretName}}
{{- end }}{{ end }}
{{- if .HasLogDriver }}
Log Driver:
{{- if .HasLogDriverName }}
 Name:		{{ .LogDriverName }}
{{- end }}
{{- if .LogOpts }}
 LogOpts:
{{- range $k, $v := .LogOpts }}
  {{ $k }}{{if $v }}:       {{ $v }}{{ end }}
{{- end }}{{ end }}
{{ end }}
{{- if .HasResources }}
Resources:
{{- if .HasResourceReservations }}
 Reservations:
{{- if gt .ResourceReservationNanoCPUs 0.0 }}
  CPU:		{{ .ResourceReservationNanoCPUs }}
{{- end }}
{{- if .ResourceReservationMemory }}
  Memory:	{{ .ResourceReservationMemory }}
{{- end }}{{ end }}
{{- if .HasResourceLimits }}
 Limits:
{{- if gt .ResourceLimitsNanoCPUs 0.0 }}
  CPU:		{{ .ResourceLimitsNanoCPUs }}
{{- end }}
{{- if .ResourceLimitMemory }}
  Memory:	{{ .ResourceLimitMemory }}
{{- end }}{{ end }}{{ end }}
{{- if gt .ResourceLimitPids 0 }}
  PIDs:		{{ .ResourceLimitPids }}
{{- end }}
{{- if .Networks }}
Networks:
{{- range $network := .Networks }} {{ $network }}{{ end }} {{ end }}
Endpoint Mode:	{{ .EndpointMode }}
{{- if .Ports }}
Ports:
{{- range $port := .Ports }}
 PublishedPort = {{ $port.PublishedPort }}
  Protocol = {{ $port.Protocol }}
  TargetPort = {{ $port.TargetPort }}
  PublishMode = {{ $port.PublishMode }}
{{- end }} {{ end -}}
{{- if .Healthcheck }}
 Healthcheck:
  Interval = {{ .Healthcheck.Interval }}
  Retries = {{ .Healthcheck.Retries }}
  StartPeriod =	{{ .Healthcheck.StartPeriod }}
  Timeout =	{{ .Healthcheck.Timeout }}
  {{- if .Healthcheck.Test }}
  Tests:
	{{- range $test := .Healthcheck.Test }}
	 Test = {{ $test }}
  {{- end }} {{ end -}}
{{- end }}
`

// servicePretty is what the --pretty template sees.
type servicePretty struct {
	swarm.Service
	networkNames map[string]string
	now          time.Time
}

func (s *servicePretty) cs() *swarm.ContainerSpec {
	if s.Spec.TaskTemplate.ContainerSpec == nil {
		return &swarm.ContainerSpec{}
	}
	return s.Spec.TaskTemplate.ContainerSpec
}
func (s *servicePretty) ID() string                           { return s.Service.ID }
func (s *servicePretty) Name() string                         { return s.Spec.Name }
func (s *servicePretty) Labels() map[string]string            { return s.Spec.Labels }
func (s *servicePretty) HasLogDriver() bool                   { return s.Spec.TaskTemplate.LogDriver != nil }
func (s *servicePretty) HasLogDriverName() bool               { return s.Spec.TaskTemplate.LogDriver.Name != "" }
func (s *servicePretty) LogDriverName() string                { return s.Spec.TaskTemplate.LogDriver.Name }
func (s *servicePretty) LogOpts() map[string]string           { return s.Spec.TaskTemplate.LogDriver.Options }
func (s *servicePretty) Configs() []*swarm.ConfigReference    { return s.cs().Configs }
func (s *servicePretty) Secrets() []*swarm.SecretReference    { return s.cs().Secrets }
func (s *servicePretty) Healthcheck() *container.HealthConfig { return s.cs().Healthcheck }
func (s *servicePretty) IsModeGlobal() bool                   { return s.Spec.Mode.Global != nil }
func (s *servicePretty) IsModeReplicated() bool               { return s.Spec.Mode.Replicated != nil }
func (s *servicePretty) ModeReplicatedReplicas() *uint64      { return s.Spec.Mode.Replicated.Replicas }
func (s *servicePretty) HasUpdateStatus() bool {
	return s.UpdateStatus != nil && s.UpdateStatus.State != ""
}
func (s *servicePretty) UpdateStatusState() swarm.UpdateState { return s.UpdateStatus.State }
func (s *servicePretty) HasUpdateStatusStarted() bool         { return s.UpdateStatus.StartedAt != nil }
func (s *servicePretty) UpdateStatusStarted() string {
	return timeAgo(s.now, *s.UpdateStatus.StartedAt)
}
func (s *servicePretty) UpdateIsCompleted() bool {
	return s.UpdateStatus.State == swarm.UpdateStateCompleted && s.UpdateStatus.CompletedAt != nil
}
func (s *servicePretty) UpdateStatusCompleted() string {
	return timeAgo(s.now, *s.UpdateStatus.CompletedAt)
}
func (s *servicePretty) UpdateStatusMessage() string { return s.UpdateStatus.Message }
func (s *servicePretty) TaskPlacementConstraints() []string {
	if p := s.Spec.TaskTemplate.Placement; p != nil {
		return p.Constraints
	}
	return nil
}
func (s *servicePretty) TaskPlacementPreferences() []string {
	p := s.Spec.TaskTemplate.Placement
	if p == nil {
		return nil
	}
	var out []string
	for _, pref := range p.Preferences {
		if pref.Spread != nil {
			out = append(out, "spread="+pref.Spread.SpreadDescriptor)
		}
	}
	return out
}
func (s *servicePretty) MaxReplicas() uint64 {
	if p := s.Spec.TaskTemplate.Placement; p != nil {
		return p.MaxReplicas
	}
	return 0
}
func (s *servicePretty) HasUpdateConfig() bool          { return s.Spec.UpdateConfig != nil }
func (s *servicePretty) UpdateParallelism() uint64      { return s.Spec.UpdateConfig.Parallelism }
func (s *servicePretty) HasUpdateDelay() bool           { return s.Spec.UpdateConfig.Delay > 0 }
func (s *servicePretty) UpdateDelay() time.Duration     { return s.Spec.UpdateConfig.Delay }
func (s *servicePretty) UpdateOnFailure() string        { return string(s.Spec.UpdateConfig.FailureAction) }
func (s *servicePretty) UpdateOrder() string            { return string(s.Spec.UpdateConfig.Order) }
func (s *servicePretty) HasUpdateMonitor() bool         { return s.Spec.UpdateConfig.Monitor > 0 }
func (s *servicePretty) UpdateMonitor() time.Duration   { return s.Spec.UpdateConfig.Monitor }
func (s *servicePretty) UpdateMaxFailureRatio() float32 { return s.Spec.UpdateConfig.MaxFailureRatio }
func (s *servicePretty) HasRollbackConfig() bool        { return s.Spec.RollbackConfig != nil }
func (s *servicePretty) RollbackParallelism() uint64    { return s.Spec.RollbackConfig.Parallelism }
func (s *servicePretty) HasRollbackDelay() bool         { return s.Spec.RollbackConfig.Delay > 0 }
func (s *servicePretty) RollbackDelay() time.Duration   { return s.Spec.RollbackConfig.Delay }
func (s *servicePretty) RollbackOnFailure() string {
	return string(s.Spec.RollbackConfig.FailureAction)
}
func (s *servicePretty) HasRollbackMonitor() bool       { return s.Spec.RollbackConfig.Monitor > 0 }
func (s *servicePretty) RollbackMonitor() time.Duration { return s.Spec.RollbackConfig.Monitor }
func (s *servicePretty) RollbackMaxFailureRatio() float32 {
	return s.Spec.RollbackConfig.MaxFailureRatio
}
func (s *servicePretty) RollbackOrder() string          { return string(s.Spec.RollbackConfig.Order) }
func (s *servicePretty) ContainerImage() string         { return s.cs().Image }
func (s *servicePretty) ContainerArgs() []string        { return s.cs().Args }
func (s *servicePretty) ContainerEnv() []string         { return s.cs().Env }
func (s *servicePretty) ContainerWorkDir() string       { return s.cs().Dir }
func (s *servicePretty) ContainerUser() string          { return s.cs().User }
func (s *servicePretty) HasContainerInit() bool         { return s.cs().Init != nil }
func (s *servicePretty) ContainerInit() bool            { return *s.cs().Init }
func (s *servicePretty) ContainerMounts() []mount.Mount { return s.cs().Mounts }
func (s *servicePretty) ContainerSysCtls() map[string]string {
	return s.cs().Sysctls
}
func (s *servicePretty) ContainerUlimits() map[string]string {
	out := map[string]string{}
	for _, u := range s.cs().Ulimits {
		out[u.Name] = fmt.Sprintf("%d:%d", u.Soft, u.Hard)
	}
	return out
}
func (s *servicePretty) HasResources() bool { return s.Spec.TaskTemplate.Resources != nil }
func (s *servicePretty) HasResourceReservations() bool {
	r := s.Spec.TaskTemplate.Resources
	if r == nil || r.Reservations == nil {
		return false
	}
	return r.Reservations.NanoCPUs > 0 || r.Reservations.MemoryBytes > 0
}
func (s *servicePretty) ResourceReservationNanoCPUs() float64 {
	return float64(s.Spec.TaskTemplate.Resources.Reservations.NanoCPUs) / 1e9
}
func (s *servicePretty) ResourceReservationMemory() string {
	if b := s.Spec.TaskTemplate.Resources.Reservations.MemoryBytes; b != 0 {
		return bytesSize(float64(b))
	}
	return ""
}
func (s *servicePretty) HasResourceLimits() bool {
	r := s.Spec.TaskTemplate.Resources
	if r == nil || r.Limits == nil {
		return false
	}
	return r.Limits.NanoCPUs > 0 || r.Limits.MemoryBytes > 0 || r.Limits.Pids > 0
}
func (s *servicePretty) ResourceLimitsNanoCPUs() float64 {
	return float64(s.Spec.TaskTemplate.Resources.Limits.NanoCPUs) / 1e9
}
func (s *servicePretty) ResourceLimitMemory() string {
	if b := s.Spec.TaskTemplate.Resources.Limits.MemoryBytes; b != 0 {
		return bytesSize(float64(b))
	}
	return ""
}
func (s *servicePretty) ResourceLimitPids() int64 {
	r := s.Spec.TaskTemplate.Resources
	if r == nil || r.Limits == nil {
		return 0
	}
	return r.Limits.Pids
}
func (s *servicePretty) Networks() []string {
	var out []string
	for _, n := range s.Spec.TaskTemplate.Networks {
		if name, ok := s.networkNames[n.Target]; ok {
			out = append(out, name)
		} else {
			out = append(out, n.Target)
		}
	}
	return out
}
func (s *servicePretty) EndpointMode() string {
	if s.Spec.EndpointSpec == nil {
		return ""
	}
	return string(s.Spec.EndpointSpec.Mode)
}
func (s *servicePretty) Ports() []swarm.PortConfig { return s.Endpoint.Ports }
func (s *servicePretty) HasCapabilities() bool {
	return len(s.cs().CapabilityAdd) > 0 || len(s.cs().CapabilityDrop) > 0
}
func (s *servicePretty) HasCapabilityAdd() bool  { return len(s.cs().CapabilityAdd) > 0 }
func (s *servicePretty) HasCapabilityDrop() bool { return len(s.cs().CapabilityDrop) > 0 }
func (s *servicePretty) CapabilityAdd() string   { return strings.Join(s.cs().CapabilityAdd, ", ") }
func (s *servicePretty) CapabilityDrop() string  { return strings.Join(s.cs().CapabilityDrop, ", ") }

// writeServicePretty prints services with docker's --pretty layout.
func writeServicePretty(out io.Writer, services []servicePretty) error {
	tmpl, err := parseTemplate(servicePrettyTemplate)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for i := range services {
		if err := tmpl.Execute(&buf, &services[i]); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
		buf.WriteString("\n")
	}
	_, err = buf.WriteTo(out)
	return err
}

func newServiceInspectCommand(c *CLI) *cobra.Command {
	var format string
	var pretty bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] SERVICE [SERVICE...]",
		Short: "Display detailed information on one or more services",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if pretty && format != "" {
				return errors.New("--format is incompatible with human friendly format")
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			get := func(ctx context.Context, ref string) (swarm.Service, []byte, error) {
				r, err := cl.ServiceInspect(ctx, ref, client.ServiceInspectOptions{InsertDefaults: true})
				if err != nil && isNotFound(err) {
					return swarm.Service{}, nil, notFoundError{fmt.Errorf("Error: no such service: %s", ref)}
				}
				return r.Service, r.Raw, err
			}
			if !pretty {
				return inspectAll(ctx, c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
					return get(ctx, ref)
				})
			}
			var items []servicePretty
			for _, ref := range args {
				s, _, err := get(ctx, ref)
				if err != nil {
					return StatusError{Status: 1, Message: c.errorText(err)}
				}
				names := map[string]string{}
				for _, n := range s.Spec.TaskTemplate.Networks {
					if nr, err := cl.NetworkInspect(ctx, n.Target, client.NetworkInspectOptions{Scope: "swarm"}); err == nil {
						names[nr.Network.ID] = nr.Network.Name
					}
				}
				items = append(items, servicePretty{Service: s, networkNames: names, now: c.now()})
			}
			return writeServicePretty(c.Out, items)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}
