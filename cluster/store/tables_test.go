package store

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// TestTablesMatchModel drives a table through random creates, updates and
// deletes and checks every index against a plain map of the objects after
// each step: the rows move (deletes fill holes, buckets swap-remove), and
// every index entry must follow.
func TestTablesMatchModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	states := []swarm.TaskState{swarm.TaskStatePending, swarm.TaskStateAssigned, swarm.TaskStateRunning}
	nodes := []string{"", "n1", "n2", "n3"}
	random := func(id string) *Task {
		tk := task(id, fmt.Sprint("svc", rng.Intn(3)), rng.Intn(4), nodes[rng.Intn(len(nodes))], states[rng.Intn(len(states))])
		if rng.Intn(2) == 0 {
			tk.DesiredState = swarm.TaskStateShutdown
		}
		return tk
	}
	tab := newTables()[KindTask]
	model := map[string]*Task{}
	for step := 0; step < 5000; step++ {
		id := fmt.Sprint("t", rng.Intn(300))
		switch cur := model[id]; {
		case cur == nil:
			tk := random(id)
			tab.put(tk)
			model[id] = tk
		case rng.Intn(3) == 0:
			tab.del(id)
			delete(model, id)
		default:
			tk := random(id)
			tab.put(tk)
			model[id] = tk
		}
		if step%97 == 0 || step > 4900 {
			checkTable(t, tab, model)
		}
	}
	// Empty it: the rows and buckets must go back to nothing.
	for id := range model {
		tab.del(id)
		delete(model, id)
	}
	checkTable(t, tab, model)
	for _, sec := range tab.secs {
		if len(sec.vals) != 0 {
			t.Fatalf("index %s keeps %d values after everything was deleted", sec.name, len(sec.vals))
		}
	}
}

func checkTable(t *testing.T, tab *table, model map[string]*Task) {
	t.Helper()
	ids := func(objs []Object) []string {
		out := make([]string, 0, len(objs))
		for _, o := range objs {
			out = append(out, o.GetID())
		}
		slices.Sort(out)
		return out
	}
	want := func(match func(*Task) bool) []string {
		var out []string
		for id, tk := range model {
			if match(tk) {
				out = append(out, id)
			}
		}
		slices.Sort(out)
		if out == nil {
			out = []string{}
		}
		return out
	}
	if len(tab.rows) != len(model) || len(tab.ids) != len(model) {
		t.Fatalf("%d rows, %d ids, want %d", len(tab.rows), len(tab.ids), len(model))
	}
	for id, tk := range model {
		if tab.get(id) != tk {
			t.Fatalf("get(%s) is not the stored version", id)
		}
	}
	checks := []struct {
		by    By
		match func(*Task) bool
	}{
		{All(), func(*Task) bool { return true }},
		{ByServiceID("svc1"), func(tk *Task) bool { return tk.ServiceID == "svc1" }},
		{ByNodeID("n2"), func(tk *Task) bool { return tk.NodeID == "n2" }},
		{ByNodeID(""), func(*Task) bool { return false }},
		{BySlot("svc0", 2), func(tk *Task) bool { return tk.ServiceID == "svc0" && tk.Slot == 2 }},
		{BySlot("svc0", 0), func(*Task) bool { return false }},
		{ByTaskState(string(swarm.TaskStateAssigned)), func(tk *Task) bool { return tk.Status.State == swarm.TaskStateAssigned }},
		{ByDesiredState(string(swarm.TaskStateShutdown)), func(tk *Task) bool { return tk.DesiredState == swarm.TaskStateShutdown }},
		{ByIDPrefix("t1"), func(tk *Task) bool { return tk.ID[:2] == "t1" }},
	}
	for _, c := range checks {
		got, exp := ids(tab.find(c.by)), want(c.match)
		if !slices.Equal(got, exp) {
			t.Fatalf("find(%+v) = %v, want %v", c.by, got, exp)
		}
		if n := tab.count(c.by); n != len(exp) {
			t.Fatalf("count(%+v) = %d, want %d", c.by, n, len(exp))
		}
	}
	// Every index position points back at its row.
	for i := range tab.rows {
		r := &tab.rows[i]
		for _, sec := range tab.secs {
			v := sec.ix.fn(r.obj)
			p := r.pos[sec.slot]
			if v == "" {
				if p != -1 {
					t.Fatalf("row %d has position %d in %s without a value", i, p, sec.name)
				}
				continue
			}
			if b := sec.vals[v]; b == nil || int(p) >= len(b.rows) || b.rows[p] != int32(i) {
				t.Fatalf("row %d (%s): %s bucket %q does not point back", i, r.obj.GetID(), sec.name, v)
			}
		}
	}
}
