package manager

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
)

// roleReconciler (leader only) keeps the Raft voters in line with node
// roles: a voter whose node was demoted is removed from Raft — when that is
// the leader itself, leadership moves first and the next leader removes it.
// Promotions need no action here: the promoted node gets a manager
// certificate, starts Raft and asks to join (RaftJoin).
type roleReconciler struct {
	m *Manager
}

func (r *roleReconciler) Run(ctx context.Context) error {
	events, cancel := r.m.store.Watch(store.KindNode)
	defer cancel()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		r.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-events:
		case <-t.C:
		}
	}
}

func (r *roleReconciler) reconcile(ctx context.Context) {
	members, err := r.m.raft.Members()
	if err != nil {
		return
	}
	self := r.m.cfg.NodeID
	for _, mb := range members {
		var n *store.Node
		r.m.store.View(func(rt store.ReadTx) { n = rt.GetNode(mb.ID) })
		if n == nil || n.Spec.Role != swarm.NodeRoleWorker {
			continue
		}
		if mb.ID == self {
			r.m.log.Info("this leader was demoted: transferring leadership")
			if err := r.m.raft.TransferLeadership(ctx); err != nil {
				r.m.log.Warn("leadership transfer failed", "err", err)
			}
			return
		}
		reach := func(id string) bool { return id == self || r.m.reach.Reachable(id) }
		if !sraft.CanRemove(members, mb.ID, reach) {
			r.m.log.Warn("demoted manager kept in raft: removing it would lose the quorum", "node", mb.ID)
			continue
		}
		if err := r.m.raft.RemoveServer(ctx, mb.ID); err != nil {
			r.m.log.Warn("removing demoted manager from raft failed", "node", mb.ID, "err", err)
		}
	}
}

// reachability probes the other managers (GET /raft/status over mTLS)
// every second; a manager that answered within the last few seconds is
// reachable. It feeds ManagerStatus.Reachability and the quorum checks.
type reachability struct {
	self   string
	raft   *sraft.Node
	client *http.Client

	mu    sync.Mutex
	last  map[string]time.Time // last answer
	first map[string]time.Time // first seen in the configuration
}

const (
	probeEvery   = time.Second
	probeTimeout = time.Second
	reachableFor = 3 * time.Second
)

func newReachability(self string, r *sraft.Node, c *http.Client) *reachability {
	return &reachability{self: self, raft: r, client: c, last: map[string]time.Time{}, first: map[string]time.Time{}}
}

// Reachable reports whether nodeID answered recently (always true for this
// manager itself).
func (r *reachability) Reachable(nodeID string) bool {
	if nodeID == r.self {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if f, ok := r.first[nodeID]; !ok || time.Since(f) < reachableFor {
		// Not probed yet (a manager that just joined, or this manager
		// just started): presumed reachable until probes say otherwise.
		return true
	}
	return time.Since(r.last[nodeID]) < reachableFor
}

func (r *reachability) run(ctx context.Context) {
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	for {
		members, err := r.raft.Members()
		if err == nil {
			var wg sync.WaitGroup
			now := time.Now()
			r.mu.Lock()
			for _, mb := range members {
				if _, ok := r.first[mb.ID]; !ok {
					r.first[mb.ID] = now
				}
			}
			r.mu.Unlock()
			for _, mb := range members {
				if mb.ID == r.self {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					pctx, cancel := context.WithTimeout(ctx, probeTimeout)
					defer cancel()
					var st RaftStatus
					if transport.Do(pctx, r.client, http.MethodGet, mb.Addr, PathRaftStat, nil, &st) == nil && st.NodeID == mb.ID {
						r.mu.Lock()
						r.last[mb.ID] = time.Now()
						r.mu.Unlock()
					}
				}()
			}
			wg.Wait()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
