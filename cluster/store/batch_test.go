package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// pendingTasks stores n pending tasks t0..t(n-1) and returns them as read.
func pendingTasks(t *testing.T, s *Store, n int) []*Task {
	t.Helper()
	mustUpdate(t, s, func(tx Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.Create(task(fmt.Sprint("t", i), "svc", i+1, "", swarm.TaskStatePending)); err != nil {
				return err
			}
		}
		return nil
	})
	out := make([]*Task, n)
	s.View(func(rt ReadTx) {
		for i := range out {
			out[i] = rt.GetTask(fmt.Sprint("t", i))
		}
	})
	return out
}

func assigned(tk *Task, node string) *Task {
	c := tk.Copy()
	c.NodeID = node
	c.Status.State = swarm.TaskStateAssigned
	return c
}

func TestUpdateObjects(t *testing.T) {
	s := New()
	clock := time.Unix(1000, 0)
	s.SetClock(func() time.Time { return clock })
	tasks := pendingTasks(t, s, 5)
	ch, cancel := s.Watch(KindTask)
	defer cancel()

	// t1 changes behind the writer's back: its write must be refused
	// alone, the others land.
	mustUpdate(t, s, func(tx Tx) error {
		c := tx.GetTask("t1").Copy()
		c.DesiredState = swarm.TaskStateShutdown
		return tx.Update(c)
	})
	clock = clock.Add(time.Minute)
	objs := make([]Object, len(tasks))
	for i, tk := range tasks {
		objs[i] = assigned(tk, "n1")
	}
	err := s.Batch(context.Background(), func(b *Batch) error { return b.UpdateObjects(objs...) })
	if !IsSequence(err) {
		t.Fatalf("err = %v, want the lost race of t1", err)
	}
	s.View(func(rt ReadTx) {
		for i := range tasks {
			got := rt.GetTask(fmt.Sprint("t", i))
			if i == 1 {
				if got.NodeID != "" || got.DesiredState != swarm.TaskStateShutdown {
					t.Fatalf("t1 was overwritten: %+v", got)
				}
				continue
			}
			if got.NodeID != "n1" || got.Status.State != swarm.TaskStateAssigned {
				t.Fatalf("t%d not written: %+v", i, got)
			}
			if got.Meta.Version.Index <= tasks[i].Meta.Version.Index || !got.UpdatedAt.Equal(clock) {
				t.Fatalf("t%d: version %d, updated %v", i, got.Meta.Version.Index, got.UpdatedAt)
			}
		}
		if n := len(rt.FindTasks(ByNodeID("n1"))); n != 4 {
			t.Fatalf("node index has %d tasks, want 4", n)
		}
		if n := len(rt.FindTasks(ByTaskState(string(swarm.TaskStatePending)))); n != 1 {
			t.Fatalf("state index has %d pending, want 1", n)
		}
	})
	// The watcher sees t1's own change, then the four writes with their
	// previous versions.
	want := []string{"t1", "t0", "t2", "t3", "t4"}
	for _, id := range want {
		select {
		case ev := <-ch:
			if ev.Object.GetID() != id || ev.Op != OpUpdate || ev.Old == nil {
				t.Fatalf("event %v %s (old %v), want update of %s", ev.Op, ev.Object.GetID(), ev.Old, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event for %s", id)
		}
	}
}

func TestUpdateObjectsRejectsBadInput(t *testing.T) {
	s := New()
	tasks := pendingTasks(t, s, 1)
	noID := assigned(tasks[0], "n1")
	noID.ID = ""
	tests := []struct {
		name string
		objs []Object
	}{
		{"nil", []Object{assigned(tasks[0], "n1"), nil}},
		{"no id", []Object{assigned(tasks[0], "n1"), noID}},
		{"unknown kind", []Object{assigned(tasks[0], "n1"), newBogus()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := s.LastIndex()
			var callErr error
			err := s.Batch(context.Background(), func(b *Batch) error {
				callErr = b.UpdateObjects(tc.objs...)
				return nil
			})
			if err != nil || !errdefs.IsInvalidParameter(callErr) {
				t.Fatalf("batch err %v, call err %v: want an InvalidParameter call error", err, callErr)
			}
			if s.LastIndex() != before {
				t.Fatal("a refused call proposed something")
			}
		})
	}
}

// bogus is an object of a kind the store does not have.
type bogus struct{ Task }

func newBogus() *bogus {
	b := &bogus{}
	b.ID = "b1"
	return b
}

func (*bogus) Kind() Kind { return "bogus" }

func TestUpdateObjectsThenUpdate(t *testing.T) {
	s := New()
	proposals := 0
	s.SetProposer(&countingProposer{LocalProposer: LocalProposer{s: s}, n: &proposals})
	tasks := pendingTasks(t, s, 3)
	proposals = 0
	err := s.Batch(context.Background(), func(b *Batch) error {
		if err := b.UpdateObjects(assigned(tasks[0], "n1"), assigned(tasks[1], "n1")); err != nil {
			return err
		}
		// Update sees what UpdateObjects wrote and may change it again.
		if err := b.Update(func(tx Tx) error {
			c := tx.GetTask("t0")
			if c.NodeID != "n1" {
				return fmt.Errorf("t0 not seen as written: %+v", c)
			}
			c = c.Copy()
			c.Status.State = swarm.TaskStateAccepted
			return tx.Update(c)
		}); err != nil {
			return err
		}
		// The same object twice in one call: two compare-and-sets on one
		// version, so the second loses.
		return b.UpdateObjects(assigned(tasks[2], "n1"), assigned(tasks[2], "n2"))
	})
	if !IsSequence(err) {
		t.Fatalf("err = %v, want the second write of t2 refused", err)
	}
	s.View(func(rt ReadTx) {
		if got := rt.GetTask("t0"); got.Status.State != swarm.TaskStateAccepted {
			t.Fatalf("t0: %+v", got.Status)
		}
		if got := rt.GetTask("t1"); got.NodeID != "n1" {
			t.Fatalf("t1: %+v", got)
		}
		if got := rt.GetTask("t2"); got.NodeID != "n1" {
			t.Fatalf("t2 = %q, want the first write", got.NodeID)
		}
	})
	if proposals != 2 {
		t.Fatalf("%d proposals, want 2 (the Update flushes what came before)", proposals)
	}
}

func TestUpdateObjectsFlushesBigBatches(t *testing.T) {
	s := New()
	proposals := 0
	s.SetProposer(&countingProposer{LocalProposer: LocalProposer{s: s}, n: &proposals})
	const n = 2*maxBatchActions + 10
	tasks := pendingTasks(t, s, n)
	proposals = 0
	objs := make([]Object, n)
	for i, tk := range tasks {
		objs[i] = assigned(tk, "n1")
	}
	if err := s.Batch(context.Background(), func(b *Batch) error { return b.UpdateObjects(objs...) }); err != nil {
		t.Fatal(err)
	}
	if proposals != 3 {
		t.Fatalf("%d proposals, want 3", proposals)
	}
	s.View(func(rt ReadTx) {
		if got := len(rt.FindTasks(ByNodeID("n1"))); got != n {
			t.Fatalf("%d tasks on n1, want %d", got, n)
		}
	})
}

// TestWatchersShareEvents checks the kind filters now that every watcher
// reads the same published slices: each sees its kinds only, in order,
// and a reset reaches them all.
func TestWatchersShareEvents(t *testing.T) {
	s := New()
	tasks, cancelT := s.Watch(KindTask)
	defer cancelT()
	nodes, cancelN := s.Watch(KindNode)
	defer cancelN()
	all, cancelA := s.Watch()
	defer cancelA()
	mustUpdate(t, s, func(tx Tx) error {
		for i := 0; i < 3; i++ {
			n := &Node{}
			n.ID = fmt.Sprint("n", i)
			if err := tx.Create(n); err != nil {
				return err
			}
			if err := tx.Create(task(fmt.Sprint("t", i), "svc", i+1, "", swarm.TaskStatePending)); err != nil {
				return err
			}
		}
		return nil
	})
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	next := func(ch <-chan Event) Event {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return Event{}
	}
	for i := 0; i < 3; i++ {
		if ev := next(tasks); ev.Kind != KindTask || ev.Object.GetID() != fmt.Sprint("t", i) {
			t.Fatalf("task watcher got %v %v", ev.Kind, ev.Object.GetID())
		}
		if ev := next(nodes); ev.Kind != KindNode || ev.Object.GetID() != fmt.Sprint("n", i) {
			t.Fatalf("node watcher got %v %v", ev.Kind, ev.Object.GetID())
		}
	}
	for i := 0; i < 6; i++ {
		if ev := next(all); ev.Op != OpCreate {
			t.Fatalf("watcher of all kinds got %v", ev.Op)
		}
	}
	for _, ch := range []<-chan Event{tasks, nodes, all} {
		if ev := next(ch); ev.Op != OpReset {
			t.Fatalf("got %v, want the reset", ev.Op)
		}
	}
}

func TestKindBits(t *testing.T) {
	var seen uint32
	for _, k := range Kinds {
		b := kindBit(k)
		if b == 0 || seen&b != 0 {
			t.Fatalf("kind %s has bit %b (already used: %b)", k, b, seen)
		}
		seen |= b
	}
	if kindBit("bogus") != 0 {
		t.Fatal("unknown kind has a bit")
	}
}
