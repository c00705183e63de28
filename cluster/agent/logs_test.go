package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

func decodeRecords(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, wire.MaxLogRecord)
	for sc.Scan() {
		var r wire.LogBatch
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("record %q: %v", sc.Bytes(), err)
		}
		s := r.TaskID
		if len(r.Lines) > 0 {
			var ls []string
			for _, l := range r.Lines {
				ls = append(ls, fmt.Sprintf("%d:%s", l.Time, strings.TrimSpace(string(l.Data))))
			}
			if len(ls) > 3 {
				ls = []string{fmt.Sprintf("%d lines", len(ls))}
			}
			s += "[" + strings.Join(ls, ",") + "]"
		}
		if r.Done {
			s += " done"
		}
		if r.Err != "" {
			s += " err=" + r.Err
		}
		out = append(out, s)
	}
	return out
}

func ln(task, ts int, s string) logItem {
	return logItem{task: task, line: wire.LogLine{Time: int64(ts), Data: []byte(s + "\n")}}
}

// writeLogs groups what is ready per task; the items are all queued
// before it runs, so the grouping is deterministic.
func TestWriteLogsBatches(t *testing.T) {
	many := make([]logItem, 300)
	for i := range many {
		many[i] = ln(0, i, "x")
	}
	tests := []struct {
		name  string
		items []logItem
		want  []string
	}{
		{"grouped per task", []logItem{ln(0, 1, "a"), ln(0, 2, "b"), ln(1, 3, "c"), {task: 0, end: true}, {task: 1, end: true, err: "boom"}},
			[]string{"t0[1:a,2:b]", "t1[3:c]", "t0 done", "t1 err=boom"}},
		{"lines and end together", []logItem{ln(1, 1, "a"), {task: 1, end: true}, {task: 0, end: true}},
			[]string{"t1[1:a] done", "t0 done"}},
		{"split at the batch size", append(many, logItem{task: 0, end: true}),
			[]string{fmt.Sprintf("t0[%d lines]", maxBatchLines), fmt.Sprintf("t0[%d lines] done", 300-maxBatchLines)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			items := make(chan logItem, len(tc.items))
			for _, it := range tc.items {
				items <- it
			}
			close(items)
			var out bytes.Buffer
			if err := writeLogs(context.Background(), []string{"t0", "t1"}, items, &out); err != nil {
				t.Fatal(err)
			}
			if got := decodeRecords(t, out.Bytes()); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := writeLogs(ctx, []string{"t0"}, make(chan logItem), &bytes.Buffer{}); err == nil {
		t.Fatal("cancelled writer returned nil")
	}
}

type srcFunc func(ctx context.Context, taskID string, o wire.LogOptions, fn func(LogLine) error) error

func (f srcFunc) TaskLogs(ctx context.Context, taskID string, o wire.LogOptions, fn func(LogLine) error) error {
	return f(ctx, taskID, o, fn)
}

// readTaskLogs ends each task: silently when its container is gone, with
// the error otherwise.
func TestReadTaskLogsEnds(t *testing.T) {
	tests := []struct {
		name string
		src  LogSource
		want logItem
	}{
		{"no source", nil, logItem{end: true, err: "this node cannot read container logs"}},
		{"container gone", srcFunc(func(context.Context, string, wire.LogOptions, func(LogLine) error) error {
			return errdefs.NotFound("no container")
		}), logItem{end: true}},
		{"read error", srcFunc(func(context.Context, string, wire.LogOptions, func(LogLine) error) error {
			return errdefs.System("disk on fire")
		}), logItem{end: true, err: "disk on fire"}},
	}
	for _, tc := range tests {
		a := &Agent{cfg: Config{Logs: tc.src}}
		items := make(chan logItem, 1)
		a.readTaskLogs(context.Background(), 0, "t0", wire.LogOptions{}, items)
		if got := <-items; got.end != tc.want.end || got.err != tc.want.err {
			t.Errorf("%s: got %+v", tc.name, got)
		}
	}
}
