package dispatcher

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
)

// BenchmarkDispatch measures assignment delivery: b.N tasks assigned in
// bulk across 200 connected nodes, until every node's stream carried its
// tasks, then status reports for all of them written back.
func BenchmarkDispatch(b *testing.B) {
	const nodes = 200
	e := newEnv(b, func(tx store.Tx) error {
		for i := range nodes {
			if err := tx.Create(mkNode(fmt.Sprintf("n%03d", i), swarm.NodeStateDown)); err != nil {
				return err
			}
		}
		return tx.Create(mkService("s1", "web"))
	})
	var delivered atomic.Int64
	streams := make([]*stream, nodes)
	for i := range nodes {
		s, _ := e.open(fmt.Sprintf("n%03d", i), wire.SessionRequest{})
		s.nextAssignments()
		streams[i] = s
		go func() {
			for m := range s.msgs {
				if m.Assignments != nil {
					delivered.Add(int64(len(m.Assignments.Tasks)))
				}
			}
		}()
	}
	b.ResetTimer()
	err := e.s.Batch(context.Background(), func(bt *store.Batch) error {
		for i := range b.N {
			tk := mkTask(fmt.Sprintf("t%07d", i), "s1", fmt.Sprintf("n%03d", i%nodes), i+1, swarm.TaskStateAssigned)
			if err := bt.Update(func(tx store.Tx) error { return tx.Create(tk) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for delivered.Load() < int64(b.N) {
		select {
		case <-b.Context().Done():
			return
		default:
		}
		waitTick()
	}
	// Every task reports RUNNING through its node's session.
	for i := range nodes {
		var ups []wire.TaskStatusUpdate
		for j := i; j < b.N; j += nodes {
			ups = append(ups, wire.TaskStatusUpdate{TaskID: fmt.Sprintf("t%07d", j), Status: swarm.TaskStatus{State: swarm.TaskStateRunning}})
		}
		if len(ups) > 0 {
			e.post(fmt.Sprintf("n%03d", i), wire.PathStatus, wire.StatusRequest{SessionID: streams[i].id, Updates: ups}, nil)
		}
	}
	for {
		var running int
		e.s.View(func(rt store.ReadTx) { running = len(rt.FindTasks(store.ByTaskState(string(swarm.TaskStateRunning)))) })
		if running == b.N {
			break
		}
		waitTick()
	}
	b.StopTimer()
	for _, s := range streams {
		s.cancel()
	}
}

func waitTick() { time.Sleep(time.Millisecond) }
