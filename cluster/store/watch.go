package store

import "sync"

// Event is one applied change. For deletes Object is the removed object;
// for updates Old is the object before.
type Event struct {
	Op     Op
	Kind   Kind
	Index  uint64
	Object Object
	Old    Object
}

// watcher buffers events without bound so Apply never waits on a slow
// reader; a reader that cannot keep up grows its queue, not the writer's
// latency.
type watcher struct {
	kinds  map[Kind]bool
	mu     sync.Mutex
	buf    []Event
	notify chan struct{}
	out    chan Event
	done   chan struct{}
}

func (w *watcher) wants(k Kind) bool { return len(w.kinds) == 0 || w.kinds[k] }

func (w *watcher) run() {
	defer close(w.out)
	for {
		w.mu.Lock()
		batch := w.buf
		w.buf = nil
		w.mu.Unlock()
		for _, ev := range batch {
			select {
			case w.out <- ev:
			case <-w.done:
				return
			}
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

func (ws *watchers) add(kinds []Kind) *watcher {
	w := &watcher{
		kinds:  map[Kind]bool{},
		notify: make(chan struct{}, 1),
		out:    make(chan Event, 64),
		done:   make(chan struct{}),
	}
	for _, k := range kinds {
		w.kinds[k] = true
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

func (ws *watchers) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	ws.mu.Lock()
	defer ws.mu.Unlock()
	for w := range ws.list {
		w.mu.Lock()
		n := 0
		for _, ev := range events {
			if ev.Op == OpReset || w.wants(ev.Kind) {
				w.buf = append(w.buf, ev)
				n++
			}
		}
		w.mu.Unlock()
		if n > 0 {
			select {
			case w.notify <- struct{}{}:
			default:
			}
		}
	}
}

// Watch subscribes to changes of the given kinds (all kinds if none). Call
// cancel to stop; the channel is closed then.
func (s *Store) Watch(kinds ...Kind) (<-chan Event, func()) {
	w := s.watchers.add(kinds)
	return w.out, func() { s.watchers.remove(w) }
}

// ViewAndWatch runs fn on a snapshot and subscribes so that the events
// received are exactly those applied after that snapshot.
func (s *Store) ViewAndWatch(fn func(ReadTx), kinds ...Kind) (<-chan Event, func()) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w := s.watchers.add(kinds)
	fn(newReadTx(s.ts))
	return w.out, func() { s.watchers.remove(w) }
}
