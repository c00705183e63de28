// Package orchestrator holds what the leader-side components share: the
// order of task states, making tasks from services, telling up-to-date tasks
// from dirty ones, and the defaults of restart and update policies. The
// components themselves live in the subpackages: replicated, global,
// restart (the restart supervisor), update (rolling updates and rollbacks)
// and taskreaper; the allocator and scheduler are cluster/allocator and
// cluster/scheduler.
//
// Every component is leader-only: Run(ctx) reads the store, writes through
// it, and returns when ctx ends (leadership lost).
package orchestrator

import (
	"context"
	"maps"
	"reflect"
	"sort"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/constraint"
	"github.com/shoal/shoal/cluster/identity"
	"github.com/shoal/shoal/cluster/store"
)

// Component is what cluster/manager runs while this manager leads.
type Component interface {
	Run(ctx context.Context) error
}

// Defaults of docker's service policies.
const (
	DefaultRestartDelay = 5 * time.Second
	DefaultMonitor      = 5 * time.Second
	// DefaultTaskHistory is Cluster.Spec.Orchestration.TaskHistoryRetentionLimit's default.
	DefaultTaskHistory = 5
)

// RebalanceLabel opts a replicated service into automatic rebalancing:
// when a node joins or becomes available again, tasks move to it from the
// most loaded nodes (start-first, paced by the service's UpdateConfig).
// Docker never moves running tasks (moby/moby#24103); this is a Shoal
// extension and off unless the service carries the label with value "true".
const RebalanceLabel = "com.shoal.rebalance"

// Status messages the orchestrators, allocator and scheduler write.
const (
	MsgCreated   = "created"
	MsgPending   = "pending task scheduling"
	MsgAssigned  = "scheduler assigned task to node"
	MsgPreempted = "task shut down before it was assigned to a node"
)

var stateRank = map[swarm.TaskState]int{
	swarm.TaskStateNew:       0,
	swarm.TaskStatePending:   64,
	swarm.TaskStateAllocated: 128,
	swarm.TaskStateAssigned:  192,
	swarm.TaskStateAccepted:  256,
	swarm.TaskStatePreparing: 320,
	swarm.TaskStateReady:     384,
	swarm.TaskStateStarting:  448,
	swarm.TaskStateRunning:   512,
	swarm.TaskStateComplete:  576,
	swarm.TaskStateShutdown:  640,
	swarm.TaskStateFailed:    704,
	swarm.TaskStateRejected:  768,
	swarm.TaskStateRemove:    800,
	swarm.TaskStateOrphaned:  832,
}

// Rank orders task states as swarmkit's enum does; states only move up.
// An unknown state ranks as NEW.
func Rank(s swarm.TaskState) int { return stateRank[s] }

// Before reports a < b in the state order.
func Before(a, b swarm.TaskState) bool { return Rank(a) < Rank(b) }

// Terminal reports an observed state past RUNNING: the task is not running
// and never will again.
func Terminal(s swarm.TaskState) bool { return Rank(s) > Rank(swarm.TaskStateRunning) }

// Runnable reports a desired state of RUNNING or below (READY for a delayed
// start): the task is meant to run.
func Runnable(t *store.Task) bool {
	return Rank(t.DesiredState) <= Rank(swarm.TaskStateRunning)
}

// InvalidNode reports a node its tasks cannot stay on: gone, down or
// drained.
func InvalidNode(n *store.Node) bool {
	return n == nil || n.Status.State == swarm.NodeStateDown || n.Spec.Availability == swarm.NodeAvailabilityDrain
}

// PlacementChanged reports whether a node update touched anything that
// decides which tasks the node may run: its state, availability, role,
// labels, platform, resources or address. Dispatchers rewrite nodes for
// other reasons (heartbeat bookkeeping, TLS info); those are ignored.
func PlacementChanged(old, cur *store.Node) bool {
	if old == nil || cur == nil {
		return true
	}
	return old.Status.State != cur.Status.State ||
		old.Status.Addr != cur.Status.Addr ||
		old.Spec.Availability != cur.Spec.Availability ||
		old.Spec.Role != cur.Spec.Role ||
		old.Description.Hostname != cur.Description.Hostname ||
		old.Description.Platform != cur.Description.Platform ||
		!reflect.DeepEqual(old.Description.Resources, cur.Description.Resources) ||
		!maps.Equal(old.Spec.Labels, cur.Spec.Labels) ||
		!maps.Equal(old.Description.Engine.Labels, cur.Description.Engine.Labels)
}

// IsReplicated reports a replicated service (nil-safe).
func IsReplicated(s *store.Service) bool { return s != nil && s.Spec.Mode.Replicated != nil }

// IsGlobal reports a global service (nil-safe).
func IsGlobal(s *store.Service) bool { return s != nil && s.Spec.Mode.Global != nil }

// NewTask makes a task for slot (replicated) or nodeID (global) of svc, as
// swarmkit's orchestrators do: NEW, desired RUNNING, spec and spec version
// of the service. Annotations stay empty; names are derived by readers.
func NewTask(svc *store.Service, slot int, nodeID string, now time.Time) *store.Task {
	t := &store.Task{SpecVersion: svc.SpecVersion}
	t.ID = identity.NewID()
	t.ServiceID = svc.ID
	t.Slot = slot
	t.NodeID = nodeID
	t.Spec = svc.Spec.TaskTemplate
	t.DesiredState = swarm.TaskStateRunning
	t.Status = swarm.TaskStatus{State: swarm.TaskStateNew, Timestamp: now, Message: MsgCreated}
	return t
}

