package api

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/errdefs"
)

// ServiceUpdateOptions are the query options of POST /services/{id}/update.
type ServiceUpdateOptions struct {
	Rollback         string // "previous"
	RollbackTo       uint64 // Shoal: roll back to a remembered spec version
	RegistryAuthFrom string // "spec" | "previous-spec"
	EncodedAuth      string // X-Registry-Auth
}

// ServiceHistoryEntry is one row of GET /services/{id}/history (Shoal).
type ServiceHistoryEntry struct {
	Version   uint64
	CreatedAt time.Time
	Current   bool `json:",omitempty"`
	Spec      swarm.ServiceSpec
}

// LogsOptions select log lines.
type LogsOptions struct {
	Follow     bool
	Tail       string // "all" or a number
	Since      time.Time
	Timestamps bool
	Details    bool
	Stdout     bool
	Stderr     bool
}

// LogMessage is one line of a service's logs, from any node.
type LogMessage struct {
	NodeID, ServiceID, TaskID string
	Timestamp                 time.Time
	Stderr                    bool
	Line                      []byte // with its newline
	Err                       error  // a node's stream failed; reported, not fatal
}

// ServiceBackend serves /services and /tasks (managers only; the backend
// returns docker's "not a swarm manager" errors itself).
type ServiceBackend interface {
	CreateService(ctx context.Context, spec swarm.ServiceSpec, encodedAuth string) (swarm.ServiceCreateResponse, error)
	UpdateService(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, opts ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
	RemoveService(ctx context.Context, ref string) error
	GetService(ctx context.Context, ref string, insertDefaults bool) (swarm.Service, error)
	ListServices(ctx context.Context, args filters.Args, status bool) ([]swarm.Service, error)
	ServiceHistory(ctx context.Context, ref string) ([]ServiceHistoryEntry, error)
	ListTasks(ctx context.Context, args filters.Args) ([]swarm.Task, error)
	GetTask(ctx context.Context, ref string) (swarm.Task, error)
	// Logs streams the logs of a service (taskRef "") or one task.
	Logs(ctx context.Context, serviceRef, taskRef string, opts LogsOptions) (<-chan LogMessage, error)
}

func (s *Server) registerServiceRoutes() {
	b := s.b.Services
	s.Handle("GET /services", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		list, err := b.ListServices(r.Context(), args, BoolValue(r, "status"))
		if err != nil {
			return err
		}
		if list == nil {
			list = []swarm.Service{}
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("POST /services/create", func(w http.ResponseWriter, r *http.Request) error {
		var spec swarm.ServiceSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		resp, err := b.CreateService(r.Context(), spec, r.Header.Get("X-Registry-Auth"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusCreated, resp)
	})
	s.Handle("GET /services/{id}", func(w http.ResponseWriter, r *http.Request) error {
		// insertDefaults defaults to false, as docker's.
		svc, err := b.GetService(r.Context(), r.PathValue("id"), BoolValue(r, "insertDefaults"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, svc)
	})
	s.Handle("POST /services/{id}/update", func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		vs := q.Get("version")
		version, err := strconv.ParseUint(vs, 10, 64)
		if err != nil {
			return errdefs.InvalidParameter("invalid service version %q: the update must name the version it changes (?version=N from service inspect)", vs)
		}
		var spec swarm.ServiceSpec
		if err := DecodeJSON(r, &spec, false); err != nil {
			return err
		}
		opts := ServiceUpdateOptions{
			Rollback:         q.Get("rollback"),
			RegistryAuthFrom: q.Get("registryAuthFrom"),
			EncodedAuth:      r.Header.Get("X-Registry-Auth"),
		}
		if to := q.Get("rollbackTo"); to != "" {
			n, err := strconv.ParseUint(to, 10, 64)
			if err != nil || n == 0 {
				return errdefs.InvalidParameter("invalid rollbackTo %q: want a spec version from service history", to)
			}
			opts.RollbackTo = n
		}
		resp, err := b.UpdateService(r.Context(), r.PathValue("id"), version, spec, opts)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, resp)
	})
	s.Handle("DELETE /services/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.RemoveService(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	})
	s.Handle("GET /services/{id}/history", func(w http.ResponseWriter, r *http.Request) error {
		h, err := b.ServiceHistory(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, h)
	})
	s.Handle("GET /services/{id}/logs", func(w http.ResponseWriter, r *http.Request) error {
		return s.writeLogs(w, r, r.PathValue("id"), "")
	})
	s.Handle("GET /tasks", func(w http.ResponseWriter, r *http.Request) error {
		args, err := Filters(r)
		if err != nil {
			return err
		}
		list, err := b.ListTasks(r.Context(), args)
		if err != nil {
			return err
		}
		if list == nil {
			list = []swarm.Task{}
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("GET /tasks/{id}", func(w http.ResponseWriter, r *http.Request) error {
		t, err := b.GetTask(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, t)
	})
	s.Handle("GET /tasks/{id}/logs", func(w http.ResponseWriter, r *http.Request) error {
		return s.writeLogs(w, r, "", r.PathValue("id"))
	})
}

// ParseLogsOptions reads the log query parameters docker sends.
func ParseLogsOptions(r *http.Request) (LogsOptions, error) {
	q := r.URL.Query()
	o := LogsOptions{
		Follow:     BoolValue(r, "follow"),
		Tail:       q.Get("tail"),
		Timestamps: BoolValue(r, "timestamps"),
		Details:    BoolValue(r, "details"),
		Stdout:     BoolValue(r, "stdout"),
		Stderr:     BoolValue(r, "stderr"),
	}
	if o.Tail == "" {
		o.Tail = "all"
	}
	if o.Tail != "all" {
		if n, err := strconv.Atoi(o.Tail); err != nil || n < 0 {
			return o, errdefs.InvalidParameter("invalid value for tail: %q", o.Tail)
		}
	}
	if since := q.Get("since"); since != "" && since != "0" {
		t, err := parseTimestamp(since)
		if err != nil {
			return o, err
		}
		o.Since = t
	}
	if !o.Stdout && !o.Stderr {
		return o, errdefs.InvalidParameter("Bad parameters: you must choose at least one stream")
	}
	return o, nil
}

// parseTimestamp reads docker's "seconds[.nanoseconds]" timestamps.
func parseTimestamp(v string) (time.Time, error) {
	sec, frac, _ := cutDot(v)
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, errdefs.InvalidParameter("invalid timestamp %q", v)
	}
	var ns int64
	if frac != "" {
		for len(frac) < 9 {
			frac += "0"
		}
		ns, err = strconv.ParseInt(frac[:9], 10, 64)
		if err != nil {
			return time.Time{}, errdefs.InvalidParameter("invalid timestamp %q", v)
		}
	}
	return time.Unix(s, ns), nil
}

func cutDot(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// RFC3339NanoFixed is docker's log timestamp layout (fixed width).
const RFC3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"

// writeLogs streams service or task logs in docker's framing: stdcopy
// frames, each line prefixed with the timestamp (-t) and the details
// "com.docker.swarm.node.id=..,com.docker.swarm.service.id=..,com.docker.swarm.task.id=..".
func (s *Server) writeLogs(w http.ResponseWriter, r *http.Request, serviceRef, taskRef string) error {
	opts, err := ParseLogsOptions(r)
	if err != nil {
		return err
	}
	msgs, err := s.b.Services.Logs(r.Context(), serviceRef, taskRef, opts)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	stdout := stdcopy.NewStdWriter(w, stdcopy.Stdout)
	stderr := stdcopy.NewStdWriter(w, stdcopy.Stderr)
	var buf []byte
	for m := range msgs {
		if m.Err != nil {
			// A node's stream failed: tell the user on stderr, keep going.
			if _, err := stderr.Write([]byte("error from daemon in stream: " + m.Err.Error() + "\n")); err != nil {
				return nil
			}
			continue
		}
		buf = buf[:0]
		if opts.Timestamps {
			buf = append(buf, m.Timestamp.UTC().Format(RFC3339NanoFixed)...)
			buf = append(buf, ' ')
		}
		if opts.Details {
			buf = append(buf, "com.docker.swarm.node.id="+m.NodeID+
				",com.docker.swarm.service.id="+m.ServiceID+
				",com.docker.swarm.task.id="+m.TaskID+" "...)
		}
		buf = append(buf, m.Line...)
		out := io.Writer(stdout)
		if m.Stderr {
			out = stderr
		}
		if _, err := out.Write(buf); err != nil {
			return nil // client went away
		}
		if flusher != nil && len(msgs) == 0 {
			flusher.Flush()
		}
	}
	return nil
}

// DecodeRegistryAuth reads an X-Registry-Auth header (base64url JSON); an
// empty header is no auth.
func DecodeRegistryAuth(h string) ([]byte, error) {
	if h == "" {
		return nil, nil
	}
	b, err := base64.URLEncoding.DecodeString(h)
	if err != nil {
		b, err = base64.StdEncoding.DecodeString(h)
	}
	if err != nil {
		return nil, errdefs.InvalidParameter("invalid X-Registry-Auth header: %v", err)
	}
	return b, nil
}
