package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/events"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// EventBackend is the node's event stream: container events, the recent
// ones kept for `--since`.
type EventBackend interface {
	// SubscribeSince returns the kept events at or after since, then the
	// live ones on the channel until cancel.
	SubscribeSince(since time.Time) ([]backend.Event, <-chan backend.Event, func())
}

var eventFilters = []string{"type", "container", "event", "image", "label", "scope"}

func (s *Server) registerEventRoutes() {
	s.Handle("GET /events", s.events)
}

// events is GET /events: a JSON stream of events.Message, as dockerd's.
// Without until it runs until the client goes; with an until in the past
// it returns the kept events in the window and ends.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	since, err := eventTime(q.Get("since"))
	if err != nil {
		return err
	}
	until, err := eventTime(q.Get("until"))
	if err != nil {
		return err
	}
	if !since.IsZero() && !until.IsZero() && until.Before(since) {
		return errdefs.InvalidParameter("`since` time (%s) cannot be after `until` time (%s)", q.Get("since"), q.Get("until"))
	}
	f, err := Filters(r)
	if err != nil {
		return err
	}
	if err := ValidateFilters(f, eventFilters...); err != nil {
		return err
	}
	past, live, cancel := s.b.Events.SubscribeSince(since)
	defer cancel()
	if since.IsZero() {
		past = nil // no --since: only what happens from now on
	}

	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := json.NewEncoder(w)
	send := func(ev backend.Event) (more bool, err error) {
		if !until.IsZero() && ev.Time.After(until) {
			return false, nil
		}
		m := eventMessage(ev)
		if !eventMatches(f, m) {
			return true, nil
		}
		if err := enc.Encode(m); err != nil {
			return false, err
		}
		return true, rc.Flush()
	}
	for _, ev := range past {
		if more, err := send(ev); !more || err != nil {
			return nil // the response has started: nothing to report
		}
	}
	var stop <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		stop = t.C
	}
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-stop:
			return nil
		case ev, ok := <-live:
			if !ok {
				return nil
			}
			if more, err := send(ev); !more || err != nil {
				return nil
			}
		}
	}
}

// eventMessage is docker's form of a container event.
func eventMessage(ev backend.Event) events.Message {
	attrs := make(map[string]string, len(ev.Attributes)+1)
	for k, v := range ev.Attributes {
		attrs[k] = v
	}
	if ev.Action == "die" {
		attrs["exitCode"] = strconv.Itoa(ev.ExitCode)
	}
	return events.Message{
		Type:     events.ContainerEventType,
		Action:   events.Action(ev.Action),
		Actor:    events.Actor{ID: ev.ID, Attributes: attrs},
		Scope:    "local",
		Time:     ev.Time.Unix(),
		TimeNano: ev.Time.UnixNano(),
	}
}

// eventMatches applies docker's event filters to a container event.
func eventMatches(f filters.Args, m events.Message) bool {
	if !f.ExactMatch("type", string(m.Type)) || !f.ExactMatch("scope", m.Scope) {
		return false
	}
	// "exec_start: sh" matches event=exec_start.
	action, _, _ := strings.Cut(string(m.Action), ":")
	if !f.ExactMatch("event", string(m.Action)) && !f.ExactMatch("event", action) {
		return false
	}
	name := m.Actor.Attributes["name"]
	if f.Contains("container") && !f.ExactMatch("container", m.Actor.ID) && !f.ExactMatch("container", name) &&
		!f.ExactMatch("container", strings.TrimPrefix(name, "/")) && !idPrefixMatch(f.Get("container"), m.Actor.ID) {
		return false
	}
	if f.Contains("image") {
		image := withTag(m.Actor.Attributes["image"])
		matched := false
		for _, want := range f.Get("image") {
			matched = matched || withTag(want) == image
		}
		if !matched {
			return false
		}
	}
	return f.MatchKVList("label", m.Actor.Attributes)
}

// withTag gives an image reference without tag or digest docker's
// implicit ":latest", so "busybox" and "busybox:latest" compare equal.
func withTag(ref string) string {
	if strings.Contains(ref, "@") || strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		return ref
	}
	return ref + ":latest"
}

func idPrefixMatch(refs []string, id string) bool {
	for _, r := range refs {
		if len(r) >= 3 && strings.HasPrefix(id, r) {
			return true
		}
	}
	return false
}

// eventTime parses docker's since/until: "SECONDS[.NANOSECONDS]" (the CLI
// turns durations and dates into that); "" is none.
func eventTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	secs, frac, _ := strings.Cut(v, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter("invalid timestamp %q", v)
	}
	var nsec int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		frac += strings.Repeat("0", 9-len(frac))
		if nsec, err = strconv.ParseInt(frac, 10, 64); err != nil {
			return time.Time{}, errdefs.InvalidParameter("invalid timestamp %q", v)
		}
	}
	return time.Unix(sec, nsec), nil
}
