package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/errdefs"
)

// Stop shuts a node down cleanly, as a host does: SIGTERM to the daemon
// (SIGKILL if it has not exited after 15s), then SIGTERM to everything left
// (containers, shims), and SIGKILL after the lab's stop timeout.
func (l *Lab) Stop(ctx context.Context, node string) error {
	mu := l.nodeLock(node)
	mu.Lock()
	defer mu.Unlock()
	ni, st, err := l.nodeInfo(node)
	if err != nil {
		return err
	}
	if pid := l.daemonPid(ni); pid > 0 {
		_ = unix.Kill(pid, syscall.SIGTERM)
		if !waitFor(ctx, 15*time.Second, func() bool { return !alive(pid) }) {
			_ = unix.Kill(pid, syscall.SIGKILL)
		}
	}
	m := l.nodeMatcher(ni)
	if !signalAll(ctx, m, syscall.SIGTERM, time.Duration(st.StopTimeout)) {
		if err := killAll(ctx, m); err != nil {
			return err
		}
	}
	return l.update(func(s *State) error {
		n, err := s.node(node)
		if err != nil {
			return err
		}
		n.Pid, n.State = 0, StateStopped
		return nil
	})
}

// Kill makes a node die as a host losing power: SIGKILL to its daemon and
// every shim, container and other process it has, with no cleanup at all.
func (l *Lab) Kill(ctx context.Context, node string) error {
	mu := l.nodeLock(node)
	mu.Lock()
	defer mu.Unlock()
	ni, _, err := l.nodeInfo(node)
	if err != nil {
		return err
	}
	if err := killAll(ctx, l.nodeMatcher(ni)); err != nil {
		return err
	}
	return l.update(func(s *State) error {
		n, err := s.node(node)
		if err != nil {
			return err
		}
		n.Pid, n.State = 0, StateKilled
		return nil
	})
}

// Start boots a stopped or killed node: what a reboot clears is cleared
// (leftover processes, mounts, the exec root, container cgroups, the
// network namespace's contents), the data root is kept, and the daemon
// starts with the same flags. A node in a swarm rejoins from its own state.
func (l *Lab) Start(ctx context.Context, node string) error {
	mu := l.nodeLock(node)
	mu.Lock()
	defer mu.Unlock()
	ni, st, err := l.nodeInfo(node)
	if err != nil {
		return err
	}
	if pid := l.daemonPid(ni); pid > 0 {
		return errdefs.Conflict("%s is running (pid %d): stop or kill it first", node, pid)
	}
	if err := l.boot(ctx, &ni, st); err != nil {
		return fmt.Errorf("boot %s: %w", node, err)
	}
	pid, err := l.startDaemon(ctx, st, &ni, 20*time.Second)
	if err != nil {
		return err
	}
	return l.update(func(s *State) error {
		n, err := s.node(node)
		if err != nil {
			return err
		}
		n.Pid, n.State = pid, StateRunning
		return nil
	})
}

// RestartDaemon restarts only a node's daemon, as an engine upgrade does:
// SIGTERM (SIGKILL after 15 s), then the same daemon again with the same
// flags. Containers, shims and the network stay as they are.
func (l *Lab) RestartDaemon(ctx context.Context, node string) error {
	mu := l.nodeLock(node)
	mu.Lock()
	defer mu.Unlock()
	ni, st, err := l.nodeInfo(node)
	if err != nil {
		return err
	}
	pid := l.daemonPid(ni)
	if pid == 0 {
		return errdefs.Conflict("%s's daemon is not running: use start", node)
	}
	_ = unix.Kill(pid, syscall.SIGTERM)
	if !waitFor(ctx, 15*time.Second, func() bool { return !alive(pid) }) {
		_ = unix.Kill(pid, syscall.SIGKILL)
		waitFor(ctx, 5*time.Second, func() bool { return !alive(pid) })
	}
	pid, err = l.startDaemon(ctx, st, &ni, 20*time.Second)
	if err != nil {
		return err
	}
	return l.update(func(s *State) error {
		n, err := s.node(node)
		if err != nil {
			return err
		}
		n.Pid, n.State = pid, StateRunning
		return nil
	})
}

// boot clears a node's volatile state as a reboot would.
func (l *Lab) boot(ctx context.Context, ni *NodeInfo, st *State) error {
	if err := killAll(ctx, l.nodeMatcher(*ni)); err != nil {
		return err
	}
	if err := unmountUnder([]string{ni.ExecRoot, ni.DataRoot}); err != nil {
		return err
	}
	if err := os.RemoveAll(ni.ExecRoot); err != nil {
		return err
	}
	// Old container cgroups go if they can; one still holding a zombie
	// (an orphan pid 1 has not reaped yet) is harmless to the new boot and
	// goes at Down.
	for _, dir := range cgroupDirs(l.hs, ni.CgroupParent) {
		_ = removeCgroupTree(dir)
	}
	// A fresh network namespace: links, addresses, bridges and nftables
	// tables the daemon made before are gone, as after a reboot.
	if err := deleteLink(ni.Veth); err != nil {
		return err
	}
	if err := removeNamespace(ni.Netns); err != nil {
		return err
	}
	subnet, err := netip.ParsePrefix(st.Subnet)
	if err != nil {
		return errdefs.System("lab state has a bad subnet %q", st.Subnet)
	}
	return l.makeNodeNetwork(ni, subnet)
}

// makeNodeNetwork creates the node's network namespace and its link.
func (l *Lab) makeNodeNetwork(ni *NodeInfo, subnet netip.Prefix) error {
	if err := makeNamespace(ni.Netns, unix.CLONE_NEWNET, nil); err != nil {
		return err
	}
	ip, err := netip.ParseAddr(ni.IP)
	if err != nil {
		return errdefs.System("lab state has a bad address %q for %s", ni.IP, ni.Name)
	}
	return setupNodeLink(l.names.bridge(), ni.Veth, ni.Netns, ip, subnet)
}

// Partition cuts all traffic between each of nodes and each of from (every
// other node when from is empty), both ways. Partitions add up until Heal.
func (l *Lab) Partition(ctx context.Context, nodes, from []string) error {
	return l.update(func(s *State) error {
		all := make([]string, 0, len(s.Nodes))
		ports := map[string]string{}
		for _, n := range s.Nodes {
			all = append(all, n.Name)
			ports[n.Name] = n.Veth
		}
		pairs, err := partitionPairs(all, nodes, from)
		if err != nil {
			return err
		}
		merged := mergePairs(s.Partitions, pairs)
		rules, err := dropRules(merged, ports)
		if err != nil {
			return err
		}
		if err := applyRules(l.names.nftTable(), rules); err != nil {
			return err
		}
		s.Partitions = merged
		return nil
	})
}

// Heal removes every partition.
func (l *Lab) Heal(ctx context.Context) error {
	return l.update(func(s *State) error {
		if err := removeTable(l.names.nftTable()); err != nil {
			return err
		}
		s.Partitions = nil
		return nil
	})
}
