package store

import (
	"fmt"
	"strings"
)

// The tables are plain maps with hash indexes. Readers hold the store's read
// lock for the length of their function; Apply holds the write lock. We
// tried go-memdb first: its immutable radix trees cost 20-50µs per task
// update here (allocation plus change-notification walks on big commits),
// which a scheduler placing a million tasks cannot afford.
//
// Each object sits in a row, found by ID through one map. A secondary index
// maps each value to a bucket, a plain slice of rows, and every row records
// its position in each of its buckets: moving an object between values is a
// swap-remove and an append, with no hashing of IDs and no per-value sets to
// grow (a task going PENDING → ASSIGNED used to cost three hash-set
// operations on million-entry sets and their rehashing).

// maxSecondary bounds the secondary indexes of one kind (tasks have 5).
const maxSecondary = 6

// row is one stored object. Rows are changed in place, under the write
// lock only; objects themselves are immutable.
type row struct {
	obj Object
	pos [maxSecondary]int32 // index in each secondary's bucket; -1: not in it
}

// bucket lists the rows (indexes in table.rows) with one index value. It
// holds no pointers, so the garbage collector does not scan it.
type bucket struct{ rows []int32 }

type secondary struct {
	name string
	slot int // in row.pos
	ix   indexer
	vals map[string]*bucket
}

// table keeps its rows dense and in insertion order (a delete moves the
// last row into the hole), so full scans walk memory in order: the
// scheduler's load of a million tasks reads them in allocation order
// instead of hash order.
type table struct {
	kind   Kind
	ids    map[string]int32 // ID → index in rows
	rows   []row
	secs   []*secondary // in a fixed order: every write walks them
	byName map[string]*secondary
}

type tables map[Kind]*table

func newTables() tables {
	ts := tables{}
	for _, k := range Kinds {
		t := &table{kind: k, ids: map[string]int32{}, byName: map[string]*secondary{}}
		for name, ix := range indexers[k] {
			if name == IndexID {
				continue
			}
			sec := &secondary{name: name, ix: ix, vals: map[string]*bucket{}}
			t.secs = append(t.secs, sec)
			t.byName[name] = sec
		}
		if len(t.secs) > maxSecondary {
			panic(fmt.Sprintf("store: %s has %d secondary indexes, raise maxSecondary", k, len(t.secs)))
		}
		for i, sec := range t.secs {
			sec.slot = i
		}
		ts[k] = t
	}
	return ts
}

// lookup returns the index of id's row, or -1.
func (t *table) lookup(id string) int32 {
	if i, ok := t.ids[id]; ok {
		return i
	}
	return -1
}

func (t *table) get(id string) Object {
	if i, ok := t.ids[id]; ok {
		return t.rows[i].obj
	}
	return nil
}

// put stores o, replacing what the table holds under its ID.
func (t *table) put(o Object) {
	if i := t.lookup(o.GetID()); i >= 0 {
		t.replace(i, o)
		return
	}
	t.insert(o)
}

func (t *table) insert(o Object) {
	i := int32(len(t.rows))
	t.rows = append(t.rows, row{obj: o})
	t.ids[o.GetID()] = i
	r := &t.rows[i]
	for _, sec := range t.secs {
		r.pos[sec.slot] = -1
		sec.add(t, i, sec.ix.fn(o))
	}
}

// replace puts o in row i's place, moving it only in the indexes whose
// value changed.
func (t *table) replace(i int32, o Object) {
	r := &t.rows[i]
	old := r.obj
	r.obj = o
	for _, sec := range t.secs {
		if sec.ix.same != nil && sec.ix.same(old, o) {
			continue
		}
		ov, nv := sec.ix.fn(old), sec.ix.fn(o)
		if ov == nv {
			continue
		}
		sec.remove(t, i, ov)
		sec.add(t, i, nv)
	}
}

// remove deletes row i, which holds id.
func (t *table) remove(i int32, id string) {
	r := &t.rows[i]
	for _, sec := range t.secs {
		sec.remove(t, i, sec.ix.fn(r.obj))
	}
	delete(t.ids, id)
	last := int32(len(t.rows) - 1)
	if i != last {
		// Move the last row into the hole, and point its index
		// entries at its new place.
		*r = t.rows[last]
		t.ids[r.obj.GetID()] = i
		for _, sec := range t.secs {
			if p := r.pos[sec.slot]; p >= 0 {
				sec.vals[sec.ix.fn(r.obj)].rows[p] = i
			}
		}
	}
	t.rows[last] = row{}
	t.rows = t.rows[:last]
	if c := cap(t.rows); c >= 1024 && int(last) < c/4 {
		t.rows = append(make([]row, 0, 2*last), t.rows...)
	}
}

func (t *table) del(id string) {
	if i := t.lookup(id); i >= 0 {
		t.remove(i, id)
	}
}

func (sec *secondary) add(t *table, i int32, v string) {
	if v == "" {
		return
	}
	b := sec.vals[v]
	if b == nil {
		b = &bucket{}
		sec.vals[v] = b
	}
	t.rows[i].pos[sec.slot] = int32(len(b.rows))
	b.rows = append(b.rows, i)
}

func (sec *secondary) remove(t *table, i int32, v string) {
	r := &t.rows[i]
	p := r.pos[sec.slot]
	if v == "" || p < 0 {
		return
	}
	r.pos[sec.slot] = -1
	b := sec.vals[v]
	last := len(b.rows) - 1
	if int(p) != last {
		moved := b.rows[last]
		b.rows[p] = moved
		t.rows[moved].pos[sec.slot] = p
	}
	b.rows = b.rows[:last]
	switch {
	case last == 0:
		delete(sec.vals, v)
	case cap(b.rows) >= 1024 && last < cap(b.rows)/4:
		// A value that held many objects and now holds few (PENDING
		// after a big scheduling pass) gives its memory back.
		b.rows = append(make([]int32, 0, 2*last), b.rows...)
	}
}

// find returns matching objects in no particular order (full scans and
// index lookups go in insertion order, but deletes reorder).
func (t *table) find(by By) []Object {
	var out []Object
	switch {
	case by.index == "":
		out = make([]Object, len(t.rows))
		for i := range t.rows {
			out[i] = t.rows[i].obj
		}
	case by.index == IndexID && by.prefix:
		for i := range t.rows {
			if o := t.rows[i].obj; strings.HasPrefix(o.GetID(), by.val) {
				out = append(out, o)
			}
		}
	case by.index == IndexID:
		if o := t.get(by.val); o != nil {
			out = append(out, o)
		}
	default:
		sec := t.byName[by.index]
		if sec == nil {
			return nil
		}
		if by.prefix {
			for v, b := range sec.vals {
				if strings.HasPrefix(v, by.val) {
					for _, i := range b.rows {
						out = append(out, t.rows[i].obj)
					}
				}
			}
		} else if b := sec.vals[by.val]; b != nil {
			out = make([]Object, len(b.rows))
			for j, i := range b.rows {
				out[j] = t.rows[i].obj
			}
		}
	}
	return out
}

// count is find without building the result.
func (t *table) count(by By) int {
	switch {
	case by.index == "":
		return len(t.rows)
	case by.index != IndexID && !by.prefix:
		if sec := t.byName[by.index]; sec != nil {
			if b := sec.vals[by.val]; b != nil {
				return len(b.rows)
			}
		}
		return 0
	}
	return len(t.find(by))
}
