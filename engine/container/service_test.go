package container

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/engine/runtime/shim"
	"github.com/shoal/shoal/errdefs"
)

// newUnitService is a service over temp dirs and fakes: everything but
// running containers works without root.
func newUnitService(t *testing.T) *Service {
	t.Helper()
	dir := t.TempDir()
	s, err := NewService(Config{
		Root:     filepath.Join(dir, "containers"),
		ExecRoot: filepath.Join(dir, "exec"),
		Images: &fakeImages{img: &image.Image{ID: "sha256:" + strings.Repeat("cd", 32), Config: ocispec.Image{Config: ocispec.ImageConfig{
			Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "A=image"}, Labels: map[string]string{"from": "image"},
			ExposedPorts: map[string]struct{}{"80/tcp": {}}, WorkingDir: "/w", StopSignal: "SIGQUIT",
		}}}},
		Network:  &fakeNet{attached: map[string]bool{}},
		ShimPath: filepath.Join(dir, "no-shim"),
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCreate(t *testing.T, s *Service, name string, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	if cfg == nil {
		cfg = &container.Config{}
	}
	if cfg.Image == "" {
		cfg.Image = "busybox"
	}
	id, warnings, err := s.Create(context.Background(), name, cfg, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	if warnings == nil {
		t.Fatal("warnings must be a list, not null")
	}
	return id
}

// setState forces a container's state, standing in for a run.
func setState(t *testing.T, s *Service, id string, st state) {
	t.Helper()
	c, err := s.lookup(id)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.rec.State = st
	c.mu.Unlock()
	c.save()
}

func TestMergeImageConfig(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"default"}, Env: []string{"A=img", "B=img"},
		User: "web", WorkingDir: "/w", Labels: map[string]string{"l": "img", "k": "img"}, Volumes: map[string]struct{}{"/v": {}},
		StopSignal: "SIGQUIT", ExposedPorts: map[string]struct{}{"80/tcp": {}}}
	tests := []struct {
		name           string
		user           container.Config
		wantEntrypoint []string
		wantCmd        []string
	}{
		{"image defaults", container.Config{}, []string{"/ep"}, []string{"default"}},
		{"user cmd keeps image entrypoint", container.Config{Cmd: []string{"x"}}, []string{"/ep"}, []string{"x"}},
		{"user entrypoint drops image cmd", container.Config{Entrypoint: []string{"/mine"}}, []string{"/mine"}, nil},
		{"user entrypoint and cmd", container.Config{Entrypoint: []string{"/mine"}, Cmd: []string{"y"}}, []string{"/mine"}, []string{"y"}},
		{"--entrypoint '' clears it", container.Config{Entrypoint: []string{""}, Cmd: []string{"z"}}, nil, []string{"z"}},
		{"explicit empty entrypoint keeps image cmd", container.Config{Entrypoint: []string{}}, nil, []string{"default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := copyConfig(&tt.user)
			mergeImageConfig(u, &img)
			if !reflect.DeepEqual(u.Entrypoint, tt.wantEntrypoint) || !reflect.DeepEqual(u.Cmd, tt.wantCmd) {
				t.Fatalf("entrypoint %q cmd %q", u.Entrypoint, u.Cmd)
			}
			if u.User != "web" || u.WorkingDir != "/w" || u.StopSignal != "SIGQUIT" || len(u.Volumes) != 1 || len(u.ExposedPorts) != 1 {
				t.Fatalf("merged %+v", u)
			}
		})
	}
	u := &container.Config{Env: []string{"B=user", "C=user"}, Labels: map[string]string{"k": "user"}, User: "root"}
	mergeImageConfig(u, &img)
	if !reflect.DeepEqual(u.Env, []string{"B=user", "C=user", "A=img"}) {
		t.Fatalf("env %q", u.Env)
	}
	if !reflect.DeepEqual(u.Labels, map[string]string{"k": "user", "l": "img"}) || u.User != "root" {
		t.Fatalf("labels %v user %q", u.Labels, u.User)
	}
}

func TestCreateNamesAndLookup(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	id := mustCreate(t, s, "web", &container.Config{Cmd: []string{"echo"}}, nil)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("id %q", id)
	}
	_, _, err := s.Create(ctx, "/web", &container.Config{Image: "busybox"}, nil, nil)
	want := `Conflict. The container name "/web" is already in use by container "` + id + `". You have to remove (or rename) that container to be able to reuse that name.`
	if !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("duplicate name: %v", err)
	}
	if _, _, err := s.Create(ctx, "bad name!", &container.Config{Image: "busybox"}, nil, nil); !errdefs.IsInvalidParameter(err) ||
		err.Error() != "Invalid container name (bad name!), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed" {
		t.Fatalf("bad name: %v", err)
	}
	if _, _, err := s.Create(ctx, "", &container.Config{Image: "nosuch"}, nil, nil); !errdefs.IsNotFound(err) || err.Error() != "No such image: nosuch" {
		t.Fatalf("missing image: %v", err)
	}
	if _, _, err := s.Create(ctx, "", &container.Config{Image: "busybox"}, &container.HostConfig{Resources: container.Resources{Memory: 1 << 20}}, nil); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("tiny memory: %v", err)
	}
	gen := mustCreate(t, s, "", nil, nil)
	ins, _ := s.Inspect(ctx, gen)
	if !regexp.MustCompile(`^/[a-z]+_[a-z]+\d*$`).MatchString(ins.Name) {
		t.Fatalf("generated name %q", ins.Name)
	}

	for _, ref := range []string{id, "web", "/web", id[:12], id[:5]} {
		ins, err := s.Inspect(ctx, ref)
		if err != nil || ins.ID != id || ins.Name != "/web" {
			t.Fatalf("lookup %q: %v", ref, err)
		}
	}
	if _, err := s.Inspect(ctx, "nope"); !errdefs.IsNotFound(err) || err.Error() != "No such container: nope" {
		t.Fatalf("missing: %v", err)
	}
	// Two IDs sharing a prefix.
	c, _ := s.lookup(gen)
	s.mu.Lock()
	delete(s.byID, gen)
	c.rec.ID = id[:10] + gen[10:]
	s.byID[c.rec.ID] = c
	s.mu.Unlock()
	if _, err := s.Inspect(ctx, id[:8]); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("ambiguous prefix: %v", err)
	}
}

