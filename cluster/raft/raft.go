// Package raft replicates the cluster store between managers with
// hashicorp/raft: log and stable store in bolt (raft.db), file snapshots,
// the store as the FSM (committed entries applied in batches), and the
// store.Proposer that writes through the log on the leader.
//
// Writes on a node that is not the leader fail at once with an Unavailable
// error (NotLeaderError when a leader is known, so callers can forward;
// docker's "does not have a leader" text otherwise): nothing waits for a
// quorum that is not there.
package raft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	hraft "github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// NoLeaderMessage is docker's text for a write without a Raft leader.
const NoLeaderMessage = "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."

// ErrNoLeader is returned for writes when no leader is known.
var ErrNoLeader = errdefs.Unavailable(NoLeaderMessage)

// NotLeaderError is returned for writes on a follower that knows the leader.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("this manager is not the leader (the leader is %s at %s)", e.LeaderID, e.LeaderAddr)
}

// Is makes a NotLeaderError match hashicorp's ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == hraft.ErrNotLeader }

// Retryable reports errors of a write that was not applied because
// leadership is moving: retrying on the (next) leader is safe.
func Retryable(err error) bool {
	return errors.Is(err, hraft.ErrNotLeader) || errors.Is(err, hraft.ErrLeadershipTransferInProgress)
}

// IsNotLeader reports a NotLeaderError and returns it.
func IsNotLeader(err error) (*NotLeaderError, bool) {
	var e *NotLeaderError
	ok := errors.As(err, &e)
	return e, ok
}

// Timing are the Raft timeouts. Heartbeat is how long a follower waits for
// the leader before starting an election (randomized up to 2x), Election
// the same for candidates, LeaderLease how long a leader keeps leading
// without hearing from a quorum.
type Timing struct {
	Heartbeat   time.Duration
	Election    time.Duration
	LeaderLease time.Duration
	Commit      time.Duration
}

// DefaultTiming: a follower that hears nothing for 0.8 s (checked every
// 0.8-1.6 s) starts an election, so a dead leader is replaced in ~1-2 s
// (BenchmarkFailover in package cluster: mean 1.5 s, max 2.1 s from the
// stop to a write accepted); no spurious elections were seen with both
// cores saturated. The lease makes a leader cut off from its quorum step
// down within 0.5 s, failing its pending writes.
func DefaultTiming() Timing {
	return Timing{
		Heartbeat:   800 * time.Millisecond,
		Election:    800 * time.Millisecond,
		LeaderLease: 500 * time.Millisecond,
		Commit:      20 * time.Millisecond,
	}
}

// Config configures a Node.
type Config struct {
	ID        string // the node ID
	Transport hraft.Transport
	// Dir holds raft.db and snapshots/; empty keeps everything in memory
	// (tests).
	Dir   string
	Store *store.Store
	// Bootstrap makes a new single-voter cluster (swarm init).
	Bootstrap bool
	// ForceNewCluster rewrites the local state into a single-voter
	// configuration of this node (swarm init --force-new-cluster).
	ForceNewCluster bool
	Timing          Timing
	// SnapshotThreshold is the number of entries between snapshots
	// (Spec.Raft.SnapshotInterval); TrailingLogs how many entries stay
	// after one for slow followers.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	Log               *slog.Logger
}

// Node is this manager's Raft member.
type Node struct {
	cfg    Config
	log    *slog.Logger
	r      *hraft.Raft
	fsm    *fsm
	bolt   *raftboltdb.BoltStore
	stable hraft.StableStore

	batch   *batcher
	leader  atomic.Bool
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every leadership change
	// readyFor is the changed channel of the leadership whose read
	// barrier passed (ReadBarrier); rmu runs one barrier at a time.
	readyFor chan struct{}
	rmu      sync.Mutex
	done     chan struct{}
	wg       sync.WaitGroup
	shutOnce sync.Once
}

// keyApplied records (lazily) how far this node has applied the log, so a
// restart can rebuild the store from the local log before a quorum exists.
var keyApplied = []byte("shoal_applied_index")

const (
	snapshotsRetained = 2
	logCacheSize      = 4096
	minTrailingLogs   = 4096
)

