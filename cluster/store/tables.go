package store

import "strings"

// The tables are plain maps with hash indexes. Readers hold the store's read
// lock for the length of their function; Apply holds the write lock. We
// tried go-memdb first: its immutable radix trees cost 20-50µs per task
// update here (allocation plus change-notification walks on big commits),
// which a scheduler placing a million tasks cannot afford.

// secondary maps index values to ID sets; objects are found through objs,
// so replacing an object whose index value did not change costs nothing.
type secondary struct {
	fn  strIndex
	ids map[string]map[string]struct{}
}

type table struct {
	kind    Kind
	objs    map[string]Object
	indexes map[string]*secondary
}

type tables map[Kind]*table

func newTables() tables {
	ts := tables{}
	for _, k := range Kinds {
		t := &table{kind: k, objs: map[string]Object{}, indexes: map[string]*secondary{}}
		for name, fn := range indexers[k] {
			if name == IndexID {
				continue
			}
			t.indexes[name] = &secondary{fn: fn, ids: map[string]map[string]struct{}{}}
		}
		ts[k] = t
	}
	return ts
}

func (t *table) get(id string) Object { return t.objs[id] }

// put stores o; old is what the table held under o's ID (nil if nothing).
func (t *table) put(o, old Object) {
	id := o.GetID()
	t.objs[id] = o
	for _, ix := range t.indexes {
		nv := ix.fn(o)
		if old != nil {
			ov := ix.fn(old)
			if ov == nv {
				continue
			}
			ix.remove(ov, id)
		}
		if nv != "" {
			m := ix.ids[nv]
			if m == nil {
				m = map[string]struct{}{}
				ix.ids[nv] = m
			}
			m[id] = struct{}{}
		}
	}
}

func (ix *secondary) remove(v, id string) {
	if v == "" {
		return
	}
	if m := ix.ids[v]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(ix.ids, v)
		}
	}
}

func (t *table) del(id string) {
	old := t.objs[id]
	if old == nil {
		return
	}
	delete(t.objs, id)
	for _, ix := range t.indexes {
		ix.remove(ix.fn(old), id)
	}
}

// find returns matching objects in no particular order.
func (t *table) find(by By) []Object {
	var out []Object
	switch {
	case by.index == "":
		out = make([]Object, 0, len(t.objs))
		for _, o := range t.objs {
			out = append(out, o)
		}
	case by.index == IndexID && by.prefix:
		for id, o := range t.objs {
			if strings.HasPrefix(id, by.val) {
				out = append(out, o)
			}
		}
	case by.index == IndexID:
		if o := t.objs[by.val]; o != nil {
			out = append(out, o)
		}
	default:
		ix := t.indexes[by.index]
		if ix == nil {
			return nil
		}
		if by.prefix {
			for v, m := range ix.ids {
				if strings.HasPrefix(v, by.val) {
					for id := range m {
						out = append(out, t.objs[id])
					}
				}
			}
		} else {
			m := ix.ids[by.val]
			out = make([]Object, 0, len(m))
			for id := range m {
				out = append(out, t.objs[id])
			}
		}
	}
	return out
}

// count is find without building the result.
func (t *table) count(by By) int {
	switch {
	case by.index == "":
		return len(t.objs)
	case by.index != IndexID && !by.prefix:
		if ix := t.indexes[by.index]; ix != nil {
			return len(ix.ids[by.val])
		}
		return 0
	}
	return len(t.find(by))
}
