package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

// BenchmarkAssignTasks measures the store side of scheduling: n pending
// tasks updated with a node and ASSIGNED through Batch.
func BenchmarkAssignTasks(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				s := New()
				s.Batch(context.Background(), func(bt *Batch) error {
					for j := 0; j < n; j++ {
						bt.Update(func(tx Tx) error {
							return tx.Create(task(fmt.Sprint("t", j), "svc", j+1, "", swarm.TaskStatePending))
						})
					}
					return nil
				})
				var pending []*Task
				s.View(func(rt ReadTx) { pending = rt.FindTasks(ByTaskState(string(swarm.TaskStatePending))) })
				b.StartTimer()
				err := s.Batch(context.Background(), func(bt *Batch) error {
					for j, t := range pending {
						c := t.Copy()
						c.NodeID = fmt.Sprint("node", j%1000)
						c.Status.State = swarm.TaskStateAssigned
						if err := bt.Update(func(tx Tx) error { return tx.Update(c) }); err != nil {
							return err
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
