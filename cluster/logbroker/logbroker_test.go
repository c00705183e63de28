package logbroker

import (
	"context"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// fakeSource serves canned lines per task; with follow it keeps the stream
// open until ctx ends.
type fakeSource struct{ lines map[string][]string }

func (f fakeSource) TaskLogs(ctx context.Context, taskID string, o api.LogsOptions, out chan<- Line) error {
	ls, ok := f.lines[taskID]
	if !ok {
		return errdefs.NotFound("no container for task %s", taskID)
	}
	for _, l := range ls {
		select {
		case out <- Line{Time: time.Unix(1, 0), Data: []byte(l + "\n"), Stderr: strings.HasPrefix(l, "err")}:
		case <-ctx.Done():
			return nil
		}
	}
	if o.Follow {
		<-ctx.Done()
	}
	return nil
}

func mkTask(id, node string, state swarm.TaskState) *store.Task {
	t := &store.Task{}
	t.ID, t.ServiceID, t.NodeID, t.Slot = id, "svc", node, 1
	t.Status.State = state
	return t
}

func setup(t *testing.T) (*Broker, *store.Store) {
	src := fakeSource{lines: map[string][]string{
		"t1": {"one", "two"}, "t2": {"err three"}, "t3": {"late"},
	}}
	n1 := httptest.NewServer(NodeHandler(src))
	n2 := httptest.NewServer(NodeHandler(src))
	t.Cleanup(n1.Close)
	t.Cleanup(n2.Close)
	s := store.New()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		svc := &store.Service{}
		svc.ID, svc.Spec.Name = "svc", "web"
		for _, o := range []store.Object{svc, mkTask("t1", "n1", swarm.TaskStateRunning), mkTask("t2", "n2", swarm.TaskStateFailed), mkTask("t0", "n1", swarm.TaskStatePending)} {
			if err := tx.Create(o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]string{"n1": n1.URL, "n2": n2.URL}
	return &Broker{Store: s, Client: n1.Client(), NodeURL: func(id string) (string, error) { return urls[id], nil }}, s
}

func collect(t *testing.T, ch <-chan api.LogMessage, n int) []string {
	t.Helper()
	var got []string
	timeout := time.After(10 * time.Second)
	for len(got) < n {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("stream closed after %v, want %d lines", got, n)
			}
			if m.Err != nil {
				t.Fatalf("stream error: %v", m.Err)
			}
			got = append(got, m.TaskID+":"+strings.TrimSpace(string(m.Line)))
		case <-timeout:
			t.Fatalf("timed out with %v", got)
		}
	}
	sort.Strings(got)
	return got
}

func TestServiceLogsMerged(t *testing.T) {
	b, _ := setup(t)
	ch, err := b.Logs(context.Background(), "web", "", api.LogsOptions{Tail: "all", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch, 3)
	want := []string{"t1:one", "t1:two", "t2:err three"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, ok := <-ch; ok {
		t.Fatal("stream must end without follow")
	}
	if _, err := b.Logs(context.Background(), "nope", "", api.LogsOptions{}); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown service: %v", err)
	}
	ch, err = b.Logs(context.Background(), "", "t2", api.LogsOptions{Tail: "all", Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch, 1); got[0] != "t2:err three" {
		t.Fatalf("task logs: %v", got)
	}
}

func TestFollowPicksUpNewTasks(t *testing.T) {
	b, s := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := b.Logs(ctx, "svc", "", api.LogsOptions{Follow: true, Tail: "all", Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	collect(t, ch, 3)
	if err := s.Update(ctx, func(tx store.Tx) error { return tx.Create(mkTask("t3", "n2", swarm.TaskStateRunning)) }); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch, 1); got[0] != "t3:late" {
		t.Fatalf("new task: %v", got)
	}
	cancel()
	for range ch {
	}
}
