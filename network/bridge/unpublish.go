package bridge

import (
	"bytes"
	"errors"
	"slices"
	"sync"

	"github.com/google/nftables"

	"github.com/shoal/shoal/network/nft"
)

// Deleting anything from nftables makes the kernel wait for an RCU grace
// period before the batch is acknowledged (~10 ms here, for a map element
// as for a rule by handle), while adding is well under a millisecond. So
// Detach does not wait for it: it queues its map elements and a background
// worker deletes everything queued in one batch (one grace period for a
// burst of Detaches).
//
// Order is kept: a publish whose key is still queued for deletion takes that
// deletion into its own batch (the kernel applies delete and add in one
// transaction), and one whose key is being deleted right now waits for it.
// Until the worker has run, a detached container's published port still
// DNATs to its dead address; nothing answers there, and the host port is
// already free in the manager's books.
type unpublisher struct {
	m        *Manager
	flushMu  sync.Mutex // one flush at a time
	mu       sync.Mutex // guards the fields below
	pending  []pendingDelete
	inflight map[string]bool // keys the worker is deleting now
	flushed  chan struct{}   // closed when the worker's current batch is done
	kick     chan struct{}
	stop     chan struct{}
	done     chan struct{}
}

type pendingDelete struct {
	set   *nftables.Set
	key   []byte
	owner string // container ID, the element's comment
}

func elemID(s *nftables.Set, key []byte) string { return s.Name + "/" + string(key) }

func newUnpublisher(m *Manager) *unpublisher {
	u := &unpublisher{m: m, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go u.run()
	return u
}

func (u *unpublisher) run() {
	defer close(u.done)
	for {
		select {
		case <-u.kick:
			u.flush()
		case <-u.stop:
			u.flush()
			return
		}
	}
}

// queue schedules the deletion of an endpoint's map elements.
func (u *unpublisher) queue(ep *endpoint) {
	els := u.m.layout.elements(ep)
	if len(els) == 0 {
		return
	}
	u.mu.Lock()
	for s, es := range els {
		for _, e := range es {
			u.pending = append(u.pending, pendingDelete{set: s, key: e.Key, owner: ep.ContainerID})
		}
	}
	u.mu.Unlock()
	select {
	case u.kick <- struct{}{}:
	default: // a flush is already due
	}
}

// flush deletes everything queued (the worker's job; Close's last one).
func (u *unpublisher) flush() {
	u.flushMu.Lock()
	defer u.flushMu.Unlock()
	u.mu.Lock()
	dels := u.pending
	u.pending = nil
	if len(dels) == 0 {
		u.mu.Unlock()
		return
	}
	u.inflight = map[string]bool{}
	for _, d := range dels {
		u.inflight[elemID(d.set, d.key)] = true
	}
	u.flushed = make(chan struct{})
	u.mu.Unlock()

	_ = u.apply(dels, nil)

	u.mu.Lock()
	u.inflight = nil
	close(u.flushed)
	u.mu.Unlock()
}

// publish adds map elements, together with any queued deletion of the same
// keys.
func (u *unpublisher) publish(add map[*nftables.Set][]nftables.SetElement) error {
	for {
		u.mu.Lock()
		var wait chan struct{}
		for s, es := range add {
			for _, e := range es {
				if u.inflight[elemID(s, e.Key)] {
					wait = u.flushed
				}
			}
		}
		if wait != nil {
			u.mu.Unlock()
			<-wait
			continue
		}
		var claimed []pendingDelete
		u.pending = slices.DeleteFunc(u.pending, func(d pendingDelete) bool {
			for _, e := range add[d.set] {
				if bytes.Equal(e.Key, d.key) {
					claimed = append(claimed, d)
					return true
				}
			}
			return false
		})
		u.mu.Unlock()
		return u.apply(claimed, add)
	}
}

// apply sends deletions then additions in one batch. If the batch fails
// because of a deletion (an element already gone), each owner's elements
// are deleted by comment and the additions retried alone. A deletion that
// still fails is logged: the table is rebuilt from state on the next start.
func (u *unpublisher) apply(dels []pendingDelete, add map[*nftables.Set][]nftables.SetElement) error {
	adds := func(b *nftables.Conn) error {
		for s, es := range add {
			if err := b.SetAddElements(s, es); err != nil {
				return err
			}
		}
		return nil
	}
	err := u.m.nft.Batch(func(b *nftables.Conn) error {
		if err := queueDeletes(b, dels); err != nil {
			return err
		}
		return adds(b)
	})
	if err == nil || len(dels) == 0 {
		return err
	}
	if err := u.deleteByOwner(dels); err != nil {
		u.m.log.Warn("cannot unpublish ports", "err", err)
	}
	if len(add) == 0 {
		return nil
	}
	return u.m.nft.Batch(adds)
}

func (u *unpublisher) deleteByOwner(dels []pendingDelete) error {
	// A connection of our own: the worker and a publisher may both be here.
	c, err := nft.Open(0)
	if err != nil {
		return err
	}
	defer c.Close()
	owners := map[string]bool{}
	for _, d := range dels {
		owners[d.owner] = true
	}
	var errs []error
	for owner := range owners {
		for _, s := range []*nftables.Set{u.m.layout.pubAddr, u.m.layout.pubAny} {
			if _, err := c.DeleteElementsByComment(s, owner); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func queueDeletes(b *nftables.Conn, dels []pendingDelete) error {
	bySet := map[*nftables.Set][]nftables.SetElement{}
	for _, d := range dels {
		bySet[d.set] = append(bySet[d.set], nftables.SetElement{Key: d.key})
	}
	for s, keys := range bySet {
		if err := b.SetDeleteElements(s, keys); err != nil {
			return err
		}
	}
	return nil
}

// close deletes what is queued and stops the worker.
func (u *unpublisher) close() {
	select {
	case <-u.done:
		return
	default:
	}
	close(u.stop)
	<-u.done
}
