package raft

import (
	"bytes"
	"io"
	"sync/atomic"

	hraft "github.com/hashicorp/raft"

	"github.com/shoal/shoal/cluster/store"
)

// fsm applies committed log entries to the store. Entries at or below the
// store's last index were already applied (replayed from the local log at
// start-up, see replayLocal) and are skipped, so re-delivery is harmless.
type fsm struct {
	s       *store.Store
	applied atomic.Uint64 // highest raft index handed to the FSM
}

var _ hraft.BatchingFSM = (*fsm)(nil)

// result is what Apply returns for one entry: a per-group error slice, or
// err when the entry could not be decoded.
type result struct {
	groups []error
	err    error
}

func (f *fsm) Apply(l *hraft.Log) interface{} {
	return f.ApplyBatch([]*hraft.Log{l})[0]
}

// ApplyBatch decodes every command entry of the batch and applies them to
// the store in one write-lock section.
func (f *fsm) ApplyBatch(logs []*hraft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	props := make([]store.Proposal, 0, len(logs))
	slots := make([]int, 0, len(logs))
	last := f.s.LastIndex()
	for i, l := range logs {
		if l.Type != hraft.LogCommand || l.Index <= last {
			out[i] = result{}
			continue
		}
		groups, err := store.DecodeGroups(l.Data)
		if err != nil {
			out[i] = result{err: err}
			continue
		}
		props = append(props, store.Proposal{Index: l.Index, Groups: groups})
		slots = append(slots, i)
	}
	if len(props) > 0 {
		res := f.s.ApplyMany(props)
		for j, i := range slots {
			out[i] = result{groups: res[j]}
		}
	}
	if n := len(logs); n > 0 {
		f.applied.Store(logs[n-1].Index)
	}
	return out
}

// Snapshot serializes the store now: Raft calls it on the FSM goroutine, so
// no entry is applied while it runs and the snapshot matches its index.
func (f *fsm) Snapshot() (hraft.FSMSnapshot, error) {
	var buf bytes.Buffer
	if err := f.s.Save(&buf); err != nil {
		return nil, err
	}
	return &snapshot{data: buf.Bytes()}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return f.s.Restore(rc)
}

type snapshot struct{ data []byte }

func (s *snapshot) Persist(sink hraft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