func TestCreateInspectView(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	id := mustCreate(t, s, "vv", &container.Config{Env: []string{"A=user"}, Labels: map[string]string{"mine": "1"}},
		&container.HostConfig{Binds: []string{"/tmp:/h:ro", "named:/data"}})
	ins, err := s.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if ins.State.Status != container.StateCreated || ins.State.Running || ins.State.StartedAt != "0001-01-01T00:00:00Z" {
		t.Fatalf("state %+v", ins.State)
	}
	if ins.Path != "sh" || len(ins.Args) != 0 || ins.Config.Hostname != id[:12] || ins.Config.WorkingDir != "/w" {
		t.Fatalf("inspect %+v %+v", ins.Path, ins.Config)
	}
	if !reflect.DeepEqual(ins.Config.Env, []string{"A=user", "PATH=/bin"}) || ins.Config.Labels["from"] != "image" || ins.Config.Labels["mine"] != "1" {
		t.Fatalf("config %+v", ins.Config)
	}
	if ins.HostConfig.NetworkMode != "bridge" || ins.HostConfig.RestartPolicy.Name != "no" {
		t.Fatalf("host config %+v", ins.HostConfig)
	}
	if len(ins.Mounts) != 2 || ins.Mounts[0].Source != "/tmp" || ins.Mounts[0].RW || ins.Mounts[1].Name != "named" || ins.Mounts[1].Driver != "local" {
		t.Fatalf("mounts %+v", ins.Mounts)
	}
	if _, ok := ins.NetworkSettings.Networks["bridge"]; !ok {
		t.Fatalf("networks %+v", ins.NetworkSettings)
	}
	if ins.Image != "sha256:"+strings.Repeat("cd", 32) || !strings.HasSuffix(ins.LogPath, id+"-json.log") {
		t.Fatalf("image %s log %s", ins.Image, ins.LogPath)
	}
}

