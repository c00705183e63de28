package container

import (
	"fmt"
	"testing"
	"time"

	"github.com/shoal/shoal/engine/container/backend"
)

// The bus keeps the last recentEvents events; a subscription since a time
// gets the kept ones from then, then every live one, none twice.
func TestEventBusRecent(t *testing.T) {
	var b eventBus
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	for i := range recentEvents + 10 {
		b.publish(backend.Event{ID: fmt.Sprint(i), Time: at(i)})
	}
	past, live, cancel := b.subscribeSince(at(recentEvents), true)
	defer cancel()
	if len(past) != 10 || past[0].ID != fmt.Sprint(recentEvents) || past[9].ID != fmt.Sprint(recentEvents+9) {
		t.Fatalf("since: %d events, first %v", len(past), past)
	}
	all, _, cancelAll := b.subscribeSince(time.Time{}, true)
	cancelAll()
	if len(all) != recentEvents || all[0].ID != "10" {
		t.Fatalf("kept %d events, oldest %s; want %d from 10", len(all), all[0].ID, recentEvents)
	}
	b.publish(backend.Event{ID: "live", Time: at(1000)})
	select {
	case ev := <-live:
		if ev.ID != "live" {
			t.Fatalf("live event %v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live event")
	}
}
