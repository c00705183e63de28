package dispatcher

import (
	"context"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
)

// writer expires silent nodes and orphans the tasks of long-DOWN nodes
// once per tick, and writes the queued status changes a batch delay after
// they arrive. While a write waits for Raft, new changes gather for the
// next one.
func (d *Dispatcher) writer(ctx context.Context) {
	t := time.NewTicker(d.cfg.Tick)
	defer t.Stop()
	gather := time.NewTimer(d.cfg.BatchDelay)
	gather.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.expire()
			d.orphan(ctx)
			d.flush(ctx)
			continue
		case <-d.wkick:
		}
		gather.Reset(d.cfg.BatchDelay)
		select {
		case <-ctx.Done():
			gather.Stop()
			return
		case <-gather.C:
		}
		d.flush(ctx)
	}
}

// expire marks DOWN the nodes whose heartbeat deadline passed.
func (d *Dispatcher) expire() {
	now := d.cfg.Now()
	type gone struct{ id, msg string }
	var expired []gone
	d.mu.Lock()
	for id, ln := range d.live {
		if !now.After(ln.deadline) {
			continue
		}
		msg := MsgHeartbeatFailure
		if !ln.everRegistered {
			msg = MsgUnknownFailure
		}
		delete(d.live, id)
		if s := d.sessions[id]; s != nil {
			s.close()
			delete(d.sessions, id)
		}
		d.down[id] = now
		expired = append(expired, gone{id, msg})
	}
	d.mu.Unlock()
	for _, g := range expired {
		d.log.Info("node missed its heartbeats", "node", g.id)
		d.queueNode(g.id, nodeUpdate{state: swarm.NodeStateDown, message: g.msg})
	}
}

// orphan moves the in-flight tasks of nodes DOWN for OrphanAfter to
// ORPHANED: nobody knows whether they still run.
func (d *Dispatcher) orphan(ctx context.Context) {
	now := d.cfg.Now()
	var ids []string
	d.mu.Lock()
	for id, since := range d.down {
		if now.Sub(since) >= d.cfg.OrphanAfter {
			ids = append(ids, id)
			delete(d.down, id)
		}
	}
	d.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	var tasks []*store.Task
	d.s.View(func(rt store.ReadTx) {
		for _, id := range ids {
			tasks = append(tasks, rt.FindTasks(store.ByNodeID(id))...)
		}
	})
	err := d.s.Batch(ctx, func(b *store.Batch) error {
		for _, t := range tasks {
			id := t.ID
			if err := b.Update(func(tx store.Tx) error {
				cur := tx.GetTask(id)
				if cur == nil {
					return nil
				}
				r := wire.Rank(cur.Status.State)
				if r < wire.Rank(swarm.TaskStateAssigned) || r > wire.Rank(swarm.TaskStateRunning) {
					return nil
				}
				c := cur.Copy()
				c.Status.State = swarm.TaskStateOrphaned
				c.Status.Message = "node down for too long"
				c.Status.Timestamp = now
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.log.Warn("orphaning tasks failed", "nodes", ids, "err", err)
	}
}

// flush writes the queued task and node status changes in one batch.
func (d *Dispatcher) flush(ctx context.Context) {
	d.wmu.Lock()
	tasks, nodes := d.taskUpdates, d.nodeUpdates
	if len(tasks) == 0 && len(nodes) == 0 {
		d.wmu.Unlock()
		return
	}
	d.taskUpdates = map[string]pendingStatus{}
	d.nodeUpdates = map[string]nodeUpdate{}
	d.wmu.Unlock()

	err := d.s.Batch(ctx, func(b *store.Batch) error {
		for id, u := range tasks {
			if err := b.Update(func(tx store.Tx) error {
				cur := tx.GetTask(id)
				if cur == nil || cur.NodeID != u.nodeID || !forward(cur.Status, u.status) {
					return nil
				}
				c := cur.Copy()
				c.Status = u.status
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		for id, u := range nodes {
			if err := b.Update(func(tx store.Tx) error {
				cur := tx.GetNode(id)
				if cur == nil {
					return nil
				}
				c := cur.Copy()
				c.Status.State = u.state
				c.Status.Message = u.message
				if u.addr != "" {
					c.Status.Addr = u.addr
				}
				if u.desc != nil {
					c.Description = *u.desc
				}
				return tx.Update(c)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		d.log.Warn("writing status updates failed", "tasks", len(tasks), "nodes", len(nodes), "err", err)
	}
}

// forward reports whether next may replace cur: states only move forward,
// a terminal state is final, and identical reports are not rewritten.
func forward(cur, next swarm.TaskStatus) bool {
	if wire.Terminal(cur.State) {
		return false
	}
	if wire.Rank(next.State) < wire.Rank(cur.State) {
		return false
	}
	if next.State == cur.State && next.Message == cur.Message && next.Err == cur.Err &&
		sameContainerStatus(next.ContainerStatus, cur.ContainerStatus) {
		return false
	}
	return true
}

func sameContainerStatus(a, b *swarm.ContainerStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
