package allocator

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/internal/testutil"
)

// nets attaches tasks to the network "net1" once it exists.
type nets struct {
	mu       sync.Mutex
	released []string
}

func (n *nets) Allocate(rt store.ReadTx, svc *store.Service, t *store.Task) error {
	net := rt.GetNetwork("net1")
	if net == nil {
		return errors.New("network net1 not found")
	}
	t.NetworksAttachments = []swarm.NetworkAttachment{{Network: net.Network, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}}}
	return nil
}

func (n *nets) Release(t *store.Task) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.released = append(n.released, t.ID)
}

func run(t *testing.T, s *store.Store, cfg Config) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		New(s, cfg).Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func update(t *testing.T, s *store.Store, fn func(tx store.Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func waitTask(t *testing.T, s *store.Store, id string, cond func(*store.Task) bool) *store.Task {
	t.Helper()
	events, cancel := s.Watch(store.KindTask)
	defer cancel()
	deadline := time.After(10 * time.Second)
	for {
		var task *store.Task
		s.View(func(rt store.ReadTx) { task = rt.GetTask(id) })
		if task != nil && cond(task) {
			return task
		}
		select {
		case <-events:
		case <-deadline:
			t.Fatalf("task %s: timed out (now %+v)", id, task)
		}
	}
}

func newTask(id string, desired swarm.TaskState) *store.Task {
	tk := &store.Task{}
	tk.ID, tk.ServiceID, tk.DesiredState = id, "svc", desired
	tk.Status = swarm.TaskStatus{State: swarm.TaskStateNew, Message: orchestrator.MsgCreated}
	return tk
}

func TestAllocateToPending(t *testing.T) {
	s := store.New()
	run(t, s, Config{})
	update(t, s, func(tx store.Tx) error {
		if err := tx.Create(newTask("t1", swarm.TaskStateRunning)); err != nil {
			return err
		}
		return tx.Create(newTask("t2", swarm.TaskStateShutdown))
	})
	got := waitTask(t, s, "t1", func(tk *store.Task) bool { return tk.Status.State == swarm.TaskStatePending })
	if got.Status.Message != "pending task scheduling" {
		t.Fatalf("message %q", got.Status.Message)
	}
	waitTask(t, s, "t2", func(tk *store.Task) bool {
		return tk.Status.State == swarm.TaskStateShutdown && tk.Status.Message == orchestrator.MsgPreempted
	})
}

func TestNetworkAllocation(t *testing.T) {
	s := store.New()
	n := &nets{}
	run(t, s, Config{Networks: n})
	update(t, s, func(tx store.Tx) error {
		svc := &store.Service{}
		svc.ID = "svc"
		svc.Spec.Name = "svc"
		if err := tx.Create(svc); err != nil {
			return err
		}
		return tx.Create(newTask("t1", swarm.TaskStateRunning))
	})
	waitTask(t, s, "t1", func(tk *store.Task) bool {
		return tk.Status.State == swarm.TaskStateNew && tk.Status.Err == "network net1 not found"
	})
	update(t, s, func(tx store.Tx) error {
		net := &store.Network{}
		net.ID = "net1"
		net.Spec.Name = "net1"
		return tx.Create(net)
	})
	got := waitTask(t, s, "t1", func(tk *store.Task) bool { return tk.Status.State == swarm.TaskStatePending })
	if len(got.NetworksAttachments) != 1 || got.Status.Err != "" {
		t.Fatalf("%+v", got)
	}
	// An ended task gives its addresses back.
	update(t, s, func(tx store.Tx) error {
		c := tx.GetTask("t1").Copy()
		c.Status.State = swarm.TaskStateFailed
		return tx.Update(c)
	})
	testutil.Eventually(t, 10*time.Second, func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.released) == 1 && n.released[0] == "t1"
	}, "t1's network attachment released")
}
