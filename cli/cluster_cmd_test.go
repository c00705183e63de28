package cli

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
)

func swarmInfo(nodeID string, manager bool) system.Info {
	return system.Info{Swarm: swarm.Info{NodeID: nodeID, NodeAddr: "10.0.0.1", LocalNodeState: swarm.LocalNodeStateActive, ControlAvailable: manager}}
}

func TestSwarmInitPrintsJoinHint(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /swarm/init", 200, "nodeabc123")
	f.reply("GET /nodes/nodeabc123", 200, swarm.Node{ID: "nodeabc123", ManagerStatus: &swarm.ManagerStatus{Addr: "10.0.0.1:2377", Leader: true}})
	f.reply("GET /swarm", 200, swarm.Swarm{JoinTokens: swarm.JoinTokens{Worker: "SWMTKN-1-aaa-www", Manager: "SWMTKN-1-aaa-mmm"}})
	res := runCLI(t, f, "", "swarm", "init", "--advertise-addr", "10.0.0.1", "--task-history-limit", "3")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "Swarm initialized: current node (nodeabc123) is now a manager.\n\n" +
		"To add a worker to this swarm, run the following command:\n\n    shoal swarm join --token SWMTKN-1-aaa-www 10.0.0.1:2377\n\n" +
		"To add a manager to this swarm, run 'shoal swarm join-token manager' and follow the instructions.\n"
	if res.out != want {
		t.Errorf("got:\n%q\nwant:\n%q", res.out, want)
	}
	if got := f.requests(); !reflect.DeepEqual(got, []string{"POST /swarm/init", "GET /nodes/nodeabc123", "GET /swarm"}) {
		t.Errorf("requests %v", got)
	}
	var req struct {
		ListenAddr, AdvertiseAddr string
		Spec                      swarm.Spec
	}
	f.body("POST /swarm/init", 0, &req)
	if req.ListenAddr != "0.0.0.0:2377" || req.AdvertiseAddr != "10.0.0.1" || req.Spec.Orchestration.TaskHistoryRetentionLimit == nil || *req.Spec.Orchestration.TaskHistoryRetentionLimit != 3 {
		t.Errorf("init request %+v", req)
	}
}

