package logbroker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/agent"
	"github.com/shoal/shoal/cluster/agent/exec/exectest"
	"github.com/shoal/shoal/cluster/dispatcher"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/logbroker"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

const wait = 10 * time.Second

const nodeHeader = "X-Test-Node"

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// identity stands in for the client certificate.
func identity(r *http.Request) (string, string, error) {
	if id := r.Header.Get(nodeHeader); id != "" {
		return id, "swarm-worker", nil
	}
	return "", "", errdefs.Unauthorized("no client certificate")
}

type asNode struct {
	id   string
	next http.RoundTripper
}

func (a asNode) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(nodeHeader, a.id)
	return a.next.RoundTrip(r)
}

// base is the time of every task's first line.
var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// source is a fake LogSource: canned lines per task, then (with follow)
// whatever the test pushes until ctx ends.
type source struct {
	mu     sync.Mutex
	next   map[string]int // number of the next live line, by task
	lines  map[string][]string
	live   map[string]chan string
	opts   map[string]wire.LogOptions // last options, per task
	active int                        // TaskLogs calls in progress
	flood  map[string]bool            // endless lines, as fast as taken
}

func newSource() *source {
	return &source{next: map[string]int{}, lines: map[string][]string{}, live: map[string]chan string{}, opts: map[string]wire.LogOptions{}, flood: map[string]bool{}}
}

func (s *source) set(task string, lines ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines[task] = lines
	s.live[task] = make(chan string, 16)
}

func (s *source) push(task, line string) {
	s.mu.Lock()
	ch := s.live[task]
	s.mu.Unlock()
	ch <- line
}

func (s *source) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

func (s *source) TaskLogs(ctx context.Context, taskID string, o wire.LogOptions, fn func(agent.LogLine) error) error {
	s.mu.Lock()
	lines, ok := s.lines[taskID]
	live := s.live[taskID]
	flood := s.flood[taskID]
	s.opts[taskID] = o
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	if !ok {
		return errdefs.NotFound("no container for task %s", taskID)
	}
	emit := func(i int, l string) error {
		at := base.Add(time.Duration(i) * time.Second)
		if at.Before(o.Since) {
			return nil
		}
		return fn(agent.LogLine{Time: at, Stderr: strings.HasPrefix(l, "err"), Data: []byte(l + "\n")})
	}
	for i, l := range lines {
		if err := emit(i, l); err != nil {
			return err
		}
	}
	for i := 0; flood && ctx.Err() == nil; i++ {
		if err := emit(i, "flood"); err != nil {
			return err
		}
	}
	if !o.Follow {
		return nil
	}
	// Live lines go on numbering (and timing) where the last call
	// stopped, as a container's log does.
	for {
		select {
		case <-ctx.Done():
			return nil
		case l := <-live:
			s.mu.Lock()
			i := max(s.next[taskID], len(lines))
			s.next[taskID] = i + 1
			s.mu.Unlock()
			if err := emit(i, l); err != nil {
				return err
			}
		}
	}
}

type cluster struct {
	t   testing.TB
	s   *store.Store
	d   *dispatcher.Dispatcher
	b   *logbroker.Broker
	src map[string]*source // by node

	srv    *httptest.Server
	scheme string
	stop   map[string]func() // stops a node's agent
}

func mkTask(id, node string, slot int) *store.Task {
	t := &store.Task{}
	t.ID, t.ServiceID, t.NodeID, t.Slot = id, "svc", node, slot
	t.Status.State = swarm.TaskStateAssigned
	t.DesiredState = swarm.TaskStateRunning
	t.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "busybox:latest"}
	return t
}

