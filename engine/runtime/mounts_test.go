package runtime

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/shoal/shoal/errdefs"
)

func TestParseMounts(t *testing.T) {
	existing := t.TempDir()
	tests := []struct {
		name    string
		cfg     container.Config
		hc      container.HostConfig
		want    []Mount
		wantErr string
	}{
		{name: "bind ro and named volume and tmpfs",
			hc: container.HostConfig{Binds: []string{"/host/a:/a:ro", "data:/data", "cache:/cache:nocopy"}, Tmpfs: map[string]string{"/run": "size=1m,exec"}},
			want: []Mount{
				{Type: mount.TypeBind, Source: "/host/a", Destination: "/a", ReadOnly: true, CreateSource: true, Mode: "ro"},
				{Type: mount.TypeVolume, Source: "data", Destination: "/data"},
				{Type: mount.TypeVolume, Source: "cache", Destination: "/cache", NoCopy: true, Mode: "nocopy"},
				{Type: mount.TypeTmpfs, Source: "tmpfs", Destination: "/run", Options: []string{"exec", "nosuid", "nodev", "size=1m"}, Mode: "size=1m,exec"},
			}},
		{name: "declared volumes become anonymous unless mounted",
			cfg:  container.Config{Volumes: map[string]struct{}{"/v1": {}, "/data": {}}},
			hc:   container.HostConfig{Binds: []string{"named:/data"}},
			want: []Mount{{Type: mount.TypeVolume, Source: "named", Destination: "/data"}, {Type: mount.TypeVolume, Destination: "/v1", Anonymous: true}}},
		{name: "--mount bind, volume, tmpfs",
			hc: container.HostConfig{Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: existing, Target: "/b", ReadOnly: true, BindOptions: &mount.BindOptions{Propagation: mount.PropagationRSlave}},
				{Type: mount.TypeVolume, Target: "/anon"},
				{Type: mount.TypeTmpfs, Target: "/t", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1024, Mode: 0o1777}},
			}},
			want: []Mount{
				{Type: mount.TypeBind, Source: existing, Destination: "/b", ReadOnly: true, Propagation: mount.PropagationRSlave},
				{Type: mount.TypeVolume, Destination: "/anon", Anonymous: true},
				{Type: mount.TypeTmpfs, Source: "tmpfs", Destination: "/t", Options: []string{"noexec", "nosuid", "nodev", "size=1024", "mode=1777"}},
			}},
		{name: "missing --mount bind source", hc: container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: "/nonexistent/shrt", Target: "/b"}}},
			wantErr: `invalid mount config for type "bind": bind source path does not exist: /nonexistent/shrt`},
		{name: "relative destination", hc: container.HostConfig{Binds: []string{"/a:b"}},
			wantErr: `invalid volume specification: '/a:b': invalid mount config for type "volume": invalid mount path: 'b' mount path must be absolute`},
		{name: "destination root", hc: container.HostConfig{Binds: []string{"/a:/"}}, wantErr: "invalid specification: destination can't be '/'"},
		{name: "duplicate", hc: container.HostConfig{Binds: []string{"/a:/x", "vv:/x"}}, wantErr: "Duplicate mount point: /x"},
		{name: "bad volume name", hc: container.HostConfig{Binds: []string{"a b:/x"}}, wantErr: `create a b: "a b" includes invalid characters for a local volume name`},
		{name: "bad mode", hc: container.HostConfig{Binds: []string{"/a:/x:bogus"}}, wantErr: "invalid mode: bogus"},
		{name: "too many colons", hc: container.HostConfig{Binds: []string{"/a:/b:ro:x"}}, wantErr: "invalid volume specification: '/a:/b:ro:x'"},
		{name: "unknown type", hc: container.HostConfig{Mounts: []mount.Mount{{Type: "magic", Target: "/m"}}}, wantErr: `invalid mount config for type "magic": mount type unknown`},
		{name: "tmpfs with source", hc: container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeTmpfs, Source: "x", Target: "/m"}}}, wantErr: `invalid mount config for type "tmpfs": field Source must not be specified`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMounts(&tt.cfg, &tt.hc)
			if tt.wantErr != "" {
				if !errdefs.IsInvalidParameter(err) || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSpecMount(t *testing.T) {
	got := SpecMount(Mount{Type: mount.TypeBind, Source: "/h", Destination: "/c", ReadOnly: true})
	if got.Type != "bind" || !reflect.DeepEqual(got.Options, []string{"rbind", "ro", "rprivate"}) {
		t.Fatalf("%+v", got)
	}
	got = SpecMount(Mount{Type: mount.TypeVolume, Source: "/v/_data", Destination: "/c", NonRecursive: true, Propagation: mount.PropagationShared})
	if !reflect.DeepEqual(got.Options, []string{"bind", "shared"}) {
		t.Fatalf("%+v", got)
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n# comment\nbroken\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/group"), []byte("root:x:0:\nweb:x:33:\nstaff:x:50:web,other\naudio:x:29:web\n"), 0o644)
	tests := []struct {
		spec     string
		groupAdd []string
		uid, gid uint32
		extra    []uint32
		home     string
		err      string
	}{
		{spec: "", uid: 0, gid: 0, home: "/root"},
		{spec: "web", uid: 33, gid: 33, extra: []uint32{50, 29}, home: "/var/www"},
		{spec: "web:staff", uid: 33, gid: 50, home: "/var/www"},
		{spec: "1234", uid: 1234, gid: 0, home: "/"},
		{spec: "1234:5678", uid: 1234, gid: 5678, home: "/"},
		{spec: "33", uid: 33, gid: 33, extra: []uint32{50, 29}, home: "/var/www"},
		{spec: "root", groupAdd: []string{"audio", "777"}, uid: 0, gid: 0, extra: []uint32{29, 777}, home: "/root"},
		{spec: "nobody", err: "unable to find user nobody: no matching entries in passwd file"},
		{spec: "web:nogroup", err: "unable to find group nogroup: no matching entries in group file"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			u, err := ResolveUser(root, tt.spec, tt.groupAdd)
			if tt.err != "" {
				if !errdefs.IsInvalidParameter(err) || err.Error() != tt.err {
					t.Fatalf("err %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.UID != tt.uid || u.GID != tt.gid || !reflect.DeepEqual(u.AdditionalGids, tt.extra) || u.Home != tt.home {
				t.Fatalf("got %+v", u)
			}
		})
	}
}

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/real"), 0o755)
	os.Symlink("/etc/real", filepath.Join(root, "abs"))
	os.Symlink("../../../../../../etc", filepath.Join(root, "etc/escape"))
	os.Symlink("real", filepath.Join(root, "etc/rel"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	tests := map[string]string{
		"/etc/passwd":     root + "/etc/passwd",
		"/abs/x":          root + "/etc/real/x",
		"/etc/escape/x":   root + "/etc/x",
		"/etc/rel/y":      root + "/etc/real/y",
		"../../etc":       root + "/etc",
		"/missing/a/../b": root + "/missing/b",
		"/":               root,
	}
	for in, want := range tests {
		got, err := SecureJoin(root, in)
		if err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := SecureJoin(root, "/loop/x"); err == nil {
		t.Error("symlink loop not detected")
	}
}
