package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/internal/testutil"
)

// sink records what a subscription receives.
type sink struct {
	mu      sync.Mutex
	batches []wire.LogBatch
	refuse  error         // returned by Publish
	hold    chan struct{} // Publish waits for it (or ctx)
	done    chan error
}

func newSink() *sink { return &sink{done: make(chan error, 1)} }

func (s *sink) Publish(ctx context.Context, b *wire.LogBatch) error {
	if s.hold != nil {
		select {
		case <-s.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := *b
	c.Lines = append([]wire.LogLine(nil), b.Lines...)
	s.batches = append(s.batches, c)
	return s.refuse
}

func (s *sink) Done(err error) { s.done <- err }

func (s *sink) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(wait):
		t.Fatal("sink never done")
		return nil
	}
}

func (s *sink) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		for _, l := range b.Lines {
			out = append(out, b.TaskID+":"+string(l.Data))
		}
		if b.Err != "" {
			out = append(out, b.TaskID+"!"+b.Err)
		}
	}
	return out
}

// nextLogs skips to the next logs message.
func (s *stream) nextLogs() *wire.LogsRequest {
	s.t.Helper()
	for {
		if m := s.next(); m.Type == wire.MsgLogs {
			return m.Logs
		}
	}
}

// publish posts records as nodeID and returns the answer.
func (e *env) publish(nodeID, sub string, body io.Reader) (int, wire.Error) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+wire.PathLogs+"?"+wire.QuerySubscription+"="+sub, body)
	req.Header.Set(nodeHeader, nodeID)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var we wire.Error
	if resp.StatusCode >= 300 {
		_ = json.NewDecoder(resp.Body).Decode(&we)
	}
	return resp.StatusCode, we
}

func records(bs ...wire.LogBatch) io.Reader {
	var buf []byte
	for i := range bs {
		buf = bs[i].AppendJSON(buf)
	}
	return bytes.NewReader(buf)
}

func line(ts int64, s string) wire.LogLine { return wire.LogLine{Time: ts, Data: []byte(s)} }

func TestLogsPublished(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	sk := newSink()
	opts := wire.LogOptions{Follow: true, Tail: 5, Since: time.Unix(100, 0).UTC(), Stdout: true}
	// t3 is n2's: left out; a request for none of n1's tasks is refused.
	if _, err := e.d.SubscribeLogs("n1", []string{"t3", "nope"}, opts, sk); !errdefs.IsNotFound(err) {
		t.Fatalf("other node's tasks: %v", err)
	}
	if _, err := e.d.SubscribeLogs("n1", []string{"t1", "t2", "t1", "t3"}, opts, sk); err != nil {
		t.Fatal(err)
	}
	req := s.nextLogs()
	if len(req.TaskIDs) != 2 || req.TaskIDs[0] != "t1" || req.TaskIDs[1] != "t2" || req.Close || !req.Options.Since.Equal(opts.Since) ||
		req.Options.Tail != 5 || !req.Options.Follow || !req.Options.Stdout || req.Options.Stderr {
		t.Fatalf("request %+v", req)
	}
	code, we := e.publish("n1", req.SubscriptionID, records(
		wire.LogBatch{TaskID: "t1", Lines: []wire.LogLine{line(1, "a\n"), line(2, "b\n")}},
		wire.LogBatch{TaskID: "t2", Err: "cannot read"},
		wire.LogBatch{TaskID: "t1", Lines: []wire.LogLine{line(3, "c\n")}, Done: true},
	))
	if code != http.StatusNoContent {
		t.Fatalf("publish: %d %+v", code, we)
	}
	if err := sk.wait(t); err != nil {
		t.Fatalf("done: %v", err)
	}
	if got := strings.Join(sk.lines(), "|"); got != "t1:a\n|t1:b\n|t2!cannot read|t1:c\n" {
		t.Fatalf("lines %q", got)
	}
	// Over: a late publisher is told so.
	if code, we := e.publish("n1", req.SubscriptionID, records(wire.LogBatch{TaskID: "t1", Done: true})); code != http.StatusGone || we.Code != wire.CodeLogsGone {
		t.Fatalf("late publish: %d %+v", code, we)
	}
}

