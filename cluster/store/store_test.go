package store

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

func svc(id, name string) *Service {
	s := &Service{}
	s.ID = id
	s.Spec.Name = name
	return s
}

func task(id, service string, slot int, node string, state swarm.TaskState) *Task {
	t := &Task{}
	t.ID, t.ServiceID, t.Slot, t.NodeID = id, service, slot, node
	t.Status.State = state
	t.DesiredState = swarm.TaskStateRunning
	return t
}

func mustUpdate(t *testing.T, s *Store, fn func(Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func TestCreateUpdateDelete(t *testing.T) {
	s := New()
	mustUpdate(t, s, func(tx Tx) error { return tx.Create(svc("s1", "web")) })
	var got *Service
	s.View(func(rt ReadTx) { got = rt.GetService("s1") })
	if got == nil || got.Spec.Name != "web" || got.Meta.Version.Index != 1 || got.SpecVersion != 1 {
		t.Fatalf("after create: %+v", got)
	}
	if got.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}

	tests := []struct {
		name string
		fn   func(Tx) error
		kind errdefs.Kind
	}{
		{"duplicate id", func(tx Tx) error { return tx.Create(svc("s1", "other")) }, errdefs.KindConflict},
		{"duplicate name", func(tx Tx) error { return tx.Create(svc("s2", "web")) }, errdefs.KindConflict},
		{"update missing", func(tx Tx) error { return tx.Update(svc("nope", "x")) }, errdefs.KindNotFound},
		{"delete missing", func(tx Tx) error { return tx.Delete(KindService, "nope") }, errdefs.KindNotFound},
		{"stale version", func(tx Tx) error {
			c := got.Copy()
			c.Meta.Version.Index = 99
			return tx.Update(c)
		}, errdefs.KindConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Update(context.Background(), tc.fn)
			if errdefs.KindOf(err) != tc.kind {
				t.Fatalf("err = %v (kind %v), want kind %v", err, errdefs.KindOf(err), tc.kind)
			}
		})
	}

	mustUpdate(t, s, func(tx Tx) error {
		c := tx.GetService("s1").Copy()
		c.Spec.Labels = map[string]string{"a": "b"}
		return tx.Update(c)
	})
	s.View(func(rt ReadTx) { got = rt.GetService("s1") })
	if got.Meta.Version.Index != 2 || got.SpecVersion != 1 {
		t.Fatalf("status-only update must keep SpecVersion: %+v", got.Meta.Version)
	}
	mustUpdate(t, s, func(tx Tx) error { return tx.Delete(KindService, "s1") })
	s.View(func(rt ReadTx) { got = rt.GetService("s1") })
	if got != nil {
		t.Fatal("deleted service still there")
	}
}

func TestTxSeesOwnWrites(t *testing.T) {
	s := New()
	mustUpdate(t, s, func(tx Tx) error {
		for i := 1; i <= 3; i++ {
			if err := tx.Create(task(fmt.Sprint("t", i), "svc", i, "", swarm.TaskStatePending)); err != nil {
				return err
			}
		}
		return nil
	})
	mustUpdate(t, s, func(tx Tx) error {
		t2 := tx.GetTask("t2").Copy()
		t2.NodeID = "n1"
		t2.Status.State = swarm.TaskStateAssigned
		if err := tx.Update(t2); err != nil {
			return err
		}
		if err := tx.Delete(KindTask, "t3"); err != nil {
			return err
		}
		if err := tx.Create(task("t4", "svc", 4, "n1", swarm.TaskStateAssigned)); err != nil {
			return err
		}
		checks := []struct {
			by   By
			want int
		}{
			{ByServiceID("svc"), 3},
			{ByNodeID("n1"), 2},
			{ByTaskState(string(swarm.TaskStatePending)), 1},
			{BySlot("svc", 3), 0},
			{ByIDPrefix("t"), 3},
		}
		for _, c := range checks {
			if got := len(tx.FindTasks(c.by)); got != c.want {
				t.Errorf("Find(%+v) = %d, want %d", c.by, got, c.want)
			}
		}
		return nil
	})
	s.View(func(rt ReadTx) {
		if n := len(rt.FindTasks(ByNodeID("n1"))); n != 2 {
			t.Fatalf("committed tasks on n1 = %d, want 2", n)
		}
	})
}

func TestCreateDeleteInOneTxIsNothing(t *testing.T) {
	s := New()
	ch, cancel := s.Watch()
	defer cancel()
	mustUpdate(t, s, func(tx Tx) error {
		if err := tx.Create(svc("x", "x")); err != nil {
			return err
		}
		return tx.Delete(KindService, "x")
	})
	mustUpdate(t, s, func(tx Tx) error { return tx.Create(svc("y", "y")) })
	ev := <-ch
	if ev.Object.GetID() != "y" {
		t.Fatalf("first event is for %s, want y", ev.Object.GetID())
	}
}

