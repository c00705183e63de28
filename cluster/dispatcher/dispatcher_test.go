package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

const wait = 5 * time.Second

// NodeHeader carries the fake identity in tests.
const nodeHeader = "X-Test-Node"

func fakeIdentity(r *http.Request) (string, string, error) {
	id := r.Header.Get(nodeHeader)
	if id == "" {
		return "", "", errdefs.Unauthorized("no client certificate")
	}
	return id, "swarm-worker", nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type env struct {
	t   testing.TB
	s   *store.Store
	d   *Dispatcher
	srv *httptest.Server
	clk *clock
}

func mkNode(id string, state swarm.NodeState) *store.Node {
	n := &store.Node{}
	n.ID = id
	n.Spec.Role = swarm.NodeRoleWorker
	n.Spec.Availability = swarm.NodeAvailabilityActive
	n.Status.State = state
	return n
}

func mkService(id, name string) *store.Service {
	s := &store.Service{}
	s.ID = id
	s.Spec.Name = name
	s.Spec.Labels = map[string]string{"com.docker.stack.namespace": "st"}
	s.Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	return s
}

func mkTask(id, svc, node string, slot int, state swarm.TaskState) *store.Task {
	t := &store.Task{}
	t.ID, t.ServiceID, t.NodeID, t.Slot = id, svc, node, slot
	t.Status.State = state
	t.DesiredState = swarm.TaskStateRunning
	t.Spec.ContainerSpec = &swarm.ContainerSpec{Image: "busybox"}
	return t
}

func (e *env) update(fn func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.s.Update(context.Background(), fn); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) node(id string) *store.Node {
	var n *store.Node
	e.s.View(func(rt store.ReadTx) { n = rt.GetNode(id) })
	return n
}

func (e *env) task(id string) *store.Task {
	var t *store.Task
	e.s.View(func(rt store.ReadTx) { t = rt.GetTask(id) })
	return t
}

func (e *env) waitNode(id string, st swarm.NodeState) *store.Node {
	e.t.Helper()
	testutil.Eventually(e.t, wait, func() bool { n := e.node(id); return n != nil && n.Status.State == st }, "node %s never %s", id, st)
	return e.node(id)
}

// newEnv builds a store with setup's objects, and a running dispatcher
// behind a test server.
func newEnv(t testing.TB, setup func(tx store.Tx) error, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, s: store.New(), clk: &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	e.update(func(tx store.Tx) error {
		c := &store.Cluster{}
		c.ID = "cluster"
		c.Spec.Name = "default"
		c.Spec.Dispatcher.HeartbeatPeriod = 5 * time.Second
		if err := tx.Create(c); err != nil {
			return err
		}
		if setup != nil {
			return setup(tx)
		}
		return nil
	})
	cfg := Config{Now: e.clk.Now, Identity: fakeIdentity, Tick: 10 * time.Millisecond, Log: quietLog()}
	for _, m := range mods {
		m(&cfg)
	}
	e.d = New(e.s, cfg)
	e.srv = httptest.NewServer(e.d.Handler())
	t.Cleanup(e.srv.Close)
	e.start()
	return e
}

// start runs the dispatcher until the test ends (or the returned stop).
func (e *env) start() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.d.Run(ctx); err != nil {
			e.t.Errorf("Run: %v", err)
		}
	}()
	testutil.Eventually(e.t, wait, func() bool { e.d.mu.Lock(); defer e.d.mu.Unlock(); return e.d.running }, "dispatcher not running")
	stop = func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return stop
}

func (e *env) post(nodeID, path string, body any, out any) (int, wire.Error) {
	e.t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, bytes.NewReader(b))
	if nodeID != "" {
		req.Header.Set(nodeHeader, nodeID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var we wire.Error
	if resp.StatusCode >= 300 {
		_ = json.NewDecoder(resp.Body).Decode(&we)
	} else if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			e.t.Fatal(err)
		}
	}
	return resp.StatusCode, we
}

type stream struct {
	t      testing.TB
	msgs   chan wire.Message
	cancel context.CancelFunc
	id     string
	closed chan struct{}
}

