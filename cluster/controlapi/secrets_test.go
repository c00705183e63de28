package controlapi

import (
	"context"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

func TestSecretsAndConfigs(t *testing.T) {
	st := store.New()
	p := &Payloads{Store: st}
	svcs := &Services{Store: st}
	ctx := context.Background()
	sec := func(name, data string) swarm.SecretSpec {
		s := swarm.SecretSpec{Data: []byte(data)}
		s.Name = name
		return s
	}
	tests := []struct {
		name string
		spec swarm.SecretSpec
		kind errdefs.Kind
	}{
		{"ok", sec("db_password", "s3cret"), errdefs.KindUnknown},
		{"duplicate", sec("db_password", "x"), errdefs.KindConflict},
		{"empty data", sec("empty", ""), errdefs.KindInvalidParameter},
		{"bad name", sec("bad name", "x"), errdefs.KindInvalidParameter},
		{"too big", sec("big", strings.Repeat("x", 600<<10)), errdefs.KindInvalidParameter},
	}
	var id string
	for _, tc := range tests {
		got, err := p.CreateSecret(ctx, tc.spec)
		if tc.kind == errdefs.KindUnknown {
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			id = got
			continue
		}
		if errdefs.KindOf(err) != tc.kind {
			t.Fatalf("%s: err %v, want kind %v", tc.name, err, tc.kind)
		}
	}
	s, err := p.GetSecret("db_password")
	if err != nil || s.ID != id || s.Spec.Data != nil {
		t.Fatalf("get: %v %+v (data must be redacted)", err, s)
	}
	labeled := s.Spec
	labeled.Labels = map[string]string{"env": "prod"}
	if err := p.UpdateSecret(ctx, id, s.Version.Index, labeled); err != nil {
		t.Fatal(err)
	}
	changed := sec("db_password", "other")
	if err := p.UpdateSecret(ctx, id, s.Version.Index+1, changed); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("data change: %v", err)
	}
	if got, _ := p.ListSecrets(filters.NewArgs(filters.Arg("label", "env=prod"))); len(got) != 1 {
		t.Fatalf("label filter: %+v", got)
	}

	// A service using it blocks removal; an unknown secret blocks the service.
	web := spec("web", "x")
	web.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "nope", SecretName: "nope"}}
	if _, err := svcs.CreateService(ctx, web, ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("unknown secret: %v", err)
	}
	web.TaskTemplate.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: id, SecretName: "db_password"}}
	if _, err := svcs.CreateService(ctx, web, ""); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveSecret(ctx, "db_password"); !errdefs.IsInvalidParameter(err) || !strings.Contains(err.Error(), "in use by the following service: web") {
		t.Fatalf("in use: %v", err)
	}
	if err := svcs.RemoveService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := p.RemoveSecret(ctx, "db_password"); err != nil {
		t.Fatal(err)
	}

	cfg := swarm.ConfigSpec{Data: []byte("server {}")}
	cfg.Name = "nginx.conf"
	cid, err := p.CreateConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c, err := p.GetConfig(cid[:4])
	if err != nil || string(c.Spec.Data) != "server {}" {
		t.Fatalf("config: %v %+v", err, c)
	}
	if _, err := p.ListConfigs(filters.NewArgs(filters.Arg("bogus", "1"))); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad filter: %v", err)
	}
	if err := p.RemoveConfig(ctx, "missing"); !errdefs.IsNotFound(err) {
		t.Fatalf("missing: %v", err)
	}
}
