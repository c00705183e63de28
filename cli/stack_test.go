package cli

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

const testCompose = `
services:
  web:
    image: nginx:latest
    command: ["nginx", "-g", "daemon off;"]
    environment:
      - B=2
      - A=1
    ports:
      - "8080:80"
    networks: [front]
    secrets:
      - source: db_pass
        target: pw
    deploy:
      replicas: 3
      labels: {tier: web}
      resources:
        limits: {cpus: "0.5", memory: 64M}
      restart_policy: {condition: on-failure, max_attempts: 3}
      placement:
        constraints: [node.role==worker]
        preferences: [{spread: node.labels.dc}]
      update_config: {parallelism: 2, delay: 10s}
  worker:
    image: busybox
    command: sleep 1000
    deploy:
      mode: global
networks:
  front:
    driver: overlay
    attachable: true
secrets:
  db_pass:
    file: ./db_pass.txt
`

func TestStackDeploy(t *testing.T) {
	dir := t.TempDir()
	compose := filepath.Join(dir, "stack.yml")
	if err := os.WriteFile(compose, []byte(testCompose), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "db_pass.txt"), []byte("hunter2"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFakeEngine(t)
	f.reply("GET /info", 200, swarmInfo("n1", true))
	f.reply("GET /networks", 200, []network.Summary{})
	f.reply("POST /networks/create", 201, network.CreateResponse{ID: "netid"})
	f.fail("GET /secrets/app_db_pass", 404, "secret app_db_pass not found")
	f.reply("POST /secrets/create", 201, swarm.SecretCreateResponse{ID: "secid"})
	f.reply("GET /secrets", 200, []swarm.Secret{{ID: "secid", Spec: swarm.SecretSpec{Annotations: swarm.Annotations{Name: "app_db_pass"}}}})
	existing := swarm.Service{ID: "workerid", Meta: swarm.Meta{Version: swarm.Version{Index: 5}},
		Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "app_worker", Labels: map[string]string{labelImage: "busybox"}},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox:latest@sha256:abc"}, ForceUpdate: 2}}}
	f.reply("GET /services", 200, []swarm.Service{existing})
	f.reply("POST /services/create", 201, swarm.ServiceCreateResponse{ID: "webid"})
	f.reply("POST /services/workerid/update", 200, swarm.ServiceUpdateResponse{})

	res := runCLI(t, f, "", "stack", "deploy", "-c", compose, "--resolve-image", "never", "app")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.err)
	}
	want := "Creating network app_default\nCreating network app_front\nCreating secret app_db_pass\nCreating service app_web\nUpdating service app_worker (id: workerid)\n"
	if res.out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", res.out, want)
	}
	reqs := f.requests()
	if reqs[0] != "GET /info" || reqs[1] != `GET /networks?filters={"label":{"com.docker.stack.namespace=app":true}}` {
		t.Errorf("first requests %v", reqs[:2])
	}
	var netReq struct {
		Name, Driver string
		Attachable   bool
		Labels       map[string]string
	}
	f.body("POST /networks/create", 1, &netReq)
	if netReq.Name != "app_front" || netReq.Driver != "overlay" || !netReq.Attachable || netReq.Labels[labelNamespace] != "app" {
		t.Errorf("network request %+v", netReq)
	}
	var secret swarm.SecretSpec
	f.body("POST /secrets/create", 0, &secret)
	if secret.Name != "app_db_pass" || string(secret.Data) != "hunter2" || secret.Labels[labelNamespace] != "app" {
		t.Errorf("secret %+v", secret)
	}
	var web swarm.ServiceSpec
	f.body("POST /services/create", 0, &web)
	cs := web.TaskTemplate.ContainerSpec
	if web.Name != "app_web" || web.Labels["tier"] != "web" || web.Labels[labelNamespace] != "app" || web.Labels[labelImage] != "nginx:latest" {
		t.Errorf("annotations %+v", web.Annotations)
	}
	if !reflect.DeepEqual(cs.Args, []string{"nginx", "-g", "daemon off;"}) || !reflect.DeepEqual(cs.Env, []string{"A=1", "B=2"}) || cs.Labels[labelNamespace] != "app" {
		t.Errorf("container spec %+v", cs)
	}
	if *web.Mode.Replicated.Replicas != 3 {
		t.Errorf("mode %+v", web.Mode)
	}
	if !reflect.DeepEqual(web.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{{Target: "app_front", Aliases: []string{"web"}}}) {
		t.Errorf("networks %+v", web.TaskTemplate.Networks)
	}
	if l := web.TaskTemplate.Resources.Limits; l.NanoCPUs != 5e8 || l.MemoryBytes != 64<<20 {
		t.Errorf("limits %+v", l)
	}
	rp := web.TaskTemplate.RestartPolicy
	if rp.Condition != swarm.RestartPolicyConditionOnFailure || *rp.MaxAttempts != 3 {
		t.Errorf("restart %+v", rp)
	}
	if web.UpdateConfig.Parallelism != 2 || web.UpdateConfig.Delay != 10*time.Second {
		t.Errorf("update %+v", web.UpdateConfig)
	}
	if p := web.EndpointSpec.Ports; len(p) != 1 || p[0].PublishedPort != 8080 || p[0].TargetPort != 80 || p[0].PublishMode != swarm.PortConfigPublishModeIngress {
		t.Errorf("ports %+v", p)
	}
	if len(cs.Secrets) != 1 || cs.Secrets[0].SecretID != "secid" || cs.Secrets[0].File.Name != "pw" {
		t.Errorf("secrets %+v", cs.Secrets)
	}
	var worker swarm.ServiceSpec
	f.body("POST /services/workerid/update", 0, &worker)
	if worker.Mode.Global == nil || worker.TaskTemplate.ContainerSpec.Image != "busybox:latest@sha256:abc" || worker.TaskTemplate.ForceUpdate != 2 {
		t.Errorf("worker update %+v", worker)
	}
	if !reflect.DeepEqual(worker.TaskTemplate.Networks, []swarm.NetworkAttachmentConfig{{Target: "app_default", Aliases: []string{"worker"}}}) {
		t.Errorf("worker networks %+v", worker.TaskTemplate.Networks)
	}
	if !reflect.DeepEqual(worker.TaskTemplate.ContainerSpec.Args, []string{"sleep", "1000"}) {
		t.Errorf("worker args %v", worker.TaskTemplate.ContainerSpec.Args)
	}
	last := reqs[len(reqs)-1]
	if last != "POST /services/workerid/update?version=5" {
		t.Errorf("last request %q", last)
	}
}

