package agent_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent"
	"github.com/shoal/shoal/cluster/agent/exec/exectest"
	"github.com/shoal/shoal/cluster/dispatcher"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

const wait = 10 * time.Second

const nodeHeader = "X-Test-Node"

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func identity(r *http.Request) (string, string, error) {
	if id := r.Header.Get(nodeHeader); id != "" {
		return id, "swarm-worker", nil
	}
	return "", "", errdefs.Unauthorized("no client certificate")
}

// asNode stamps the fake identity on every request, as the client
// certificate would.
type asNode struct {
	id   string
	next http.RoundTripper
}

func (a asNode) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(nodeHeader, a.id)
	return a.next.RoundTrip(r)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// manager is a store plus a dispatcher behind a test server.
type manager struct {
	t    *testing.T
	s    *store.Store
	d    *dispatcher.Dispatcher
	srv  *httptest.Server
	clk  *clock
	stop func()
	hb   atomic.Int64 // heartbeats served
}

func newManager(t *testing.T, s *store.Store, tls bool, leader func() (bool, string)) *manager {
	t.Helper()
	m := &manager{t: t, s: s, clk: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	m.d = dispatcher.New(s, dispatcher.Config{Now: m.clk.Now, Identity: identity, Leader: leader,
		Tick: 10 * time.Millisecond, Log: quietLog()})
	h := m.d.Handler()
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathHeartbeat {
			m.hb.Add(1)
		}
		h.ServeHTTP(w, r)
	})
	m.srv = httptest.NewUnstartedServer(count)
	if tls {
		m.srv.EnableHTTP2 = true
		m.srv.StartTLS()
	} else {
		m.srv.Start()
	}
	t.Cleanup(m.srv.Close)
	return m
}

func (m *manager) addr() string { return m.srv.Listener.Addr().String() }

func (m *manager) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = m.d.Run(ctx)
	}()
	m.stop = func() { cancel(); <-done }
	m.t.Cleanup(m.stop)
}

