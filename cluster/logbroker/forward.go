package logbroker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// Followers have no sessions: they forward `service logs` to the leader,
// whose broker streams the merged messages back over the cluster port
// (ForwardHandler on the leader, Forward on the follower).

// PathForward is the leader's endpoint for other managers: POST with a
// ForwardRequest; 200 and a stream of newline-delimited JSON messages, or
// a typed error reply (transport.WriteError).
const PathForward = "/logbroker/logs"

// ForwardRequest is the body of PathForward.
type ForwardRequest struct {
	ServiceRef string `json:",omitempty"`
	TaskRef    string `json:",omitempty"`
	Options    api.LogsOptions
}

// fwdMsg is an api.LogMessage on the wire; Err is a typed error in
// transport's form, so its kind survives.
type fwdMsg struct {
	Node    string          `json:"n,omitempty"`
	Service string          `json:"s,omitempty"`
	Task    string          `json:"t,omitempty"`
	Time    int64           `json:"ts,omitempty"`
	Stderr  bool            `json:"e,omitempty"`
	Line    []byte          `json:"d,omitempty"`
	Err     json.RawMessage `json:"err,omitempty"`
}

// ForwardHandler serves PathForward with the broker current returns (nil
// when this manager has none: it does not lead). Mount it on the cluster
// mux behind transport.Server.ManagerOnly.
func ForwardHandler(current func() *Broker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := current()
		if b == nil {
			transport.WriteError(w, ErrNotLeader)
			return
		}
		var req ForwardRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			transport.WriteError(w, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "invalid logs request"))
			return
		}
		msgs, err := b.Logs(r.Context(), req.ServiceRef, req.TaskRef, req.Options)
		if err != nil {
			transport.WriteError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush()
		enc := json.NewEncoder(w)
		for m := range msgs {
			f := fwdMsg{Node: m.NodeID, Service: m.ServiceID, Task: m.TaskID, Stderr: m.Stderr, Line: m.Line}
			if !m.Timestamp.IsZero() {
				f.Time = m.Timestamp.UnixNano()
			}
			if m.Err != nil {
				f.Err, _ = transport.EncodeError(m.Err)
			}
			if err := enc.Encode(&f); err != nil {
				return // the follower went away; r's context ends the broker's stream
			}
			if len(msgs) == 0 {
				if rc.Flush() != nil {
					return
				}
			}
		}
	})
}

// Forward asks the leader at addr ("IP:port" of its cluster listener),
// with this manager's mTLS client, for the logs a Broker.Logs there would
// stream; the channel behaves the same (closes at the end or when ctx
// ends). Errors keep their kind.
func Forward(ctx context.Context, client *http.Client, addr, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error) {
	body, err := json.Marshal(ForwardRequest{ServiceRef: serviceRef, TaskRef: taskRef, Options: opts})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, transport.URL(addr, PathForward), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errdefs.Wrapf(errdefs.KindUnavailable, err, "cannot reach the swarm leader for logs")
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, transport.DecodeError(resp)
	}
	out := make(chan api.LogMessage, DefaultBuffer)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var f fwdMsg
			err := dec.Decode(&f)
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					select {
					case out <- api.LogMessage{Err: errdefs.Wrapf(errdefs.KindUnavailable, err, "log stream from the leader broke")}:
					case <-ctx.Done():
					}
				}
				return
			}
			m := api.LogMessage{NodeID: f.Node, ServiceID: f.Service, TaskID: f.Task, Stderr: f.Stderr, Line: f.Line}
			if f.Time != 0 {
				m.Timestamp = time.Unix(0, f.Time)
			}
			if len(f.Err) > 0 {
				m.Err = transport.ParseError(f.Err, http.StatusInternalServerError)
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}