func TestStackDeployNeedsManager(t *testing.T) {
	dir := t.TempDir()
	compose := filepath.Join(dir, "c.yml")
	os.WriteFile(compose, []byte("services:\n  a:\n    image: busybox\n"), 0o644)
	f := newFakeEngine(t)
	f.reply("GET /info", 200, swarmInfo("n1", false))
	res := runCLI(t, f, "", "stack", "deploy", "-c", compose, "s")
	if res.code != 1 || !strings.Contains(res.err, "this node is not a swarm manager") {
		t.Fatalf("got %d %q", res.code, res.err)
	}
}

func TestStackLsPsRm(t *testing.T) {
	f := newFakeEngine(t)
	svc := func(id, name, ns string) swarm.Service {
		return swarm.Service{ID: id, Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Name: name, Labels: map[string]string{labelNamespace: ns}},
			TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}}}
	}
	f.on("GET /services", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Query().Get("filters"), "=app") {
			writeJSON(w, 200, []swarm.Service{svc("s1", "app_web", "app")})
			return
		}
		writeJSON(w, 200, []swarm.Service{svc("s1", "app_web", "app"), svc("s2", "app_db", "app"), svc("s3", "mon_agent", "mon")})
	})
	res := runCLI(t, f, "", "stack", "ls")
	if res.out != "NAME      SERVICES\napp       2\nmon       1\n" {
		t.Errorf("stack ls %q", res.out)
	}
	if got := f.requests()[0]; got != `GET /services?filters={"label":{"com.docker.stack.namespace":true}}` {
		t.Errorf("ls request %q", got)
	}
	f.reply("GET /tasks", 200, []swarm.Task{})
	res = runCLI(t, f, "", "stack", "ps", "app")
	if res.code != 1 || res.err != "nothing found in stack: app\n" {
		t.Errorf("empty ps %d %q", res.code, res.err)
	}
	f.reply("GET /networks", 200, []network.Summary{{Network: network.Network{ID: "n1", Name: "app_default"}}})
	f.reply("GET /secrets", 200, []swarm.Secret{})
	f.reply("GET /configs", 200, []swarm.Config{})
	f.on("DELETE /services/s1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	f.on("DELETE /networks/n1", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	res = runCLI(t, f, "", "stack", "rm", "app")
	if res.code != 0 || res.out != "Removing service app_web\nRemoving network app_default\n" {
		t.Errorf("stack rm %d %q %q", res.code, res.out, res.err)
	}
}