func TestSwarmJoinTokenRotate(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /swarm", 200, swarm.Swarm{ClusterInfo: swarm.ClusterInfo{Meta: swarm.Meta{Version: swarm.Version{Index: 7}}}, JoinTokens: swarm.JoinTokens{Manager: "SWMTKN-1-new"}})
	f.on("POST /swarm/update", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	res := runCLI(t, f, "", "swarm", "join-token", "--rotate", "-q", "manager")
	if res.code != 0 || res.out != "SWMTKN-1-new\n" {
		t.Fatalf("got %d %q %q", res.code, res.out, res.err)
	}
	want := []string{"GET /swarm", "POST /swarm/update?rotateManagerToken=true&rotateManagerUnlockKey=false&rotateWorkerToken=false&version=7", "GET /swarm"}
	if got := f.requests(); !reflect.DeepEqual(got, want) {
		t.Errorf("requests %v", got)
	}
	res = runCLI(t, f, "", "swarm", "join-token", "boss")
	if res.code != 1 || res.err != "unknown role boss\n" {
		t.Errorf("bad role: %d %q", res.code, res.err)
	}
}

func TestSwarmJoinAndLeave(t *testing.T) {
	f := newFakeEngine(t)
	f.on("POST /swarm/join", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.reply("GET /info", 200, swarmInfo("n2", false))
	res := runCLI(t, f, "", "swarm", "join", "--token", "SWMTKN-1-x", "10.0.0.1:2377")
	if res.code != 0 || res.out != "This node joined a swarm as a worker.\n" {
		t.Fatalf("join: %d %q %q", res.code, res.out, res.err)
	}
	var req struct {
		RemoteAddrs []string
		JoinToken   string
	}
	f.body("POST /swarm/join", 0, &req)
	if !reflect.DeepEqual(req.RemoteAddrs, []string{"10.0.0.1:2377"}) || req.JoinToken != "SWMTKN-1-x" {
		t.Errorf("join body %+v", req)
	}
	f.on("POST /swarm/leave", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	res = runCLI(t, f, "", "swarm", "leave", "-f")
	if res.code != 0 || res.out != "Node left the swarm.\n" {
		t.Fatalf("leave: %d %q", res.code, res.out)
	}
	if got := f.requests(); got[len(got)-1] != "POST /swarm/leave?force=1" {
		t.Errorf("leave request %q", got[len(got)-1])
	}
}

func testNodes() []swarm.Node {
	return []swarm.Node{
		{ID: "w1aaaaaaaaaaaaaaaaaaaaaaa", Description: swarm.NodeDescription{Hostname: "worker1", Engine: swarm.EngineDescription{EngineVersion: "0.1.0"}},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady}, Spec: swarm.NodeSpec{Availability: swarm.NodeAvailabilityDrain}},
		{ID: "m1aaaaaaaaaaaaaaaaaaaaaaa", Description: swarm.NodeDescription{Hostname: "manager1", Engine: swarm.EngineDescription{EngineVersion: "0.1.0"}},
			Status: swarm.NodeStatus{State: swarm.NodeStateReady}, Spec: swarm.NodeSpec{Availability: swarm.NodeAvailabilityActive},
			ManagerStatus: &swarm.ManagerStatus{Leader: true, Reachability: swarm.ReachabilityReachable}},
		{ID: "m2aaaaaaaaaaaaaaaaaaaaaaa", Description: swarm.NodeDescription{Hostname: "manager2"},
			Status: swarm.NodeStatus{State: swarm.NodeStateDown}, Spec: swarm.NodeSpec{Availability: swarm.NodeAvailabilityActive},
			ManagerStatus: &swarm.ManagerStatus{Reachability: swarm.ReachabilityUnreachable}},
	}
}

func TestNodeLsMarksSelf(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /nodes", 200, testNodes())
	f.reply("GET /info", 200, swarmInfo("m1aaaaaaaaaaaaaaaaaaaaaaa", true))
	res := runCLI(t, f, "", "node", "ls")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "" +
		"ID                            HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n" +
		"m1aaaaaaaaaaaaaaaaaaaaaaa *   manager1   Ready     Active         Leader           0.1.0\n" +
		"m2aaaaaaaaaaaaaaaaaaaaaaa     manager2   Down      Active         Unreachable      \n" +
		"w1aaaaaaaaaaaaaaaaaaaaaaa     worker1    Ready     Drain                           0.1.0\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
	if got := f.requests(); !reflect.DeepEqual(got, []string{"GET /nodes", "GET /info"}) {
		t.Errorf("requests %v", got)
	}
	res = runCLI(t, f, "", "node", "ls", "-q")
	if res.out != "m1aaaaaaaaaaaaaaaaaaaaaaa\nm2aaaaaaaaaaaaaaaaaaaaaaa\nw1aaaaaaaaaaaaaaaaaaaaaaa\n" {
		t.Errorf("quiet %q", res.out)
	}
	res = runCLI(t, f, "", "node", "ls", "--format", "{{.Hostname}}: {{.ManagerStatus}}")
	if res.out != "manager1: Leader\nmanager2: Unreachable\nworker1: \n" {
		t.Errorf("template %q", res.out)
	}
}

func TestNodeUpdateAndPromote(t *testing.T) {
	f := newFakeEngine(t)
	n := swarm.Node{ID: "w1id", Meta: swarm.Meta{Version: swarm.Version{Index: 9}},
		Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: map[string]string{"old": "1"}}, Role: swarm.NodeRoleWorker, Availability: swarm.NodeAvailabilityActive}}
	f.reply("GET /nodes/worker1", 200, n)
	f.on("POST /nodes/w1id/update", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	res := runCLI(t, f, "", "node", "update", "--availability", "drain", "--label-add", "mem=max", "--label-rm", "old", "worker1")
	if res.code != 0 || res.out != "worker1\n" {
		t.Fatalf("update: %d %q %q", res.code, res.out, res.err)
	}
	var spec swarm.NodeSpec
	f.body("POST /nodes/w1id/update", 0, &spec)
	if spec.Availability != swarm.NodeAvailabilityDrain || !reflect.DeepEqual(spec.Labels, map[string]string{"mem": "max"}) || spec.Role != swarm.NodeRoleWorker {
		t.Errorf("sent spec %+v", spec)
	}
	if got := f.requests()[1]; got != "POST /nodes/w1id/update?version=9" {
		t.Errorf("request %q", got)
	}
	res = runCLI(t, f, "", "node", "promote", "worker1")
	if res.out != "Node worker1 promoted to a manager in the swarm.\n" {
		t.Errorf("promote %q %q", res.out, res.err)
	}
	res = runCLI(t, f, "", "node", "demote", "worker1")
	if res.out != "Node w1id is already a worker.\n" {
		t.Errorf("demote %q", res.out)
	}
	if len(f.requests()) != 5 {
		t.Errorf("demote of a worker must not POST: %v", f.requests())
	}
	res = runCLI(t, f, "", "node", "update", "--label-rm", "ghost", "worker1")
	if res.code != 1 || !strings.Contains(res.err, "key ghost doesn't exist in node's labels") {
		t.Errorf("label-rm missing: %d %q", res.code, res.err)
	}
}

func TestNodeInspectPretty(t *testing.T) {
	f := newFakeEngine(t)
	n := swarm.Node{ID: "m1id", Meta: swarm.Meta{CreatedAt: time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)},
		Spec: swarm.NodeSpec{Annotations: swarm.Annotations{Labels: map[string]string{"mem": "max"}}, Availability: swarm.NodeAvailabilityActive},
		Description: swarm.NodeDescription{Hostname: "manager1", Platform: swarm.Platform{OS: "linux", Architecture: "x86_64"},
			Resources: swarm.Resources{NanoCPUs: 2e9, MemoryBytes: 2 << 30}, Engine: swarm.EngineDescription{EngineVersion: "0.1.0"}},
		Status:        swarm.NodeStatus{State: swarm.NodeStateReady, Addr: "10.0.0.1"},
		ManagerStatus: &swarm.ManagerStatus{Leader: true, Reachability: swarm.ReachabilityReachable, Addr: "10.0.0.1:2377"}}
	f.reply("GET /info", 200, swarmInfo("m1id", true))
	f.reply("GET /nodes/m1id", 200, n)
	res := runCLI(t, f, "", "node", "inspect", "--pretty", "self")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "ID:\t\t\tm1id\nLabels:\n - mem=max\nHostname:              \tmanager1\nJoined at:             \t2025-05-01 10:00:00 +0000 utc\n" +
		"Status:\n State:\t\t\tReady\n Availability:         \tActive\n Address:\t\t10.0.0.1\n" +
		"Manager Status:\n Address:\t\t10.0.0.1:2377\n Raft Status:\t\tReachable\n Leader:\t\tYes\n" +
		"Platform:\n Operating System:\tlinux\n Architecture:\t\tx86_64\nResources:\n CPUs:\t\t\t2\n Memory:\t\t2GiB\n" +
		"Engine Version:\t\t0.1.0\n"
	if res.out != want {
		t.Errorf("got:\n%q\nwant:\n%q", res.out, want)
	}
	if got := f.requests(); !reflect.DeepEqual(got, []string{"GET /info", "GET /nodes/m1id"}) {
		t.Errorf("requests %v", got)
	}
	res = runCLI(t, f, "", "node", "inspect", "-f", "{{.Description.Hostname}} {{upper .Spec.Availability}}", "m1id")
	if res.out != "manager1 ACTIVE\n" {
		t.Errorf("template %q %q", res.out, res.err)
	}
	res = runCLI(t, f, "", "node", "inspect", "m1id")
	if !strings.HasPrefix(res.out, "[\n    {\n        \"ID\": \"m1id\",") {
		t.Errorf("json %q", res.out)
	}
}

