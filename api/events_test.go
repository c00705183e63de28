package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/shoal/shoal/engine/container/backend"
)

// fakeEvents keeps past events and hands out one live channel.
type fakeEvents struct {
	past []backend.Event
	live chan backend.Event
}

func (f *fakeEvents) SubscribeSince(since time.Time) ([]backend.Event, <-chan backend.Event, func()) {
	var out []backend.Event
	for _, ev := range f.past {
		if !ev.Time.Before(since) {
			out = append(out, ev)
		}
	}
	return out, f.live, func() {}
}

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func ev(sec int, id, name, action string, labels ...string) backend.Event {
	attrs := map[string]string{"name": name, "image": "demo/busybox"}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		attrs[k] = v
	}
	return backend.Event{ID: id, Name: name, Image: "demo/busybox", Action: action, Attributes: attrs, Time: t0.Add(time.Duration(sec) * time.Second)}
}

func stamp(sec int) string {
	return fmt.Sprintf("%d.000000000", t0.Add(time.Duration(sec)*time.Second).Unix())
}

// Past events with since and until, through every filter docker's CLI
// sends.
func TestEventsPastWindowAndFilters(t *testing.T) {
	f := &fakeEvents{past: []backend.Event{
		ev(0, "aaaa1111", "web", "create", "tier=front"),
		ev(1, "aaaa1111", "web", "start", "tier=front"),
		ev(2, "bbbb2222", "db", "create"),
		ev(3, "bbbb2222", "db", "exec_start: sh -c true"),
		ev(4, "aaaa1111", "web", "die", "tier=front"),
	}, live: make(chan backend.Event)}
	srv := httptest.NewServer(New(Backends{Events: f}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	tests := []struct {
		name    string
		since   int
		until   int
		filters string
		want    []string // ACTION:ID
	}{
		{"all", 0, 4, ``, []string{"create:aaaa1111", "start:aaaa1111", "create:bbbb2222", "exec_start: sh -c true:bbbb2222", "die:aaaa1111"}},
		{"window", 1, 3, ``, []string{"start:aaaa1111", "create:bbbb2222", "exec_start: sh -c true:bbbb2222"}},
		{"container by name", 0, 4, `{"container":{"db":true}}`, []string{"create:bbbb2222", "exec_start: sh -c true:bbbb2222"}},
		{"container by ID prefix", 0, 4, `{"container":{"aaaa":true}}`, []string{"create:aaaa1111", "start:aaaa1111", "die:aaaa1111"}},
		{"event", 0, 4, `{"event":{"create":true,"exec_start":true}}`, []string{"create:aaaa1111", "create:bbbb2222", "exec_start: sh -c true:bbbb2222"}},
		{"label", 0, 4, `{"label":{"tier=front":true}}`, []string{"create:aaaa1111", "start:aaaa1111", "die:aaaa1111"}},
		{"type container", 0, 4, `{"type":{"container":true},"event":{"die":true}}`, []string{"die:aaaa1111"}},
		{"type image", 0, 4, `{"type":{"image":true}}`, nil},
		{"image", 0, 4, `{"image":{"demo/busybox:latest":true},"event":{"start":true}}`, []string{"start:aaaa1111"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := url.Values{"since": {stamp(tc.since)}, "until": {stamp(tc.until)}}
			if tc.filters != "" {
				q.Set("filters", tc.filters)
			}
			resp, err := http.Get(srv.URL + "/v1.47/events?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var got []string
			dec := json.NewDecoder(resp.Body)
			for {
				var m events.Message
				if err := dec.Decode(&m); err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				if m.Type != events.ContainerEventType || m.Scope != "local" || m.TimeNano == 0 {
					t.Fatalf("message %+v", m)
				}
				got = append(got, string(m.Action)+":"+m.Actor.ID)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// Without until the stream follows live events until the client goes.
func TestEventsLive(t *testing.T) {
	f := &fakeEvents{past: []backend.Event{ev(0, "aaaa1111", "web", "create")}, live: make(chan backend.Event, 2)}
	srv := httptest.NewServer(New(Backends{Events: f}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/events?filters=" + url.QueryEscape(`{"event":{"die":true}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	f.live <- ev(5, "aaaa1111", "web", "start")
	f.live <- ev(6, "aaaa1111", "web", "die")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var m events.Message
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	// No since: the past create is not replayed; start is filtered out.
	if m.Action != events.ActionDie || m.Actor.Attributes["exitCode"] != "0" {
		t.Fatalf("first message %+v", m)
	}
}

func TestEventsBadInput(t *testing.T) {
	srv := httptest.NewServer(New(Backends{Events: &fakeEvents{}}, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	for _, q := range []string{
		"since=yesterday",
		"since=" + stamp(5) + "&until=" + stamp(1),
		"filters=" + url.QueryEscape(`{"colour":{"red":true}}`),
		"filters=notjson",
	} {
		resp, err := http.Get(srv.URL + "/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ Message string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 400 || body.Message == "" {
			t.Fatalf("%s: %d %q, want 400 with a message", q, resp.StatusCode, body.Message)
		}
	}
}
