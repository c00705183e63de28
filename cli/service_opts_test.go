package cli

import (
	"context"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/spf13/pflag"
)

func dur(d time.Duration) *time.Duration { return &d }

// parseServiceFlags runs create's (or update's) flag parsing on args.
func parseServiceFlags(t *testing.T, update bool, args ...string) (*serviceOptions, *pflag.FlagSet) {
	t.Helper()
	o := &serviceOptions{}
	f := pflag.NewFlagSet("test", pflag.ContinueOnError)
	addServiceFlags(f, o, update)
	if err := f.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return o, f
}

func fakeNetResolver(ctx context.Context, name string) (string, error) { return "id-" + name, nil }

func TestServiceCreateFlagsToSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, s swarm.ServiceSpec)
	}{
		{"defaults", nil, func(t *testing.T, s swarm.ServiceSpec) {
			if s.Mode.Replicated == nil || s.Mode.Replicated.Replicas != nil {
				t.Errorf("mode %+v: replicated with server-filled count", s.Mode)
			}
			if s.UpdateConfig != nil || s.RollbackConfig != nil || s.TaskTemplate.RestartPolicy != nil {
				t.Errorf("unset groups must stay nil: %+v %+v %+v", s.UpdateConfig, s.RollbackConfig, s.TaskTemplate.RestartPolicy)
			}
			if s.EndpointSpec.Mode != swarm.ResolutionModeVIP {
				t.Errorf("endpoint mode %q", s.EndpointSpec.Mode)
			}
			if s.TaskTemplate.ContainerSpec.StopGracePeriod != nil {
				t.Errorf("stop grace set without flag")
			}
		}},
		{"replicas and name", []string{"--name", "web", "--replicas", "3", "-l", "tier=front"}, func(t *testing.T, s swarm.ServiceSpec) {
			if s.Name != "web" || *s.Mode.Replicated.Replicas != 3 || s.Labels["tier"] != "front" {
				t.Errorf("spec %+v", s)
			}
		}},
		{"global", []string{"--mode", "global"}, func(t *testing.T, s swarm.ServiceSpec) {
			if s.Mode.Global == nil || s.Mode.Replicated != nil {
				t.Errorf("mode %+v", s.Mode)
			}
		}},
		{"placement", []string{"--constraint", "node.role==worker", "--constraint", "node.labels.mem==max",
			"--placement-pref", "spread=node.labels.dc", "--replicas-max-per-node", "2"}, func(t *testing.T, s swarm.ServiceSpec) {
			p := s.TaskTemplate.Placement
			if !reflect.DeepEqual(p.Constraints, []string{"node.role==worker", "node.labels.mem==max"}) || p.MaxReplicas != 2 ||
				len(p.Preferences) != 1 || p.Preferences[0].Spread.SpreadDescriptor != "node.labels.dc" {
				t.Errorf("placement %+v", p)
			}
		}},
		{"resources", []string{"--limit-cpu", "0.5", "--limit-memory", "512M", "--reserve-cpu", "1.25", "--reserve-memory", "1g", "--limit-pids", "100"},
			func(t *testing.T, s swarm.ServiceSpec) {
				r := s.TaskTemplate.Resources
				want := swarm.ResourceRequirements{
					Limits:       &swarm.Limit{NanoCPUs: 500000000, MemoryBytes: 512 << 20, Pids: 100},
					Reservations: &swarm.Resources{NanoCPUs: 1250000000, MemoryBytes: 1 << 30},
				}
				if !reflect.DeepEqual(*r, want) {
					t.Errorf("resources %+v / %+v", r.Limits, r.Reservations)
				}
			}},
		{"restart policy", []string{"--restart-condition", "on-failure", "--restart-max-attempts", "3"}, func(t *testing.T, s swarm.ServiceSpec) {
			rp := s.TaskTemplate.RestartPolicy
			want := &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionOnFailure, Delay: dur(5 * time.Second), MaxAttempts: u64(3)}
			if !reflect.DeepEqual(rp, want) {
				t.Errorf("restart %+v", rp)
			}
		}},
		{"update config", []string{"--update-parallelism", "2", "--update-delay", "10s", "--update-failure-action", "rollback", "--update-order", "start-first", "--update-max-failure-ratio", "0.25"},
			func(t *testing.T, s swarm.ServiceSpec) {
				want := &swarm.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, Monitor: 5 * time.Second,
					FailureAction: swarm.UpdateFailureActionRollback, MaxFailureRatio: 0.25, Order: swarm.UpdateOrderStartFirst}
				if !reflect.DeepEqual(s.UpdateConfig, want) {
					t.Errorf("update %+v", s.UpdateConfig)
				}
			}},
		{"rollback config", []string{"--rollback-parallelism", "0", "--rollback-monitor", "1s"}, func(t *testing.T, s swarm.ServiceSpec) {
			want := &swarm.UpdateConfig{Parallelism: 0, Monitor: time.Second, FailureAction: swarm.UpdateFailureActionPause, Order: swarm.UpdateOrderStopFirst}
			if !reflect.DeepEqual(s.RollbackConfig, want) {
				t.Errorf("rollback %+v", s.RollbackConfig)
			}
		}},
		{"publish short and long", []string{"-p", "8080:80", "-p", "53:53/udp", "--publish", "published=9090,target=90,protocol=udp,mode=host", "-p", "80"},
			func(t *testing.T, s swarm.ServiceSpec) {
				want := []swarm.PortConfig{
					{Protocol: network.TCP, TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
					{Protocol: network.UDP, TargetPort: 53, PublishedPort: 53, PublishMode: swarm.PortConfigPublishModeIngress},
					{Protocol: network.UDP, TargetPort: 90, PublishedPort: 9090, PublishMode: swarm.PortConfigPublishModeHost},
					{Protocol: network.TCP, TargetPort: 80, PublishMode: swarm.PortConfigPublishModeIngress},
				}
				if !reflect.DeepEqual(s.EndpointSpec.Ports, want) {
					t.Errorf("ports %+v", s.EndpointSpec.Ports)
				}
			}},
		{"mounts", []string{"--mount", "type=bind,src=/srv,dst=/data,readonly", "--mount", "type=volume,source=vol,target=/v,volume-label=a=b", "--mount", "type=tmpfs,target=/t,tmpfs-size=64m"},
			func(t *testing.T, s swarm.ServiceSpec) {
				want := []mount.Mount{
					{Type: mount.TypeBind, Source: "/srv", Target: "/data", ReadOnly: true},
					{Type: mount.TypeVolume, Source: "vol", Target: "/v", VolumeOptions: &mount.VolumeOptions{Labels: map[string]string{"a": "b"}, DriverConfig: &mount.Driver{}}},
					{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 64 << 20}},
				}
				if !reflect.DeepEqual(s.TaskTemplate.ContainerSpec.Mounts, want) {
					t.Errorf("mounts %+v", s.TaskTemplate.ContainerSpec.Mounts)
				}
			}},
		{"container spec", []string{"-e", "A=1", "-e", "B=2", "-e", "A=3", "--container-label", "x=y", "--hostname", "h", "-w", "/w", "-u", "1000",
			"--entrypoint", "sh -c", "--stop-grace-period", "30s", "--stop-signal", "SIGINT", "--init", "--dns", "10.0.0.2", "--host", "db:10.0.0.9",
			"--cap-add", "net_admin"}, func(t *testing.T, s swarm.ServiceSpec) {
			cs := s.TaskTemplate.ContainerSpec
			if !reflect.DeepEqual(cs.Env, []string{"B=2", "A=3"}) {
				t.Errorf("env %v", cs.Env)
			}
			if cs.Labels["x"] != "y" || cs.Hostname != "h" || cs.Dir != "/w" || cs.User != "1000" || cs.StopSignal != "SIGINT" {
				t.Errorf("container spec %+v", cs)
			}
			if !reflect.DeepEqual(cs.Command, []string{"sh", "-c"}) || *cs.StopGracePeriod != 30*time.Second || !*cs.Init {
				t.Errorf("command/grace/init %v %v %v", cs.Command, cs.StopGracePeriod, cs.Init)
			}
			if !reflect.DeepEqual(cs.DNSConfig.Nameservers, []netip.Addr{netip.MustParseAddr("10.0.0.2")}) || !reflect.DeepEqual(cs.Hosts, []string{"10.0.0.9 db"}) {
				t.Errorf("dns %+v hosts %v", cs.DNSConfig, cs.Hosts)
			}
			if !reflect.DeepEqual(cs.CapabilityAdd, []string{"CAP_NET_ADMIN"}) {
				t.Errorf("caps %v", cs.CapabilityAdd)
			}
		}},
		{"networks resolved and sorted", []string{"--network", "zeta", "--network", "name=alpha,alias=a1"}, func(t *testing.T, s swarm.ServiceSpec) {
			want := []swarm.NetworkAttachmentConfig{{Target: "id-alpha", Aliases: []string{"a1"}}, {Target: "id-zeta"}}
			if !reflect.DeepEqual(s.TaskTemplate.Networks, want) {
				t.Errorf("networks %+v", s.TaskTemplate.Networks)
			}
		}},
		{"dnsrr", []string{"--endpoint-mode", "dnsrr"}, func(t *testing.T, s swarm.ServiceSpec) {
			if s.EndpointSpec.Mode != swarm.ResolutionModeDNSRR {
				t.Errorf("mode %q", s.EndpointSpec.Mode)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, f := parseServiceFlags(t, false, tc.args...)
			spec, err := o.toServiceSpec(context.Background(), f, []string{"nginx", "arg1"}, fakeNetResolver)
			if err != nil {
				t.Fatal(err)
			}
			if spec.TaskTemplate.ContainerSpec.Image != "nginx" || !reflect.DeepEqual(spec.TaskTemplate.ContainerSpec.Args, []string{"arg1"}) {
				t.Errorf("image/args %+v", spec.TaskTemplate.ContainerSpec)
			}
			tc.check(t, spec)
		})
	}
}

func TestServiceCreateFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--mode", "global", "--replicas", "2"}, "replicas can only be used with replicated or replicated-job mode"},
		{[]string{"--mode", "weird"}, "unknown mode: weird"},
		{[]string{"--placement-pref", "pack=x"}, "unsupported placement preference pack (only spread is supported)"},
		{[]string{"-p", "published=80"}, "missing mandatory field 'target'"},
		{[]string{"-p", "1.2.3.4:80:80"}, "hostip is not supported"},
		{[]string{"-p", "80:http"}, "invalid containerPort: http"},
		{[]string{"--mount", "type=bind,target=/x"}, "source is required when specifying bind mounts"},
		{[]string{"--mount", "src=/x"}, "target is required"},
		{[]string{"--update-failure-action", "explode"}, `invalid argument "explode" for "--update-failure-action" flag`},
		{[]string{"--rollback-failure-action", "rollback"}, `invalid argument "rollback" for "--rollback-failure-action" flag`},
		{[]string{"--update-order", "random"}, `"--update-order" flag: must be "start-first" or "stop-first"`},
		{[]string{"--restart-condition", "sometimes"}, `invalid restart condition "sometimes"`},
		{[]string{"--endpoint-mode", "rr"}, `invalid endpoint mode "rr"`},
		{[]string{"--mode", "replicated-job", "--update-parallelism", "2"}, "update and rollback configuration is not supported for jobs"},
		{[]string{"-e", "=x"}, "invalid environment variable: =x"},
		{[]string{"--no-healthcheck", "--health-cmd", "true"}, "--no-healthcheck conflicts with --health-* options"},
	} {
		o, f := parseServiceFlags(t, false, tc.args...)
		_, err := o.toServiceSpec(context.Background(), f, []string{"nginx"}, fakeNetResolver)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	for _, bad := range [][]string{{"--limit-cpu", "abc"}, {"--limit-cpu", "0.0000000001"}, {"--limit-memory", "lots"}, {"--replicas", "-1"}} {
		o := &serviceOptions{}
		f := pflag.NewFlagSet("t", pflag.ContinueOnError)
		f.SetOutput(&strings.Builder{})
		addServiceFlags(f, o, false)
		if err := f.Parse(bad); err == nil {
			t.Errorf("%v parsed without error", bad)
		}
	}
}