func TestServiceLs(t *testing.T) {
	f := newFakeEngine(t)
	a := webService(3)
	a.Endpoint.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeIngress},
		{Protocol: "tcp", TargetPort: 81, PublishedPort: 8081, PublishMode: swarm.PortConfigPublishModeIngress}}
	a.ServiceStatus = &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 3}
	a.Spec.TaskTemplate.ContainerSpec.Image = "nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	b := swarm.Service{ID: "agent1234567890", Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "agent"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}, Mode: swarm.ServiceMode{Global: &swarm.GlobalService{}}},
		ServiceStatus: &swarm.ServiceStatus{RunningTasks: 2, DesiredTasks: 2}}
	f.reply("GET /services", 200, []swarm.Service{a, b})
	res := runCLI(t, f, "", "service", "ls")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "" +
		"ID             NAME      MODE         REPLICAS   IMAGE          PORTS\n" +
		"agent1234567   agent     global       2/2        busybox        \n" +
		"svc123456789   web       replicated   2/3        nginx:latest   *:8080-8081->80-81/tcp\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
	if got := f.requests(); !reflect.DeepEqual(got, []string{"GET /services?status=true"}) {
		t.Errorf("requests %v", got)
	}
}

func TestServiceInspectPretty(t *testing.T) {
	f := newFakeEngine(t)
	s := webService(3)
	s.Spec.Labels = map[string]string{"tier": "front"}
	s.Spec.TaskTemplate.Placement = &swarm.Placement{Constraints: []string{"node.role==worker"}, Preferences: []swarm.PlacementPreference{{Spread: &swarm.SpreadOver{SpreadDescriptor: "node.labels.dc"}}}}
	s.Spec.UpdateConfig = &swarm.UpdateConfig{Parallelism: 2, Delay: 10 * time.Second, FailureAction: "pause", Monitor: 5 * time.Second, Order: "stop-first"}
	s.Spec.TaskTemplate.Resources = &swarm.ResourceRequirements{Limits: &swarm.Limit{NanoCPUs: 5e8, MemoryBytes: 512 << 20}, Reservations: &swarm.Resources{}}
	s.Spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "netid"}}
	s.Spec.EndpointSpec = &swarm.EndpointSpec{Mode: swarm.ResolutionModeVIP}
	s.Endpoint.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: "ingress"}}
	f.reply("GET /services/web", 200, s)
	f.reply("GET /networks/netid", 200, network.Inspect{Network: network.Network{ID: "netid", Name: "frontend"}})
	res := runCLI(t, f, "", "service", "inspect", "--pretty", "web")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "\nID:\t\tsvc1234567890abcdef\nName:\t\tweb\nLabels:\n tier=front\nService Mode:\tReplicated\n Replicas:\t3\n" +
		"Placement:\n Constraints:\t[node.role==worker]\n Preferences:   [spread=node.labels.dc]\n" +
		"UpdateConfig:\n Parallelism:\t2\n Delay:\t\t10s\n On failure:\tpause\n Monitoring Period: 5s\n Max failure ratio: 0\n Update order:      stop-first\n" +
		"ContainerSpec:\n Image:\t\tnginx:latest\n" +
		"Resources:\n Limits:\n  CPU:\t\t0.5\n  Memory:\t512MiB\n" +
		"Networks: frontend \nEndpoint Mode:\tvip\n" +
		"Ports:\n PublishedPort = 8080\n  Protocol = tcp\n  TargetPort = 80\n  PublishMode = ingress \n\n"
	if res.out != want {
		t.Errorf("got:\n%q\nwant:\n%q", res.out, want)
	}
	if got := f.requests()[0]; got != "GET /services/web?insertDefaults=1" {
		t.Errorf("request %q", got)
	}
}