// New opens (or creates) the Raft state and starts the member.
func New(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	n := &Node{cfg: cfg, log: cfg.Log, fsm: &fsm{s: cfg.Store}, changed: make(chan struct{}), done: make(chan struct{})}

	var (
		logs  hraft.LogStore
		snaps hraft.SnapshotStore
		err   error
	)
	hlog := newHCLogger(cfg.Log)
	if cfg.Dir == "" {
		mem := hraft.NewInmemStore()
		logs, n.stable, snaps = mem, mem, hraft.NewInmemSnapshotStore()
	} else {
		if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
			return nil, err
		}
		n.bolt, err = raftboltdb.New(raftboltdb.Options{
			Path: filepath.Join(cfg.Dir, "raft.db"),
			// The log is append-mostly: rebuilding the freelist at open
			// is cheaper than writing it with every commit.
			BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
		})
		if err != nil {
			return nil, fmt.Errorf("raft: open log: %w", err)
		}
		n.stable = n.bolt
		logs, err = hraft.NewLogCache(logCacheSize, n.bolt)
		if err != nil {
			n.bolt.Close()
			return nil, err
		}
		snaps, err = hraft.NewFileSnapshotStoreWithLogger(cfg.Dir, snapshotsRetained, hlog)
		if err != nil {
			n.bolt.Close()
			return nil, fmt.Errorf("raft: snapshots: %w", err)
		}
	}
	closeAll := func() {
		if n.bolt != nil {
			n.bolt.Close()
		}
	}

	notify := make(chan bool, 8)
	rc := hraft.DefaultConfig()
	rc.LocalID = hraft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.Timing.Heartbeat
	rc.ElectionTimeout = cfg.Timing.Election
	rc.LeaderLeaseTimeout = cfg.Timing.LeaderLease
	rc.CommitTimeout = cfg.Timing.Commit
	rc.MaxAppendEntries = 1024
	rc.BatchApplyCh = true
	rc.SnapshotInterval = 5 * time.Second
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	if rc.SnapshotThreshold == 0 {
		rc.SnapshotThreshold = 10000
	}
	rc.TrailingLogs = max(cfg.TrailingLogs, minTrailingLogs)
	rc.NotifyCh = notify
	rc.Logger = hlog
	rc.NoLegacyTelemetry = true
	// Raft restores the snapshot itself unless we already rebuilt the
	// store from snapshot + local log (replayLocal).
	rc.NoSnapshotRestoreOnStart = true

	has, err := hraft.HasExistingState(logs, n.stable, snaps)
	if err != nil {
		closeAll()
		return nil, err
	}
	switch {
	case cfg.ForceNewCluster:
		if !has {
			closeAll()
			return nil, errdefs.InvalidParameter("no swarm state to recover on this node")
		}
		conf := hraft.Configuration{Servers: []hraft.Server{{
			Suffrage: hraft.Voter, ID: rc.LocalID, Address: cfg.Transport.LocalAddr(),
		}}}
		// RecoverCluster needs a throw-away FSM.
		scratch := &fsm{s: store.New()}
		if err := hraft.RecoverCluster(rc, scratch, logs, n.stable, snaps, cfg.Transport, conf); err != nil {
			closeAll()
			return nil, fmt.Errorf("raft: force new cluster: %w", err)
		}
	case cfg.Bootstrap && !has:
		conf := hraft.Configuration{Servers: []hraft.Server{{
			Suffrage: hraft.Voter, ID: rc.LocalID, Address: cfg.Transport.LocalAddr(),
		}}}
		if err := hraft.BootstrapCluster(rc, logs, n.stable, snaps, cfg.Transport, conf); err != nil {
			closeAll()
			return nil, fmt.Errorf("raft: bootstrap: %w", err)
		}
	}
	if err := n.replayLocal(logs, snaps); err != nil {
		closeAll()
		return nil, err
	}
	n.r, err = hraft.NewRaft(rc, n.fsm, logs, n.stable, snaps, cfg.Transport)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	n.batch = newBatcher(n)
	n.wg.Add(2)
	go n.watchLeadership(notify)
	go n.persistApplied()
	return n, nil
}

