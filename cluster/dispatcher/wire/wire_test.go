package wire

import (
	"testing"

	"github.com/moby/moby/api/types/swarm"
)

func TestStateOrder(t *testing.T) {
	tests := []struct {
		st              swarm.TaskState
		terminal, agent bool
	}{
		{swarm.TaskStateNew, false, false},
		{swarm.TaskStateAssigned, false, false},
		{swarm.TaskStateAccepted, false, true},
		{swarm.TaskStateRunning, false, true},
		{swarm.TaskStateComplete, true, true},
		{swarm.TaskStateRejected, true, true},
		{swarm.TaskStateRemove, true, false},
		{swarm.TaskStateOrphaned, true, false},
		{"bogus", false, false},
	}
	for _, tc := range tests {
		if Terminal(tc.st) != tc.terminal || AgentState(tc.st) != tc.agent {
			t.Errorf("%s: terminal %v agent %v", tc.st, Terminal(tc.st), AgentState(tc.st))
		}
	}
	order := []swarm.TaskState{swarm.TaskStateNew, swarm.TaskStatePending, swarm.TaskStateAssigned, swarm.TaskStateAccepted,
		swarm.TaskStatePreparing, swarm.TaskStateReady, swarm.TaskStateStarting, swarm.TaskStateRunning, swarm.TaskStateComplete}
	for i := 1; i < len(order); i++ {
		if Rank(order[i-1]) >= Rank(order[i]) {
			t.Errorf("%s not before %s", order[i-1], order[i])
		}
	}
}