func baseSpec() swarm.ServiceSpec {
	return swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: "web", Labels: map[string]string{"keep": "1", "drop": "1"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: "nginx:1", Env: []string{"A=1", "B=2", "C=3"},
				Mounts: []mount.Mount{{Type: mount.TypeVolume, Source: "v1", Target: "/a"}}},
			Placement: &swarm.Placement{Constraints: []string{"node.role==worker"}},
			Networks:  []swarm.NetworkAttachmentConfig{{Target: "id-front"}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: u64(2)}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP, Ports: []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress}}},
	}
}

func TestServiceUpdateMergesOntoSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, s swarm.ServiceSpec)
	}{
		{"nothing changes unset fields", []string{"--image", "nginx:2"}, func(t *testing.T, s swarm.ServiceSpec) {
			want := baseSpec()
			want.TaskTemplate.ContainerSpec.Image = "nginx:2"
			if !reflect.DeepEqual(s, want) {
				t.Errorf("spec changed beyond image:\n%+v", s)
			}
		}},
		{"env add and remove keeps order", []string{"--env-add", "B=20", "--env-add", "D=4", "--env-rm", "A"}, func(t *testing.T, s swarm.ServiceSpec) {
			if got := s.TaskTemplate.ContainerSpec.Env; !reflect.DeepEqual(got, []string{"B=20", "C=3", "D=4"}) {
				t.Errorf("env %v", got)
			}
		}},
		{"labels", []string{"--label-add", "new=2", "--label-rm", "drop"}, func(t *testing.T, s swarm.ServiceSpec) {
			if !reflect.DeepEqual(s.Labels, map[string]string{"keep": "1", "new": "2"}) {
				t.Errorf("labels %v", s.Labels)
			}
		}},
		{"constraints sorted", []string{"--constraint-add", "node.labels.a==b", "--constraint-rm", "node.role==worker", "--constraint-add", "engine.labels.x==y"},
			func(t *testing.T, s swarm.ServiceSpec) {
				if got := s.TaskTemplate.Placement.Constraints; !reflect.DeepEqual(got, []string{"engine.labels.x==y", "node.labels.a==b"}) {
					t.Errorf("constraints %v", got)
				}
			}},
		{"publish add and remove", []string{"--publish-add", "published=9090,target=90", "--publish-rm", "80"}, func(t *testing.T, s swarm.ServiceSpec) {
			want := []swarm.PortConfig{{Protocol: "tcp", TargetPort: 90, PublishedPort: 9090, PublishMode: swarm.PortConfigPublishModeIngress}}
			if !reflect.DeepEqual(s.EndpointSpec.Ports, want) {
				t.Errorf("ports %+v", s.EndpointSpec.Ports)
			}
		}},
		{"legacy -p on update", []string{"-p", "81:81"}, func(t *testing.T, s swarm.ServiceSpec) {
			if len(s.EndpointSpec.Ports) != 2 {
				t.Errorf("ports %+v", s.EndpointSpec.Ports)
			}
		}},
		{"replicas and resources", []string{"--replicas", "5", "--limit-memory", "256m", "--reserve-cpu", "0.25"}, func(t *testing.T, s swarm.ServiceSpec) {
			r := s.TaskTemplate.Resources
			if *s.Mode.Replicated.Replicas != 5 || r.Limits.MemoryBytes != 256<<20 || r.Reservations.NanoCPUs != 250000000 {
				t.Errorf("replicas %v resources %+v %+v", *s.Mode.Replicated.Replicas, r.Limits, r.Reservations)
			}
		}},
		{"mounts replace by target", []string{"--mount-add", "type=volume,source=v2,target=/a", "--mount-add", "type=tmpfs,target=/t", "--mount-rm", "/t"},
			func(t *testing.T, s swarm.ServiceSpec) {
				want := []mount.Mount{{Type: mount.TypeVolume, Source: "v2", Target: "/a"}}
				if !reflect.DeepEqual(s.TaskTemplate.ContainerSpec.Mounts, want) {
					t.Errorf("mounts %+v", s.TaskTemplate.ContainerSpec.Mounts)
				}
			}},
		{"networks", []string{"--network-add", "back", "--network-rm", "front"}, func(t *testing.T, s swarm.ServiceSpec) {
			if !reflect.DeepEqual(s.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{{Target: "id-back"}}) {
				t.Errorf("networks %+v", s.TaskTemplate.Networks)
			}
		}},
		{"update config from defaults", []string{"--update-delay", "3s"}, func(t *testing.T, s swarm.ServiceSpec) {
			want := &swarm.UpdateConfig{Parallelism: 1, Delay: 3 * time.Second, Monitor: 5 * time.Second, FailureAction: "pause", Order: "stop-first"}
			if !reflect.DeepEqual(s.UpdateConfig, want) {
				t.Errorf("update %+v", s.UpdateConfig)
			}
		}},
		{"force bumps ForceUpdate", []string{"--force"}, func(t *testing.T, s swarm.ServiceSpec) {
			if s.TaskTemplate.ForceUpdate != 1 {
				t.Errorf("ForceUpdate %d", s.TaskTemplate.ForceUpdate)
			}
		}},
		{"caps tri-state", []string{"--cap-drop", "CAP_NET_RAW", "--cap-add", "sys_admin"}, func(t *testing.T, s swarm.ServiceSpec) {
			cs := s.TaskTemplate.ContainerSpec
			if !reflect.DeepEqual(cs.CapabilityAdd, []string{"CAP_SYS_ADMIN"}) || !reflect.DeepEqual(cs.CapabilityDrop, []string{"CAP_NET_RAW"}) {
				t.Errorf("caps %v %v", cs.CapabilityAdd, cs.CapabilityDrop)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, f := parseServiceFlags(t, true, tc.args...)
			spec := baseSpec()
			if err := o.updateServiceSpec(context.Background(), f, &spec, fakeNetResolver); err != nil {
				t.Fatal(err)
			}
			tc.check(t, spec)
		})
	}

	o, f := parseServiceFlags(t, true, "--replicas", "3")
	global := baseSpec()
	global.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	if err := o.updateServiceSpec(context.Background(), f, &global, fakeNetResolver); err == nil {
		t.Error("--replicas on a global service must fail")
	}
	o, f = parseServiceFlags(t, true, "--network-add", "front")
	s := baseSpec()
	if err := o.updateServiceSpec(context.Background(), f, &s, fakeNetResolver); err == nil || !strings.Contains(err.Error(), "already attached") {
		t.Errorf("duplicate network: %v", err)
	}
}

func TestParseNanoCPUsAndMemory(t *testing.T) {
	for in, want := range map[string]int64{"0.5": 500000000, "1": 1000000000, "2.25": 2250000000, "0.001": 1000000} {
		if got, err := parseNanoCPUs(in); err != nil || got != want {
			t.Errorf("parseNanoCPUs(%q) = %d, %v", in, got, err)
		}
	}
	for in, want := range map[string]int64{"512M": 512 << 20, "512m": 512 << 20, "1g": 1 << 30, "100": 100, "64k": 64 << 10} {
		if got, err := parseMemBytes(in); err != nil || got != want {
			t.Errorf("parseMemBytes(%q) = %d, %v", in, got, err)
		}
	}
}

func TestShellSplit(t *testing.T) {
	for in, want := range map[string][]string{
		`sh -c "echo hi"`:   {"sh", "-c", "echo hi"},
		`a 'b c' d\ e`:      {"a", "b c", "d e"},
		`  spaced   words `: {"spaced", "words"},
		`""`:                {""},
	} {
		got, err := shellSplit(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("shellSplit(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := shellSplit(`"open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}
