package container

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/volume"

	"github.com/shoal/shoal/errdefs"
)

func volumeNames(t *testing.T, s *Service, f filters.Args) []string {
	t.Helper()
	res, err := s.VolumeList(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range res.Volumes {
		out = append(out, v.Name)
	}
	return out
}

func TestVolumeAPI(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	v, err := s.VolumeCreate(ctx, volume.CreateRequest{Name: "data", Labels: map[string]string{"team": "a"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Driver != "local" || v.Scope != "local" || v.Labels["team"] != "a" || v.CreatedAt == "" || filepath.Base(filepath.Dir(v.Mountpoint)) != "data" {
		t.Fatalf("created %+v", v)
	}
	// Creating it again returns it; a nameless one gets a random name.
	if again, err := s.VolumeCreate(ctx, volume.CreateRequest{Name: "data"}); err != nil || again.Labels["team"] != "a" {
		t.Fatalf("create again: %+v %v", again, err)
	}
	anon, err := s.VolumeCreate(ctx, volume.CreateRequest{})
	if err != nil || len(anon.Name) != 64 {
		t.Fatalf("nameless: %+v %v", anon, err)
	}
	id := mustCreate(t, s, "user", &container.Config{}, &container.HostConfig{Binds: []string{"data:/data"}})

	tests := []struct {
		name string
		f    filters.Args
		want []string
	}{
		{"all", filters.NewArgs(), []string{anon.Name, "data"}},
		{"name", filters.NewArgs(filters.Arg("name", "dat")), []string{"data"}},
		{"label", filters.NewArgs(filters.Arg("label", "team=a")), []string{"data"}},
		{"dangling", filters.NewArgs(filters.Arg("dangling", "true")), []string{anon.Name}},
		{"in use", filters.NewArgs(filters.Arg("dangling", "false")), []string{"data"}},
		{"driver", filters.NewArgs(filters.Arg("driver", "local")), []string{anon.Name, "data"}},
	}
	for _, tc := range tests {
		slices.Sort(tc.want) // the list is sorted by name; anon's is random
		if got := volumeNames(t, s, tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// Bad input, refusals.
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"unknown filter", func() error { _, err := s.VolumeList(ctx, filters.NewArgs(filters.Arg("colour", "red"))); return err }(), errdefs.IsInvalidParameter},
		{"bad dangling", func() error {
			_, err := s.VolumeList(ctx, filters.NewArgs(filters.Arg("dangling", "maybe")))
			return err
		}(), errdefs.IsInvalidParameter},
		{"bad name", func() error { _, err := s.VolumeCreate(ctx, volume.CreateRequest{Name: "a/b"}); return err }(), errdefs.IsInvalidParameter},
		{"other driver", func() error { _, err := s.VolumeCreate(ctx, volume.CreateRequest{Driver: "nfs"}); return err }(), errdefs.IsNotFound},
		{"driver options", func() error {
			_, err := s.VolumeCreate(ctx, volume.CreateRequest{Name: "x", DriverOpts: map[string]string{"type": "tmpfs"}})
			return err
		}(), errdefs.IsInvalidParameter},
		{"missing", func() error { _, err := s.VolumeInspect(ctx, "nope"); return err }(), errdefs.IsNotFound},
		{"remove missing", s.VolumeRemove(ctx, "nope", false), errdefs.IsNotFound},
		{"remove in use", s.VolumeRemove(ctx, "data", true), errdefs.IsConflict},
	} {
		if tc.err == nil || !tc.is(tc.err) {
			t.Errorf("%s: %v", tc.name, tc.err)
		}
	}
	if err := s.VolumeRemove(ctx, "nope", true); err != nil {
		t.Errorf("force-remove of a missing volume: %v", err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(anon.Mountpoint)), "x")); !os.IsNotExist(err) {
		t.Errorf("a refused create left %v", err)
	}

	// Prune: anonymous volumes only, unless all; never one in use.
	if err := os.WriteFile(filepath.Join(anon.Mountpoint, "f"), []byte("12345"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := s.VolumePrune(ctx, filters.NewArgs())
	if err != nil || len(rep.VolumesDeleted) != 0 {
		t.Fatalf("prune of named volumes without all: %+v %v", rep, err)
	}
	// A nameless create is a named volume to docker's prune too: only
	// volumes containers made on their own count as anonymous.
	rep, err = s.VolumePrune(ctx, filters.NewArgs(filters.Arg("all", "true")))
	if err != nil || len(rep.VolumesDeleted) != 1 || rep.VolumesDeleted[0] != anon.Name || rep.SpaceReclaimed != 5 {
		t.Fatalf("prune all: %+v %v", rep, err)
	}
	if err := s.Remove(ctx, id, false, false); err != nil {
		t.Fatal(err)
	}
	if err := s.VolumeRemove(ctx, "data", false); err != nil {
		t.Fatal(err)
	}
	if got := volumeNames(t, s, filters.NewArgs()); len(got) != 0 {
		t.Fatalf("left: %v", got)
	}
}
