package scheduler

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/identity"
	"github.com/shoal/shoal/cluster/store"
)

// The shapes of swarmkit's BenchmarkScheduler: PENDING tasks already in the
// store, measured until every one is ASSIGNED. The 1M-task shape needs
// SHOAL_BENCH_HUGE=1 (it takes half a minute to set up and ~3 GiB).
//
//	go test -run XXX -bench Scheduler -benchtime 1x ./cluster/scheduler/
func BenchmarkScheduler(b *testing.B) {
	shapes := []struct {
		nodes, tasks, services int
		huge                   bool
	}{
		{1_000, 10_000, 1, false},
		{1_000, 100_000, 1, false},
		{100_000, 1_000, 1, false},
		{1_000, 100_000, 100, false},
		{10_000, 1_000_000, 1, true},
	}
	for _, sh := range shapes {
		for _, constrained := range []bool{false, true} {
			name := fmt.Sprintf("nodes=%d/tasks=%d/services=%d", sh.nodes, sh.tasks, sh.services)
			if constrained {
				name += "/constrained"
			}
			b.Run(name, func(b *testing.B) {
				if sh.huge && os.Getenv("SHOAL_BENCH_HUGE") == "" {
					b.Skip("set SHOAL_BENCH_HUGE=1 to run")
				}
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					s := benchStore(b, sh.nodes, sh.tasks, sh.services, constrained)
					runtime.GC()
					b.StartTimer()
					benchRun(b, s, sh.tasks)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sh.tasks), "ns/task")
			})
		}
	}
}

// benchStore builds nodes and pending tasks. Constrained tasks ask for a
// zone label half the nodes have, and reserve CPU and memory.
func benchStore(b *testing.B, nodes, tasks, services int, constrained bool) *store.Store {
	s := store.New()
	ctx := context.Background()
	err := s.Batch(ctx, func(bt *store.Batch) error {
		for i := 0; i < nodes; i++ {
			n := &store.Node{}
			n.ID = identity.NewID() // random, as real node IDs
			n.Spec.Availability = swarm.NodeAvailabilityActive
			n.Spec.Role = swarm.NodeRoleWorker
			zone := "a"
			if i%2 == 1 {
				zone = "b"
			}
			n.Spec.Labels = map[string]string{"zone": zone}
			n.Status.State = swarm.NodeStateReady
			n.Description.Hostname = fmt.Sprintf("host%d", i)
			n.Description.Resources = swarm.Resources{NanoCPUs: 1000e9, MemoryBytes: 1 << 40}
			if err := bt.Update(func(tx store.Tx) error { return tx.Create(n) }); err != nil {
				return err
			}
		}
		for i := 0; i < services; i++ {
			svc := &store.Service{SpecVersion: 1}
			svc.ID = fmt.Sprintf("svc%022d", i)
			svc.Spec.Name = fmt.Sprintf("svc%d", i)
			svc.Spec.TaskTemplate = taskSpec(constrained)
			if err := bt.Update(func(tx store.Tx) error { return tx.Create(svc) }); err != nil {
				return err
			}
		}
		spec := taskSpec(constrained)
		for i := 0; i < tasks; i += 100 {
			if err := bt.Update(func(tx store.Tx) error {
				for j := i; j < min(i+100, tasks); j++ {
					t := &store.Task{SpecVersion: 1}
					t.ID = identity.NewID()
					t.ServiceID = fmt.Sprintf("svc%022d", j%services)
					t.Slot = j/services + 1
					t.Spec = spec
					t.DesiredState = swarm.TaskStateRunning
					t.Status.State = swarm.TaskStatePending
					if err := tx.Create(t); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func taskSpec(constrained bool) swarm.TaskSpec {
	spec := swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "busybox"}}
	if constrained {
		spec.Placement = &swarm.Placement{Constraints: []string{"node.labels.zone==a", "node.role!=manager"}}
		spec.Resources = &swarm.ResourceRequirements{Reservations: &swarm.Resources{NanoCPUs: 1e6, MemoryBytes: 1 << 20}}
	}
	return spec
}

// benchRun runs a scheduler until n tasks are assigned.
func benchRun(b *testing.B, s *store.Store, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, stop := s.Watch(store.KindTask)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- New(s, Config{}).Run(ctx) }()
	assigned := 0
	timeout := time.After(10 * time.Minute)
	for assigned < n {
		select {
		case ev := <-events:
			if t := ev.Object.(*store.Task); ev.Op == store.OpUpdate && t.Status.State == swarm.TaskStateAssigned &&
				ev.Old.(*store.Task).Status.State == swarm.TaskStatePending {
				assigned++
			}
		case err := <-done:
			b.Fatalf("scheduler stopped: %v", err)
		case <-timeout:
			b.Fatalf("only %d of %d tasks assigned", assigned, n)
		}
	}
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkPlace measures the placement decisions alone (no store writes):
// one pass over a group of pending tasks.
func BenchmarkPlace(b *testing.B) {
	for _, sh := range []struct{ nodes, tasks int }{{1_000, 100_000}, {100_000, 1_000}, {10_000, 1_000_000}} {
		for _, constrained := range []bool{false, true} {
			name := fmt.Sprintf("nodes=%d/tasks=%d", sh.nodes, sh.tasks)
			if constrained {
				name += "/constrained"
			}
			b.Run(name, func(b *testing.B) {
				s := benchStore(b, sh.nodes, sh.tasks, 1, constrained)
				b.ResetTimer() // the store's setup is not placement
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					sch := New(s, Config{})
					s.View(sch.load)
					runtime.GC()
					b.StartTimer()
					ds := make([]decision, 0, sh.tasks)
					for _, g := range sch.groups {
						ds = sch.scheduleGroup(g, time.Now(), ds)
					}
					if len(ds) != sh.tasks {
						b.Fatalf("%d decisions", len(ds))
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*sh.tasks), "ns/task")
			})
		}
	}
}