// open starts a session and returns its stream after the session message.
func (e *env) open(nodeID string, req wire.SessionRequest) (*stream, wire.Message) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, _ := json.Marshal(req)
	hr, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+wire.PathSession, bytes.NewReader(b))
	hr.Header.Set(nodeHeader, nodeID)
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		var we wire.Error
		_ = json.NewDecoder(resp.Body).Decode(&we)
		e.t.Fatalf("session: %d %+v", resp.StatusCode, we)
	}
	s := &stream{t: e.t, msgs: make(chan wire.Message, 100), cancel: cancel, closed: make(chan struct{})}
	e.t.Cleanup(cancel)
	go func() {
		defer close(s.closed)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var m wire.Message
			if dec.Decode(&m) != nil {
				return
			}
			s.msgs <- m
		}
	}()
	first := s.next()
	if first.Type != wire.MsgSession || first.SessionID == "" {
		e.t.Fatalf("first message = %+v", first)
	}
	s.id = first.SessionID
	return s, first
}

func (s *stream) next() wire.Message {
	s.t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-s.closed:
		select {
		case m := <-s.msgs:
			return m
		default:
		}
		s.t.Fatal("stream closed")
	case <-time.After(wait):
		s.t.Fatal("no message")
	}
	return wire.Message{}
}

// nextAssignments skips other messages.
func (s *stream) nextAssignments() *wire.Assignments {
	s.t.Helper()
	for {
		m := s.next()
		if m.Type == wire.MsgAssignments {
			return m.Assignments
		}
	}
}

func (s *stream) waitClosed() {
	s.t.Helper()
	select {
	case <-s.closed:
	case <-time.After(wait):
		s.t.Fatal("stream still open")
	}
}

func taskIDs(as []wire.Assignment) []string {
	var ids []string
	for _, a := range as {
		ids = append(ids, a.Task.ID)
	}
	sort.Strings(ids)
	return ids
}

func twoNodes(tx store.Tx) error {
	for _, o := range []store.Object{
		mkNode("n1", swarm.NodeStateDown), mkNode("n2", swarm.NodeStateDown),
		mkService("s1", "web"),
		mkTask("t1", "s1", "n1", 1, swarm.TaskStateAssigned),
		mkTask("t2", "s1", "n1", 2, swarm.TaskStateRunning),
		mkTask("t3", "s1", "n2", 3, swarm.TaskStateAssigned),
		mkTask("t4", "s1", "n1", 4, swarm.TaskStatePending), // not yet for the agent
	} {
		if err := tx.Create(o); err != nil {
			return err
		}
	}
	return nil
}

