package scheduler

import (
	"encoding/binary"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
)

// nodeInfo is the scheduler's view of one node: what it offers and what
// the tasks on it hold.
type nodeInfo struct {
	id    string
	node  *store.Node
	key   uint64 // the ID's first 8 bytes: the final tie-break, mostly
	li    int    // position in Scheduler.list
	ready bool   // READY and ACTIVE: may take new tasks

	cpuTotal, memTotal int64
	cpuUsed, memUsed   int64 // reservations of the tasks on it

	active int            // tasks on it meant to run
	bySvc  map[string]int // of which, per service
	ports  map[hostPort]int

	// failures records recent task failures per service version; a node
	// where a service keeps failing is tried last for it.
	failures map[groupKey][]time.Time
}

func newNodeInfo(n *store.Node) *nodeInfo {
	ni := &nodeInfo{id: n.ID, key: idKey(n.ID)} // bySvc: made on the first task
	ni.setNode(n)
	return ni
}

// idKey is the first 8 bytes of id as a big-endian integer: comparing keys
// compares IDs (random, so this almost always decides) without reading the
// strings.
func idKey(id string) uint64 {
	var b [8]byte
	copy(b[:], id)
	return binary.BigEndian.Uint64(b[:])
}

func (ni *nodeInfo) setNode(n *store.Node) {
	ni.node = n
	ni.ready = n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive
	ni.cpuTotal = n.Description.Resources.NanoCPUs
	ni.memTotal = n.Description.Resources.MemoryBytes
}

// use is what one task on a node holds.
type use struct {
	node     string
	svc      string
	cpu, mem int64
	ports    []hostPort
	active   bool // meant to run (counts for spreading and max replicas)
	// version: for a placement we decided, the task version we decided
	// on (0 for uses read from the store).
	version uint64
}

func (u *use) equal(o *use) bool {
	if u.node != o.node || u.svc != o.svc || u.cpu != o.cpu || u.mem != o.mem || u.active != o.active || len(u.ports) != len(o.ports) {
		return false
	}
	for i := range u.ports {
		if u.ports[i] != o.ports[i] {
			return false
		}
	}
	return true
}

// useOf is what t holds on its node: tasks from ASSIGNED to RUNNING hold
// their reservations and host ports (even when told to stop, until they
// have); false for others. It returns a value so that the common case, an
// event that changes nothing the node holds, allocates nothing.
func useOf(t *store.Task, svc *store.Service) (use, bool) {
	if t.NodeID == "" {
		return use{}, false
	}
	r := orchestrator.Rank(t.Status.State)
	if r < orchestrator.Rank(swarm.TaskStateAssigned) || r > orchestrator.Rank(swarm.TaskStateRunning) {
		return use{}, false
	}
	u := use{node: t.NodeID, svc: t.ServiceID, active: orchestrator.Runnable(t)}
	if res := t.Spec.Resources; res != nil && res.Reservations != nil {
		u.cpu, u.mem = res.Reservations.NanoCPUs, res.Reservations.MemoryBytes
	}
	u.ports = hostPortsOf(svc, t.SpecVersion)
	return u, true
}

func (ni *nodeInfo) add(u *use) {
	ni.cpuUsed += u.cpu
	ni.memUsed += u.mem
	if u.active {
		ni.active++
		if ni.bySvc == nil {
			ni.bySvc = map[string]int{}
		}
		ni.bySvc[u.svc]++
	}
	if len(u.ports) > 0 {
		if ni.ports == nil {
			ni.ports = map[hostPort]int{}
		}
		for _, p := range u.ports {
			ni.ports[p]++
		}
	}
}

// empty reports that no task holds anything here.
func (ni *nodeInfo) empty() bool {
	return ni.active == 0 && ni.cpuUsed == 0 && ni.memUsed == 0 && len(ni.ports) == 0
}

func (ni *nodeInfo) remove(u *use) {
	ni.cpuUsed -= u.cpu
	ni.memUsed -= u.mem
	if u.active {
		ni.active--
		if c := ni.bySvc[u.svc] - 1; c > 0 {
			ni.bySvc[u.svc] = c
		} else {
			delete(ni.bySvc, u.svc)
		}
	}
	for _, p := range u.ports {
		if c := ni.ports[p] - 1; c > 0 {
			ni.ports[p] = c
		} else {
			delete(ni.ports, p)
		}
	}
}

// Swarmkit's "potentially faulty node" rule: this many failures of a
// service version on a node within the window push the node to the back.
const (
	faultyThreshold = 5
	faultyWindow    = 5 * time.Minute
)

func (ni *nodeInfo) recordFailure(k groupKey, now time.Time) {
	if ni.failures == nil {
		ni.failures = map[groupKey][]time.Time{}
	}
	ni.failures[k] = append(pruneFailures(ni.failures[k], now), now)
}

// recentFailures counts failures of k within the window (0 below the
// threshold, so ordinary nodes compare equal).
func (ni *nodeInfo) recentFailures(k groupKey, now time.Time) int {
	if ni.failures == nil {
		return 0
	}
	fs := pruneFailures(ni.failures[k], now)
	if len(fs) == 0 {
		delete(ni.failures, k)
	} else {
		ni.failures[k] = fs
	}
	if len(fs) < faultyThreshold {
		return 0
	}
	return len(fs)
}

func pruneFailures(fs []time.Time, now time.Time) []time.Time {
	i := 0
	for i < len(fs) && now.Sub(fs[i]) > faultyWindow {
		i++
	}
	return fs[i:]
}