// replayLocal rebuilds the store from the newest snapshot plus the local log
// entries known to be committed (up to the recorded applied index). Raft
// does not do this at start-up: it applies entries only once a leader
// confirms the commit index, which needs a quorum. With it, a manager that
// restarts alone still serves the last state it knew.
func (n *Node) replayLocal(logs hraft.LogStore, snaps hraft.SnapshotStore) error {
	metas, err := snaps.List()
	if err != nil {
		return err
	}
	var from uint64
	for _, m := range metas {
		_, rc, err := snaps.Open(m.ID)
		if err != nil {
			continue
		}
		err = n.cfg.Store.Restore(rc)
		rc.Close()
		if err != nil {
			n.log.Warn("raft: snapshot unreadable, trying an older one", "id", m.ID, "err", err)
			continue
		}
		from = m.Index
		break
	}
	if len(metas) > 0 && from == 0 {
		return fmt.Errorf("raft: no snapshot could be restored")
	}
	applied, err := n.stable.GetUint64(keyApplied)
	if err != nil && !isNotFound(err) {
		return err
	}
	last, err := logs.LastIndex()
	if err != nil {
		return err
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return err
	}
	end := min(applied, last)
	start := max(from+1, first)
	var batch []*hraft.Log
	for i := start; i <= end && i > 0; i++ {
		l := new(hraft.Log)
		if err := logs.GetLog(i, l); err != nil {
			return fmt.Errorf("raft: replay entry %d: %w", i, err)
		}
		batch = append(batch, l)
		if len(batch) == 1024 {
			n.fsm.ApplyBatch(batch)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		n.fsm.ApplyBatch(batch)
	}
	if end >= start && end > 0 {
		n.log.Info("raft: store rebuilt from local log", "snapshot", from, "applied", end)
	}
	return nil
}

func isNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "not found")
}

// persistApplied records the applied index every so often. It may lag: a
// restart then replays a little less and Raft applies the rest.
func (n *Node) persistApplied() {
	defer n.wg.Done()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	var last uint64
	save := func() {
		if a := n.fsm.applied.Load(); a != last {
			if err := n.stable.SetUint64(keyApplied, a); err == nil {
				last = a
			}
		}
	}
	for {
		select {
		case <-n.done:
			save()
			return
		case <-t.C:
			save()
		}
	}
}

func (n *Node) watchLeadership(ch <-chan bool) {
	defer n.wg.Done()
	for {
		select {
		case <-n.done:
			return
		case v := <-ch:
			n.leader.Store(v)
			n.mu.Lock()
			close(n.changed)
			n.changed = make(chan struct{})
			n.mu.Unlock()
			n.log.Info("raft leadership changed", "leader", v, "id", n.cfg.ID)
		}
	}
}

// Leadership reports whether this node leads, and a channel closed at the
// next change.
func (n *Node) Leadership() (bool, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader.Load(), n.changed
}

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.r.State() == hraft.Leader }

// ID is this member's ID.
func (n *Node) ID() string { return n.cfg.ID }

// Leader returns the current leader's ID and address ("" when none known).
func (n *Node) Leader() (id, addr string) {
	a, i := n.r.LeaderWithID()
	return string(i), string(a)
}

// Member is a server of the Raft configuration.
type Member struct {
	ID    string
	Addr  string
	Voter bool
}

// Members returns the latest Raft configuration.
func (n *Node) Members() ([]Member, error) {
	f := n.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, mapErr(err)
	}
	var out []Member
	for _, s := range f.Configuration().Servers {
		out = append(out, Member{ID: string(s.ID), Addr: string(s.Address), Voter: s.Suffrage == hraft.Voter})
	}
	return out, nil
}

// Propose implements store.Proposer: it appends groups to the log (merged
// with concurrent proposals into one entry) and returns the per-group
// results once this node applied them.
func (n *Node) Propose(ctx context.Context, groups []store.Group) ([]error, error) {
	if len(groups) == 0 {
		return nil, nil
	}
	if err := n.checkLeader(); err != nil {
		return nil, err
	}
	data, err := store.EncodeGroups(groups)
	if err != nil {
		return nil, err
	}
	return n.batch.submit(ctx, &proposal{data: data, groups: len(groups), done: make(chan proposeResult, 1)})
}

// checkLeader fails at once when this node cannot accept writes.
func (n *Node) checkLeader() error {
	if n.r.State() == hraft.Leader {
		return nil
	}
	id, addr := n.Leader()
	if addr == "" || id == n.cfg.ID {
		return ErrNoLeader
	}
	return errdefs.Wrap(errdefs.KindUnavailable, &NotLeaderError{LeaderID: id, LeaderAddr: addr})
}

// wait waits for a Raft future or ctx. Futures end on their own when
// leadership is lost (after LeaderLease without a quorum).
func wait(ctx context.Context, f hraft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return mapErr(err)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, hraft.ErrNotLeader), errors.Is(err, hraft.ErrLeadershipLost),
		errors.Is(err, hraft.ErrEnqueueTimeout), errors.Is(err, hraft.ErrLeadershipTransferInProgress),
		errors.Is(err, hraft.ErrAbortedByRestore):
		return errdefs.Wrapf(errdefs.KindUnavailable, err, NoLeaderMessage)
	case errors.Is(err, hraft.ErrRaftShutdown):
		return errdefs.Wrapf(errdefs.KindUnavailable, err, "this manager is shutting down")
	}
	return err
}