func TestSessionMarksReadyAndSendsFullSet(t *testing.T) {
	e := newEnv(t, twoNodes)
	desc := swarm.NodeDescription{Hostname: "h1", Resources: swarm.Resources{NanoCPUs: 2e9, MemoryBytes: 1 << 30},
		Engine: swarm.EngineDescription{EngineVersion: "28.2.2", Labels: map[string]string{"zone": "a"}}}
	s, first := e.open("n1", wire.SessionRequest{Description: desc, Addr: "10.0.0.1"})
	if first.HeartbeatPeriod != 5*time.Second || first.Node == nil || first.Node.ID != "n1" {
		t.Fatalf("session message = %+v", first)
	}
	full := s.nextAssignments()
	if !full.Full || !equal(taskIDs(full.Tasks), []string{"t1", "t2"}) {
		t.Fatalf("full set = %+v", full)
	}
	a := full.Tasks[0]
	if a.Service.Name != "web" || a.Service.Labels["com.docker.stack.namespace"] != "st" {
		t.Fatalf("service info = %+v", a.Service)
	}
	n := e.waitNode("n1", swarm.NodeStateReady)
	if n.Status.Addr != "10.0.0.1" || n.Description.Hostname != "h1" || n.Description.Engine.Labels["zone"] != "a" {
		t.Fatalf("node = %+v", n)
	}
	if e.node("n2").Status.State != swarm.NodeStateDown {
		t.Fatal("other node touched")
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIncrementalAssignments(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	s.nextAssignments()

	// The scheduler assigns t4.
	e.update(func(tx store.Tx) error {
		c := tx.GetTask("t4").Copy()
		c.Status.State = swarm.TaskStateAssigned
		return tx.Update(c)
	})
	if as := s.nextAssignments(); as.Full || !equal(taskIDs(as.Tasks), []string{"t4"}) || len(as.Removed) != 0 {
		t.Fatalf("after assign: %+v", as)
	}

	// A status-only change (what the agent itself reported) is not echoed;
	// a desired-state change is.
	e.update(func(tx store.Tx) error {
		c := tx.GetTask("t2").Copy()
		c.Status.Message = "still running"
		return tx.Update(c)
	})
	e.update(func(tx store.Tx) error {
		c := tx.GetTask("t1").Copy()
		c.DesiredState = swarm.TaskStateShutdown
		return tx.Update(c)
	})
	as := s.nextAssignments()
	if !equal(taskIDs(as.Tasks), []string{"t1"}) || as.Tasks[0].Task.DesiredState != swarm.TaskStateShutdown {
		t.Fatalf("after desired change: %+v", as)
	}

	// Deleting a task removes it; tasks of other nodes are never sent.
	e.update(func(tx store.Tx) error {
		if err := tx.Delete(store.KindTask, "t1"); err != nil {
			return err
		}
		c := tx.GetTask("t3").Copy()
		c.DesiredState = swarm.TaskStateShutdown
		return tx.Update(c)
	})
	if as := s.nextAssignments(); len(as.Tasks) != 0 || !equal(as.Removed, []string{"t1"}) {
		t.Fatalf("after delete: %+v", as)
	}
}

func TestStatusUpdates(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	upd := func(id string, st swarm.TaskState, msg string) wire.TaskStatusUpdate {
		return wire.TaskStatusUpdate{TaskID: id, Status: swarm.TaskStatus{State: st, Message: msg}}
	}
	tests := []struct {
		name    string
		node    string
		session string
		updates []wire.TaskStatusUpdate
		code    int
		wcode   wire.Code
	}{
		{"forward", "n1", s.id, []wire.TaskStatusUpdate{upd("t1", swarm.TaskStatePreparing, "preparing")}, 204, ""},
		{"another node's task", "n1", s.id, []wire.TaskStatusUpdate{upd("t3", swarm.TaskStateRunning, "x")}, 403, wire.CodeForbidden},
		{"manager state", "n1", s.id, []wire.TaskStatusUpdate{upd("t1", swarm.TaskStatePending, "x")}, 400, wire.CodeInvalid},
		{"stale session", "n1", "bogus", []wire.TaskStatusUpdate{upd("t1", swarm.TaskStateRunning, "x")}, 409, wire.CodeSessionInvalid},
		{"no identity", "", s.id, nil, 401, wire.CodeUnauthorized},
		{"unknown task is ignored", "n1", s.id, []wire.TaskStatusUpdate{upd("nope", swarm.TaskStateRunning, "x")}, 204, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, we := e.post(tc.node, wire.PathStatus, wire.StatusRequest{SessionID: tc.session, Updates: tc.updates}, nil)
			if code != tc.code || we.Code != tc.wcode {
				t.Fatalf("got %d %+v, want %d %s", code, we, tc.code, tc.wcode)
			}
		})
	}
	testutil.Eventually(t, wait, func() bool { return e.task("t1").Status.State == swarm.TaskStatePreparing }, "status not written")

	// Backwards and out-of-date reports are ignored; terminal is final.
	e.post("n1", wire.PathStatus, wire.StatusRequest{SessionID: s.id, Updates: []wire.TaskStatusUpdate{
		upd("t1", swarm.TaskStateAccepted, "late"), upd("t2", swarm.TaskStateFailed, "boom")}}, nil)
	testutil.Eventually(t, wait, func() bool { return e.task("t2").Status.State == swarm.TaskStateFailed }, "t2 not failed")
	e.post("n1", wire.PathStatus, wire.StatusRequest{SessionID: s.id, Updates: []wire.TaskStatusUpdate{
		upd("t2", swarm.TaskStateShutdown, "after the end"), upd("t1", swarm.TaskStateRunning, "started")}}, nil)
	testutil.Eventually(t, wait, func() bool { return e.task("t1").Status.State == swarm.TaskStateRunning }, "t1 not running")
	if st := e.task("t2").Status; st.State != swarm.TaskStateFailed || st.Message != "boom" {
		t.Fatalf("terminal state overwritten: %+v", st)
	}
	if e.task("t1").Status.Timestamp.IsZero() {
		t.Fatal("no timestamp")
	}
}

func TestHeartbeatExpiryAndReconnect(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	e.waitNode("n1", swarm.NodeStateReady)

	var hb wire.HeartbeatResponse
	if code, we := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s.id}, &hb); code != 200 || hb.Period != 5*time.Second {
		t.Fatalf("heartbeat: %d %+v %+v", code, we, hb)
	}
	// Within the grace period nothing happens...
	e.clk.Advance(14 * time.Second)
	if code, _ := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s.id}, &hb); code != 200 {
		t.Fatal("heartbeat refused within grace")
	}
	// ...past it (3 × 5 s without a heartbeat) the node is DOWN.
	e.clk.Advance(16 * time.Second)
	n := e.waitNode("n1", swarm.NodeStateDown)
	if n.Status.Message != "heartbeat failure" {
		t.Fatalf("message = %q", n.Status.Message)
	}
	s.waitClosed()
	if code, we := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s.id}, nil); code != 409 || we.Code != wire.CodeSessionInvalid {
		t.Fatalf("heartbeat after expiry: %d %+v", code, we)
	}
	// Reconnecting brings it back.
	s2, _ := e.open("n1", wire.SessionRequest{})
	if s2.id == s.id {
		t.Fatal("session ID reused")
	}
	e.waitNode("n1", swarm.NodeStateReady)
}

