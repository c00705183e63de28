// Package logbroker gathers service and task logs from every node.
//
// Each node serves its own tasks' container logs on its cluster listener
// (GET /logs/tasks/{taskID}, manager certificates only) as a stream of JSON
// lines; the manager answering `service logs` asks every node that ran one of
// the service's tasks, merges the streams, and — with follow — also picks up
// tasks that start while it streams.
package logbroker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Line is one log line of a task's container.
type Line struct {
	Time   time.Time `json:"t"`
	Stderr bool      `json:"e,omitempty"`
	Data   []byte    `json:"d"`
}

// Source reads the logs of a task's container on this node. It sends lines
// to out until the logs end (or, with follow, the container stops or ctx
// ends), then returns.
type Source interface {
	TaskLogs(ctx context.Context, taskID string, opts api.LogsOptions, out chan<- Line) error
}

// NodeHandler serves this node's task logs for managers.
func NodeHandler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /logs/tasks/{id}", func(w http.ResponseWriter, r *http.Request) {
		opts, err := decodeOptions(r.URL.Query())
		if err != nil {
			api.WriteError(w, err)
			return
		}
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		lines := make(chan Line, 64)
		errc := make(chan error, 1)
		go func() {
			errc <- src.TaskLogs(ctx, r.PathValue("id"), opts, lines)
			close(lines)
		}()
		first, ok := <-lines
		if !ok {
			if err := <-errc; err != nil {
				api.WriteError(w, err)
				return
			}
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		w.WriteHeader(http.StatusOK)
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		send := func(l Line) bool {
			if err := enc.Encode(l); err != nil {
				return false
			}
			if flusher != nil && len(lines) == 0 {
				flusher.Flush()
			}
			return true
		}
		if ok && !send(first) {
			return
		}
		for l := range lines {
			if !send(l) {
				return
			}
		}
	})
	return mux
}

func encodeOptions(o api.LogsOptions) url.Values {
	v := url.Values{}
	if o.Follow {
		v.Set("follow", "1")
	}
	v.Set("tail", o.Tail)
	if !o.Since.IsZero() {
		v.Set("since", strconv.FormatInt(o.Since.UnixNano(), 10))
	}
	if o.Stdout {
		v.Set("stdout", "1")
	}
	if o.Stderr {
		v.Set("stderr", "1")
	}
	return v
}

func decodeOptions(v url.Values) (api.LogsOptions, error) {
	o := api.LogsOptions{Follow: v.Get("follow") == "1", Tail: v.Get("tail"), Stdout: v.Get("stdout") == "1", Stderr: v.Get("stderr") == "1"}
	if o.Tail == "" {
		o.Tail = "all"
	}
	if s := v.Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return o, errdefs.InvalidParameter("invalid since %q", s)
		}
		o.Since = time.Unix(0, n)
	}
	return o, nil
}

// Broker answers service and task log requests on a manager.
type Broker struct {
	Store *store.Store
	// NodeURL returns the base URL ("https://IP:PORT") of a node's cluster
	// listener, and Client reaches it with this manager's certificate.
	NodeURL func(nodeID string) (string, error)
	Client  *http.Client
}

// Logs streams the logs of a service's tasks (serviceRef) or of one task.
// The channel closes when every stream ends, or when ctx ends.
func (b *Broker) Logs(ctx context.Context, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error) {
	var (
		tasks     []*store.Task
		serviceID string
		err       error
	)
	follow := opts.Follow && taskRef == ""
	var (
		events <-chan store.Event
		cancel = func() {}
	)
	view := func(rt store.ReadTx) {
		if taskRef != "" {
			t := rt.GetTask(taskRef)
			if t == nil {
				if ts := rt.FindTasks(store.ByIDPrefix(taskRef)); len(ts) == 1 {
					t = ts[0]
				}
			}
			if t == nil {
				err = errdefs.NotFound("task %s not found", taskRef)
				return
			}
			tasks, serviceID = []*store.Task{t}, t.ServiceID
			return
		}
		s := rt.GetService(serviceRef)
		if s == nil {
			if ss := rt.FindServices(store.ByName(serviceRef)); len(ss) == 1 {
				s = ss[0]
			} else if ss := rt.FindServices(store.ByIDPrefix(serviceRef)); len(ss) == 1 {
				s = ss[0]
			}
		}
		if s == nil {
			err = errdefs.NotFound("service %s not found", serviceRef)
			return
		}
		serviceID = s.ID
		tasks = rt.FindTasks(store.ByServiceID(s.ID))
	}
	if follow {
		// Subscribing with the view means no task start is missed between.
		events, cancel = b.Store.ViewAndWatch(view, store.KindTask)
	} else {
		b.Store.View(view)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	out := make(chan api.LogMessage, 256)
	var wg sync.WaitGroup
	started := map[string]bool{}
	start := func(t *store.Task) {
		if t.NodeID == "" || started[t.ID] || !ranOnNode(t) {
			return
		}
		started[t.ID] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.stream(ctx, t, opts, out)
		}()
	}
	for _, t := range tasks {
		start(t)
	}
	if follow {
		// Tasks that start while following join the stream.
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer cancel()
			for {
				select {
				case <-ctx.Done():
					return
				case ev, ok := <-events:
					if !ok {
						return
					}
					if t, isTask := ev.Object.(*store.Task); isTask && ev.Op != store.OpDelete && t.ServiceID == serviceID && t.Status.State == swarm.TaskStateRunning {
						start(t)
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out, nil
}

// ranOnNode reports whether a task got as far as having a container.
func ranOnNode(t *store.Task) bool {
	switch t.Status.State {
	case swarm.TaskStateNew, swarm.TaskStatePending, swarm.TaskStateAssigned, swarm.TaskStateAccepted, swarm.TaskStatePreparing:
		return false
	case swarm.TaskStateRejected:
		return t.Status.ContainerStatus != nil && t.Status.ContainerStatus.ContainerID != ""
	}
	return true
}

func (b *Broker) stream(ctx context.Context, t *store.Task, opts api.LogsOptions, out chan<- api.LogMessage) {
	fail := func(err error) {
		select {
		case out <- api.LogMessage{NodeID: t.NodeID, ServiceID: t.ServiceID, TaskID: t.ID, Err: err}:
		case <-ctx.Done():
		}
	}
	base, err := b.NodeURL(t.NodeID)
	if err != nil {
		fail(fmt.Errorf("task %s: %w", t.ID, err))
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/logs/tasks/"+url.PathEscape(t.ID)+"?"+encodeOptions(opts).Encode(), nil)
	if err != nil {
		fail(err)
		return
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			fail(fmt.Errorf("task %s on node %s: %w", t.ID, t.NodeID, err))
		}
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		if resp.StatusCode == http.StatusNotFound {
			return // the container is gone (reaped): nothing to show
		}
		fail(fmt.Errorf("task %s on node %s: %s", t.ID, t.NodeID, e.Message))
		return
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l Line
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			fail(fmt.Errorf("task %s: bad log line from node: %w", t.ID, err))
			return
		}
		select {
		case out <- api.LogMessage{NodeID: t.NodeID, ServiceID: t.ServiceID, TaskID: t.ID, Timestamp: l.Time, Stderr: l.Stderr, Line: l.Data}:
		case <-ctx.Done():
			return
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		fail(fmt.Errorf("task %s: %w", t.ID, err))
	}
}