func TestRemoveRefusesRunningAndWaitRemoved(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	events, cancel := s.Subscribe()
	defer cancel()
	id := mustCreate(t, s, "web", nil, nil)
	setState(t, s, id, state{Status: container.StateRunning, Pid: 1})
	err := s.Remove(ctx, "web", false, false)
	want := `cannot remove container "/web": container is running: stop the container before removing or force remove`
	if !errdefs.IsConflict(err) || err.Error() != want {
		t.Fatalf("remove running: %v", err)
	}
	setState(t, s, id, state{Status: container.StateExited, ExitCode: 3})

	notRunning, err := s.Wait(ctx, id, container.WaitConditionNotRunning)
	if err != nil {
		t.Fatal(err)
	}
	if r := <-notRunning; r.StatusCode != 3 {
		t.Fatalf("not-running: %+v", r)
	}
	removed, _ := s.Wait(ctx, id, container.WaitConditionRemoved)
	select {
	case <-removed:
		t.Fatal("removed before removal")
	default:
	}
	if err := s.Remove(ctx, id, false, false); err != nil {
		t.Fatal(err)
	}
	if r := <-removed; r.StatusCode != 3 {
		t.Fatalf("removed: %+v", r)
	}
	if _, err := s.Inspect(ctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("inspect after remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Root, id)); !os.IsNotExist(err) {
		t.Fatal("container dir left behind")
	}
	if _, err := s.Wait(ctx, "web", container.WaitConditionNotRunning); !errdefs.IsNotFound(err) {
		t.Fatalf("wait on removed: %v", err)
	}
	if _, err := s.Wait(ctx, id, "sometime"); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad condition: %v", err)
	}
	var got []string
	for len(got) < 2 {
		select {
		case ev := <-events:
			if ev.ID == id {
				got = append(got, ev.Action)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("events so far %v", got)
		}
	}
	if !reflect.DeepEqual(got, []string{"create", "destroy"}) {
		t.Fatalf("events %v", got)
	}
}

func TestRename(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	id := mustCreate(t, s, "a1", nil, nil)
	mustCreate(t, s, "b1", nil, nil)
	if err := s.Rename(ctx, "a1", "b1"); !errdefs.IsConflict(err) {
		t.Fatalf("rename onto taken name: %v", err)
	}
	if err := s.Rename(ctx, "a1", "c1"); err != nil {
		t.Fatal(err)
	}
	if ins, err := s.Inspect(ctx, "c1"); err != nil || ins.ID != id {
		t.Fatalf("after rename: %v", err)
	}
	if _, err := s.Inspect(ctx, "a1"); !errdefs.IsNotFound(err) {
		t.Fatal("old name still resolves")
	}
}

func TestListFilters(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	web := mustCreate(t, s, "web", &container.Config{Labels: map[string]string{"tier": "front"}}, nil)
	time.Sleep(2 * time.Millisecond) // distinct creation times for before/since
	db := mustCreate(t, s, "db", &container.Config{Labels: map[string]string{"tier": "back"}}, nil)
	time.Sleep(2 * time.Millisecond)
	job := mustCreate(t, s, "job", nil, nil)
	setState(t, s, web, state{Status: container.StateRunning, StartedAt: time.Now()})
	setState(t, s, job, state{Status: container.StateExited, ExitCode: 1, FinishedAt: time.Now()})

	names := func(opts backend.ListOptions) []string {
		t.Helper()
		list, err := s.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, c := range list {
			out = append(out, strings.TrimPrefix(c.Names[0], "/"))
		}
		return out
	}
	f := func(kv ...string) filters.Args {
		a := filters.NewArgs()
		for i := 0; i < len(kv); i += 2 {
			a.Add(kv[i], kv[i+1])
		}
		return a
	}
	tests := []struct {
		name string
		opts backend.ListOptions
		want []string
	}{
		{"running only by default", backend.ListOptions{}, []string{"web"}},
		{"all newest first", backend.ListOptions{All: true}, []string{"job", "db", "web"}},
		{"limit", backend.ListOptions{Limit: 2}, []string{"job", "db"}},
		{"name regexp", backend.ListOptions{All: true, Filters: f("name", "^/?w")}, []string{"web"}},
		{"name substring", backend.ListOptions{All: true, Filters: f("name", "o")}, []string{"job"}},
		{"label key", backend.ListOptions{All: true, Filters: f("label", "tier")}, []string{"db", "web"}},
		{"label key=value", backend.ListOptions{All: true, Filters: f("label", "tier=back")}, []string{"db"}},
		{"status implies all", backend.ListOptions{Filters: f("status", "created")}, []string{"db"}},
		{"exited code", backend.ListOptions{Filters: f("exited", "1")}, []string{"job"}},
		{"id prefix", backend.ListOptions{All: true, Filters: f("id", db[:6])}, []string{"db"}},
		{"before", backend.ListOptions{All: true, Filters: f("before", "job")}, []string{"db", "web"}},
		{"since", backend.ListOptions{All: true, Filters: f("since", "web")}, []string{"job", "db"}},
		{"ancestor", backend.ListOptions{All: true, Filters: f("ancestor", "busybox")}, []string{"job", "db", "web"}},
		{"ancestor other", backend.ListOptions{All: true, Filters: f("ancestor", "alpine")}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := names(tt.opts); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v want %v", got, tt.want)
			}
		})
	}
	if _, err := s.List(ctx, backend.ListOptions{Filters: f("status", "sleeping")}); !errdefs.IsInvalidParameter(err) || err.Error() != "invalid filter 'status=sleeping'" {
		t.Fatalf("bad status: %v", err)
	}
	if _, err := s.List(ctx, backend.ListOptions{Filters: f("colour", "red")}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad key: %v", err)
	}
	list, _ := s.List(ctx, backend.ListOptions{Filters: f("name", "web")})
	sum := list[0]
	if sum.State != container.StateRunning || !strings.HasPrefix(sum.Status, "Up ") || sum.Command != "sh" || sum.Image != "busybox" ||
		len(sum.Ports) != 1 || sum.Ports[0].PrivatePort != 80 || sum.HostConfig.NetworkMode != "bridge" {
		t.Fatalf("summary %+v", sum)
	}
}