func TestNetworkCreateAndLs(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /networks/create", 201, network.CreateResponse{ID: "net123"})
	res := runCLI(t, f, "", "network", "create", "-d", "overlay", "--attachable", "--subnet", "10.10.0.0/24", "--gateway", "10.10.0.1", "--label", "a=b", "--opt", "encrypted", "mynet")
	if res.code != 0 || res.out != "net123\n" {
		t.Fatalf("create %d %q %q", res.code, res.out, res.err)
	}
	var req struct {
		Name, Driver string
		Attachable   bool
		IPAM         network.IPAM
		Labels       map[string]string
		Options      map[string]string
	}
	f.body("POST /networks/create", 0, &req)
	if req.Name != "mynet" || req.Driver != "overlay" || !req.Attachable || len(req.IPAM.Config) != 1 ||
		req.IPAM.Config[0].Subnet.String() != "10.10.0.0/24" || req.IPAM.Config[0].Gateway.String() != "10.10.0.1" ||
		req.Labels["a"] != "b" || req.Options["encrypted"] != "" {
		t.Errorf("create body %+v", req)
	}
	res = runCLI(t, f, "", "network", "create", "--gateway", "10.0.0.1", "x")
	if res.code != 1 || !strings.Contains(res.err, "every ip-range or gateway must have a corresponding subnet") {
		t.Errorf("gateway without subnet: %d %q", res.code, res.err)
	}
	f.reply("GET /networks", 200, []network.Summary{
		{Network: network.Network{ID: "bbbbbbbbbbbbbbbbbbbb", Name: "ingress", Driver: "overlay", Scope: "swarm"}},
		{Network: network.Network{ID: "aaaaaaaaaaaaaaaaaaaa", Name: "bridge", Driver: "bridge", Scope: "local"}},
	})
	res = runCLI(t, f, "", "network", "ls")
	want := "NETWORK ID     NAME      DRIVER    SCOPE\naaaaaaaaaaaa   bridge    bridge    local\nbbbbbbbbbbbb   ingress   overlay   swarm\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
}

