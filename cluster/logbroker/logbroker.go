// Package logbroker serves service and task logs (`docker service logs`,
// GET /tasks/{id}/logs) on the Raft leader, as swarmkit's log broker does:
// logs are pushed, never pulled, since worker nodes listen on no port.
//
// A Logs call is a subscription: it picks the tasks that got a container,
// groups them by node, and asks each node's agent, through the leader
// dispatcher's session with that node, to publish those tasks' logs
// (dispatcher.SubscribeLogs). The agents stream the lines back on requests
// they open to the dispatcher, which hands them to this subscription; the
// lines of every node are merged, in arrival order, into one channel.
// Without follow the channel closes once every node is done; a node that
// is down, has no session or fails is reported as a LogMessage with Err
// and the others go on. With follow, tasks of the service that start
// later join in, and the channel closes when the caller's context ends.
//
// Only the leader's dispatcher has the sessions, so the Broker answers
// only on the leader (ErrNotLeader, Unavailable, elsewhere). Followers
// forward: Forward streams a Broker.Logs of the leader, served there by
// ForwardHandler (forward.go).
package logbroker

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/dispatcher"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Dispatcher is what the broker needs of the leader's dispatcher
// (*dispatcher.Dispatcher).
type Dispatcher interface {
	// Running reports whether it serves sessions (this manager leads).
	Running() bool
	SubscribeLogs(nodeID string, taskIDs []string, opts wire.LogOptions, sink dispatcher.LogSink) (cancel func(), err error)
}

// DefaultBuffer is how many messages wait for a slow consumer before
// the nodes are held back.
const DefaultBuffer = 256

// Config wires a Broker.
type Config struct {
	Store      *store.Store
	Dispatcher Dispatcher
	// Buffer is the output channel's capacity (default DefaultBuffer).
	Buffer int
	Log    *slog.Logger
}

// Broker answers service and task log requests on the leader.
type Broker struct {
	cfg Config
	log *slog.Logger
}

// New returns a broker over the leader's store and dispatcher.
func New(cfg Config) *Broker {
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Broker{cfg: cfg, log: cfg.Log.With("component", "logbroker")}
}

// ErrNotLeader is returned on a manager whose dispatcher does not run.
var ErrNotLeader = errdefs.Unavailable("service logs are served by the swarm leader, and this manager is not the leader")

// errGone tells the dispatcher the subscriber has gone.
var errGone = errors.New("log subscriber gone")

// Logs streams the logs of a service's tasks (serviceRef: ID, name or ID
// prefix) or of one task (taskRef: ID or prefix). The channel closes when
// every involved node is done (without follow) or when ctx ends; the
// caller must drain it or cancel ctx.
func (b *Broker) Logs(ctx context.Context, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error) {
	if !b.cfg.Dispatcher.Running() {
		return nil, ErrNotLeader
	}
	wopts, err := wireOptions(opts)
	if err != nil {
		return nil, err
	}
	var (
		tasks     []*store.Task
		serviceID string
		taskID    string
	)
	view := func(rt store.ReadTx) {
		if taskRef != "" {
			t := rt.GetTask(taskRef)
			if t == nil {
				if ts := rt.FindTasks(store.ByIDPrefix(taskRef)); len(ts) == 1 {
					t = ts[0]
				}
			}
			if t == nil {
				err = errdefs.NotFound("task %s not found", taskRef)
				return
			}
			tasks, serviceID, taskID = []*store.Task{t}, t.ServiceID, t.ID
			return
		}
		s := rt.GetService(serviceRef)
		if s == nil {
			if ss := rt.FindServices(store.ByName(serviceRef)); len(ss) == 1 {
				s = ss[0]
			} else if ss := rt.FindServices(store.ByIDPrefix(serviceRef)); len(ss) == 1 {
				s = ss[0]
			}
		}
		if s == nil {
			err = errdefs.NotFound("service %s not found", serviceRef)
			return
		}
		serviceID = s.ID
		tasks = rt.FindTasks(store.ByServiceID(s.ID))
	}
	var (
		events    <-chan store.Event
		stopWatch = func() {}
	)
	if opts.Follow {
		// Watching from the same snapshot: no task start is missed.
		events, stopWatch = b.cfg.Store.ViewAndWatch(view, store.KindTask)
	} else {
		b.cfg.Store.View(view)
	}
	if err != nil {
		stopWatch()
		return nil, err
	}

	sctx, cancel := context.WithCancel(ctx)
	s := &subscription{
		b: b, ctx: sctx, cancel: cancel, opts: wopts, follow: opts.Follow,
		out:     make(chan api.LogMessage, b.cfg.Buffer),
		service: map[string]string{},
		pending: 1, // held while the first streams start
	}
	byNode := map[string][]*store.Task{}
	var nodes []string
	for _, t := range tasks {
		if !eligible(t, opts.Follow) {
			continue
		}
		if byNode[t.NodeID] == nil {
			nodes = append(nodes, t.NodeID)
		}
		byNode[t.NodeID] = append(byNode[t.NodeID], t)
	}
	s.mu.Lock()
	s.stopAfter = context.AfterFunc(sctx, s.finish)
	s.mu.Unlock()
	// Started from a goroutine: reporting a down node must not wait for
	// a consumer that only reads once Logs returns.
	go func() {
		for _, n := range nodes {
			s.start(n, byNode[n])
		}
		s.streamDone() // setup over
	}()
	if opts.Follow {
		go s.watch(events, stopWatch, serviceID, taskID)
	}
	return s.out, nil
}