func TestDecideRestart(t *testing.T) {
	always := container.RestartPolicy{Name: container.RestartPolicyAlways}
	onFailure2 := container.RestartPolicy{Name: container.RestartPolicyOnFailure, MaximumRetryCount: 2}
	unless := container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}
	type run struct {
		exit    int
		ranFor  time.Duration
		manual  bool
		restart bool
		delay   time.Duration
	}
	tests := []struct {
		name   string
		policy container.RestartPolicy
		runs   []run
	}{
		{"no", container.RestartPolicy{Name: "no"}, []run{{exit: 1}}},
		{"always backs off and resets after 10s", always, []run{
			{exit: 0, restart: true, delay: 100 * time.Millisecond},
			{exit: 0, restart: true, delay: 200 * time.Millisecond},
			{exit: 1, restart: true, delay: 400 * time.Millisecond},
			{exit: 1, ranFor: 11 * time.Second, restart: true, delay: 100 * time.Millisecond},
		}},
		{"always not after a manual stop", always, []run{{exit: 137, manual: true}}},
		{"unless-stopped", unless, []run{{exit: 0, restart: true, delay: 100 * time.Millisecond}, {exit: 0, manual: true}}},
		{"on-failure:2 stops after two restarts", onFailure2, []run{
			{exit: 2, restart: true, delay: 100 * time.Millisecond},
			{exit: 2, restart: true, delay: 200 * time.Millisecond},
			{exit: 2},
		}},
		{"on-failure not on success", onFailure2, []run{{exit: 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs restartState
			count := 0
			for i, r := range tt.runs {
				restart, delay := decideRestart(tt.policy, &rs, count, r.exit, r.manual, r.ranFor)
				if restart != r.restart || (restart && delay != r.delay) {
					t.Fatalf("run %d: restart %v after %v, want %v after %v", i, restart, delay, r.restart, r.delay)
				}
				if restart {
					count++
				}
			}
		})
	}
	for i := 0; i < 20; i++ {
		var rs restartState
		for j := 0; j < i; j++ {
			decideRestart(always, &rs, 0, 1, false, 0)
		}
		if _, d := decideRestart(always, &rs, 0, 1, false, 0); d > time.Minute {
			t.Fatalf("delay %v above the one-minute cap", d)
		}
	}
	if !restartOnBoot(always, true) || restartOnBoot(unless, true) || !restartOnBoot(unless, false) || restartOnBoot(onFailure2, false) {
		t.Fatal("restartOnBoot")
	}
}