func newStore(t *testing.T, period time.Duration, objs ...store.Object) *store.Store {
	t.Helper()
	s := store.New()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		c := &store.Cluster{}
		c.ID = "cluster"
		c.Spec.Name = "default"
		c.Spec.Dispatcher.HeartbeatPeriod = period
		if err := tx.Create(c); err != nil {
			return err
		}
		for _, o := range objs {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mkNode(id string) *store.Node {
	n := &store.Node{}
	n.ID = id
	n.Spec.Role = swarm.NodeRoleWorker
	n.Status.State = swarm.NodeStateDown
	return n
}

func mkService(id, name string) *store.Service {
	s := &store.Service{}
	s.ID = id
	s.Spec.Name = name
	return s
}

func mkTask(id, svc, node string, slot int) *store.Task {
	t := &store.Task{}
	t.ID, t.ServiceID, t.NodeID, t.Slot = id, svc, node, slot
	t.Status.State = swarm.TaskStateAssigned
	t.DesiredState = swarm.TaskStateRunning
	t.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "busybox:latest"}
	return t
}

type node struct {
	a      *agent.Agent
	eng    *exectest.Engine
	img    *exectest.Images
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	notices []agent.Notice
}

func startAgent(t *testing.T, id string, client *http.Client, scheme string, managers []string, eng *exectest.Engine, img *exectest.Images, mods ...func(*agent.Config)) *node {
	t.Helper()
	n := &node{eng: eng, img: img, done: make(chan struct{})}
	client.Transport = asNode{id: id, next: client.Transport}
	cfg := agent.Config{
		NodeID:      id,
		Client:      client,
		Scheme:      scheme,
		Managers:    func() []string { return managers },
		Description: func() swarm.NodeDescription { return swarm.NodeDescription{Hostname: "host-" + id} },
		Addr:        "192.0.2.7",
		Engine:      eng,
		Images:      img,
		Log:         quietLog(),
		OnNotice:    func(nt agent.Notice) { n.mu.Lock(); n.notices = append(n.notices, nt); n.mu.Unlock() },
		BackoffMin:  10 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
		ReportDelay: 5 * time.Millisecond,
		RetryDelay:  10 * time.Millisecond,
	}
	for _, m := range mods {
		m(&cfg)
	}
	n.a = agent.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		_ = n.a.Run(ctx)
	}()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func plainClient() *http.Client {
	return &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
}

func getTask(s *store.Store, id string) *store.Task {
	var t *store.Task
	s.View(func(rt store.ReadTx) { t = rt.GetTask(id) })
	return t
}

func getNode(s *store.Store, id string) *store.Node {
	var n *store.Node
	s.View(func(rt store.ReadTx) { n = rt.GetNode(id) })
	return n
}

func waitTask(t *testing.T, s *store.Store, id string, st swarm.TaskState) *store.Task {
	t.Helper()
	testutil.Eventually(t, wait, func() bool { tk := getTask(s, id); return tk != nil && tk.Status.State == st }, "task %s never %s", id, st)
	return getTask(s, id)
}

func waitNode(t *testing.T, s *store.Store, id string, st swarm.NodeState) *store.Node {
	t.Helper()
	testutil.Eventually(t, wait, func() bool { n := getNode(s, id); return n != nil && n.Status.State == st }, "node %s never %s", id, st)
	return getNode(s, id)
}

func update(t *testing.T, s *store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func setDesired(t *testing.T, s *store.Store, id string, st swarm.TaskState) {
	update(t, s, func(tx store.Tx) error {
		c := tx.GetTask(id).Copy()
		c.DesiredState = st
		return tx.Update(c)
	})
}

// TestAgentRunsTasks drives the whole path over TLS and HTTP/2: session,
// assignments, executor, status reports.
func TestAgentRunsTasks(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"), mkService("s1", "web"), mkTask("t1", "s1", "n1", 1))
	m := newManager(t, s, true, nil)
	m.run()
	img := exectest.NewImages()
	img.Pullable("busybox:latest")
	n := startAgent(t, "n1", m.srv.Client(), "https", []string{m.addr()}, exectest.NewEngine(), img)

	nd := waitNode(t, s, "n1", swarm.NodeStateReady)
	if nd.Description.Hostname != "host-n1" || nd.Status.Addr != "192.0.2.7" {
		t.Fatalf("node = %+v", nd)
	}
	tk := waitTask(t, s, "t1", swarm.TaskStateRunning)
	c, ok := n.eng.ByTask("t1")
	if !ok || c.Name != "web.1.t1" || !c.Running || tk.Status.ContainerStatus.ContainerID != c.ID {
		t.Fatalf("container %+v, status %+v", c, tk.Status)
	}
	if n.a.Connected() != m.addr() {
		t.Fatalf("connected to %q", n.a.Connected())
	}

	// The container dies: the task fails like docker's.
	n.eng.Exit(c.ID, 1)
	tk = waitTask(t, s, "t1", swarm.TaskStateFailed)
	if tk.Status.Err != "task: non-zero exit (1)" || tk.Status.ContainerStatus.ExitCode != 1 {
		t.Fatalf("status = %+v", tk.Status)
	}

	// An incremental assignment; then shutdown, then removal.
	update(t, s, func(tx store.Tx) error { return tx.Create(mkTask("t2", "s1", "n1", 2)) })
	waitTask(t, s, "t2", swarm.TaskStateRunning)
	setDesired(t, s, "t2", swarm.TaskStateShutdown)
	waitTask(t, s, "t2", swarm.TaskStateShutdown)
	if c, _ := n.eng.ByTask("t2"); c.Running {
		t.Fatal("t2 still running")
	}
	update(t, s, func(tx store.Tx) error { return tx.Delete(store.KindTask, "t2") })
	testutil.Eventually(t, wait, func() bool { _, ok := n.eng.ByTask("t2"); return !ok }, "t2's container not removed")
	if _, ok := n.eng.ByTask("t1"); !ok {
		t.Fatal("t1's container removed while the task exists")
	}
}

func TestAgentFollowsLeaderRedirect(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"))
	leader := newManager(t, s, false, nil)
	leader.run()
	follower := newManager(t, store.New(), false, func() (bool, string) { return false, leader.addr() })
	n := startAgent(t, "n1", plainClient(), "http", []string{follower.addr()}, exectest.NewEngine(), exectest.NewImages())
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == leader.addr() }, "agent not at the leader")
	waitNode(t, s, "n1", swarm.NodeStateReady)
}

func TestAgentFailsOverToNextManager(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"))
	m := newManager(t, s, false, nil)
	m.run()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadAddr := dead.Listener.Addr().String()
	dead.Close()
	n := startAgent(t, "n1", plainClient(), "http", []string{deadAddr, m.addr()}, exectest.NewEngine(), exectest.NewImages())
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == m.addr() }, "agent never reached the live manager")
}

