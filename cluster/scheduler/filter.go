package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/constraint"
	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
)

// The filters, in the order swarmkit's pipeline runs them. A node is
// counted against the first filter it fails; unplaceable tasks explain
// themselves with these counts, most failures first.
const (
	fReady = iota
	fResources
	fConstraints
	fPlatform
	fHostPorts
	fMaxReplicas
	nFilters
)

func explainFilter(f, nodes int) string {
	plural := func(what string) string {
		if nodes == 1 {
			return what + " on 1 node"
		}
		return fmt.Sprintf("%s on %d nodes", what, nodes)
	}
	switch f {
	case fReady:
		if nodes == 1 {
			return "1 node not available for new tasks"
		}
		return fmt.Sprintf("%d nodes not available for new tasks", nodes)
	case fResources:
		return plural("insufficient resources")
	case fConstraints:
		return plural("scheduling constraints not satisfied")
	case fPlatform:
		return plural("unsupported platform")
	case fHostPorts:
		return plural("host-mode port already in use")
	case fMaxReplicas:
		return "max replicas per node limit exceed"
	}
	return ""
}

// explain renders failure counts as swarmkit does: "insufficient resources
// on 3 nodes; scheduling constraints not satisfied on 2 nodes".
func explain(counts *[nFilters]int) string {
	order := make([]int, 0, nFilters)
	for f := 0; f < nFilters; f++ {
		if counts[f] > 0 {
			order = append(order, f)
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return counts[order[i]] > counts[order[j]] })
	parts := make([]string, len(order))
	for i, f := range order {
		parts[i] = explainFilter(f, counts[f])
	}
	return strings.Join(parts, "; ")
}

// hostPort is a host-mode published port; one task per node may hold it.
type hostPort struct {
	proto string
	port  uint32
}

// filter holds what every task of a group (same service, same spec
// version) asks of a node, worked out once per group.
type filter struct {
	svc         string
	cpu, mem    int64
	constraints []constraint.Constraint
	badSpec     bool // constraints that no longer parse: no node qualifies
	platforms   []swarm.Platform
	ports       []hostPort
	maxReplicas int
	prefs       []constraint.Spread
}

func newFilter(t *store.Task, ports []hostPort) *filter {
	f := &filter{svc: t.ServiceID, ports: ports}
	if r := t.Spec.Resources; r != nil && r.Reservations != nil {
		f.cpu, f.mem = r.Reservations.NanoCPUs, r.Reservations.MemoryBytes
	}
	if p := t.Spec.Placement; p != nil {
		if len(p.Constraints) > 0 {
			cs, err := constraint.Parse(p.Constraints)
			if err != nil {
				f.badSpec = true
			}
			f.constraints = cs
		}
		f.platforms = p.Platforms
		f.maxReplicas = int(p.MaxReplicas)
		if len(p.Preferences) > 0 {
			// Descriptors the parser rejects were refused at the API;
			// a spec from elsewhere just spreads over what parses.
			for _, pref := range p.Preferences {
				if ss, err := constraint.ParsePreferences([]swarm.PlacementPreference{pref}); err == nil {
					f.prefs = append(f.prefs, ss...)
				}
			}
		}
	}
	return f
}

// check runs the filters on n: -1 if n can take one more task of the group,
// else the first filter that refused it.
func (f *filter) check(n *nodeInfo) int {
	if !n.ready {
		return fReady
	}
	if !f.fitsResources(n) {
		return fResources
	}
	if f.badSpec || !constraint.NodeMatches(f.constraints, n.node) {
		return fConstraints
	}
	if !constraint.PlatformMatches(f.platforms, n.node) {
		return fPlatform
	}
	if !f.portsFree(n) {
		return fHostPorts
	}
	if !f.underMax(n) {
		return fMaxReplicas
	}
	return -1
}

// fitsAgain re-checks, after a placement on n, the filters a placement can
// change.
func (f *filter) fitsAgain(n *nodeInfo) bool {
	return f.fitsResources(n) && f.portsFree(n) && f.underMax(n)
}

func (f *filter) fitsResources(n *nodeInfo) bool {
	return (f.cpu == 0 || n.cpuTotal-n.cpuUsed >= f.cpu) && (f.mem == 0 || n.memTotal-n.memUsed >= f.mem)
}

func (f *filter) portsFree(n *nodeInfo) bool {
	for _, p := range f.ports {
		if n.ports[p] > 0 {
			return false
		}
	}
	return true
}

func (f *filter) underMax(n *nodeInfo) bool {
	return f.maxReplicas == 0 || n.bySvc[f.svc] < f.maxReplicas
}

// hostPortsOf lists the host-mode published ports a task of svc at spec
// version holds. The task itself does not carry its endpoint, so the
// service's spec of that version says.
func hostPortsOf(svc *store.Service, version uint64) []hostPort {
	if svc == nil {
		return nil
	}
	var ports []swarm.PortConfig
	if version == svc.SpecVersion && len(svc.Endpoint.Ports) > 0 {
		ports = svc.Endpoint.Ports
	} else if spec := orchestrator.SpecAt(svc, version); spec.EndpointSpec != nil {
		ports = spec.EndpointSpec.Ports
	}
	var out []hostPort
	for _, p := range ports {
		if p.PublishMode == swarm.PortConfigPublishModeHost && p.PublishedPort != 0 {
			proto := string(p.Protocol)
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, hostPort{proto: proto, port: p.PublishedPort})
		}
	}
	return out
}
