package store

import (
	"slices"
	"sync"
)

// Event is one applied change. For deletes Object is the removed object;
// for updates Old is the object before.
type Event struct {
	Op     Op
	Kind   Kind
	Index  uint64
	Object Object
	Old    Object
}

// kindBit is k's bit in a kind set (0 for kinds the store does not know).
func kindBit(k Kind) uint32 {
	switch k {
	case KindCluster:
		return 1 << 0
	case KindNode:
		return 1 << 1
	case KindService:
		return 1 << 2
	case KindTask:
		return 1 << 3
	case KindNetwork:
		return 1 << 4
	case KindSecret:
		return 1 << 5
	case KindConfig:
		return 1 << 6
	}
	return 0
}

// watcher buffers events without bound so Apply never waits on a slow
// reader; a reader that cannot keep up grows its queue, not the writer's
// latency. The queue holds the applied slices themselves, shared by every
// watcher: publishing costs a slice header per watcher, not a copy of each
// event, and the filtering by kind happens on the watcher's goroutine.
type watcher struct {
	kinds uint32 // kindBit set; 0: all kinds
	// match, if set, narrows the kinds further. It runs on the writer's
	// goroutine (publish), so a watcher that wants few events is not
	// woken for the others: cheap, and it must not block.
	match  func(*Event) bool
	mu     sync.Mutex
	queue  [][]Event // read only: other watchers read the same slices
	notify chan struct{}
	out    chan Event
	done   chan struct{}
}

func (w *watcher) wants(ev *Event) bool {
	if ev.Op == OpReset {
		return true
	}
	if w.kinds != 0 && w.kinds&kindBit(ev.Kind) == 0 {
		return false
	}
	return w.match == nil || w.match(ev)
}

func (w *watcher) run() {
	defer close(w.out)
	for {
		w.mu.Lock()
		q := w.queue
		w.queue = nil
		w.mu.Unlock()
		for i, evs := range q {
			for j := range evs {
				if !w.wants(&evs[j]) {
					continue
				}
				select {
				case w.out <- evs[j]:
				case <-w.done:
					return
				}
			}
			q[i] = nil // let the delivered events go
		}
		select {
		case <-w.notify:
		case <-w.done:
			return
		}
	}
}

type watchers struct {
	mu   sync.Mutex
	list map[*watcher]struct{}
}

func (ws *watchers) add(kinds []Kind, match func(*Event) bool) *watcher {
	w := &watcher{
		match:  match,
		notify: make(chan struct{}, 1),
		out:    make(chan Event, 64),
		done:   make(chan struct{}),
	}
	for _, k := range kinds {
		w.kinds |= kindBit(k)
	}
	if len(kinds) > 0 && w.kinds == 0 {
		w.kinds = 1 << 31 // only kinds the store does not have: resets only
	}
	ws.mu.Lock()
	if ws.list == nil {
		ws.list = map[*watcher]struct{}{}
	}
	ws.list[w] = struct{}{}
	ws.mu.Unlock()
	go w.run()
	return w
}

func (ws *watchers) remove(w *watcher) {
	ws.mu.Lock()
	if _, ok := ws.list[w]; ok {
		delete(ws.list, w)
		close(w.done)
	}
	ws.mu.Unlock()
}

// publish hands events to every watcher that wants one of them. The slice
// must never change afterwards.
func (ws *watchers) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	var present uint32
	reset := false
	for i := range events {
		present |= kindBit(events[i].Kind)
		reset = reset || events[i].Op == OpReset
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.list {
		if !reset && w.kinds != 0 && w.kinds&present == 0 {
			continue
		}
		if !reset && w.match != nil && !slices.ContainsFunc(events, func(ev Event) bool { return w.wants(&ev) }) {
			continue
		}
		w.mu.Lock()
		w.queue = append(w.queue, events)
		w.mu.Unlock()
		select {
		case w.notify <- struct{}{}:
		default:
		}
	}
}

// Watch subscribes to changes of the given kinds (all kinds if none). Call
// cancel to stop; the channel is closed then.
func (s *Store) Watch(kinds ...Kind) (<-chan Event, func()) {
	w := s.watchers.add(kinds, nil)
	return w.out, func() { s.watchers.remove(w) }
}

// ViewAndWatch runs fn on a snapshot and subscribes so that the events
// received are exactly those applied after that snapshot.
func (s *Store) ViewAndWatch(fn func(ReadTx), kinds ...Kind) (<-chan Event, func()) {
	return s.ViewAndWatchMatch(fn, nil, kinds...)
}

// ViewAndWatchMatch is ViewAndWatch for only the events of kinds that match
// also accepts (and resets). match runs while the store publishes: it must
// be quick and must not block or call the store.
func (s *Store) ViewAndWatchMatch(fn func(ReadTx), match func(*Event) bool, kinds ...Kind) (<-chan Event, func()) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w := s.watchers.add(kinds, match)
	fn(newReadTx(s.ts))
	return w.out, func() { s.watchers.remove(w) }
}