func TestWatchOrderAndFilter(t *testing.T) {
	s := New()
	var before int
	ch, cancel := s.ViewAndWatch(func(rt ReadTx) { before = len(rt.FindTasks(All())) }, KindTask)
	defer cancel()
	if before != 0 {
		t.Fatal("store not empty")
	}
	mustUpdate(t, s, func(tx Tx) error { return tx.Create(svc("s", "s")) })
	for i := 0; i < 100; i++ {
		mustUpdate(t, s, func(tx Tx) error { return tx.Create(task(fmt.Sprint(i), "s", i+1, "", swarm.TaskStatePending)) })
	}
	for i := 0; i < 100; i++ {
		select {
		case ev := <-ch:
			if ev.Kind != KindTask || ev.Op != OpCreate || ev.Object.GetID() != fmt.Sprint(i) {
				t.Fatalf("event %d = %v %v %s", i, ev.Op, ev.Kind, ev.Object.GetID())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d never came", i)
		}
	}
}

func TestConcurrentUpdatesRetry(t *testing.T) {
	s := New()
	n := &Node{}
	n.ID = "n1"
	mustUpdate(t, s, func(tx Tx) error { return tx.Create(n) })
	var wg sync.WaitGroup
	const writers = 8
	for i := 0; i < writers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			err := s.Update(context.Background(), func(tx Tx) error {
				c := tx.GetNode("n1").Copy()
				labels := map[string]string{}
				for k, v := range c.Spec.Labels {
					labels[k] = v
				}
				labels[fmt.Sprint("k", i)] = "v"
				c.Spec.Labels = labels
				return tx.Update(c)
			})
			if err != nil && !IsSequence(err) {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	s.View(func(rt ReadTx) {
		if got := len(rt.GetNode("n1").Spec.Labels); got == 0 {
			t.Fatal("no update landed")
		}
	})
}

// racingProposer makes the first proposal lose a race: before applying it,
// it applies a competing change to the same object.
type racingProposer struct {
	s     *Store
	raced bool
	local LocalProposer
}

func (p *racingProposer) Propose(ctx context.Context, groups []Group) ([]error, error) {
	if !p.raced {
		p.raced = true
		var cur *Node
		p.s.View(func(rt ReadTx) { cur = rt.GetNode("n1") })
		c := cur.Copy()
		c.Spec.Name = "competitor"
		p.local.Propose(ctx, []Group{{{Op: OpUpdate, Object: c}}})
	}
	return p.local.Propose(ctx, groups)
}

func TestUpdateRetriesAfterLostRace(t *testing.T) {
	s := New()
	n := &Node{}
	n.ID = "n1"
	mustUpdate(t, s, func(tx Tx) error { return tx.Create(n) })
	s.SetProposer(&racingProposer{s: s, local: LocalProposer{s: s}})
	runs := 0
	mustUpdate(t, s, func(tx Tx) error {
		runs++
		c := tx.GetNode("n1").Copy()
		c.Spec.Labels = map[string]string{"mine": "yes"}
		return tx.Update(c)
	})
	if runs != 2 {
		t.Fatalf("fn ran %d times, want 2 (one lost race, one retry)", runs)
	}
	s.View(func(rt ReadTx) {
		got := rt.GetNode("n1")
		if got.Spec.Name != "competitor" || got.Spec.Labels["mine"] != "yes" {
			t.Fatalf("both writes must survive: %+v", got.Spec)
		}
	})
}

func TestSnapshotAndCodec(t *testing.T) {
	s := New()
	mustUpdate(t, s, func(tx Tx) error {
		c := &Cluster{}
		c.ID = "c1"
		c.Spec.Name = "default"
		c.RootCACertPEM = []byte("cert")
		if err := tx.Create(c); err != nil {
			return err
		}
		if err := tx.Create(svc("s1", "web")); err != nil {
			return err
		}
		return tx.Create(task("t1", "s1", 1, "n1", swarm.TaskStateRunning))
	})
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	r := New()
	ch, cancel := r.Watch()
	defer cancel()
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if ev := <-ch; ev.Op != OpReset {
		t.Fatalf("want reset event, got %v", ev.Op)
	}
	if r.LastIndex() != s.LastIndex() {
		t.Fatalf("index %d, want %d", r.LastIndex(), s.LastIndex())
	}
	r.View(func(rt ReadTx) {
		if c := rt.GetCluster(); c == nil || string(c.RootCACertPEM) != "cert" {
			t.Fatalf("cluster: %+v", c)
		}
		if len(rt.FindServices(ByName("web"))) != 1 || rt.GetTask("t1").NodeID != "n1" {
			t.Fatal("restored content differs")
		}
	})

	groups := []Group{{{Op: OpCreate, Object: svc("a", "a")}, {Op: OpDelete, Object: task("t", "a", 1, "", swarm.TaskStateNew)}}}
	b, err := EncodeGroups(groups)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeGroups(b)
	if err != nil {
		t.Fatal(err)
	}
	if back[0][0].Object.(*Service).Spec.Name != "a" || back[0][1].Op != OpDelete || back[0][1].Object.Kind() != KindTask {
		t.Fatalf("round trip: %+v", back)
	}
	if _, err := DecodeGroups([]byte(`[[{"Op":1,"Kind":"bogus","Object":{}}]]`)); err == nil {
		t.Fatal("unknown kind must fail")
	}
}

func TestBatch(t *testing.T) {
	s := New()
	proposals := 0
	s.SetProposer(&countingProposer{LocalProposer: LocalProposer{s: s}, n: &proposals})
	const n = 5000
	err := s.Batch(context.Background(), func(b *Batch) error {
		for i := 0; i < n; i++ {
			if err := b.Update(func(tx Tx) error {
				return tx.Create(task(fmt.Sprint(i), "s", i+1, "", swarm.TaskStatePending))
			}); err != nil {
				return err
			}
		}
		// Touching an object already pending forces a flush, then succeeds.
		return b.Update(func(tx Tx) error {
			t0 := tx.GetTask("0").Copy()
			t0.NodeID = "n"
			return tx.Update(t0)
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if proposals < 3 || proposals > 5 {
		t.Fatalf("proposals = %d, want about n/%d + 1", proposals, maxBatchActions)
	}
	s.View(func(rt ReadTx) {
		if got := len(rt.FindTasks(All())); got != n {
			t.Fatalf("tasks = %d", got)
		}
		if rt.GetTask("0").NodeID != "n" {
			t.Fatal("update after flush lost")
		}
	})
	// A failed group does not stop the others.
	err = s.Batch(context.Background(), func(b *Batch) error {
		b.Update(func(tx Tx) error { return tx.Create(task("new", "s", 9999, "", swarm.TaskStatePending)) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

type countingProposer struct {
	LocalProposer
	n *int
}

func (c *countingProposer) Propose(ctx context.Context, g []Group) ([]error, error) {
	*c.n++
	return c.LocalProposer.Propose(ctx, g)
}

// A matching watcher gets only what its match accepts, in order, and
// resets; it is not queued anything else.
func TestWatchMatch(t *testing.T) {
	s := New()
	match := func(ev *Event) bool { return ev.Object.GetID() == "n1" }
	ch, cancel := s.ViewAndWatchMatch(func(ReadTx) {}, match, KindNode)
	defer cancel()
	for i := 0; i < 3; i++ {
		mustUpdate(t, s, func(tx Tx) error {
			n := &Node{}
			n.ID = fmt.Sprint("n", i)
			return tx.Create(n)
		})
	}
	mustUpdate(t, s, func(tx Tx) error {
		n := tx.GetNode("n1").Copy()
		n.Spec.Labels = map[string]string{"a": "b"}
		return tx.Update(n)
	})
	var buf bytes.Buffer
	if err := s.Save(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []Op{OpCreate, OpUpdate, OpReset} {
		select {
		case ev := <-ch:
			if ev.Op != want || (want != OpReset && ev.Object.GetID() != "n1") {
				t.Fatalf("got %v %v, want %v of n1", ev.Op, ev.Object, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %v event", want)
		}
	}
	select {
	case ev := <-ch:
		t.Fatalf("unexpected event %v %s", ev.Op, ev.Object.GetID())
	default:
	}
}

func TestRemovedNodes(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const keep = 100 * time.Hour
	c := &Cluster{}
	steps := []struct {
		id   string
		at   time.Time
		want []string // RemovedNodes after the step
	}{
		{"a", t0, []string{"a"}},
		{"b", t0.Add(50 * time.Hour), []string{"a", "b"}},
		{"a", t0.Add(60 * time.Hour), []string{"b", "a"}},  // again: one entry, the latest
		{"c", t0.Add(159 * time.Hour), []string{"a", "c"}}, // b (at 50 h) is 109 h old: gone; a 99 h
		{"d", t0.Add(1000 * time.Hour), []string{"d"}},     // all the others expired
	}
	for i, st := range steps {
		before := c.RemovedNodes
		next := c.Copy()
		next.RemovedNodes = c.WithRemoved(st.id, st.at, keep)
		var got []string
		for _, r := range next.RemovedNodes {
			got = append(got, r.ID)
		}
		if !slices.Equal(got, st.want) {
			t.Fatalf("step %d: removed %v, want %v", i, got, st.want)
		}
		if !next.IsRemoved(st.id) || next.IsRemoved("zz") {
			t.Fatalf("step %d: IsRemoved wrong", i)
		}
		if len(before) > 0 && &before[0] == &next.RemovedNodes[0] {
			t.Fatalf("step %d: the old object's slice was reused", i)
		}
		c = next
	}
}
