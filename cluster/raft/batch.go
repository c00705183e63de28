package raft

import (
	"bytes"
	"context"
	"sync"

	hraft "github.com/hashicorp/raft"

	"github.com/shoal/shoal/errdefs"
)

// Proposals are coalesced: concurrent Propose calls are merged into one
// log entry (the groups of all of them, in order), with at most
// maxInflight entries committing at a time. While those commit, new
// proposals queue up and form the next entry. Each entry costs a disk sync
// on the leader and on a quorum of followers, so fewer, bigger entries is
// what lets thousands of small writes per second through (see
// BenchmarkRaftThroughput in package cluster).
const (
	maxInflight    = 2
	maxBatchGroups = 4096
	maxBatchBytes  = 4 << 20
	proposeQueue   = 8192
)

type proposal struct {
	data   []byte // EncodeGroups output: a JSON array of groups
	groups int
	done   chan proposeResult
}

type proposeResult struct {
	groups []error
	err    error
}

type batcher struct {
	n     *Node
	queue chan *proposal
	slots chan struct{}
	wg    sync.WaitGroup
}

func newBatcher(n *Node) *batcher {
	b := &batcher{n: n, queue: make(chan *proposal, proposeQueue), slots: make(chan struct{}, maxInflight)}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *batcher) submit(ctx context.Context, p *proposal) ([]error, error) {
	select {
	case b.queue <- p:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.n.done:
		return nil, errdefs.Unavailable("this manager is shutting down")
	}
	select {
	case r := <-p.done:
		return r.groups, r.err
	case <-ctx.Done():
		// The entry may still commit; the caller only stops waiting.
		return nil, ctx.Err()
	}
}

func (b *batcher) run() {
	defer b.wg.Done()
	for {
		// Wait for a commit slot first: while all slots are busy the
		// queue fills and the next entry carries all of it.
		select {
		case b.slots <- struct{}{}:
		case <-b.n.done:
			b.failQueued()
			return
		}
		var first *proposal
		select {
		case first = <-b.queue:
		case <-b.n.done:
			b.failQueued()
			return
		}
		batch := []*proposal{first}
		size, groups := len(first.data), first.groups
	drain:
		for groups < maxBatchGroups && size < maxBatchBytes {
			select {
			case p := <-b.queue:
				batch = append(batch, p)
				size += len(p.data)
				groups += p.groups
			default:
				break drain
			}
		}
		f := b.n.r.Apply(merge(batch, size), b.n.cfg.Timing.LeaderLease*2)
		go func() {
			defer func() { <-b.slots }()
			deliver(batch, f)
		}()
	}
}

func (b *batcher) failQueued() {
	for {
		select {
		case p := <-b.queue:
			p.done <- proposeResult{err: errdefs.Unavailable("this manager is shutting down")}
		default:
			return
		}
	}
}

// merge concatenates the proposals' group arrays into one array.
func merge(batch []*proposal, size int) []byte {
	if len(batch) == 1 {
		return batch[0].data
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+len(batch)))
	buf.WriteByte('[')
	for i, p := range batch {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(p.data[1 : len(p.data)-1])
	}
	buf.WriteByte(']')
	return buf.Bytes()
}

// deliver waits for the entry and hands each proposal its groups' results.
func deliver(batch []*proposal, f hraft.ApplyFuture) {
	err := mapErr(f.Error())
	var res result
	if err == nil {
		var ok bool
		if res, ok = f.Response().(result); !ok {
			err = errdefs.System("raft: unexpected apply result %T", f.Response())
		} else if res.err != nil {
			err = res.err
		}
	}
	off := 0
	for _, p := range batch {
		switch {
		case err != nil:
			p.done <- proposeResult{err: err}
		case off+p.groups > len(res.groups):
			p.done <- proposeResult{err: errdefs.System("raft: entry %d was not applied", f.Index())}
		default:
			p.done <- proposeResult{groups: res.groups[off : off+p.groups]}
		}
		off += p.groups
	}
}