func TestAgentReconnectsAfterDispatcherRestart(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"), mkService("s1", "web"), mkTask("t1", "s1", "n1", 1))
	m := newManager(t, s, false, nil)
	m.run()
	n := startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages("busybox:latest"))
	waitTask(t, s, "t1", swarm.TaskStateRunning)

	// Leadership moves away and back: a new dispatcher run.
	m.stop()
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == "" }, "session survived the dispatcher")
	m.run()
	waitNode(t, s, "n1", swarm.NodeStateReady)
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == m.addr() }, "agent did not reconnect")
	update(t, s, func(tx store.Tx) error { return tx.Create(mkTask("t2", "s1", "n1", 2)) })
	waitTask(t, s, "t2", swarm.TaskStateRunning)
	if n.eng.Creates != 2 {
		t.Fatalf("creates = %d", n.eng.Creates)
	}
}

func TestAgentRestartAdoptsContainers(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"), mkService("s1", "web"), mkTask("t1", "s1", "n1", 1), mkTask("t2", "s1", "n1", 2))
	m := newManager(t, s, false, nil)
	m.run()
	eng, img := exectest.NewEngine(), exectest.NewImages("busybox:latest")
	n1 := startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, eng, img)
	waitTask(t, s, "t1", swarm.TaskStateRunning)
	waitTask(t, s, "t2", swarm.TaskStateRunning)
	n1.stop()

	// While the agent is down, t2 is deleted (its service scaled down).
	update(t, s, func(tx store.Tx) error { return tx.Delete(store.KindTask, "t2") })
	c1, _ := eng.ByTask("t1")
	if !c1.Running {
		t.Fatal("stopping the agent stopped a task")
	}

	n2 := startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, eng, img)
	testutil.Eventually(t, wait, func() bool { _, ok := eng.ByTask("t2"); return !ok }, "container of the deleted task not removed")
	testutil.Eventually(t, wait, func() bool { return n2.a.Statuses()["t1"].State == swarm.TaskStateRunning }, "t1 not adopted")
	if eng.Creates != 2 {
		t.Fatalf("creates = %d: adopted container recreated", eng.Creates)
	}
	eng.Exit(c1.ID, 0)
	waitTask(t, s, "t1", swarm.TaskStateComplete)
}

func TestAgentHeartbeatsAndRecoversFromExpiry(t *testing.T) {
	s := newStore(t, 20*time.Millisecond, mkNode("n1"))
	m := newManager(t, s, false, nil)
	m.run()
	n := startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages())
	waitNode(t, s, "n1", swarm.NodeStateReady)
	testutil.Eventually(t, wait, func() bool { return m.hb.Load() >= 3 }, "no heartbeats")

	// The dispatcher's clock jumps past the grace period: the node is
	// DOWN, its session gone; the agent opens a new one and it is READY.
	events, cancel := s.Watch(store.KindNode)
	defer cancel()
	// Heartbeats keep coming in real time, and each one refreshes the
	// deadline from the fake clock: keep jumping until an expiry check
	// falls between two heartbeats.
	stopJumping := make(chan struct{})
	jumped := make(chan struct{})
	defer func() { close(stopJumping); <-jumped }()
	go func() {
		defer close(jumped)
		for {
			m.clk.Advance(time.Hour)
			select {
			case <-stopJumping:
				return
			case <-time.After(15 * time.Millisecond):
			}
		}
	}()
	var states []swarm.NodeState
	deadline := time.After(wait)
	for len(states) < 2 || states[len(states)-1] != swarm.NodeStateReady {
		select {
		case ev := <-events:
			if st := ev.Object.(*store.Node).Status.State; len(states) == 0 || states[len(states)-1] != st {
				states = append(states, st)
			}
		case <-deadline:
			t.Fatalf("node states %v, want down then ready", states)
		}
	}
	if states[0] != swarm.NodeStateDown {
		t.Fatalf("node states %v, want down then ready", states)
	}
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == m.addr() }, "agent not reconnected")
}

func TestAgentToldNodeRemoved(t *testing.T) {
	s := newStore(t, 5*time.Second, mkNode("n1"))
	m := newManager(t, s, false, nil)
	m.run()
	n := startAgent(t, "n1", plainClient(), "http", []string{m.addr()}, exectest.NewEngine(), exectest.NewImages())
	waitNode(t, s, "n1", swarm.NodeStateReady)
	update(t, s, func(tx store.Tx) error { return tx.Delete(store.KindNode, "n1") })
	testutil.Eventually(t, wait, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, nt := range n.notices {
			if nt.Kind == wire.NoticeNodeRemoved {
				return true
			}
		}
		return false
	}, "no node-removed notice")
	testutil.Eventually(t, wait, func() bool { return n.a.Connected() == "" }, "session survived node removal")
}
