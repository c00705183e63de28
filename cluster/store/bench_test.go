package store

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// BenchmarkAssignTasks measures the store side of scheduling: n pending
// tasks updated with a node and ASSIGNED, through Batch.Update (one task
// per atomic group, as an orchestrator writes) and through
// Batch.UpdateObjects (as the scheduler writes). The 1M size needs
// SHOAL_BENCH_HUGE=1.
func BenchmarkAssignTasks(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		for _, bulk := range []bool{false, true} {
			name := fmt.Sprint(n)
			if bulk {
				name += "/UpdateObjects"
			}
			b.Run(name, func(b *testing.B) {
				if n > 100_000 && os.Getenv("SHOAL_BENCH_HUGE") == "" {
					b.Skip("set SHOAL_BENCH_HUGE=1 to run")
				}
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					s := pendingStore(b, n)
					var pending []*Task
					s.View(func(rt ReadTx) { pending = rt.FindTasks(ByTaskState(string(swarm.TaskStatePending))) })
					runtime.GC()
					b.StartTimer()
					err := s.Batch(context.Background(), func(bt *Batch) error {
						objs := make([]Object, 0, 1024)
						for j, t := range pending {
							c := t.Copy()
							c.NodeID = fmt.Sprint("node", j%1000)
							c.Status.State = swarm.TaskStateAssigned
							if !bulk {
								if err := bt.Update(func(tx Tx) error { return tx.Update(c) }); err != nil {
									return err
								}
								continue
							}
							if objs = append(objs, c); len(objs) == cap(objs) || j == len(pending)-1 {
								if err := bt.UpdateObjects(objs...); err != nil {
									return err
								}
								objs = objs[:0]
							}
						}
						return nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
			})
		}
	}
}

func pendingStore(b *testing.B, n int) *Store {
	s := New()
	err := s.Batch(context.Background(), func(bt *Batch) error {
		for j := 0; j < n; j += 100 {
			err := bt.Update(func(tx Tx) error {
				for k := j; k < min(j+100, n); k++ {
					if err := tx.Create(task(fmt.Sprintf("t%024d", k), "svc", k+1, "", swarm.TaskStatePending)); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
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