func TestLogsRefusals(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	tests := []struct {
		name   string
		node   string
		body   io.Reader
		code   int
		wcode  wire.Code
		failed bool // the subscription ends
		lines  int  // lines delivered before it fails
	}{
		{"another node's subscription", "n2", records(wire.LogBatch{TaskID: "t1", Done: true}), http.StatusForbidden, wire.CodeForbidden, false, 0},
		{"task of another node", "n1", records(wire.LogBatch{TaskID: "t3", Lines: []wire.LogLine{line(1, "x\n")}}), http.StatusForbidden, wire.CodeForbidden, true, 0},
		{"bad record", "n1", strings.NewReader("{not json\n"), http.StatusBadRequest, wire.CodeInvalid, true, 0},
		{"ends early", "n1", records(wire.LogBatch{TaskID: "t1", Lines: []wire.LogLine{line(1, "x\n")}}), http.StatusBadRequest, wire.CodeInvalid, true, 1},
		{"after its end", "n1", records(wire.LogBatch{TaskID: "t1", Done: true}, wire.LogBatch{TaskID: "t1", Done: true}), http.StatusBadRequest, wire.CodeInvalid, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sk := newSink()
			ids := []string{"t1"}
			if tc.name == "after its end" {
				ids = []string{"t1", "t2"}
			}
			if _, err := e.d.SubscribeLogs("n1", ids, wire.LogOptions{Tail: -1, Stdout: true}, sk); err != nil {
				t.Fatal(err)
			}
			req := s.nextLogs()
			code, we := e.publish(tc.node, req.SubscriptionID, tc.body)
			if code != tc.code || we.Code != tc.wcode {
				t.Fatalf("got %d %+v", code, we)
			}
			if !tc.failed {
				return
			}
			err := sk.wait(t)
			if err == nil {
				t.Fatal("subscription should have failed")
			}
			if tc.code == http.StatusForbidden && !errdefs.IsForbidden(err) {
				t.Fatalf("done: %v", err)
			}
			// The agent is told to stop.
			if c := s.nextLogs(); !c.Close || c.SubscriptionID != req.SubscriptionID {
				t.Fatalf("no close: %+v", c)
			}
			if len(sk.lines()) != tc.lines {
				t.Fatalf("refused lines delivered: %v", sk.lines())
			}
		})
	}
}

func TestLogsNodeWithoutSession(t *testing.T) {
	e := newEnv(t, twoNodes)
	s, _ := e.open("n1", wire.SessionRequest{})
	// n1 starts DOWN in the store: see it READY first, or the wait for
	// DOWN below could pass before anything happened.
	e.waitNode("n1", swarm.NodeStateReady)
	if _, err := e.d.SubscribeLogs("n2", []string{"t3"}, wire.LogOptions{}, newSink()); !errdefs.IsUnavailable(err) {
		t.Fatalf("never connected: %v", err)
	}
	if _, err := e.d.SubscribeLogs("n1", nil, wire.LogOptions{}, newSink()); !errdefs.IsInvalidParameter(err) {
		t.Fatalf("no tasks: %v", err)
	}
	// A session that ends fails the subscriptions it carried.
	sk := newSink()
	if _, err := e.d.SubscribeLogs("n1", []string{"t1"}, wire.LogOptions{}, sk); err != nil {
		t.Fatal(err)
	}
	s.nextLogs()
	s.cancel()
	if err := sk.wait(t); !errdefs.IsUnavailable(err) {
		t.Fatalf("session ended: %v", err)
	}
	// Expired (DOWN) nodes are refused at once.
	e.clk.Advance(time.Minute)
	e.waitNode("n1", "down")
	if _, err := e.d.SubscribeLogs("n1", []string{"t1"}, wire.LogOptions{}, newSink()); !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "down") {
		t.Fatalf("down node: %v", err)
	}
}

