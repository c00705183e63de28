// Package store is the cluster state: in-memory indexed tables that change
// only by applying proposals. On managers the
// proposer is Raft, so every manager applies the same proposals in the same
// order; in tests and benchmarks a LocalProposer applies them directly.
//
// Writers run Update(fn): fn reads a consistent snapshot (plus its own
// writes) and records creates/updates/deletes. The recorded actions are
// proposed as one atomic group, and applied with compare-and-set on each
// object's version, so concurrent writers never hold a lock across a Raft
// round trip and their proposals batch together. A group that lost a race is
// retried with fresh state a few times before failing with a Conflict.
//
// Every applied change is published to watchers (Watch), which drive the
// orchestrators, scheduler and dispatcher.
//
// Locking: View and Update functions run under the store's read lock and
// Apply takes the write lock. So a function passed to View or Update must
// never call back into the Store (no nested View, Update, Batch or
// Propose): that would deadlock against a waiting Apply.
package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/shoal/shoal/errdefs"
)

// Op is what an action does.
type Op uint8

const (
	OpCreate Op = iota + 1
	OpUpdate
	OpDelete
	// OpReset is only an event: the whole state was replaced from a snapshot.
	OpReset
)

func (o Op) String() string {
	switch o {
	case OpCreate:
		return "create"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	case OpReset:
		return "reset"
	}
	return fmt.Sprintf("op(%d)", o)
}

// Action is one recorded change. For updates and deletes, Object's
// Meta.Version is the version the writer read (the compare-and-set value).
type Action struct {
	Op     Op
	Object Object
}

// Group is a set of actions applied atomically.
type Group []Action

// Proposer replicates groups and returns once they are applied to this
// store, with one result per group (nil or the reason it was not applied).
// The error is for the proposal as a whole (no leader, context ended).
type Proposer interface {
	Propose(ctx context.Context, groups []Group) ([]error, error)
}

// ErrSequence means an object changed between being read and being written.
var ErrSequence = errors.New("update out of sequence")

// Store is the cluster state.
type Store struct {
	mu        sync.RWMutex // write: Apply, Restore; read: View, Update's fn
	ts        tables
	lastIndex uint64
	proposer  Proposer
	watchers  watchers
	now       func() time.Time
}

// New returns an empty store. Until SetProposer is called it applies writes
// locally (a LocalProposer).
func New() *Store {
	s := &Store{ts: newTables(), now: time.Now}
	s.proposer = &LocalProposer{s: s}
	return s
}

// SetProposer makes p the way writes are replicated.
func (s *Store) SetProposer(p Proposer) { s.proposer = p }

// SetClock replaces the clock used for CreatedAt/UpdatedAt (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// LastIndex is the index of the last applied proposal.
func (s *Store) LastIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastIndex
}

// View runs fn on a consistent snapshot.
func (s *Store) View(fn func(ReadTx)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(newReadTx(s.ts))
}

// maxRetries bounds how often Update re-runs fn after losing a race.
const maxRetries = 5

// Update runs fn against the current state and proposes what it wrote as
// one atomic group. If fn returns an error nothing is proposed.
func (s *Store) Update(ctx context.Context, fn func(Tx) error) error {
	for attempt := 0; ; attempt++ {
		g, err := s.run(fn)
		if err != nil {
			return err
		}
		if len(g) == 0 {
			return nil
		}
		errs, err := s.proposer.Propose(ctx, []Group{g})
		if err != nil {
			return err
		}
		if errs[0] == nil {
			return nil
		}
		if errors.Is(errs[0], ErrSequence) && attempt < maxRetries {
			continue
		}
		return errs[0]
	}
}

// run runs fn under the read lock and returns what it wrote.
func (s *Store) run(fn func(Tx) error) (Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := newTx(snapshot{s.ts}, s.now())
	if err := fn(t); err != nil {
		return nil, err
	}
	return t.group(), nil
}

// Apply applies proposal groups at index. Proposers call it (the Raft FSM on
// every manager, or LocalProposer). Each group is all-or-nothing.
func (s *Store) Apply(index uint64, groups []Group) []error {
	res := s.ApplyMany([]Proposal{{Index: index, Groups: groups}})
	return res[0]
}

// Proposal is a log entry's content with its index.
type Proposal struct {
	Index  uint64
	Groups []Group
}