// newCluster builds a store with service "web" (svc): t1, t3 on n1, t2 on
// n2, t9 on n3 (which never connects: DOWN), t0 not yet scheduled; a real
// dispatcher behind a test server (HTTP/2 over TLS when h2) and agents on
// n1 and n2 with fake engines and log sources. It returns once the tasks
// run.
func newCluster(t testing.TB, h2 bool) *cluster {
	t.Helper()
	c := &cluster{t: t, s: store.New(), src: map[string]*source{}}
	update(t, c.s, func(tx store.Tx) error {
		cl := &store.Cluster{}
		cl.ID, cl.Spec.Name = "cluster", "default"
		cl.Spec.Dispatcher.HeartbeatPeriod = 5 * time.Second
		objs := []store.Object{cl}
		for _, id := range []string{"n1", "n2", "n3"} {
			n := &store.Node{}
			n.ID = id
			n.Spec.Role = swarm.NodeRoleWorker
			n.Status.State = swarm.NodeStateDown
			objs = append(objs, n)
		}
		svc := &store.Service{}
		svc.ID, svc.Spec.Name = "svc", "web"
		objs = append(objs, svc, mkTask("t1", "n1", 1), mkTask("t2", "n2", 2), mkTask("t3", "n1", 3))
		t9 := mkTask("t9", "n3", 9)
		t9.Status.State = swarm.TaskStateRunning
		t0 := mkTask("t0", "", 4)
		t0.Status.State = swarm.TaskStatePending
		objs = append(objs, t9, t0)
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	c.d = dispatcher.New(c.s, dispatcher.Config{Identity: identity, Tick: 10 * time.Millisecond, Log: quietLog()})
	srv := httptest.NewUnstartedServer(c.d.Handler())
	scheme := "http"
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		scheme = "https"
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = c.d.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })

	c.srv, c.scheme, c.stop = srv, scheme, map[string]func(){}
	for _, id := range []string{"n1", "n2"} {
		c.src[id] = newSource()
		c.startAgent(id)
	}
	c.src["n1"].set("t1", "one", "err two")
	c.src["n1"].set("t3", "three")
	c.src["n2"].set("t2", "four", "five")
	c.src["n2"].set("t4", "late")
	for _, id := range []string{"t1", "t2", "t3"} {
		c.waitRunning(id)
	}
	c.b = logbroker.New(logbroker.Config{Store: c.s, Dispatcher: c.d, Log: quietLog()})
	return c
}

// startAgent runs node id's agent until the test ends or c.stop[id].
func (c *cluster) startAgent(id string) {
	client := &http.Client{Transport: asNode{id: id, next: c.srv.Client().Transport}}
	a := agent.New(agent.Config{
		NodeID:      id,
		Client:      client,
		Scheme:      c.scheme,
		Managers:    func() []string { return []string{c.srv.Listener.Addr().String()} },
		Engine:      exectest.NewEngine(),
		Images:      exectest.NewImages("busybox:latest"),
		Logs:        c.src[id],
		Log:         quietLog(),
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
		ReportDelay: 5 * time.Millisecond,
		RetryDelay:  10 * time.Millisecond,
	})
	actx, acancel := context.WithCancel(context.Background())
	adone := make(chan struct{})
	go func() {
		defer close(adone)
		_ = a.Run(actx)
	}()
	var once sync.Once
	stop := func() { once.Do(func() { acancel(); <-adone }) }
	c.stop[id] = stop
	c.t.Cleanup(stop)
}

func update(t testing.TB, s *store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) waitRunning(id string) {
	c.t.Helper()
	testutil.Eventually(c.t, wait, func() bool {
		var st swarm.TaskState
		c.s.View(func(rt store.ReadTx) {
			if t := rt.GetTask(id); t != nil {
				st = t.Status.State
			}
		})
		return st == swarm.TaskStateRunning
	}, "task %s never running", id)
}

// format renders a message for comparisons.
func format(m api.LogMessage) string {
	if m.Err != nil {
		return m.NodeID + " error"
	}
	stream := "out"
	if m.Stderr {
		stream = "err"
	}
	return fmt.Sprintf("%s/%s/%s %s %s %s", m.NodeID, m.ServiceID, m.TaskID, m.Timestamp.UTC().Format(time.TimeOnly), stream, strings.TrimSuffix(string(m.Line), "\n"))
}

// next reads n messages (sorted: nodes interleave freely).
func next(t *testing.T, ch <-chan api.LogMessage, n int) ([]string, []api.LogMessage) {
	t.Helper()
	var got []string
	var msgs []api.LogMessage
	timeout := time.After(wait)
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("stream closed after %q, want %d messages", got, n)
			}
			got = append(got, format(m))
			msgs = append(msgs, m)
		case <-timeout:
			t.Fatalf("timed out with %q", got)
		}
	}
	slices.Sort(got)
	return got, msgs
}

func closed(t *testing.T, ch <-chan api.LogMessage) {
	t.Helper()
	select {
	case m, ok := <-ch:
		if ok {
			t.Fatalf("unexpected message %s", format(m))
		}
	case <-time.After(wait):
		t.Fatal("stream not closed")
	}
}

var all = api.LogsOptions{Tail: "all", Stdout: true, Stderr: true}