// wireOptions converts the API's options.
func wireOptions(o api.LogsOptions) (wire.LogOptions, error) {
	w := wire.LogOptions{Follow: o.Follow, Tail: -1, Since: o.Since, Stdout: o.Stdout, Stderr: o.Stderr}
	if !o.Stdout && !o.Stderr {
		return w, errdefs.InvalidParameter("Bad parameters: you must choose at least one stream")
	}
	if o.Tail != "" && o.Tail != "all" {
		n, err := strconv.Atoi(o.Tail)
		if err != nil || n < 0 {
			return w, errdefs.InvalidParameter("invalid value for tail: %q", o.Tail)
		}
		w.Tail = n
	}
	return w, nil
}

// eligible reports whether t has (or had) a container whose logs to read:
// with follow only once it runs, since following a container that has not
// started yet would end at once.
func eligible(t *store.Task, follow bool) bool {
	if t.NodeID == "" {
		return false
	}
	st := t.Status.State
	if st == swarm.TaskStateRejected {
		return t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != ""
	}
	if follow {
		return wire.Rank(st) >= wire.Rank(swarm.TaskStateRunning)
	}
	return wire.Rank(st) >= wire.Rank(swarm.TaskStateReady)
}

// subscription is one Logs call.
type subscription struct {
	b      *Broker
	ctx    context.Context
	cancel context.CancelFunc
	opts   wire.LogOptions
	follow bool
	out    chan api.LogMessage

	mu        sync.Mutex
	stopAfter func() bool
	service   map[string]string // task ID → service ID, of started tasks
	pending   int               // node streams not done (+1 during setup)
	cancels   []func()
	closed    bool
	senders   sync.WaitGroup // sends to out in flight
}

// start subscribes to the logs of some tasks of one node.
func (s *subscription) start(nodeID string, tasks []*store.Task) {
	ids := make([]string, 0, len(tasks))
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	for _, t := range tasks {
		if _, dup := s.service[t.ID]; dup {
			continue
		}
		s.service[t.ID] = t.ServiceID
		ids = append(ids, t.ID)
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	if err := s.subscribe(nodeID, ids, s.opts, newNodeSink(s, nodeID, ids, nil)); err != nil && !errdefs.IsNotFound(err) {
		s.fail(nodeID, err) // NotFound: the tasks were deleted since
	}
}

// subscribe asks the dispatcher for one node's part; the stream is counted
// in pending until its sink is Done.
func (s *subscription) subscribe(nodeID string, ids []string, opts wire.LogOptions, sink *nodeSink) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errGone
	}
	s.pending++
	s.mu.Unlock()
	cancel, err := s.b.cfg.Dispatcher.SubscribeLogs(nodeID, ids, opts, sink)
	if err != nil {
		s.streamDone()
		return err
	}
	s.mu.Lock()
	closed := s.closed
	if !closed {
		s.cancels = append(s.cancels, cancel)
	}
	s.mu.Unlock()
	if closed {
		cancel()
	}
	return nil
}

// Resuming a followed node whose stream was lost: how long the node has to
// come back, and the pace of the attempts.
const (
	resumeWithin   = 30 * time.Second
	resumeBackoff  = 100 * time.Millisecond
	resumeMaxPause = 2 * time.Second
)

// resume subscribes again to the tasks of a followed node whose stream was
// lost, from the last line delivered of each, once the node is back.
// Gives up (reporting cause) when the node does not come back in time.
func (s *subscription) resume(nodeID string, ids []string, last map[string]time.Time, cause error) {
	opts := s.opts
	opts.Tail = -1 // everything since the last line seen
	var since time.Time
	for i, id := range ids {
		if t := last[id]; i == 0 || t.Before(since) {
			since = t
		}
	}
	if since.After(opts.Since) {
		opts.Since = since
	}
	deadline := time.Now().Add(resumeWithin)
	pause := resumeBackoff
	for {
		t := time.NewTimer(pause)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := s.subscribe(nodeID, ids, opts, newNodeSink(s, nodeID, ids, last))
		switch {
		case err == nil, errors.Is(err, errGone), errdefs.IsNotFound(err):
			return // resumed; or nobody listens; or the tasks are gone
		case !errdefs.IsUnavailable(err) || time.Now().After(deadline):
			s.fail(nodeID, cause)
			return
		}
		pause = min(pause*2, resumeMaxPause)
	}
}

