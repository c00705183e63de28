package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/errdefs"
)

const swarmPort = 2377

// initSpec is what `docker swarm init` sends by default, with the heartbeat
// period the caller wants (tests shorten it to see nodes go down quickly).
func initSpec(heartbeat time.Duration) swarm.Spec {
	retention := int64(5)
	keep := uint64(0)
	if heartbeat <= 0 {
		heartbeat = 5 * time.Second
	}
	return swarm.Spec{
		Annotations:   swarm.Annotations{Name: "default"},
		Orchestration: swarm.OrchestrationConfig{TaskHistoryRetentionLimit: &retention},
		Raft: swarm.RaftConfig{
			SnapshotInterval:           10000,
			KeepOldSnapshots:           &keep,
			LogEntriesForSlowFollowers: 500,
			HeartbeatTick:              1,
			ElectionTick:               10,
		},
		Dispatcher: swarm.DispatcherConfig{HeartbeatPeriod: heartbeat},
		CAConfig:   swarm.CAConfig{NodeCertExpiry: 90 * 24 * time.Hour},
	}
}

// swarmUnsupported turns "the daemon has no such route" into a clear error.
func swarmUnsupported(node string, err error) error {
	if cerrdefs.IsNotFound(err) || cerrdefs.IsNotImplemented(err) {
		return errdefs.NotImplemented("the daemon on %s does not support swarm mode (%v): use --no-swarm", node, err)
	}
	return err
}

// setupSwarm makes node1 the first manager, joins the other managers one by
// one (each join changes the Raft membership) and the workers all at once,
// then waits until the managers list every node as ready. Nodes already in
// a swarm (a lab brought up again on kept data) are left as they are.
func (l *Lab) setupSwarm(ctx context.Context, st *State, heartbeat time.Duration, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	first := st.Nodes[0]
	c1 := l.client(first.Name)
	active := func(c *client.Client) (bool, error) {
		info, err := c.Info(ctx, client.InfoOptions{})
		if err != nil {
			return false, err
		}
		return info.Info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive, nil
	}
	in, err := active(c1)
	if err != nil {
		return err
	}
	remote := net.JoinHostPort(first.IP, strconv.Itoa(swarmPort))
	if !in {
		_, err := c1.SwarmInit(ctx, client.SwarmInitOptions{
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(swarmPort),
			AdvertiseAddr: remote,
			Spec:          initSpec(heartbeat),
		})
		if err != nil {
			return swarmUnsupported(first.Name, fmt.Errorf("swarm init on %s: %w", first.Name, err))
		}
	}
	sw, err := c1.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return swarmUnsupported(first.Name, fmt.Errorf("swarm inspect on %s: %w", first.Name, err))
	}
	join := func(n NodeInfo) error {
		c := l.client(n.Name)
		in, err := active(c)
		if err != nil || in {
			return err
		}
		token := sw.Swarm.JoinTokens.Worker
		if n.Role == RoleManager {
			token = sw.Swarm.JoinTokens.Manager
		}
		_, err = c.SwarmJoin(ctx, client.SwarmJoinOptions{
			ListenAddr:    "0.0.0.0:" + strconv.Itoa(swarmPort),
			AdvertiseAddr: net.JoinHostPort(n.IP, strconv.Itoa(swarmPort)),
			RemoteAddrs:   []string{remote},
			JoinToken:     token,
		})
		if err != nil {
			return swarmUnsupported(n.Name, fmt.Errorf("swarm join of %s: %w", n.Name, err))
		}
		return nil
	}
	var workers []NodeInfo
	for _, n := range st.Nodes[1:] {
		if n.Role == RoleManager {
			if err := join(n); err != nil {
				return err
			}
		} else {
			workers = append(workers, n)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i, n := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = join(n)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	all := make([]string, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		all = append(all, n.Name)
	}
	return l.waitSwarmReady(ctx, first.Name, all)
}

// waitSwarmReady polls the node list on a manager until every node named
// in want (by hostname, which is the lab node name) is ready.
func (l *Lab) waitSwarmReady(ctx context.Context, manager string, want []string) error {
	c := l.client(manager)
	var last string
	ok := waitFor(ctx, time.Hour, func() bool {
		res, err := c.NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			last = err.Error()
			return false
		}
		ready := map[string]bool{}
		for _, n := range res.Items {
			if n.Status.State == swarm.NodeStateReady {
				ready[n.Description.Hostname] = true
			}
		}
		var missing []string
		for _, w := range want {
			if !ready[w] {
				missing = append(missing, w)
			}
		}
		last = fmt.Sprintf("not ready: %v", missing)
		return len(missing) == 0
	})
	if !ok {
		return errdefs.Unavailable("swarm nodes not ready in time (%s)", last)
	}
	return nil
}
