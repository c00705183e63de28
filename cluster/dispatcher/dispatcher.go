// Package dispatcher is the leader's end of the node sessions: it hands each
// node the tasks assigned to it, records the task status the node reports,
// and tracks node liveness through heartbeats. The protocol is documented
// in package wire.
//
// Structure (no goroutine per task, one store watch):
//   - the run loop owns a cache of nodes, services and tasks-by-node built
//     from a single ViewAndWatch, and routes every task change to the
//     session of the task's node (a per-session queue);
//   - each session's HTTP handler drains its queue at most once per tick
//     and writes the batch to the stream;
//   - log subscriptions (logs.go) ride the same session queues: the log
//     broker's requests go out as session messages, the agents publish
//     on a separate streaming request;
//   - the writer goroutine batches task status reports and node status
//     changes into store.Batch writes once per tick, and expires nodes
//     whose heartbeats stopped.
package dispatcher

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Defaults, as swarmkit's.
const (
	DefaultHeartbeatPeriod = 5 * time.Second
	// GraceMultiplier: a node is DOWN after this many periods without a
	// heartbeat.
	GraceMultiplier = 3
	DefaultTick     = 100 * time.Millisecond
	// DefaultBatchDelay gathers a burst of changes into one message or
	// one store write. Short: every stage of the pipeline adds it to the
	// time a task takes to start (a rolling update pays it per batch),
	// and writes still batch while one is in flight.
	DefaultBatchDelay  = 10 * time.Millisecond
	DefaultOrphanAfter = 24 * time.Hour
)

// Messages written to Node.Status.Message.
const (
	MsgHeartbeatFailure = "heartbeat failure"
	MsgUnknownFailure   = `heartbeat failure for node in "unknown" state`
	MsgLeaderChange     = `Node moved to "unknown" state due to leadership change in cluster`
)

// Config wires the dispatcher.
type Config struct {
	// Now is the clock (tests pass a fake). Default time.Now.
	Now func() time.Time
	Log *slog.Logger
	// Leader reports whether this manager is the Raft leader and, when it
	// is not, the leader's cluster address ("" if none is known). Nil
	// means "always the leader" (single-process use).
	Leader func() (isLeader bool, leaderAddr string)
	// Identity authenticates a caller from its client certificate
	// (ca.PeerIdentity): node ID and role.
	Identity func(r *http.Request) (nodeID, role string, err error)
	// Managers lists the managers' cluster addresses (host:port), leader
	// first, for agents to fail over. Nil: taken from the store
	// (Node.ManagerStatus.Addr). Called once per tick.
	Managers func() []string
	// RegistryAuth returns the pull credentials recorded for a service
	// (X-Registry-Auth value), "" for none. Optional.
	RegistryAuth func(*store.Service) string
	// Tick paces liveness checks and manager list refreshes. Default
	// 100 ms.
	Tick time.Duration
	// BatchDelay is how long a burst of assignments (per node) or of
	// status changes is gathered before it is sent or written. Default
	// DefaultBatchDelay.
	BatchDelay time.Duration
	// OrphanAfter: tasks of a node DOWN this long become ORPHANED.
	// Default 24 h.
	OrphanAfter time.Duration
	// LogsAttachTimeout: a node asked for logs that has not started
	// publishing by then is reported as failed. Default 15 s.
	LogsAttachTimeout time.Duration
}

// Dispatcher serves node sessions while this manager leads.
type Dispatcher struct {
	s   *store.Store
	cfg Config
	log *slog.Logger

	// mu guards the live-session state shared by the run loop, the
	// handlers and the writer.
	mu       sync.Mutex
	running  bool
	runCtx   context.Context
	regs     chan *regReq
	period   time.Duration
	managers []string
	live     map[string]*liveNode // by node ID
	sessions map[string]*session  // by node ID
	down     map[string]time.Time // DOWN since, by node ID (orphaning)

	// wmu guards the pending store writes.
	wmu         sync.Mutex
	taskUpdates map[string]pendingStatus
	nodeUpdates map[string]nodeUpdate
	// wkick wakes the writer when something was queued (buffered 1).
	wkick chan struct{}

	// lmu guards the log subscriptions (logs.go), by subscription ID.
	lmu  sync.Mutex
	logs map[string]*logStream
}

type liveNode struct {
	sessionID string // "" until a session registers (leader takeover) or after it ended
	deadline  time.Time
	// everRegistered: a session was opened under this leader (the DOWN
	// message tells a dropped node from one that never came back).
	everRegistered bool
}

type pendingStatus struct {
	nodeID string
	status swarm.TaskStatus
}

