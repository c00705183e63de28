package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/shoal/shoal/errdefs"
)

// maxBatchActions bounds one proposal of a Batch (keeps Raft entries small).
const maxBatchActions = 2000

// Batch groups many small updates into few proposals. Each Update inside is
// atomic on its own (all-or-nothing: if one of its objects lost a race,
// none of its writes land, and Batch reports it); later ones see the
// earlier ones' writes. Use it for bulk work (orchestrators creating
// thousands of tasks); UpdateObjects is the cheaper path for writers that
// already hold each object's new version (the scheduler assigning a
// million tasks).
type Batch struct {
	s    *Store
	ctx  context.Context
	view *tx // pending writes of the unflushed Update groups
	// direct: unflushed UpdateObjects writes, which the view does not
	// hold.
	direct  bool
	groups  []Group
	actions int
	failed  int
	first   error
}

// Batch runs fn, which calls b.Update and b.UpdateObjects any number of
// times; everything is
// proposed before Batch returns. The error reports a failed proposal, or the
// first of the groups that could not be applied (with how many failed).
func (s *Store) Batch(ctx context.Context, fn func(b *Batch) error) error {
	b := &Batch{s: s, ctx: ctx}
	b.reset()
	if err := fn(b); err != nil {
		return err
	}
	if err := b.flush(); err != nil {
		return err
	}
	if b.failed > 0 {
		if b.failed == 1 {
			return b.first
		}
		return fmt.Errorf("%d updates of the batch failed, first: %w", b.failed, b.first)
	}
	return nil
}

// Update runs fn as one atomic group of the batch.
func (b *Batch) Update(fn func(Tx) error) error {
	if b.direct {
		// fn must see what UpdateObjects wrote: apply that first.
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.s.mu.RLock()
	sub := newTx(b.view, b.s.now())
	err := fn(sub)
	b.s.mu.RUnlock()
	if err != nil {
		return err
	}
	if len(sub.order) == 0 {
		return nil
	}
	g := sub.group()
	if len(g) == 0 {
		return nil
	}
	for _, a := range g {
		if _, ok := b.view.writes[wkey{a.Object.Kind(), a.Object.GetID()}]; ok {
			// The same object twice in one proposal would fail its
			// version check; send what we have and redo fn on fresh state.
			if err := b.flush(); err != nil {
				return err
			}
			return b.Update(fn)
		}
	}
	if b.view.writes == nil {
		b.view.writes = make(map[wkey]*write, len(g))
	}
	ws := make([]write, len(g)) // one allocation for the group's entries
	for i, a := range g {
		key := wkey{a.Object.Kind(), a.Object.GetID()}
		ws[i] = write{op: a.Op, obj: a.Object}
		b.view.writes[key] = &ws[i]
		b.view.order = append(b.view.order, key)
	}
	b.groups = append(b.groups, g)
	b.actions += len(g)
	if b.actions >= maxBatchActions {
		return b.flush()
	}
	return nil
}

// UpdateObjects proposes each object as an update of its own: a
// compare-and-set on the version it carries (Meta.Version, as read),
// applied or refused alone, exactly as if each were written by its own
// Update calling tx.Update(o). It builds no transaction, so it suits bulk
// writers that already hold their new versions (the scheduler assigning a
// million tasks). Like tx.Update it sets UpdatedAt on the objects, which
// then belong to the store.
//
// An object refused at apply time (changed since it was read, deleted,
// name taken) counts among the batch's failed updates, as a failed Update
// group does; the same object twice is two compare-and-sets on the same
// version, so the second is refused. Updates run later in the batch see
// these writes: they are proposed first. A nil object, one without an ID
// or of an unknown kind fails the call with nothing recorded.
func (b *Batch) UpdateObjects(objs ...Object) error {
	for _, o := range objs {
		if o == nil || o.GetID() == "" {
			return errdefs.InvalidParameter("store: update without an object ID")
		}
		if kindBit(o.Kind()) == 0 {
			return errdefs.InvalidParameter("store: unknown kind %q", o.Kind())
		}
	}
	now := b.s.now()
	acts := make([]Action, len(objs)) // one allocation for all the groups
	for i, o := range objs {
		m := o.GetMeta()
		m.UpdatedAt = now
		o.SetMeta(m)
		acts[i] = Action{Op: OpUpdate, Object: o}
		b.groups = append(b.groups, acts[i:i+1:i+1])
		b.actions++
		b.direct = true
		if b.actions >= maxBatchActions {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *Batch) flush() error {
	if len(b.groups) == 0 {
		return nil
	}
	errs, err := b.s.proposer.Propose(b.ctx, b.groups)
	if err != nil {
		return err
	}
	for _, e := range errs {
		if e != nil {
			b.failed++
			if b.first == nil {
				b.first = e
			}
		}
	}
	b.groups, b.actions, b.direct = nil, 0, false
	b.reset()
	return nil
}

func (b *Batch) reset() {
	b.s.mu.RLock()
	b.view = newTx(snapshot{b.s.ts}, b.s.now())
	b.s.mu.RUnlock()
}

// IsSequence reports a lost compare-and-set race.
func IsSequence(err error) bool { return errors.Is(err, ErrSequence) && errdefs.IsConflict(err) }
