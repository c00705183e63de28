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
// earlier ones' writes. Use it for
// bulk work (the scheduler assigning thousands of tasks).
type Batch struct {
	s       *Store
	ctx     context.Context
	view    *tx // pending writes of the unflushed groups
	groups  []Group
	keys    map[wkey]bool
	actions int
	failed  int
	first   error
}

// Batch runs fn, which calls b.Update any number of times; everything is
// proposed before Batch returns. The error reports a failed proposal, or the
// first of the groups that could not be applied (with how many failed).
func (s *Store) Batch(ctx context.Context, fn func(b *Batch) error) error {
	b := &Batch{s: s, ctx: ctx, keys: map[wkey]bool{}}
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
	b.s.mu.RLock()
	sub := newTx(b.view, b.s.now())
	err := fn(sub)
	b.s.mu.RUnlock()
	if err != nil {
		return err
	}
	g := sub.group()
	if len(g) == 0 {
		return nil
	}
	for _, a := range g {
		if b.keys[wkey{a.Object.Kind(), a.Object.GetID()}] {
			// The same object twice in one proposal would fail its
			// version check; send what we have and redo fn on fresh state.
			if err := b.flush(); err != nil {
				return err
			}
			return b.Update(fn)
		}
	}
	for _, a := range g {
		key := wkey{a.Object.Kind(), a.Object.GetID()}
		b.keys[key] = true
		b.view.writes[key] = &write{op: a.Op, obj: a.Object}
		b.view.order = append(b.view.order, key)
	}
	b.groups = append(b.groups, g)
	b.actions += len(g)
	if b.actions >= maxBatchActions {
		return b.flush()
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
	b.groups, b.actions = nil, 0
	b.reset()
	return nil
}

func (b *Batch) reset() {
	b.keys = map[wkey]bool{}
	b.s.mu.RLock()
	b.view = newTx(snapshot{b.s.ts}, b.s.now())
	b.s.mu.RUnlock()
}

// IsSequence reports a lost compare-and-set race.
func IsSequence(err error) bool { return errors.Is(err, ErrSequence) && errdefs.IsConflict(err) }
