package store

import (
	"encoding/json"
	"fmt"
	"io"
)

type wireAction struct {
	Op     Op
	Kind   Kind
	Object json.RawMessage
}

// EncodeGroups serializes groups for a log entry.
func EncodeGroups(groups []Group) ([]byte, error) {
	wg := make([][]wireAction, len(groups))
	for i, g := range groups {
		wg[i] = make([]wireAction, len(g))
		for j, a := range g {
			b, err := json.Marshal(a.Object)
			if err != nil {
				return nil, err
			}
			wg[i][j] = wireAction{Op: a.Op, Kind: a.Object.Kind(), Object: b}
		}
	}
	return json.Marshal(wg)
}

// DecodeGroups is the inverse of EncodeGroups.
func DecodeGroups(b []byte) ([]Group, error) {
	var wg [][]wireAction
	if err := json.Unmarshal(b, &wg); err != nil {
		return nil, fmt.Errorf("store: decode proposal: %w", err)
	}
	groups := make([]Group, len(wg))
	for i, g := range wg {
		groups[i] = make(Group, len(g))
		for j, wa := range g {
			o, err := newObject(wa.Kind)
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(wa.Object, o); err != nil {
				return nil, fmt.Errorf("store: decode %s: %w", wa.Kind, err)
			}
			groups[i][j] = Action{Op: wa.Op, Object: o}
		}
	}
	return groups, nil
}

type snapshotHeader struct {
	Index uint64
}

type snapshotRecord struct {
	Kind   Kind
	Object json.RawMessage
}

// Save writes the whole state (for Raft snapshots): a header line, then one
// JSON record per object. Objects are immutable, so only collecting them
// needs the lock.
func (s *Store) Save(w io.Writer) error {
	s.mu.RLock()
	index := s.lastIndex
	var objs []Object
	for _, k := range Kinds {
		objs = append(objs, s.ts[k].find(All())...)
	}
	s.mu.RUnlock()
	enc := json.NewEncoder(w)
	if err := enc.Encode(snapshotHeader{Index: index}); err != nil {
		return err
	}
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if err := enc.Encode(snapshotRecord{Kind: o.Kind(), Object: b}); err != nil {
			return err
		}
	}
	return nil
}

// Restore replaces the whole state with what Save wrote, and tells watchers.
// A bad snapshot leaves the state as it was.
func (s *Store) Restore(r io.Reader) error {
	ts := newTables()
	dec := json.NewDecoder(r)
	var hdr snapshotHeader
	if err := dec.Decode(&hdr); err != nil {
		return fmt.Errorf("store: snapshot header: %w", err)
	}
	for {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err == io.EOF {
			break
		} else if err != nil {
			return fmt.Errorf("store: snapshot record: %w", err)
		}
		o, err := newObject(rec.Kind)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(rec.Object, o); err != nil {
			return fmt.Errorf("store: snapshot %s: %w", rec.Kind, err)
		}
		t := ts[rec.Kind]
		t.put(o)
	}
	s.mu.Lock()
	s.ts = ts
	s.lastIndex = hdr.Index
	s.watchers.publish([]Event{{Op: OpReset, Index: hdr.Index}})
	s.mu.Unlock()
	return nil
}
