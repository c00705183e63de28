package store

import (
	"strings"
	"time"

	"github.com/shoal/shoal/errdefs"
)

// By selects objects for Find.
type By struct {
	index  string
	val    string
	prefix bool
}

// All selects every object of a kind.
func All() By { return By{} }

// ByName selects the object with this exact name.
func ByName(name string) By { return By{index: IndexName, val: name} }

// ByNamePrefix selects objects whose name starts with p.
func ByNamePrefix(p string) By { return By{index: IndexName, val: p, prefix: true} }

// ByIDPrefix selects objects whose ID starts with p.
func ByIDPrefix(p string) By { return By{index: IndexID, val: p, prefix: true} }

// ByServiceID selects a service's tasks.
func ByServiceID(id string) By { return By{index: IndexService, val: id} }

// ByNodeID selects the tasks assigned to a node.
func ByNodeID(id string) By { return By{index: IndexNode, val: id} }

// BySlot selects the tasks of one replicated slot.
func BySlot(serviceID string, slot int) By {
	return By{index: IndexSlot, val: SlotKey(serviceID, slot)}
}

// ByTaskState selects tasks by observed state.
func ByTaskState(st string) By { return By{index: IndexState, val: st} }

// ByDesiredState selects tasks by desired state.
func ByDesiredState(st string) By { return By{index: IndexDesired, val: st} }

func (b By) matches(o Object) bool {
	if b.index == "" {
		return true
	}
	ix, ok := indexers[o.Kind()][b.index]
	if !ok {
		return false
	}
	v := ix.fn(o)
	if v == "" {
		return false
	}
	if b.prefix {
		return strings.HasPrefix(v, b.val)
	}
	return v == b.val
}

// ReadTx reads a consistent view of the store.
type ReadTx interface {
	Get(k Kind, id string) Object
	Find(k Kind, by By) []Object

	GetCluster() *Cluster
	GetNode(id string) *Node
	GetService(id string) *Service
	GetTask(id string) *Task
	GetNetwork(id string) *Network
	GetSecret(id string) *Secret
	GetConfig(id string) *Config
	FindNodes(by By) []*Node
	FindServices(by By) []*Service
	FindTasks(by By) []*Task
	FindNetworks(by By) []*Network
	FindSecrets(by By) []*Secret
	FindConfigs(by By) []*Config
}

// Tx is a ReadTx that records writes. Its reads see its own writes.
type Tx interface {
	ReadTx
	// Create adds o; its ID (and name, for named kinds) must be new.
	Create(o Object) error
	// Update replaces the stored object with o's ID. o must carry the
	// version it was read at.
	Update(o Object) error
	// Delete removes the object.
	Delete(k Kind, id string) error
}

type getFinder interface {
	Get(k Kind, id string) Object
	Find(k Kind, by By) []Object
}

// typed adds the typed accessors to anything that can Get and Find.
type typed struct{ getFinder }

func getAs[T Object](g getFinder, k Kind, id string) T {
	var zero T
	o := g.Get(k, id)
	if o == nil {
		return zero
	}
	return o.(T)
}

func findAs[T Object](g getFinder, k Kind, by By) []T {
	objs := g.Find(k, by)
	out := make([]T, len(objs))
	for i, o := range objs {
		out[i] = o.(T)
	}
	return out
}

func (t typed) GetCluster() *Cluster {
	cs := findAs[*Cluster](t, KindCluster, All())
	if len(cs) == 0 {
		return nil
	}
	return cs[0]
}
func (t typed) GetNode(id string) *Node       { return getAs[*Node](t, KindNode, id) }
func (t typed) GetService(id string) *Service { return getAs[*Service](t, KindService, id) }
func (t typed) GetTask(id string) *Task       { return getAs[*Task](t, KindTask, id) }
func (t typed) GetNetwork(id string) *Network { return getAs[*Network](t, KindNetwork, id) }
func (t typed) GetSecret(id string) *Secret   { return getAs[*Secret](t, KindSecret, id) }
func (t typed) GetConfig(id string) *Config   { return getAs[*Config](t, KindConfig, id) }
func (t typed) FindNodes(by By) []*Node       { return findAs[*Node](t, KindNode, by) }
func (t typed) FindServices(by By) []*Service { return findAs[*Service](t, KindService, by) }
func (t typed) FindTasks(by By) []*Task       { return findAs[*Task](t, KindTask, by) }
func (t typed) FindNetworks(by By) []*Network { return findAs[*Network](t, KindNetwork, by) }
func (t typed) FindSecrets(by By) []*Secret   { return findAs[*Secret](t, KindSecret, by) }
func (t typed) FindConfigs(by By) []*Config   { return findAs[*Config](t, KindConfig, by) }

// snapshot reads the tables directly; the caller holds the read lock.
type snapshot struct{ ts tables }

func (s snapshot) Get(k Kind, id string) Object {
	if t := s.ts[k]; t != nil {
		return t.get(id)
	}
	return nil
}