// watch subscribes tasks of the service (or the task) as they start.
func (s *subscription) watch(events <-chan store.Event, stop func(), serviceID, taskID string) {
	defer stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				s.b.log.Warn("store watch closed: tasks started from now on are not followed")
				return
			}
			t, isTask := ev.Object.(*store.Task)
			if !isTask || ev.Op == store.OpDelete || t.ServiceID != serviceID || (taskID != "" && t.ID != taskID) {
				continue
			}
			if eligible(t, true) {
				s.start(t.NodeID, []*store.Task{t})
			}
		}
	}
}

// fail reports a node's failure to the consumer, unless it is gone.
func (s *subscription) fail(nodeID string, err error) {
	if s.ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return
	}
	_ = s.send(context.Background(), api.LogMessage{NodeID: nodeID, Err: err})
}

// send delivers m unless the consumer is gone.
func (s *subscription) send(ctx context.Context, m api.LogMessage) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errGone
	}
	s.senders.Add(1)
	s.mu.Unlock()
	defer s.senders.Done()
	select {
	case s.out <- m:
		return nil
	case <-s.ctx.Done():
		return errGone
	case <-ctx.Done():
		return ctx.Err()
	}
}

// streamDone counts a node stream out; without follow the last one ends
// the subscription.
func (s *subscription) streamDone() {
	s.mu.Lock()
	s.pending--
	last := s.pending == 0 && !s.follow
	s.mu.Unlock()
	if last {
		s.finish()
	}
}

// finish ends the subscription once: the nodes are told to stop, and out
// closes after the last send.
func (s *subscription) finish() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	cancels, stopAfter := s.cancels, s.stopAfter
	s.cancels = nil
	s.mu.Unlock()
	s.cancel()
	if stopAfter != nil {
		stopAfter()
	}
	for _, c := range cancels {
		c()
	}
	s.senders.Wait()
	close(s.out)
}

// nodeSink receives one node's stream from the dispatcher.
type nodeSink struct {
	s      *subscription
	nodeID string
	ids    []string

	// from is, for a resumed stream, the newest line each task had
	// delivered before: lines not newer were sent already.
	from map[string]time.Time

	mu   sync.Mutex
	last map[string]time.Time // newest line delivered, by task
	done map[string]bool      // tasks whose logs ended
}

func newNodeSink(s *subscription, nodeID string, ids []string, from map[string]time.Time) *nodeSink {
	n := &nodeSink{s: s, nodeID: nodeID, ids: ids, from: from, last: map[string]time.Time{}, done: map[string]bool{}}
	for id, t := range from {
		n.last[id] = t
	}
	return n
}

func (n *nodeSink) Publish(ctx context.Context, b *wire.LogBatch) error {
	s := n.s
	s.mu.Lock()
	serviceID := s.service[b.TaskID]
	s.mu.Unlock()
	from, resumed := n.from[b.TaskID]
	var last time.Time
	for i := range b.Lines {
		l := &b.Lines[i]
		ts := time.Unix(0, l.Time)
		if resumed && !ts.After(from) {
			continue // sent before the stream was lost
		}
		m := api.LogMessage{NodeID: n.nodeID, ServiceID: serviceID, TaskID: b.TaskID,
			Timestamp: ts, Stderr: l.Stderr, Line: l.Data}
		if err := s.send(ctx, m); err != nil {
			return err
		}
		last = ts
	}
	n.mu.Lock()
	if last.After(n.last[b.TaskID]) {
		n.last[b.TaskID] = last
	}
	if b.Done || b.Err != "" {
		n.done[b.TaskID] = true
	}
	n.mu.Unlock()
	if b.Err != "" {
		return s.send(ctx, api.LogMessage{NodeID: n.nodeID, ServiceID: serviceID, TaskID: b.TaskID,
			Err: errdefs.System("task %s on node %s: %s", b.TaskID, n.nodeID, b.Err)})
	}
	return nil
}

// Done ends the node's part. A followed node whose stream was lost (its
// agent reconnecting) is subscribed again, from where it was, for the
// tasks whose logs had not ended.
func (n *nodeSink) Done(err error) {
	if err != nil && n.s.follow && errors.Is(err, dispatcher.ErrStreamLost) && n.s.ctx.Err() == nil {
		n.mu.Lock()
		var left []string
		for _, id := range n.ids {
			if !n.done[id] {
				left = append(left, id)
			}
		}
		last := make(map[string]time.Time, len(left))
		for _, id := range left {
			last[id] = n.last[id]
		}
		n.mu.Unlock()
		if len(left) > 0 {
			go n.s.resume(n.nodeID, left, last, err)
		}
		n.s.streamDone()
		return
	}
	if err != nil {
		n.s.fail(n.nodeID, err)
	}
	n.s.streamDone()
}