// SpecAt returns the service spec a task of the given spec version was made
// from: the current one, a remembered one, or (unknown version) the current.
func SpecAt(svc *store.Service, version uint64) *swarm.ServiceSpec {
	if version == svc.SpecVersion {
		return &svc.Spec
	}
	for i := len(svc.History) - 1; i >= 0; i-- {
		if svc.History[i].Version == version {
			return &svc.History[i].Spec
		}
	}
	return &svc.Spec
}

// IsTaskDirty reports whether t must be replaced to match svc's spec, as
// swarmkit decides it: an equal spec version is clean; otherwise the task
// template is compared (so a change of, say, UpdateConfig alone or a
// rollback to an equal spec restarts nothing), and a change of placement
// constraints only is ignored while the task's node n (may be nil) still
// satisfies them. The control API's "_up-to-date" task filter must use this
// too, or docker's progress display waits forever for such tasks.
func IsTaskDirty(svc *store.Service, t *store.Task, n *store.Node) bool {
	if t.SpecVersion == svc.SpecVersion {
		return false
	}
	want := svc.Spec.TaskTemplate
	if !reflect.DeepEqual(want, t.Spec) {
		if n == nil || !placementOnlyChange(want, t.Spec) || !nodeStillMatches(want, n) {
			return true
		}
	}
	old := SpecAt(svc, t.SpecVersion)
	return !reflect.DeepEqual(endpointPorts(old), endpointPorts(&svc.Spec))
}

func placementOnlyChange(want, have swarm.TaskSpec) bool {
	want.Placement, have.Placement = nil, nil
	return reflect.DeepEqual(want, have)
}

func nodeStillMatches(spec swarm.TaskSpec, n *store.Node) bool {
	if spec.Placement == nil {
		return true
	}
	cs, err := constraint.Parse(spec.Placement.Constraints)
	if err != nil {
		return false
	}
	return constraint.NodeMatches(cs, n) && constraint.PlatformMatches(spec.Placement.Platforms, n)
}

func endpointPorts(s *swarm.ServiceSpec) []swarm.PortConfig {
	if s.EndpointSpec == nil || len(s.EndpointSpec.Ports) == 0 {
		return nil
	}
	return s.EndpointSpec.Ports
}

// RestartCondition is the task's restart condition (default any).
func RestartCondition(t *store.Task) swarm.RestartPolicyCondition {
	if p := t.Spec.RestartPolicy; p != nil && p.Condition != "" {
		return p.Condition
	}
	return swarm.RestartPolicyConditionAny
}

// RestartDelay is the task's restart delay (default 5s).
func RestartDelay(t *store.Task) time.Duration {
	if p := t.Spec.RestartPolicy; p != nil && p.Delay != nil {
		return *p.Delay
	}
	return DefaultRestartDelay
}

// Slot is the tasks of one replica (replicated) or one node (global).
type Slot []*store.Task

// SortByTimestamp sorts tasks oldest status first (ties: creation).
func SortByTimestamp(ts []*store.Task) {
	sort.SliceStable(ts, func(i, j int) bool {
		a, b := ts[i], ts[j]
		if !a.Status.Timestamp.Equal(b.Status.Timestamp) {
			return a.Status.Timestamp.Before(b.Status.Timestamp)
		}
		return a.CreatedAt.Before(b.CreatedAt)
	})
}

// HistoryLimit is the cluster's task history retention limit (negative:
// keep everything).
func HistoryLimit(c *store.Cluster) int64 {
	if c != nil && c.Spec.Orchestration.TaskHistoryRetentionLimit != nil {
		return *c.Spec.Orchestration.TaskHistoryRetentionLimit
	}
	return DefaultTaskHistory
}

// UpdateConfig returns the effective update (or, for rollback, rollback)
// configuration of a spec with docker's defaults filled in: parallelism 1,
// pause on failure, monitor 5s, stop-first.
func UpdateConfig(spec *swarm.ServiceSpec, rollback bool) swarm.UpdateConfig {
	src := spec.UpdateConfig
	if rollback {
		src = spec.RollbackConfig
	}
	if src == nil {
		return swarm.UpdateConfig{Parallelism: 1, FailureAction: swarm.UpdateFailureActionPause,
			Monitor: DefaultMonitor, Order: swarm.UpdateOrderStopFirst}
	}
	c := *src
	if c.FailureAction == "" {
		c.FailureAction = swarm.UpdateFailureActionPause
	}
	if c.Monitor <= 0 {
		c.Monitor = DefaultMonitor
	}
	if c.Order == "" {
		c.Order = swarm.UpdateOrderStopFirst
	}
	return c
}

// Loop is the event loop of a leader-only component: tick (write what is
// due), then wait for the next store event, take it and every event already
// queued, and tick again, so writes are batched per burst of events. It
// returns when ctx ends or the watch closes.
func Loop(ctx context.Context, events <-chan store.Event, tick func(context.Context), handle func(store.Event)) error {
	for {
		tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			handle(ev)
		}
		for drained := false; !drained; {
			select {
			case ev, ok := <-events:
				if !ok {
					return nil
				}
				handle(ev)
			default:
				drained = true
			}
		}
	}
}