type nodeUpdate struct {
	state   swarm.NodeState
	message string
	addr    string
	desc    *swarm.NodeDescription
}

// New returns a dispatcher over s. It serves nothing until Run.
func New(s *store.Store, cfg Config) *Dispatcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.BatchDelay <= 0 {
		cfg.BatchDelay = DefaultBatchDelay
	}
	if cfg.OrphanAfter <= 0 {
		cfg.OrphanAfter = DefaultOrphanAfter
	}
	if cfg.LogsAttachTimeout <= 0 {
		cfg.LogsAttachTimeout = DefaultLogsAttachTimeout
	}
	if cfg.Leader == nil {
		cfg.Leader = func() (bool, string) { return true, "" }
	}
	return &Dispatcher{
		s:           s,
		cfg:         cfg,
		log:         cfg.Log.With("component", "dispatcher"),
		taskUpdates: map[string]pendingStatus{},
		nodeUpdates: map[string]nodeUpdate{},
		wkick:       make(chan struct{}, 1),
	}
}

// ErrRunning is returned by Run when it is already running.
var ErrRunning = errdefs.Conflict("dispatcher: already running")

// Run serves sessions until ctx ends (this manager lost leadership).
func (d *Dispatcher) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := newLoop(d)
	events, stop := d.s.ViewAndWatch(l.load, store.KindTask, store.KindNode, store.KindService, store.KindCluster,
		store.KindSecret, store.KindConfig)
	defer stop()

	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return ErrRunning
	}
	d.running = true
	d.runCtx = ctx
	d.regs = make(chan *regReq)
	d.period = l.period()
	d.managers = d.computeManagers(l)
	d.live = map[string]*liveNode{}
	d.sessions = map[string]*session{}
	d.down = map[string]time.Time{}
	now := d.cfg.Now()
	grace := d.period * GraceMultiplier
	// A new leader does not know who is alive: give every node that was
	// not DOWN a grace period to reconnect before declaring it DOWN.
	for id, n := range l.nodes {
		if n.Status.State == swarm.NodeStateDown {
			d.down[id] = now
			continue
		}
		d.live[id] = &liveNode{deadline: now.Add(grace)}
		d.queueNode(id, nodeUpdate{state: swarm.NodeStateUnknown, message: MsgLeaderChange})
	}
	regs := d.regs
	d.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.writer(ctx)
	}()

	err := l.run(ctx, events, regs)

	d.mu.Lock()
	d.running = false
	for _, s := range d.sessions {
		s.close()
	}
	d.sessions, d.live = nil, nil
	d.mu.Unlock()
	cancel()
	wg.Wait()
	d.wmu.Lock()
	// Unwritten reports are dropped: agents re-report on their next
	// session (they compare their state with the assignment's).
	d.taskUpdates = map[string]pendingStatus{}
	d.nodeUpdates = map[string]nodeUpdate{}
	d.wmu.Unlock()
	return err
}

// Handler serves the dispatcher paths. Mount it on every manager: when
// this manager does not lead, it answers with the leader's address.
func (d *Dispatcher) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathSession, d.handleSession)
	mux.HandleFunc("POST "+wire.PathHeartbeat, d.handleHeartbeat)
	mux.HandleFunc("POST "+wire.PathStatus, d.handleStatus)
	mux.HandleFunc("POST "+wire.PathLogs, d.handleLogs)
	return mux
}

// Running reports whether the dispatcher serves sessions (this manager
// leads and Run has started).
func (d *Dispatcher) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// Period is the current heartbeat period (for tests and /info).
func (d *Dispatcher) Period() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.period == 0 {
		return DefaultHeartbeatPeriod
	}
	return d.period
}

// computeManagers is the manager list from Config.Managers or the cache.
func (d *Dispatcher) computeManagers(l *loop) []string {
	if d.cfg.Managers != nil {
		return d.cfg.Managers()
	}
	return l.storeManagers()
}

// queueNode records a node status change for the next write.
func (d *Dispatcher) queueNode(id string, u nodeUpdate) {
	d.wmu.Lock()
	defer d.wmu.Unlock()
	if prev, ok := d.nodeUpdates[id]; ok && u.desc == nil {
		// Keep a description reported just before (swarmkit does too).
		u.desc = prev.desc
		if u.addr == "" {
			u.addr = prev.addr
		}
	}
	d.nodeUpdates[id] = u
	d.kickWriter()
}

// kickWriter tells the writer a status change is queued.
func (d *Dispatcher) kickWriter() {
	select {
	case d.wkick <- struct{}{}:
	default:
	}
}