// AddVoter adds a manager to the configuration (leader only). It returns
// once the change is committed, which needs the new member to answer.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if err := n.checkLeader(); err != nil {
		return err
	}
	return wait(ctx, n.r.AddVoter(hraft.ServerID(id), hraft.ServerAddress(addr), 0, 10*time.Second))
}

// RemoveServer removes a manager from the configuration (leader only). When
// it is this node, leadership moves to another manager first.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.checkLeader(); err != nil {
		return err
	}
	return wait(ctx, n.r.RemoveServer(hraft.ServerID(id), 0, 10*time.Second))
}

// TransferLeadership hands leadership to another voter.
func (n *Node) TransferLeadership(ctx context.Context) error {
	return wait(ctx, n.r.LeadershipTransfer())
}

// ReadBarrier makes a new leader's reads include everything earlier
// leaders committed: the first read after an election waits for a
// barrier (a leader applies previous terms' entries only once an entry of
// its own commits); later reads, and followers, return at once.
func (n *Node) ReadBarrier(ctx context.Context) error {
	ready := func() (leader bool, ch chan struct{}, ok bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.leader.Load(), n.changed, n.readyFor == n.changed
	}
	leader, ch, ok := ready()
	if !leader || ok {
		return nil
	}
	n.rmu.Lock()
	defer n.rmu.Unlock()
	if _, _, ok := ready(); ok {
		return nil
	}
	if err := n.Barrier(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	if n.changed == ch {
		n.readyFor = ch
	}
	n.mu.Unlock()
	return nil
}

// Barrier waits until everything committed before it is applied here
// (leader only).
func (n *Node) Barrier(ctx context.Context) error {
	return wait(ctx, n.r.Barrier(10*time.Second))
}

// AppliedIndex is the last index applied to the store.
func (n *Node) AppliedIndex() uint64 { return n.r.AppliedIndex() }

// CommitIndex is the last index known committed.
func (n *Node) CommitIndex() uint64 { return n.r.CommitIndex() }

// LastContact is when this follower last heard from the leader.
func (n *Node) LastContact() time.Time { return n.r.LastContact() }

// Snapshot takes a snapshot now (tests, shutdown).
func (n *Node) Snapshot() error { return n.r.Snapshot().Error() }

// Shutdown stops the member and closes its files.
func (n *Node) Shutdown() error {
	var err error
	n.shutOnce.Do(func() {
		err = n.r.Shutdown().Error()
		close(n.done)
		n.wg.Wait()
		n.batch.wg.Wait()
		if n.bolt != nil {
			if cerr := n.bolt.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// CanRemove reports whether removing voter id keeps a quorum of the voters
// that remain reachable (docker refuses demotions that would lose it).
func CanRemove(members []Member, id string, reachable func(id string) bool) bool {
	voters, up := 0, 0
	for _, m := range members {
		if !m.Voter || m.ID == id {
			continue
		}
		voters++
		if reachable(m.ID) {
			up++
		}
	}
	return voters > 0 && up >= voters/2+1
}

// hclog → slog bridge: Raft's own logging at warn and above.
func newHCLogger(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{log},
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Warn(strings.TrimSpace(string(p)), "component", "raft")
	return len(p), nil
}

// NewNetworkTransport is Raft's TCP transport over stream (the cluster
// port's "shoal-raft" streams).
func NewNetworkTransport(stream hraft.StreamLayer, log *slog.Logger) hraft.Transport {
	if log == nil {
		log = slog.Default()
	}
	return hraft.NewNetworkTransportWithConfig(&hraft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 5,
		// Bounds each RPC's I/O; big AppendEntries batches and snapshot
		// chunks fit well within it.
		Timeout: 10 * time.Second,
		Logger:  newHCLogger(log),
	})
}

// SetSnapshotPolicy changes how many entries trigger a snapshot and how many
// stay after one (the swarm spec's Raft.SnapshotInterval and
// LogEntriesForSlowFollowers); zero keeps the current value.
func (n *Node) SetSnapshotPolicy(threshold, trailing uint64) error {
	rc := n.r.ReloadableConfig()
	if threshold > 0 {
		rc.SnapshotThreshold = threshold
	}
	if trailing > 0 {
		rc.TrailingLogs = max(trailing, minTrailingLogs)
	}
	return n.r.ReloadConfig(rc)
}
