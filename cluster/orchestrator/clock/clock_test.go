package clock

import (
	"testing"
	"time"
)

func TestFake(t *testing.T) {
	start := time.Unix(1000, 0)
	f := NewFake(start)
	a := f.NewTimer(2 * time.Second)
	b := f.NewTimer(time.Second)
	c := f.NewTimer(3 * time.Second)
	now := f.NewTimer(0)
	select {
	case <-now.C():
	default:
		t.Fatal("zero timer did not fire at once")
	}
	if !c.Stop() || c.Stop() {
		t.Fatal("Stop")
	}
	if got := f.Pending(); len(got) != 2 {
		t.Fatalf("pending %v", got)
	}
	f.Advance(1500 * time.Millisecond)
	select {
	case at := <-b.C():
		if !at.Equal(start.Add(1500 * time.Millisecond)) {
			t.Fatalf("fired at %v", at)
		}
	default:
		t.Fatal("b did not fire")
	}
	select {
	case <-a.C():
		t.Fatal("a fired early")
	default:
	}
	f.Advance(time.Second)
	<-a.C()
	if f.Timers() != 0 || a.Stop() {
		t.Fatal("timers left")
	}
}