func TestBrokenSessionMarksDownQuickly(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	e.waitNode("n1", swarm.NodeStateReady)
	// The node's connection breaks (its host died) and it does not come
	// back: DOWN after SessionLossGrace, long before 3 heartbeat periods.
	s.cancel()
	var advanced time.Duration
	testutil.Eventually(t, wait, func() bool {
		if n := e.node("n1"); n != nil && n.Status.State == swarm.NodeStateDown {
			return true
		}
		e.clk.Advance(250 * time.Millisecond)
		advanced += 250 * time.Millisecond
		return false
	}, "node never DOWN")
	if advanced > 2*SessionLossGrace {
		t.Fatalf("DOWN after %v of fake time, want about %v (not 3 × 5 s)", advanced, SessionLossGrace)
	}
	// A reconnect within the grace keeps the node READY.
	s2, _ := e.open("n2", wire.SessionRequest{})
	e.waitNode("n2", swarm.NodeStateReady)
	s2.cancel()
	e.open("n2", wire.SessionRequest{})
	e.clk.Advance(3 * SessionLossGrace)
	if n := e.node("n2"); n.Status.State != swarm.NodeStateReady {
		t.Fatalf("reconnected node is %s", n.Status.State)
	}
}

func TestNewSessionReplacesOld(t *testing.T) {
	e := newEnv(t, twoNodes)
	s1, _ := e.open("n1", wire.SessionRequest{})
	s2, _ := e.open("n1", wire.SessionRequest{})
	s1.waitClosed()
	if code, _ := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s1.id}, nil); code != 409 {
		t.Fatal("old session still valid")
	}
	if code, _ := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s2.id}, nil); code != 200 {
		t.Fatal("new session invalid")
	}
}

func TestLeaderTakeoverGrace(t *testing.T) {
	e := newEnv(t, func(tx store.Tx) error {
		for _, n := range []*store.Node{mkNode("back", swarm.NodeStateReady), mkNode("gone", swarm.NodeStateReady), mkNode("dead", swarm.NodeStateDown)} {
			if err := tx.Create(n); err != nil {
				return err
			}
		}
		return nil
	})
	// A new leader does not know who is alive: UNKNOWN, not DOWN.
	e.waitNode("back", swarm.NodeStateUnknown)
	e.waitNode("gone", swarm.NodeStateUnknown)
	if e.node("dead").Status.State != swarm.NodeStateDown {
		t.Fatal("a DOWN node changed")
	}
	e.open("back", wire.SessionRequest{})
	e.waitNode("back", swarm.NodeStateReady)
	e.clk.Advance(16 * time.Second)
	n := e.waitNode("gone", swarm.NodeStateDown)
	if n.Status.Message != MsgUnknownFailure {
		t.Fatalf("message = %q", n.Status.Message)
	}
}