// writeLog writes json-file records as the shim does.
func writeLog(t *testing.T, path string, entries []backend.LogMessage) {
	t.Helper()
	var b []byte
	for _, e := range entries {
		b = shim.AppendLogEntry(b, e.Stream, e.Line, e.Time)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLogs(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	id := mustCreate(t, s, "logger", nil, nil)
	tty := mustCreate(t, s, "tty", &container.Config{Tty: true}, nil)
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := []backend.LogMessage{
		{Stream: "stdout", Line: []byte("one\n"), Time: base},
		{Stream: "stderr", Line: []byte("two\n"), Time: base.Add(time.Second)},
		{Stream: "stdout", Line: []byte("part"), Time: base.Add(2 * time.Second)},
		{Stream: "stdout", Line: []byte("ial\n"), Time: base.Add(2 * time.Second)},
		{Stream: "stdout", Line: []byte("four\n"), Time: base.Add(3 * time.Second)},
	}
	for _, ref := range []string{id, tty} {
		c, _ := s.lookup(ref)
		writeLog(t, s.logPath(c), entries)
	}
	read := func(ref string, opts backend.LogsOptions) (string, string) {
		t.Helper()
		rc, err := s.Logs(ctx, ref, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var out, errb bytes.Buffer
		if _, err := stdcopy.StdCopy(&out, &errb, rc); err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String()
	}
	all := backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: -1}
	tests := []struct {
		name     string
		opts     backend.LogsOptions
		out, err string
	}{
		{"all", all, "one\npartial\nfour\n", "two\n"},
		{"stdout only", backend.LogsOptions{ShowStdout: true, Tail: -1}, "one\npartial\nfour\n", ""},
		{"tail 2", backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: 2}, "ial\nfour\n", ""},
		{"tail 0", backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: 0}, "", ""},
		{"tail more than there is", backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: 100}, "one\npartial\nfour\n", "two\n"},
		{"since", backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: -1, Since: base.Add(time.Second)}, "partial\nfour\n", "two\n"},
		{"until", backend.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: -1, Until: base.Add(time.Second)}, "one\n", "two\n"},
		{"timestamps", backend.LogsOptions{ShowStdout: true, Tail: 1, Timestamps: true}, "2024-01-02T03:04:08.000000000Z four\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs := read(id, tt.opts)
			if out != tt.out || errs != tt.err {
				t.Fatalf("stdout %q stderr %q", out, errs)
			}
		})
	}
	// With a TTY the stream is raw.
	rc, _ := s.Logs(ctx, tty, all)
	raw, _ := io.ReadAll(rc)
	rc.Close()
	if string(raw) != "one\ntwo\npartial\nfour\n" {
		t.Fatalf("tty logs %q", raw)
	}
	if _, err := s.Logs(ctx, id, backend.LogsOptions{}); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("no stream: %v", err)
	}
	never := mustCreate(t, s, "", nil, nil)
	if out, _ := read(never, all); out != "" {
		t.Fatal(out)
	}
}

