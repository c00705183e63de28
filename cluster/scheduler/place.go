package scheduler

import (
	"sort"

	"github.com/shoal/shoal/cluster/constraint"
)

// entry is a candidate node in a group's placement heap, with the counts
// that order it cached (only the group's own placements change them while
// it is placed).
type entry struct {
	n      *nodeInfo
	faulty int    // recent failures of this service version, if past the threshold
	svc    int    // tasks of the service on the node
	total  int    // tasks on the node
	key    uint64 // n.key, kept here so ties cost no pointer chase
}

// less is swarmkit's order: nodes where the service keeps failing last,
// then fewest tasks of the service, then fewest tasks overall; node ID
// order breaks ties so placement is deterministic.
func less(a, b *entry) bool {
	if a.faulty != b.faulty {
		return a.faulty < b.faulty
	}
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.total != b.total {
		return a.total < b.total
	}
	if a.key != b.key {
		return a.key < b.key
	}
	return a.n.id < b.n.id
}

// nodeHeap is a binary min-heap of candidates.
type nodeHeap []entry

func (h nodeHeap) init() {
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

func (h nodeHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && less(&h[r], &h[l]) {
			m = r
		}
		if !less(&h[m], &h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (h *nodeHeap) popTop() {
	old := *h
	last := len(old) - 1
	old[0] = old[last]
	old[last] = entry{}
	*h = old[:last]
	if last > 0 {
		h.down(0)
	}
}

// placer assigns the tasks of one group.
type placer struct {
	f      *filter
	assign func(n *nodeInfo)
}

// branch is a node of swarmkit's placement-preference decision tree: the
// candidates grouped by the value of one spread descriptor per level.
type branch struct {
	value    string
	tasks    int // tasks of the service already in this branch
	children []*branch
	open     []*branch // children that still have room, as a min-heap by tasks
	leaf     nodeHeap
	isLeaf   bool
}

// buildTree groups candidates by preference values, level by level.
func buildTree(cands []entry, prefs []constraint.Spread) *branch {
	b := &branch{}
	for i := range cands {
		b.tasks += cands[i].svc
	}
	if len(prefs) == 0 {
		b.isLeaf = true
		b.leaf = nodeHeap(cands)
		b.leaf.init()
		return b
	}
	groups := map[string][]entry{}
	for _, c := range cands {
		v := prefs[0].Value(c.n.node)
		groups[v] = append(groups[v], c)
	}
	values := make([]string, 0, len(groups))
	for v := range groups {
		values = append(values, v)
	}
	sort.Strings(values)
	for _, v := range values {
		child := buildTree(groups[v], prefs[1:])
		child.value = v
		b.children = append(b.children, child)
	}
	b.open = append([]*branch(nil), b.children...)
	for i := len(b.open)/2 - 1; i >= 0; i-- {
		b.downOpen(i)
	}
	return b
}

func branchLess(a, b *branch) bool {
	if a.tasks != b.tasks {
		return a.tasks < b.tasks
	}
	return a.value < b.value
}

func (b *branch) downOpen(i int) {
	h := b.open
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && branchLess(h[r], h[l]) {
			m = r
		}
		if !branchLess(h[m], h[i]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// placeOne places one task in the branch: in the child with the fewest
// tasks of the service (so values fill up evenly, as swarmkit's spread),
// down to the least loaded node. False when no node in the branch has room.
func (b *branch) placeOne(p *placer) bool {
	if b.isLeaf {
		if len(b.leaf) == 0 {
			return false
		}
		e := &b.leaf[0]
		p.assign(e.n)
		e.svc++
		e.total++
		b.tasks++
		if p.f.fitsAgain(e.n) {
			b.leaf.down(0)
		} else {
			b.leaf.popTop()
		}
		return true
	}
	for len(b.open) > 0 {
		c := b.open[0]
		if c.placeOne(p) {
			b.tasks++
			b.downOpen(0)
			return true
		}
		last := len(b.open) - 1
		b.open[0] = b.open[last]
		b.open = b.open[:last]
		if last > 0 {
			b.downOpen(0)
		}
	}
	return false
}
