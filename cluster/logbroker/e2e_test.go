package logbroker_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/agent"
	"github.com/shoal/shoal/cluster/dispatcher"
	"github.com/shoal/shoal/cluster/logbroker"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/demo"
	enginectr "github.com/shoal/shoal/engine/container"
	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/engine/runtime/runtimetest"
	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/network/bridge"
)

func TestMain(m *testing.M) {
	code := m.Run()
	runtimetest.RemoveShim()
	os.Exit(code)
}

// noNet gives containers an empty network namespace (runc makes it).
type noNet struct{}

func (noNet) Attach(context.Context, bridge.AttachRequest) (*bridge.Attachment, error) {
	return &bridge.Attachment{}, nil
}
func (noNet) Detach(context.Context, string) error { return nil }

// realEngine opens a real image store holding demo/busybox and a real
// container service under a fresh directory and cgroup ("shlg" prefix),
// all removed by the test's cleanup.
func realEngine(t *testing.T) (*enginectr.Service, *image.Store) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc", "busybox")
	dir, err := os.MkdirTemp("", "shlg")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	cg := "shlg" + hex.EncodeToString(b)
	var ctrs *enginectr.Service
	t.Cleanup(func() {
		if ctrs != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			list, _ := ctrs.List(ctx, backend.ListOptions{All: true})
			for _, c := range list {
				_ = ctrs.Remove(ctx, c.ID, true, true)
			}
			cancel()
			_ = ctrs.Close()
		}
		if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			var mounts []string
			for _, l := range strings.Split(string(mi), "\n") {
				if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
					mounts = append(mounts, f[4])
				}
			}
			sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
			for _, m := range mounts {
				_ = syscall.Unmount(m, syscall.MNT_DETACH)
			}
		}
		runtimetest.RemoveCgroup(cg)
		os.RemoveAll(dir)
	})
	images, err := image.NewStore(image.Config{Root: filepath.Join(dir, "image"), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	if err := demo.WriteTar(&tarball, "demo/busybox"); err != nil {
		t.Skipf("demo image: %v", err)
	}
	if _, err := images.Load(context.Background(), &tarball); err != nil {
		t.Fatal(err)
	}
	ctrs, err = enginectr.NewService(enginectr.Config{
		Root:         filepath.Join(dir, "containers"),
		ExecRoot:     filepath.Join(dir, "exec"),
		CgroupParent: cg,
		Images:       images,
		Network:      noNet{},
		ShimPath:     runtimetest.BuildShim(t),
		Log:          quietLog(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return ctrs, images
}

// TestE2EServiceLogsRealEngine runs busybox tasks through a real agent and
// engine, and reads their logs through the dispatcher and the broker: the
// real LogSource finds each task's container by its label and reads its
// json-file log with tail, since and follow.
func TestE2EServiceLogsRealEngine(t *testing.T) {
	ctrs, images := realEngine(t)
	s := store.New()
	task := func(id string, slot int, script string) *store.Task {
		tk := mkTask(id, "n1", slot)
		tk.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "demo/busybox:latest", Command: []string{"sh", "-c", script},
			StopGracePeriod: ptr(time.Second)}
		return tk
	}
	update(t, s, func(tx store.Tx) error {
		cl := &store.Cluster{}
		cl.ID, cl.Spec.Name = "cluster", "default"
		n := &store.Node{}
		n.ID, n.Spec.Role, n.Status.State = "n1", swarm.NodeRoleWorker, swarm.NodeStateDown
		svc := &store.Service{}
		svc.ID, svc.Spec.Name = "svc", "web"
		for _, o := range []store.Object{cl, n, svc,
			task("printer", 1, `for i in 1 2 3; do echo line $i; done; echo oops >&2; sleep 1000`),
			task("ticker", 2, `i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done`),
		} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	d := dispatcher.New(s, dispatcher.Config{Identity: identity, Tick: 10 * time.Millisecond, Log: quietLog()})
	srv := httptest.NewUnstartedServer(d.Handler())
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dctx, dcancel := context.WithCancel(context.Background())
	ddone := make(chan struct{})
	go func() { defer close(ddone); _ = d.Run(dctx) }()
	t.Cleanup(func() { dcancel(); <-ddone })

	a := agent.New(agent.Config{
		NodeID:     "n1",
		Client:     &http.Client{Transport: asNode{id: "n1", next: srv.Client().Transport}},
		Managers:   func() []string { return []string{srv.Listener.Addr().String()} },
		Engine:     agent.NewEngine(ctrs),
		Images:     agent.NewImages(images),
		Logs:       agent.NewLogSource(ctrs),
		Log:        quietLog(),
		BackoffMin: 10 * time.Millisecond,
		BackoffMax: 50 * time.Millisecond,
		RetryDelay: 50 * time.Millisecond,
	})
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() { defer close(adone); _ = a.Run(actx) }()
	t.Cleanup(func() { acancel(); <-adone })

	c := &cluster{t: t, s: s}
	c.waitRunning("printer")
	c.waitRunning("ticker")
	b := logbroker.New(logbroker.Config{Store: s, Dispatcher: d, Log: quietLog()})

	// The printer's four lines are in its log once it sleeps.
	started := time.Now()
	read := func(opts api.LogsOptions) []string {
		t.Helper()
		ch, err := b.Logs(context.Background(), "", "printer", opts)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range ch {
			if m.Err != nil {
				t.Fatalf("error message: %v", m.Err)
			}
			if m.Timestamp.IsZero() || m.Timestamp.After(time.Now()) || m.NodeID != "n1" || m.ServiceID != "svc" {
				t.Fatalf("message %+v", m)
			}
			stream := "out"
			if m.Stderr {
				stream = "err"
			}
			got = append(got, stream+" "+strings.TrimSuffix(string(m.Line), "\n"))
		}
		return got
	}
	testutil.Eventually(t, wait, func() bool { return len(read(all)) == 4 }, "printer's log never complete")
	// Each stream keeps its order; how stdout and stderr interleave in
	// the log is up to the engine.
	full := read(all)
	var outs []string
	for _, l := range full {
		if strings.HasPrefix(l, "out ") {
			outs = append(outs, l)
		}
	}
	if fmt.Sprint(outs) != fmt.Sprint([]string{"out line 1", "out line 2", "out line 3"}) || !slices.Contains(full, "err oops") {
		t.Fatalf("printer's log: %q", full)
	}
	tests := []struct {
		name string
		opts api.LogsOptions
		want []string
	}{
		{"tail", api.LogsOptions{Tail: "2", Stdout: true, Stderr: true}, full[2:]},
		{"stdout only", api.LogsOptions{Tail: "all", Stdout: true}, outs},
		{"stderr only", api.LogsOptions{Tail: "all", Stderr: true}, []string{"err oops"}},
		{"since later", api.LogsOptions{Tail: "all", Since: started.Add(time.Minute), Stdout: true, Stderr: true}, nil},
	}
	for _, tc := range tests {
		if got := read(tc.opts); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	last := strings.SplitN(full[3], " ", 2)[1] + "\n"

	// Follow the whole service: the ticker's new lines keep coming.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Logs(ctx, "web", "", api.LogsOptions{Follow: true, Tail: "1", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	ticks := map[string]bool{}
	sawPrinter := false
	timeout := time.After(30 * time.Second)
	for len(ticks) < 4 || !sawPrinter {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("follow stream ended")
			}
			if m.Err != nil {
				t.Fatalf("error message: %v", m.Err)
			}
			switch m.TaskID {
			case "ticker":
				ticks[string(m.Line)] = true
			case "printer":
				if string(m.Line) != last || sawPrinter {
					t.Fatalf("printer with tail 1: %q", m.Line)
				}
				sawPrinter = true
			}
		case <-timeout:
			t.Fatalf("follow: ticks %v, printer %v", ticks, sawPrinter)
		}
	}
	cancel()
	for range ch {
	}
}

func ptr[T any](v T) *T { return &v }
