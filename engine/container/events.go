package container

import (
	"sync"
	"time"

	"github.com/shoal/shoal/engine/container/backend"
)

// eventBus fans events out to subscribers. Each subscriber has an unbounded
// queue, so a slow reader delays only itself and misses nothing (the swarm
// agent relies on seeing every exit).
type eventBus struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
	// recent keeps the last events for `events --since`, as dockerd
	// keeps its last 256.
	recent []backend.Event
}

// recentEvents is how many past events the bus keeps.
const recentEvents = 256

type subscriber struct {
	mu    sync.Mutex
	cond  *sync.Cond
	queue []backend.Event
	done  bool
	ch    chan backend.Event
	stop  chan struct{}
}

func (b *eventBus) subscribe() (<-chan backend.Event, func()) {
	_, ch, cancel := b.subscribeSince(time.Time{}, false)
	return ch, cancel
}

// subscribeSince is subscribe that also returns the kept events at or
// after since (with past), with no gap or overlap between both.
func (b *eventBus) subscribeSince(since time.Time, past bool) ([]backend.Event, <-chan backend.Event, func()) {
	sub := &subscriber{ch: make(chan backend.Event), stop: make(chan struct{})}
	sub.cond = sync.NewCond(&sub.mu)
	b.mu.Lock()
	var old []backend.Event
	if past {
		for _, ev := range b.recent {
			if !ev.Time.Before(since) {
				old = append(old, ev)
			}
		}
	}
	if b.subs == nil {
		b.subs = map[*subscriber]struct{}{}
	}
	if b.closed {
		b.mu.Unlock()
		close(sub.ch)
		return old, sub.ch, func() {}
	}
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	go sub.run()
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			b.mu.Lock()
			delete(b.subs, sub)
			b.mu.Unlock()
			sub.finish()
			close(sub.stop)
		})
	}
	return old, sub.ch, cancel
}

func (sub *subscriber) finish() {
	sub.mu.Lock()
	sub.done = true
	sub.cond.Broadcast()
	sub.mu.Unlock()
}

func (sub *subscriber) run() {
	defer close(sub.ch)
	for {
		sub.mu.Lock()
		for len(sub.queue) == 0 && !sub.done {
			sub.cond.Wait()
		}
		if len(sub.queue) == 0 {
			sub.mu.Unlock()
			return
		}
		ev := sub.queue[0]
		sub.queue[0] = backend.Event{}
		sub.queue = sub.queue[1:]
		sub.mu.Unlock()
		select {
		case sub.ch <- ev:
		case <-sub.stop:
			return
		}
	}
}

func (b *eventBus) publish(ev backend.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.recent) == recentEvents {
		copy(b.recent, b.recent[1:])
		b.recent = b.recent[:recentEvents-1]
	}
	b.recent = append(b.recent, ev)
	for sub := range b.subs {
		sub.mu.Lock()
		sub.queue = append(sub.queue, ev)
		sub.cond.Signal()
		sub.mu.Unlock()
	}
}

// close ends every subscription once its queue is delivered.
func (b *eventBus) close() {
	b.mu.Lock()
	b.closed = true
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	for sub := range subs {
		sub.finish()
	}
}