func TestServiceLogsFromEveryNode(t *testing.T) {
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"http1", false}, {"h2", true}} {
		t.Run(proto.name, func(t *testing.T) {
			c := newCluster(t, proto.h2)
			ch, err := c.b.Logs(context.Background(), "web", "", all)
			if err != nil {
				t.Fatal(err)
			}
			got, msgs := next(t, ch, 6)
			want := []string{
				"n1/svc/t1 12:00:00 out one",
				"n1/svc/t1 12:00:01 err err two",
				"n1/svc/t3 12:00:00 out three",
				"n2/svc/t2 12:00:00 out four",
				"n2/svc/t2 12:00:01 out five",
				"n3 error",
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got  %q\nwant %q", got, want)
			}
			closed(t, ch)
			for _, m := range msgs {
				if m.Err != nil && (!errdefs.IsUnavailable(m.Err) || !strings.Contains(m.Err.Error(), "n3 is down")) {
					t.Fatalf("node error: %v", m.Err)
				}
			}
			// Lines of one task keep their order.
			var t1 []string
			for _, m := range msgs {
				if m.TaskID == "t1" {
					t1 = append(t1, string(m.Line))
				}
			}
			if !slices.Equal(t1, []string{"one\n", "err two\n"}) {
				t.Fatalf("t1 out of order: %q", t1)
			}
		})
	}
}