func TestRecoveryWithoutShim(t *testing.T) {
	s := newUnitService(t)
	crashed := mustCreate(t, s, "crashed", nil, nil)
	exited := mustCreate(t, s, "exited", nil, nil)
	alwaysID := mustCreate(t, s, "always", nil, &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always"}})
	started := time.Now().Add(-time.Minute)
	setState(t, s, crashed, state{Status: container.StateRunning, Pid: 999999, StartedAt: started})
	setState(t, s, exited, state{Status: container.StateRunning, Pid: 999998, StartedAt: started})
	c, _ := s.lookup(exited)
	os.MkdirAll(c.bundle, 0o700)
	finished := time.Now().Add(-time.Second).Round(0)
	os.WriteFile(filepath.Join(c.bundle, shim.ExitName), []byte(shim.FormatExit(shim.Exit{Code: 42, Finished: finished})), 0o600)
	setState(t, s, alwaysID, state{Status: container.StateExited, StartedAt: started, FinishedAt: started})
	s.Close()

	// A new daemon: no shim answers for either running container.
	s2, err := NewService(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ins, _ := s2.Inspect(context.Background(), crashed)
	if ins.State.Running || ins.State.ExitCode != 255 || ins.State.Error == "" {
		t.Fatalf("crashed: %+v", ins.State)
	}
	ins, _ = s2.Inspect(context.Background(), exited)
	if ins.State.Running || ins.State.ExitCode != 42 || ins.State.FinishedAt != finished.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("exited: %+v", ins.State)
	}
}

func TestBuildHostsAndResolvConf(t *testing.T) {
	ip, gw := mustAddr("172.18.0.5"), mustAddr("172.18.0.1")
	cfg := &container.Config{Hostname: "abc", Domainname: "example.org"}
	hosts, err := buildHosts(cfg, &container.HostConfig{ExtraHosts: []string{"db:10.0.0.1", "gw:host-gateway", "v6:::1", "eq=1.2.3.4"}}, ip, gw, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"127.0.0.1\tlocalhost\n", "10.0.0.1\tdb\n", "172.18.0.1\tgw\n", "::1\tv6\n", "1.2.3.4\teq\n", "172.18.0.5\tabc.example.org abc\n"} {
		if !strings.Contains(hosts, want) {
			t.Fatalf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if _, err := buildHosts(cfg, &container.HostConfig{ExtraHosts: []string{"bad"}}, ip, gw, ""); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("bad extra host: %v", err)
	}
	hostMode, _ := buildHosts(cfg, &container.HostConfig{NetworkMode: "host"}, ip, gw, "127.0.0.1 myhost")
	if hostMode != "127.0.0.1 myhost\n" {
		t.Fatalf("host mode hosts %q", hostMode)
	}
	host := "nameserver 10.0.0.53\nsearch corp\noptions ndots:2\n"
	if got := buildResolvConf(&container.HostConfig{}, host); got != host {
		t.Fatalf("copied %q", got)
	}
	got := buildResolvConf(&container.HostConfig{DNS: []netip.Addr{mustAddr("1.1.1.1")}, DNSSearch: []string{"a.b"}}, host)
	if got != "nameserver 1.1.1.1\nsearch a.b\noptions ndots:2\n" {
		t.Fatalf("overridden %q", got)
	}
}

func TestDetachKeys(t *testing.T) {
	keys, err := parseDetachKeys("")
	if err != nil || !bytes.Equal(keys, []byte{16, 17}) {
		t.Fatalf("default keys %v %v", keys, err)
	}
	if k, _ := parseDetachKeys("ctrl-a,x"); !bytes.Equal(k, []byte{1, 'x'}) {
		t.Fatalf("%v", k)
	}
	if _, err := parseDetachKeys("ctrl-"); !errdefs.IsInvalidParameter(err) {
		t.Fatal("bad keys accepted")
	}
	var out bytes.Buffer
	detached, _ := copyStdin(&out, strings.NewReader("ab\x10c\x10\x11ignored"), []byte{16, 17})
	if !detached || out.String() != "ab\x10c" {
		t.Fatalf("detached %v out %q", detached, out.String())
	}
	out.Reset()
	detached, _ = copyStdin(&out, strings.NewReader("plain\x10"), []byte{16, 17})
	if detached || out.String() != "plain" {
		t.Fatalf("detached %v out %q (a lone prefix at EOF is dropped, as docker does)", detached, out.String())
	}
}

func TestStdWriterFramesForStdcopy(t *testing.T) {
	var buf bytes.Buffer
	lw := &lockedWriter{w: &buf}
	newStdWriter(lw, streamStdout).Write([]byte("out\n"))
	newStdWriter(lw, streamStderr).Write([]byte("err\n"))
	newStdWriter(lw, streamStdout).Write(bytes.Repeat([]byte("x"), 70000))
	var o, e bytes.Buffer
	if _, err := stdcopy.StdCopy(&o, &e, &buf); err != nil {
		t.Fatal(err)
	}
	if o.Len() != 4+70000 || e.String() != "err\n" {
		t.Fatalf("out %d err %q", o.Len(), e.String())
	}
}

func TestStatusString(t *testing.T) {
	now := time.Now()
	tests := map[string]state{
		"Created":                               {Status: container.StateCreated},
		"Up 5 minutes":                          {Status: container.StateRunning, StartedAt: now.Add(-5 * time.Minute)},
		"Up 2 seconds (Paused)":                 {Status: container.StatePaused, StartedAt: now.Add(-2 * time.Second)},
		"Exited (3) 2 hours ago":                {Status: container.StateExited, ExitCode: 3, FinishedAt: now.Add(-2 * time.Hour)},
		"Restarting (1) Less than a second ago": {Status: container.StateRestarting, ExitCode: 1, FinishedAt: now},
		"Dead":                                  {Status: container.StateDead},
	}
	for want, st := range tests {
		if got := statusString(st, now); got != want {
			t.Errorf("%+v: %q, want %q", st, got, want)
		}
	}
}

func TestPrune(t *testing.T) {
	s := newUnitService(t)
	ctx := context.Background()
	keep := mustCreate(t, s, "keep", &container.Config{Labels: map[string]string{"keep": "1"}}, nil)
	run := mustCreate(t, s, "run", nil, nil)
	gone := mustCreate(t, s, "gone", nil, nil)
	setState(t, s, run, state{Status: container.StateRunning})
	rep, err := s.Prune(ctx, backend.ListOptions{Filters: filters.NewArgs(filters.Arg("label!", "keep"))})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rep.ContainersDeleted, []string{gone}) {
		t.Fatalf("pruned %v", rep.ContainersDeleted)
	}
	for _, id := range []string{keep, run} {
		if _, err := s.Inspect(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
