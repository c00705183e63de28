package exec_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent/exec"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

func assignment(mod func(*wire.Assignment)) wire.Assignment {
	a := wire.Assignment{
		Task: swarm.Task{
			ID:           "task1",
			ServiceID:    "svc1",
			Slot:         3,
			NodeID:       "node1",
			DesiredState: swarm.TaskStateRunning,
			Spec: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{
				Image: "busybox:latest",
			}},
		},
		Service: wire.ServiceInfo{ID: "svc1", Name: "web"},
	}
	a.Task.Status.State = swarm.TaskStateAssigned
	if mod != nil {
		mod(&a)
	}
	return a
}

func ptr[T any](v T) *T { return &v }

var node = swarm.NodeDescription{Hostname: "host-a", Platform: swarm.Platform{Architecture: "x86_64", OS: "linux"}}

func TestTranslate(t *testing.T) {
	tests := []struct {
		name  string
		mod   func(*wire.Assignment)
		check func(t *testing.T, s *exec.Spec)
	}{
		{"replicated name and labels", nil, func(t *testing.T, s *exec.Spec) {
			if s.Name != "web.3.task1" {
				t.Errorf("name = %q", s.Name)
			}
			want := map[string]string{
				"com.docker.swarm.task":         "",
				"com.docker.swarm.task.id":      "task1",
				"com.docker.swarm.task.name":    "web.3.task1",
				"com.docker.swarm.node.id":      "node1",
				"com.docker.swarm.service.id":   "svc1",
				"com.docker.swarm.service.name": "web",
			}
			if !reflect.DeepEqual(s.Config.Labels, want) {
				t.Errorf("labels = %v", s.Config.Labels)
			}
			if s.HostConfig.RestartPolicy.Name != container.RestartPolicyDisabled {
				t.Errorf("restart policy = %v", s.HostConfig.RestartPolicy)
			}
			if s.HostConfig.NetworkMode != network.NetworkBridge {
				t.Errorf("network mode = %q", s.HostConfig.NetworkMode)
			}
			if s.Config.Image != "busybox:latest" || *s.Config.StopTimeout != 10 {
				t.Errorf("image %q stop timeout %d", s.Config.Image, *s.Config.StopTimeout)
			}
		}},
		{"global name uses the node ID", func(a *wire.Assignment) { a.Task.Slot = 0 }, func(t *testing.T, s *exec.Spec) {
			if s.Name != "web.node1.task1" || s.Config.Labels["com.docker.swarm.task.name"] != "web.node1.task1" {
				t.Errorf("name = %q", s.Name)
			}
		}},
		{"spec, task and stack labels; system labels win", func(a *wire.Assignment) {
			a.Service.Labels = map[string]string{"com.docker.stack.namespace": "st", "svc": "only-on-service"}
			a.Task.Spec.ContainerSpec.Labels = map[string]string{"a": "1", "b": "spec", "com.docker.swarm.task.id": "forged"}
			a.Task.Annotations.Labels = map[string]string{"b": "task"}
		}, func(t *testing.T, s *exec.Spec) {
			l := s.Config.Labels
			if l["a"] != "1" || l["b"] != "task" || l["com.docker.stack.namespace"] != "st" || l["com.docker.swarm.task.id"] != "task1" {
				t.Errorf("labels = %v", l)
			}
			if _, ok := l["svc"]; ok {
				t.Errorf("service labels leaked onto the container: %v", l)
			}
		}},
		{"command replaces entrypoint, args become cmd", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Command = []string{"/bin/sh", "-c"}
			a.Task.Spec.ContainerSpec.Args = []string{"echo hi"}
		}, func(t *testing.T, s *exec.Spec) {
			if !reflect.DeepEqual(s.Config.Entrypoint, []string{"/bin/sh", "-c"}) || !reflect.DeepEqual(s.Config.Cmd, []string{"echo hi"}) {
				t.Errorf("entrypoint %v cmd %v", s.Config.Entrypoint, s.Config.Cmd)
			}
		}},
		{"args only", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Args = []string{"httpd", "-f"} }, func(t *testing.T, s *exec.Spec) {
			if s.Config.Entrypoint != nil || !reflect.DeepEqual(s.Config.Cmd, []string{"httpd", "-f"}) {
				t.Errorf("entrypoint %v cmd %v", s.Config.Entrypoint, s.Config.Cmd)
			}
		}},
		{"hostname and env templates", func(a *wire.Assignment) {
			cs := a.Task.Spec.ContainerSpec
			cs.Hostname = "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Hostname}}"
			cs.Env = []string{"A=1", "WHO={{.Task.Name}}", "OS={{.Node.Platform.OS}}", "NOVALUE"}
		}, func(t *testing.T, s *exec.Spec) {
			if s.Config.Hostname != "web-3-host-a" {
				t.Errorf("hostname = %q", s.Config.Hostname)
			}
			want := []string{"A=1", "WHO=web.3.task1", "OS=linux", "NOVALUE"}
			if !reflect.DeepEqual(s.Config.Env, want) {
				t.Errorf("env = %v", s.Config.Env)
			}
		}},
		{"global hostname template slot is the node ID", func(a *wire.Assignment) {
			a.Task.Slot = 0
			a.Task.Spec.ContainerSpec.Hostname = "{{.Task.Slot}}.{{.Node.ID}}"
		}, func(t *testing.T, s *exec.Spec) {
			if s.Config.Hostname != "node1.node1" {
				t.Errorf("hostname = %q", s.Config.Hostname)
			}
		}},
		{"mounts", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Mounts = []mount.Mount{
				{Type: mount.TypeBind, Source: "/srv/{{.Service.Name}}", Target: "/data", ReadOnly: true},
				{Type: mount.TypeVolume, Source: "vol-{{.Task.Slot}}", Target: "/var/lib/x"},
				{Type: mount.TypeTmpfs, Target: "/tmp", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20}},
			}
		}, func(t *testing.T, s *exec.Spec) {
			m := s.HostConfig.Mounts
			if len(m) != 3 || m[0].Source != "/srv/web" || !m[0].ReadOnly || m[1].Source != "vol-3" ||
				m[2].Type != mount.TypeTmpfs || m[2].TmpfsOptions.SizeBytes != 1<<20 {
				t.Errorf("mounts = %+v", m)
			}
		}},
		{"resources and limits", func(a *wire.Assignment) {
			a.Task.Spec.Resources = &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{NanoCPUs: 500_000_000, MemoryBytes: 64 << 20, Pids: 100},
				Reservations: &swarm.Resources{MemoryBytes: 32 << 20},
				SwapBytes:    ptr(int64(16 << 20)),
			}
		}, func(t *testing.T, s *exec.Spec) {
			r := s.HostConfig.Resources
			if r.NanoCPUs != 500_000_000 || r.Memory != 64<<20 || r.PidsLimit == nil || *r.PidsLimit != 100 || r.MemorySwap != 80<<20 {
				t.Errorf("resources = %+v", r)
			}
		}},
		{"misc container options", func(a *wire.Assignment) {
			cs := a.Task.Spec.ContainerSpec
			cs.Init = ptr(true)
			cs.StopSignal = "SIGUSR1"
			cs.StopGracePeriod = ptr(1500 * time.Millisecond)
			cs.ReadOnly = true
			cs.User = "nobody"
			cs.Dir = "/work"
			cs.Hosts = []string{"10.0.0.1 db database"}
			cs.Privileges = &swarm.Privileges{NoNewPrivileges: true}
		}, func(t *testing.T, s *exec.Spec) {
			c, h := s.Config, s.HostConfig
			if h.Init == nil || !*h.Init || c.StopSignal != "SIGUSR1" || *c.StopTimeout != 2 || !h.ReadonlyRootfs ||
				c.User != "nobody" || c.WorkingDir != "/work" {
				t.Errorf("config %+v host %+v", c, h)
			}
			if !reflect.DeepEqual(h.ExtraHosts, []string{"db:10.0.0.1", "database:10.0.0.1"}) {
				t.Errorf("extra hosts = %v", h.ExtraHosts)
			}
			if !reflect.DeepEqual(h.SecurityOpt, []string{"no-new-privileges=true"}) {
				t.Errorf("security opts = %v", h.SecurityOpt)
			}
		}},
		{"host-mode ports bound, ingress targets on ephemeral node ports", func(a *wire.Assignment) {
			a.Service.Ports = []swarm.PortConfig{
				{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: "udp", TargetPort: 53, PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: "tcp", TargetPort: 443, PublishedPort: 443, PublishMode: swarm.PortConfigPublishModeIngress},
				// A second published port to the same target shares its node port.
				{Protocol: "tcp", TargetPort: 443, PublishedPort: 8443, PublishMode: swarm.PortConfigPublishModeIngress},
				{Protocol: "udp", TargetPort: 443, PublishedPort: 443, PublishMode: swarm.PortConfigPublishModeIngress},
			}
		}, func(t *testing.T, s *exec.Spec) {
			pb := s.HostConfig.PortBindings
			want := network.PortMap{
				network.MustParsePort("80/tcp"):  {{HostPort: "8080"}},
				network.MustParsePort("53/udp"):  {{}},
				network.MustParsePort("443/tcp"): {{}},
				network.MustParsePort("443/udp"): {{}},
			}
			if !reflect.DeepEqual(pb, want) {
				t.Errorf("port bindings = %v", pb)
			}
			if len(s.Config.ExposedPorts) != 4 {
				t.Errorf("exposed = %v", s.Config.ExposedPorts)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := exec.Translate(assignment(tc.mod), node)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestTranslateRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*wire.Assignment)
	}{
		{"no container spec", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec = nil }},
		{"no image", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Image = "" }},
		{"bad template", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Hostname = "{{.Nope}}" }},
		{"unclosed template", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Env = []string{"X={{.Task.ID"} }},
		{"relative bind source", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeBind, Source: "rel", Target: "/x"}}
		}},
		{"relative target", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeVolume, Source: "v", Target: "x"}}
		}},
		{"tmpfs with source", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeTmpfs, Source: "s", Target: "/x"}}
		}},
		{"unsupported mount type", func(a *wire.Assignment) {
			a.Task.Spec.ContainerSpec.Mounts = []mount.Mount{{Type: mount.TypeNamedPipe, Source: "s", Target: "/x"}}
		}},
		{"bad hosts entry", func(a *wire.Assignment) { a.Task.Spec.ContainerSpec.Hosts = []string{"justone"} }},
		{"sctp through the routing mesh", func(a *wire.Assignment) {
			a.Service.Ports = []swarm.PortConfig{{Protocol: "sctp", TargetPort: 9, PublishedPort: 9, PublishMode: swarm.PortConfigPublishModeIngress}}
		}},
		{"unknown publish mode", func(a *wire.Assignment) {
			a.Service.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 9, PublishedPort: 9, PublishMode: "bogus"}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := exec.Translate(assignment(tc.mod), node)
			if !errdefs.IsInvalidParameter(err) {
				t.Fatalf("err = %v, want InvalidParameter", err)
			}
		})
	}
}