func TestLogsAttachTimeout(t *testing.T) {
	e := newEnv(t, twoNodes, func(c *Config) { c.LogsAttachTimeout = 20 * time.Millisecond })
	s, _ := e.open("n1", wire.SessionRequest{})
	sk := newSink()
	if _, err := e.d.SubscribeLogs("n1", []string{"t1"}, wire.LogOptions{}, sk); err != nil {
		t.Fatal(err)
	}
	req := s.nextLogs()
	if err := sk.wait(t); !errdefs.IsUnavailable(err) {
		t.Fatalf("done: %v", err)
	}
	if c := s.nextLogs(); !c.Close || c.SubscriptionID != req.SubscriptionID {
		t.Fatalf("no close: %+v", c)
	}
}

// A publisher still streaming is answered as soon as the subscription ends
// (cancelled, or the subscriber refuses more).
func TestLogsEndAnswersPublisher(t *testing.T) {
	for _, how := range []string{"cancel", "subscriber gone"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t, twoNodes)
			s, _ := e.open("n1", wire.SessionRequest{})
			sk := newSink()
			if how == "subscriber gone" {
				sk.refuse = errors.New("gone")
			}
			cancel, err := e.d.SubscribeLogs("n1", []string{"t1"}, wire.LogOptions{Follow: true}, sk)
			if err != nil {
				t.Fatal(err)
			}
			req := s.nextLogs()
			pr, pw := io.Pipe()
			defer pw.Close()
			answered := make(chan int, 1)
			go func() {
				code, _ := e.publish("n1", req.SubscriptionID, pr)
				answered <- code
			}()
			// A second publisher for the same subscription is refused.
			testutil.Eventually(t, wait, func() bool {
				e.d.lmu.Lock()
				ls := e.d.logs[req.SubscriptionID]
				e.d.lmu.Unlock()
				if ls == nil {
					return false
				}
				ls.mu.Lock()
				defer ls.mu.Unlock()
				return ls.attached
			}, "publisher never attached")
			if code, we := e.publish("n1", req.SubscriptionID, records(wire.LogBatch{TaskID: "t1", Done: true})); code != http.StatusConflict {
				t.Fatalf("second publisher: %d %+v", code, we)
			}
			if how == "cancel" {
				cancel()
			} else {
				b := wire.LogBatch{TaskID: "t1", Lines: []wire.LogLine{line(1, "x\n")}}
				if _, err := pw.Write(b.AppendJSON(nil)); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case code := <-answered:
				if code != http.StatusGone {
					t.Fatalf("answer %d", code)
				}
			case <-time.After(wait):
				t.Fatal("publisher not answered")
			}
			err = sk.wait(t)
			if how == "cancel" && !errors.Is(err, context.Canceled) || how != "cancel" && err == nil {
				t.Fatalf("done: %v", err)
			}
			if c := s.nextLogs(); !c.Close || c.SubscriptionID != req.SubscriptionID {
				t.Fatalf("no close: %+v", c)
			}
		})
	}
}

// A subscription cancelled before its request went out is never sent.
func TestLogsCancelBeforeSent(t *testing.T) {
	e := newEnv(t, twoNodes, func(c *Config) { c.Tick = time.Hour })
	s, _ := e.open("n1", wire.SessionRequest{})
	e.d.mu.Lock()
	sess := e.d.sessions["n1"]
	e.d.mu.Unlock()
	sk := newSink()
	cancel, err := e.d.SubscribeLogs("n1", []string{"t1"}, wire.LogOptions{}, sk)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	cancel()
	if err := sk.wait(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("done: %v", err)
	}
	for _, m := range sess.drain() {
		if m.Type == wire.MsgLogs {
			t.Fatalf("sent %+v", m.Logs)
		}
	}
	_ = s
}
