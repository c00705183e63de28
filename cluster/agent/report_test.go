package agent

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// Passing states wait for the report delay; RUNNING and stops do not.
func TestReporterGather(t *testing.T) {
	const never = time.Hour // the delay passing states would wait
	for _, tc := range []struct {
		state  swarm.TaskState
		urgent bool
	}{
		{swarm.TaskStateAccepted, false},
		{swarm.TaskStatePreparing, false},
		{swarm.TaskStateStarting, false},
		{swarm.TaskStateRunning, true},
		{swarm.TaskStateComplete, true},
		{swarm.TaskStateFailed, true},
		{swarm.TaskStateShutdown, true},
		{swarm.TaskStateRejected, true},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			r := newReporter()
			r.add("t1", swarm.TaskStatus{State: tc.state})
			// Without urgency gather waits for the (hour-long) delay, so
			// the context's end is what returns it; with it, gather
			// returns long before the deadline.
			wait := 100 * time.Millisecond
			if tc.urgent {
				wait = 30 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			sent := r.gather(ctx, never, time.Millisecond)
			if sent != tc.urgent {
				t.Fatalf("gather after a %s report: send=%v, want %v", tc.state, sent, tc.urgent)
			}
			if got := r.take(); got["t1"].State != tc.state {
				t.Fatalf("batch %v", got)
			}
		})
	}
}
