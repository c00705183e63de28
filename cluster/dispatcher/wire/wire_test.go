package wire

import (
	"encoding/json"
	"reflect"
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

func TestLogBatchAppendJSON(t *testing.T) {
	tests := []struct {
		name string
		b    LogBatch
	}{
		{"lines", LogBatch{TaskID: "t1", Lines: []LogLine{
			{Time: 1700000000123456789, Data: []byte("hello\n")},
			{Time: -5, Stderr: true, Data: []byte{0, 1, 0xff, '\n'}},
			{Time: 0, Data: nil},
		}}},
		{"done", LogBatch{TaskID: "t2", Done: true}},
		{"error", LogBatch{TaskID: `odd "id"\<&>`, Err: "no such\tcontainer\n\x01\b\f\r"}},
		{"lines and end", LogBatch{TaskID: "t3", Lines: []LogLine{{Time: 7, Data: []byte("x")}}, Done: true}},
		{"utf-8", LogBatch{TaskID: "tâche", Err: "日本"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.b.AppendJSON([]byte("prefix"))
			want, err := json.Marshal(&tc.b)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "prefix"+string(want)+"\n" {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
			var back LogBatch
			if err := json.Unmarshal(got[len("prefix"):], &back); err != nil {
				t.Fatal(err)
			}
			// nil and empty Data both come back empty.
			for i := range back.Lines {
				if len(back.Lines[i].Data) == 0 {
					back.Lines[i].Data = tc.b.Lines[i].Data
				}
			}
			if !reflect.DeepEqual(back, tc.b) {
				t.Fatalf("round trip: %+v, want %+v", back, tc.b)
			}
		})
	}
}

func TestLogBatchAppendJSONDoesNotAllocate(t *testing.T) {
	b := LogBatch{TaskID: "abcdef", Lines: []LogLine{{Time: 1, Data: []byte("a log line of some length\n")}, {Time: 2, Stderr: true, Data: []byte("another\n")}}}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = b.AppendJSON(buf[:0]) }); n != 0 {
		t.Fatalf("%v allocations per batch", n)
	}
}