func TestSecretCreateFromStdinAndLs(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("POST /secrets/create", 201, swarm.SecretCreateResponse{ID: "sec1"})
	res := runCLI(t, f, "s3cr3t", "secret", "create", "--label", "env=prod", "db_pass", "-")
	if res.code != 0 || res.out != "sec1\n" {
		t.Fatalf("create %d %q %q", res.code, res.out, res.err)
	}
	var spec swarm.SecretSpec
	f.body("POST /secrets/create", 0, &spec)
	if spec.Name != "db_pass" || string(spec.Data) != "s3cr3t" || spec.Labels["env"] != "prod" {
		t.Errorf("spec %+v", spec)
	}
	f.reply("GET /configs", 200, []swarm.Config{{ID: "cfg1", Meta: swarm.Meta{CreatedAt: fixedNow.Add(-time.Hour), UpdatedAt: fixedNow.Add(-time.Minute)},
		Spec: swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "nginx.conf"}}}})
	res = runCLI(t, f, "", "config", "ls")
	want := "ID        NAME         CREATED             UPDATED\ncfg1      nginx.conf   About an hour ago   About a minute ago\n"
	if res.out != want {
		t.Errorf("got:\n%s\nwant:\n%s", res.out, want)
	}
}

func TestServiceCreateResolvesSecrets(t *testing.T) {
	f := newFakeEngine(t)
	f.reply("GET /secrets", 200, []swarm.Secret{{ID: "sid", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "db_pass"}}}})
	f.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "x"})
	res := runCLI(t, f, "", "service", "create", "-d", "--no-resolve-image", "--secret", "source=db_pass,target=pw,mode=0400", "busybox")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	var spec swarm.ServiceSpec
	f.body("POST /services/create", 0, &spec)
	want := []*swarm.SecretReference{{SecretID: "sid", SecretName: "db_pass", File: &swarm.SecretReferenceFileTarget{Name: "pw", UID: "0", GID: "0", Mode: 0o400}}}
	if !reflect.DeepEqual(spec.TaskTemplate.ContainerSpec.Secrets, want) {
		t.Errorf("secrets %+v", spec.TaskTemplate.ContainerSpec.Secrets[0])
	}
	res = runCLI(t, f, "", "service", "create", "-d", "--no-resolve-image", "--secret", "nope", "busybox")
	if res.code != 1 || !strings.Contains(res.err, "secret not found: nope") {
		t.Errorf("missing secret: %d %q", res.code, res.err)
	}
}