// ApplyMany applies several proposals in one database transaction (Raft
// hands the FSM batches of committed entries).
func (s *Store) ApplyMany(props []Proposal) [][]error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range props {
		for _, g := range p.Groups {
			n += len(g)
		}
	}
	// Watchers share this slice: it is never changed once published.
	events := make([]Event, 0, n)
	out := make([][]error, len(props))
	for i, p := range props {
		out[i] = make([]error, len(p.Groups))
		for j, g := range p.Groups {
			if err := s.validateGroup(g); err != nil {
				out[i][j] = err
				continue
			}
			for _, a := range g {
				events = append(events, s.applyAction(p.Index, a))
			}
		}
		if p.Index > s.lastIndex {
			s.lastIndex = p.Index
		}
	}
	s.watchers.publish(events)
	return out
}

// objName is the unique name of o for named kinds ("" otherwise).
func objName(o Object) string {
	switch v := o.(type) {
	case *Service:
		return v.Spec.Name
	case *Network:
		return v.Spec.Name
	case *Secret:
		return v.Spec.Name
	case *Config:
		return v.Spec.Name
	case *Cluster:
		return v.Spec.Name
	}
	return ""
}

func (s *Store) nameTaken(o Object, pending map[string]string) error {
	name := objName(o)
	if name == "" {
		return nil
	}
	k := o.Kind()
	if owner, ok := pending[string(k)+"/"+name]; ok && owner != o.GetID() {
		return errdefs.Conflict("%s %s already exists", k, name)
	}
	for _, other := range s.ts[k].find(ByName(name)) {
		if other.GetID() != o.GetID() {
			return errdefs.Conflict("%s %s already exists", k, name)
		}
	}
	return nil
}

func (s *Store) validateGroup(g Group) error {
	var names map[string]string // allocated only for named kinds
	for _, a := range g {
		o := a.Object
		if o == nil || o.GetID() == "" {
			return errdefs.InvalidParameter("store: action without an object ID")
		}
		t := s.ts[o.Kind()]
		if t == nil {
			return errdefs.InvalidParameter("store: unknown kind %q", o.Kind())
		}
		cur := t.get(o.GetID())
		switch a.Op {
		case OpCreate:
			if cur != nil {
				return errdefs.Conflict("%s %s already exists", o.Kind(), o.GetID())
			}
		case OpUpdate, OpDelete:
			if cur == nil {
				return errdefs.NotFound("%s %s not found", o.Kind(), o.GetID())
			}
			if cur.GetMeta().Version.Index != o.GetMeta().Version.Index {
				return errdefs.Wrap(errdefs.KindConflict, ErrSequence)
			}
		default:
			return errdefs.InvalidParameter("store: unknown op %v", a.Op)
		}
		if a.Op != OpDelete {
			if err := s.nameTaken(o, names); err != nil {
				return err
			}
			if n := objName(o); n != "" {
				if names == nil {
					names = map[string]string{}
				}
				names[string(o.Kind())+"/"+n] = o.GetID()
			}
		}
	}
	return nil
}

func (s *Store) applyAction(index uint64, a Action) Event {
	o := a.Object
	k := o.Kind()
	t := s.ts[k]
	i := t.lookup(o.GetID())
	ev := Event{Op: a.Op, Kind: k, Index: index, Object: o}
	if i >= 0 {
		ev.Old = t.rows[i].obj
	}
	if a.Op == OpDelete {
		if i >= 0 {
			t.remove(i, o.GetID())
		}
		ev.Object = ev.Old
		return ev
	}
	m := o.GetMeta()
	m.Version.Index = index
	o.SetMeta(m)
	if svc, ok := o.(*Service); ok && svc.SpecVersion == 0 {
		// Zero means "the spec changed in this write".
		svc.SpecVersion = index
	}
	if i >= 0 {
		t.replace(i, o)
	} else {
		t.insert(o)
	}
	return ev
}

// LocalProposer applies proposals straight to its store, numbering them
// itself: the single-process path (tests, benchmarks, a store without Raft).
type LocalProposer struct {
	s  *Store
	mu sync.Mutex
}

// NewLocalProposer returns a LocalProposer of s, for proposers that wrap
// one (tests that make proposals fail or race).
func NewLocalProposer(s *Store) *LocalProposer { return &LocalProposer{s: s} }

// Propose implements Proposer.
func (p *LocalProposer) Propose(ctx context.Context, groups []Group) ([]error, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.s.Apply(p.s.LastIndex()+1, groups), nil
}