func TestNotLeaderRedirects(t *testing.T) {
	var mu sync.Mutex
	leader, addr := true, ""
	e := newEnv(t, twoNodes, func(c *Config) {
		c.Leader = func() (bool, string) { mu.Lock(); defer mu.Unlock(); return leader, addr }
	})
	set := func(l bool, a string) { mu.Lock(); leader, addr = l, a; mu.Unlock() }
	set(false, "10.0.0.9:2377")
	code, we := e.post("n1", wire.PathSession, wire.SessionRequest{}, nil)
	if code != http.StatusMisdirectedRequest || we.Code != wire.CodeNotLeader || we.Leader != "10.0.0.9:2377" {
		t.Fatalf("got %d %+v", code, we)
	}
	set(false, "")
	if code, we := e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{}, nil); code != 503 || we.Code != wire.CodeNoLeader {
		t.Fatalf("got %d %+v", code, we)
	}
}

func TestNotRunningUnavailable(t *testing.T) {
	d := New(store.New(), Config{Identity: fakeIdentity})
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	resp, err := http.Post(srv.URL+wire.PathSession, "application/json", bytes.NewReader([]byte("{}")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestUnknownNodeRefused(t *testing.T) {
	e := newEnv(t, twoNodes)
	code, we := e.post("ghost", wire.PathSession, wire.SessionRequest{}, nil)
	if code != 404 || we.Code != wire.CodeNodeNotFound {
		t.Fatalf("got %d %+v", code, we)
	}
}

func TestHeartbeatPeriodChange(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	s.nextAssignments()
	e.waitNode("n1", swarm.NodeStateReady)
	e.update(func(tx store.Tx) error {
		c := tx.GetCluster().Copy()
		c.Spec.Dispatcher.HeartbeatPeriod = 2 * time.Second
		return tx.Update(c)
	})
	for {
		m := s.next()
		if m.Type == wire.MsgSession {
			if m.HeartbeatPeriod != 2*time.Second || m.SessionID != s.id {
				t.Fatalf("session update = %+v", m)
			}
			break
		}
	}
	var hb wire.HeartbeatResponse
	e.post("n1", wire.PathHeartbeat, wire.HeartbeatRequest{SessionID: s.id}, &hb)
	if hb.Period != 2*time.Second {
		t.Fatalf("period = %v", hb.Period)
	}
	// The new grace is 3 × 2 s.
	e.clk.Advance(7 * time.Second)
	e.waitNode("n1", swarm.NodeStateDown)
}

func TestNodeNoticesAndRemoval(t *testing.T) {
	e := newEnv(t, func(tx store.Tx) error {
		n := mkNode("n1", swarm.NodeStateDown)
		n.CertRole = swarm.NodeRoleWorker
		return tx.Create(n)
	})
	s, _ := e.open("n1", wire.SessionRequest{})
	s.nextAssignments()
	e.update(func(tx store.Tx) error {
		c := tx.GetNode("n1").Copy()
		c.Spec.Role = swarm.NodeRoleManager
		return tx.Update(c)
	})
	var sawNode, sawNotice bool
	for !sawNode || !sawNotice {
		m := s.next()
		switch m.Type {
		case wire.MsgSession:
			sawNode = m.Node != nil && m.Node.Spec.Role == swarm.NodeRoleManager
		case wire.MsgNotice:
			if m.Notice.Kind != wire.NoticeRoleChanged || m.Notice.Role != swarm.NodeRoleManager {
				t.Fatalf("notice = %+v", m.Notice)
			}
			sawNotice = true
		}
	}
	e.update(func(tx store.Tx) error { return tx.Delete(store.KindNode, "n1") })
	for {
		m := s.next()
		if m.Type == wire.MsgNotice {
			if m.Notice.Kind != wire.NoticeNodeRemoved {
				t.Fatalf("notice = %+v", m.Notice)
			}
			break
		}
	}
	s.waitClosed()
}

func TestOrphanAfterLongDown(t *testing.T) {
	e := newEnv(t, twoNodes, func(c *Config) { c.OrphanAfter = time.Hour })
	s, _ := e.open("n1", wire.SessionRequest{})
	s.nextAssignments()
	e.waitNode("n1", swarm.NodeStateReady)
	e.clk.Advance(16 * time.Second)
	e.waitNode("n1", swarm.NodeStateDown)
	e.clk.Advance(time.Hour)
	testutil.Eventually(t, wait, func() bool { return e.task("t2").Status.State == swarm.TaskStateOrphaned }, "t2 not orphaned")
	if e.task("t1").Status.State != swarm.TaskStateOrphaned || e.task("t4").Status.State != swarm.TaskStatePending {
		t.Fatalf("t1 %s t4 %s", e.task("t1").Status.State, e.task("t4").Status.State)
	}
}

func TestManagersFromStore(t *testing.T) {
	e := newEnv(t, func(tx store.Tx) error {
		for _, n := range []*store.Node{mkNode("m1", swarm.NodeStateReady), mkNode("m2", swarm.NodeStateReady), mkNode("w", swarm.NodeStateReady)} {
			if n.ID != "w" {
				n.ManagerStatus = &swarm.ManagerStatus{Addr: "10.0.0." + n.ID[1:] + ":2377", Leader: n.ID == "m2"}
			}
			if err := tx.Create(n); err != nil {
				return err
			}
		}
		return nil
	})
	_, first := e.open("w", wire.SessionRequest{})
	if !equal(first.Managers, []string{"10.0.0.2:2377", "10.0.0.1:2377"}) {
		t.Fatalf("managers = %v", first.Managers)
	}
}

func TestAssignmentsCarryOnlyReferencedPayloads(t *testing.T) {
	e := newEnv(t, func(tx store.Tx) error {
		sec := func(id, data string) *store.Secret {
			s := &store.Secret{}
			s.ID, s.Spec.Name, s.Spec.Data = id, id, []byte(data)
			return s
		}
		cfg := &store.Config{}
		cfg.ID, cfg.Spec.Name, cfg.Spec.Data = "c1", "c1", []byte("conf")
		withRefs := func(tk *store.Task) *store.Task {
			tk.Spec.ContainerSpec.Secrets = []*swarm.SecretReference{{SecretID: "mine", SecretName: "mine", File: &swarm.SecretReferenceFileTarget{Name: "mine"}}}
			tk.Spec.ContainerSpec.Configs = []*swarm.ConfigReference{{ConfigID: "c1", ConfigName: "c1", File: &swarm.ConfigReferenceFileTarget{Name: "c1"}}}
			return tk
		}
		done := withRefs(mkTask("done", "s1", "n1", 2, swarm.TaskStateComplete))
		for _, o := range []store.Object{mkNode("n1", swarm.NodeStateDown), mkService("s1", "web"),
			sec("mine", "s3cr3t"), sec("other", "not yours"), cfg,
			withRefs(mkTask("t1", "s1", "n1", 1, swarm.TaskStateAssigned)), done} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	s, _ := e.open("n1", wire.SessionRequest{})
	full := s.nextAssignments()
	for _, a := range full.Tasks {
		switch a.Task.ID {
		case "t1":
			if len(a.Secrets) != 1 || a.Secrets[0].ID != "mine" || string(a.Secrets[0].Data) != "s3cr3t" ||
				len(a.Configs) != 1 || string(a.Configs[0].Data) != "conf" {
				t.Fatalf("t1 payloads: %+v %+v", a.Secrets, a.Configs)
			}
		case "done":
			if len(a.Secrets) != 0 || len(a.Configs) != 0 {
				t.Fatal("payloads sent for a finished task")
			}
		}
	}
}

// RUNNING and stops are written without waiting for the tick, and take
// the passing states queued before them along.
func TestUrgentStatusSkipsTheTick(t *testing.T) {
	e := newEnv(t, twoNodes, func(c *Config) { c.Tick = time.Hour })
	s, _ := e.open("n1", wire.SessionRequest{})
	post := func(id string, st swarm.TaskState) {
		t.Helper()
		code, we := e.post("n1", wire.PathStatus, wire.StatusRequest{SessionID: s.id,
			Updates: []wire.TaskStatusUpdate{{TaskID: id, Status: swarm.TaskStatus{State: st}}}}, nil)
		if code != 204 {
			t.Fatalf("status: %d %+v", code, we)
		}
	}
	post("t1", swarm.TaskStatePreparing) // waits: the tick is an hour away
	post("t2", swarm.TaskStateComplete)
	testutil.Eventually(t, wait, func() bool {
		return e.task("t2").Status.State == swarm.TaskStateComplete && e.task("t1").Status.State == swarm.TaskStatePreparing
	}, "COMPLETE (and the PREPARING queued before it) not written before the tick")
	post("t1", swarm.TaskStateRunning)
	testutil.Eventually(t, wait, func() bool { return e.task("t1").Status.State == swarm.TaskStateRunning },
		"RUNNING not written before the tick")
}