func TestOptionsAndTaskLogs(t *testing.T) {
	c := newCluster(t, false)
	since := base.Add(-time.Hour)
	ch, err := c.b.Logs(context.Background(), "", "t2", api.LogsOptions{Tail: "2", Since: since, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := next(t, ch, 2)
	if !slices.Equal(got, []string{"n2/svc/t2 12:00:00 out four", "n2/svc/t2 12:00:01 out five"}) {
		t.Fatalf("task logs %q", got)
	}
	closed(t, ch)
	c.src["n2"].mu.Lock()
	o := c.src["n2"].opts["t2"]
	c.src["n2"].mu.Unlock()
	if o.Tail != 2 || !o.Since.Equal(since) || o.Stdout || !o.Stderr || o.Follow {
		t.Fatalf("options at the node: %+v", o)
	}
	if _, ok := c.src["n1"].opts["t1"]; ok {
		t.Fatal("task logs asked another task's node")
	}

	tests := []struct {
		name          string
		service, task string
		opts          api.LogsOptions
		check         func(error) bool
	}{
		{"unknown service", "nope", "", all, errdefs.IsNotFound},
		{"unknown task", "", "nope", all, errdefs.IsNotFound},
		{"bad tail", "web", "", api.LogsOptions{Tail: "x", Stdout: true}, errdefs.IsInvalidParameter},
		{"no stream", "web", "", api.LogsOptions{Tail: "all"}, errdefs.IsInvalidParameter},
	}
	for _, tc := range tests {
		if _, err := c.b.Logs(context.Background(), tc.service, tc.task, tc.opts); !tc.check(err) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// A task that never got a container has nothing to show.
	ch, err = c.b.Logs(context.Background(), "", "t0", all)
	if err != nil {
		t.Fatal(err)
	}
	closed(t, ch)
}

func TestFollowAndCancel(t *testing.T) {
	c := newCluster(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.b.Logs(ctx, "svc", "", api.LogsOptions{Follow: true, Tail: "all", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 6)
	// Live lines of a running task, then a task started later.
	c.src["n1"].push("t3", "more")
	if got, _ := next(t, ch, 1); got[0] != "n1/svc/t3 12:00:01 out more" {
		t.Fatalf("live line %q", got)
	}
	update(t, c.s, func(tx store.Tx) error { return tx.Create(mkTask("t4", "n2", 4)) })
	if got, _ := next(t, ch, 1); got[0] != "n2/svc/t4 12:00:00 out late" {
		t.Fatalf("new task %q", got)
	}
	c.src["n2"].push("t4", "later")
	if got, _ := next(t, ch, 1); got[0] != "n2/svc/t4 12:00:01 out later" {
		t.Fatalf("new task, live %q", got)
	}
	if c.src["n1"].running() != 2 || c.src["n2"].running() != 2 {
		t.Fatalf("publishing: n1 %d n2 %d", c.src["n1"].running(), c.src["n2"].running())
	}
	// The consumer goes: every agent stops publishing.
	cancel()
	for range ch {
	}
	testutil.Eventually(t, wait, func() bool { return c.src["n1"].running() == 0 && c.src["n2"].running() == 0 },
		"agents still publishing: n1 %d n2 %d", c.src["n1"].running(), c.src["n2"].running())
}

// Following survives a node's agent reconnecting: its tasks are
// subscribed again from their last line, nothing is repeated or reported
// as an error, and the other node's stream goes on.
func TestFollowResumesAfterReconnect(t *testing.T) {
	c := newCluster(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := c.b.Logs(ctx, "svc", "", api.LogsOptions{Follow: true, Tail: "all", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 6)
	c.src["n1"].push("t3", "more")
	if got, _ := next(t, ch, 1); got[0] != "n1/svc/t3 12:00:01 out more" {
		t.Fatalf("live line %q", got)
	}

	c.stop["n1"]() // the agent's session and log stream break
	c.startAgent("n1")
	c.src["n1"].push("t3", "again")
	c.src["n2"].push("t2", "meanwhile")
	got, _ := next(t, ch, 2)
	want := []string{"n1/svc/t3 12:00:02 out again", "n2/svc/t2 12:00:02 out meanwhile"}
	if !slices.Equal(got, want) {
		t.Fatalf("after the reconnect: %q, want %q", got, want)
	}
	select {
	case m := <-ch:
		t.Fatalf("unexpected message after the reconnect: %q", format(m))
	case <-time.After(200 * time.Millisecond):
	}
}

// A consumer that stops reading holds back a node that has endless logs
// (buffers are bounded all the way), and cancelling releases it.
func TestSlowConsumerBounded(t *testing.T) {
	c := newCluster(t, false)
	c.src["n1"].mu.Lock()
	c.src["n1"].flood["t1"] = true
	c.src["n1"].mu.Unlock()
	c.b = logbroker.New(logbroker.Config{Store: c.s, Dispatcher: c.d, Buffer: 1, Log: quietLog()})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := c.b.Logs(ctx, "", "t1", all)
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 3)
	if c.src["n1"].running() != 1 {
		t.Fatal("the flood ended")
	}
	cancel()
	for range ch {
	}
	testutil.Eventually(t, wait, func() bool { return c.src["n1"].running() == 0 }, "agent still publishing")
}

func TestNotLeader(t *testing.T) {
	s := store.New()
	d := dispatcher.New(s, dispatcher.Config{Identity: identity, Log: quietLog()})
	b := logbroker.New(logbroker.Config{Store: s, Dispatcher: d})
	if _, err := b.Logs(context.Background(), "web", "", all); !errdefs.IsUnavailable(err) {
		t.Fatalf("got %v", err)
	}
}

// A follower forwards to the leader's broker; messages and error kinds
// come back intact.
func TestForwardFromFollower(t *testing.T) {
	c := newCluster(t, true)
	var leader *logbroker.Broker
	mux := http.NewServeMux()
	mux.Handle("POST "+logbroker.PathForward, logbroker.ForwardHandler(func() *logbroker.Broker { return leader }))
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	if _, err := logbroker.Forward(context.Background(), srv.Client(), addr, "web", "", all); !errdefs.IsUnavailable(err) {
		t.Fatalf("no leader broker: %v", err)
	}
	leader = c.b
	if _, err := logbroker.Forward(context.Background(), srv.Client(), addr, "nope", "", all); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown service: %v", err)
	}
	ch, err := logbroker.Forward(context.Background(), srv.Client(), addr, "web", "", all)
	if err != nil {
		t.Fatal(err)
	}
	got, msgs := next(t, ch, 6)
	if got[0] != "n1/svc/t1 12:00:00 out one" || got[1] != "n1/svc/t1 12:00:01 err err two" || got[5] != "n3 error" {
		t.Fatalf("forwarded %q", got)
	}
	for _, m := range msgs {
		if m.Err != nil && !errdefs.IsUnavailable(m.Err) {
			t.Fatalf("node error lost its kind: %v", m.Err)
		}
	}
	closed(t, ch)

	// Following through the follower; the follower's consumer leaving
	// stops the agents.
	ctx, cancel := context.WithCancel(context.Background())
	ch, err = logbroker.Forward(ctx, srv.Client(), addr, "web", "", api.LogsOptions{Follow: true, Tail: "all", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch, 6)
	c.src["n2"].push("t2", "six")
	if got, _ := next(t, ch, 1); got[0] != "n2/svc/t2 12:00:02 out six" {
		t.Fatalf("live line %q", got)
	}
	cancel()
	for range ch {
	}
	testutil.Eventually(t, wait, func() bool { return c.src["n1"].running() == 0 && c.src["n2"].running() == 0 }, "agents still publishing")
}
