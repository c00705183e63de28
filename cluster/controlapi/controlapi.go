// Package controlapi is the manager's control API as Go methods: swarm
// settings, join and certificate issuance, Raft membership and nodes (this
// file set), services, tasks, secrets and configs (added by their owners).
//
// Reads are served from this manager's store, so they keep working without
// a quorum. Writes run on the Raft leader: every write method goes through
// the Forwarder, which runs the registered leader-side handler here when
// this manager leads and sends it to the leader otherwise.
package controlapi

import (
	"context"
	"log/slog"
	"time"

	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
)

// Raft is what the control API needs from this manager's Raft member
// (*raft.Node implements it).
type Raft interface {
	LeaderInfo
	// ReadBarrier returns once a new leader's state holds what earlier
	// leaders committed (at once on followers and settled leaders).
	ReadBarrier(ctx context.Context) error
	ID() string
	Members() ([]sraft.Member, error)
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
}

// Config configures a Server.
type Config struct {
	Store     *store.Store
	Raft      Raft
	Forwarder *Forwarder
	// Reachable reports whether this manager can reach another manager
	// (ManagerStatus.Reachability, quorum checks). Nil: all reachable.
	Reachable func(nodeID string) bool
	Log       *slog.Logger
}

// Server is the control API of one manager.
type Server struct {
	store     *store.Store
	raft      Raft
	fwd       *Forwarder
	reachable func(string) bool
	log       *slog.Logger
}

// parts are the registration functions of the control API's other files
// (services, tasks, secrets...): each registers its leader-side handlers.
var parts []func(*Server)

// RegisterPart adds a part of the control API; call it from an init
// function. Every Server built afterwards runs fn once.
func RegisterPart(fn func(*Server)) { parts = append(parts, fn) }

// New builds the control API and registers its leader-side handlers on the
// forwarder.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Reachable == nil {
		cfg.Reachable = func(string) bool { return true }
	}
	s := &Server{store: cfg.Store, raft: cfg.Raft, fwd: cfg.Forwarder, reachable: cfg.Reachable, log: cfg.Log}
	cfg.Forwarder.ReadYourWrites(cfg.Store)
	// The leader's index answers a follower's read barrier: it must
	// include what earlier leaders committed.
	Handle(s.fwd, "store.index", func(ctx context.Context, _ struct{}) (struct{}, error) {
		return struct{}{}, s.raft.ReadBarrier(ctx)
	})
	s.registerSwarm()
	s.registerNodes()
	for _, p := range parts {
		p(s)
	}
	return s
}

// Store is the manager's store (reads; writes go through Forwarder).
func (s *Server) Store() *store.Store { return s.store }

// Forwarder runs writes on the leader.
func (s *Server) Forwarder() *Forwarder { return s.fwd }

// Raft is the manager's Raft member.
func (s *Server) Raft() Raft { return s.raft }

// syncReadTimeout bounds SyncRead: without a reachable leader reads go on
// with the local replica.
const syncReadTimeout = 500 * time.Millisecond

// SyncRead brings this manager's replica up to what the leader has applied
// (one small round trip on followers, nothing on the leader), so reads on
// any manager see every write that was acknowledged before them, as with
// docker where managers proxy reads to the leader. Without a leader it
// returns at once and reads serve the last known state.
func (s *Server) SyncRead(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, syncReadTimeout)
	defer cancel()
	if s.raft.IsLeader() {
		_ = s.raft.ReadBarrier(ctx) // once per election; else at once
		return
	}
	// The forwarder waits for the leader's index (read-your-writes).
	_ = s.fwd.Forward(ctx, "store.index", struct{}{}, nil)
}

// Log is the control API's logger.
func (s *Server) Log() *slog.Logger { return s.log }