func (s snapshot) Find(k Kind, by By) []Object {
	if t := s.ts[k]; t != nil {
		return t.find(by)
	}
	return nil
}

type readTx struct {
	typed
}

func newReadTx(ts tables) *readTx {
	return &readTx{typed{snapshot{ts}}}
}

type wkey struct {
	k  Kind
	id string
}

type write struct {
	op  Op
	obj Object
}

// tx layers recorded writes over a parent view.
type tx struct {
	typed
	parent getFinder
	now    time.Time
	writes map[wkey]*write
	order  []wkey
}

func newTx(parent getFinder, now time.Time) *tx {
	t := &tx{parent: parent, now: now} // writes: made on the first write
	t.typed = typed{t}
	return t
}

func (t *tx) Get(k Kind, id string) Object {
	if w, ok := t.writes[wkey{k, id}]; ok {
		if w.op == OpDelete {
			return nil
		}
		return w.obj
	}
	return t.parent.Get(k, id)
}

func (t *tx) Find(k Kind, by By) []Object {
	base := t.parent.Find(k, by)
	if len(t.writes) == 0 {
		return base
	}
	out := base[:0:0]
	seen := map[string]bool{}
	for _, o := range base {
		id := o.GetID()
		seen[id] = true
		if w, ok := t.writes[wkey{k, id}]; ok {
			if w.op == OpDelete || !by.matches(w.obj) {
				continue
			}
			o = w.obj
		}
		out = append(out, o)
	}
	for _, key := range t.order {
		if key.k != k || seen[key.id] {
			continue
		}
		if w := t.writes[key]; w.op != OpDelete && by.matches(w.obj) {
			out = append(out, w.obj)
		}
	}
	return out
}

func (t *tx) record(k Kind, id string, op Op, o Object) {
	key := wkey{k, id}
	prev, ok := t.writes[key]
	if !ok {
		if t.writes == nil {
			t.writes = map[wkey]*write{}
		}
		t.writes[key] = &write{op: op, obj: o}
		t.order = append(t.order, key)
		return
	}
	switch {
	case prev.op == OpCreate && op == OpDelete:
		// Never existed outside this transaction.
		prev.op, prev.obj = 0, nil
	case prev.op == OpCreate:
		prev.obj = o
	case op == OpDelete:
		prev.op = OpDelete
	default:
		prev.op, prev.obj = op, o
	}
}

func (t *tx) checkName(o Object) error {
	name := objName(o)
	if name == "" {
		return nil
	}
	for _, other := range t.Find(o.Kind(), ByName(name)) {
		if other.GetID() != o.GetID() {
			return errdefs.Conflict("name conflicts with an existing object: %s %s already exists", o.Kind(), name)
		}
	}
	return nil
}

func (t *tx) Create(o Object) error {
	if o.GetID() == "" {
		return errdefs.InvalidParameter("store: create without an ID")
	}
	if t.Get(o.Kind(), o.GetID()) != nil {
		return errdefs.Conflict("%s %s already exists", o.Kind(), o.GetID())
	}
	if err := t.checkName(o); err != nil {
		return err
	}
	m := o.GetMeta()
	m.Version.Index = 0
	m.CreatedAt, m.UpdatedAt = t.now, t.now
	o.SetMeta(m)
	if w, ok := t.writes[wkey{o.Kind(), o.GetID()}]; ok && w.op == OpDelete {
		// Delete then create of the same ID: an update of the stored object.
		old := t.parent.Get(o.Kind(), o.GetID())
		m.Version = old.GetMeta().Version
		o.SetMeta(m)
		w.op, w.obj = OpUpdate, o
		return nil
	}
	t.record(o.Kind(), o.GetID(), OpCreate, o)
	return nil
}

func (t *tx) Update(o Object) error {
	cur := t.Get(o.Kind(), o.GetID())
	if cur == nil {
		return errdefs.NotFound("%s %s not found", o.Kind(), o.GetID())
	}
	if cur.GetMeta().Version.Index != o.GetMeta().Version.Index {
		return errdefs.Wrap(errdefs.KindConflict, ErrSequence)
	}
	if err := t.checkName(o); err != nil {
		return err
	}
	m := o.GetMeta()
	m.UpdatedAt = t.now
	o.SetMeta(m)
	t.record(o.Kind(), o.GetID(), OpUpdate, o)
	return nil
}

func (t *tx) Delete(k Kind, id string) error {
	cur := t.Get(k, id)
	if cur == nil {
		return errdefs.NotFound("%s %s not found", k, id)
	}
	t.record(k, id, OpDelete, cur)
	return nil
}

// group returns the recorded actions.
func (t *tx) group() Group {
	var g Group
	for _, key := range t.order {
		w := t.writes[key]
		if w.op == 0 {
			continue
		}
		g = append(g, Action{Op: w.op, Object: w.obj})
	}
	return g
}
