package api

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// ContainerBackend serves the containers and exec routes (engine/container.Service).
type ContainerBackend interface {
	Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (id string, warnings []string, err error)
	Start(ctx context.Context, ref string) error
	StopWith(ctx context.Context, ref string, opts backend.StopOptions) error
	Restart(ctx context.Context, ref string, opts backend.StopOptions) error
	Kill(ctx context.Context, ref, signal string) error
	// Wait registers before returning; the channel answers once.
	Wait(ctx context.Context, ref string, cond container.WaitCondition) (<-chan container.WaitResponse, error)
	Remove(ctx context.Context, ref string, force, removeVolumes bool) error
	List(ctx context.Context, opts backend.ListOptions) ([]container.Summary, error)
	Inspect(ctx context.Context, ref string) (*container.InspectResponse, error)
	// Logs streams stdcopy frames (raw bytes with a TTY).
	Logs(ctx context.Context, ref string, opts backend.LogsOptions) (io.ReadCloser, error)
	Attach(ctx context.Context, ref string, opts backend.AttachOptions) error
	Resize(ctx context.Context, ref string, h, w uint) error
	Rename(ctx context.Context, ref, name string) error
	Pause(ctx context.Context, ref string) error
	Unpause(ctx context.Context, ref string) error
	Top(ctx context.Context, ref, psArgs string) (*container.TopResponse, error)
	Stats(ctx context.Context, ref string) (*container.StatsResponse, error)
	Prune(ctx context.Context, opts backend.ListOptions) (*container.PruneReport, error)

	// Update is `docker update`: resources and restart policy.
	Update(ctx context.Context, ref string, u container.UpdateConfig) (warnings []string, err error)

	ExecCreate(ctx context.Context, ref string, req container.ExecCreateRequest) (string, error)
	ExecStart(ctx context.Context, execID string, opts backend.ExecStartOptions) error
	ExecInspect(ctx context.Context, execID string) (*container.ExecInspectResponse, error)
	ExecResize(ctx context.Context, execID string, h, w uint) error
}

// Docker's stream media types.
const (
	mediaRawStream         = "application/vnd.docker.raw-stream"
	mediaMultiplexedStream = "application/vnd.docker.multiplexed-stream"
)

func (s *Server) registerContainerRoutes() {
	b := s.b.Containers
	s.Handle("POST /containers/create", func(w http.ResponseWriter, r *http.Request) error {
		var req container.CreateRequest
		if err := DecodeJSON(r, &req, false); err != nil {
			return err
		}
		id, warnings, err := b.Create(r.Context(), r.URL.Query().Get("name"), req.Config, req.HostConfig, req.NetworkingConfig)
		if err != nil {
			return err
		}
		if warnings == nil {
			warnings = []string{}
		}
		return WriteJSON(w, http.StatusCreated, container.CreateResponse{ID: id, Warnings: warnings})
	})
	s.Handle("GET /containers/json", func(w http.ResponseWriter, r *http.Request) error {
		opts, err := listOptions(r)
		if err != nil {
			return err
		}
		list, err := b.List(r.Context(), opts)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, list)
	})
	s.Handle("POST /containers/prune", func(w http.ResponseWriter, r *http.Request) error {
		f, err := Filters(r)
		if err != nil {
			return err
		}
		rep, err := b.Prune(r.Context(), backend.ListOptions{Filters: f})
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, rep)
	})
	s.Handle("GET /containers/{id}/json", func(w http.ResponseWriter, r *http.Request) error {
		resp, err := b.Inspect(r.Context(), r.PathValue("id"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, resp)
	})
	s.Handle("POST /containers/{id}/start", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Start(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/stop", func(w http.ResponseWriter, r *http.Request) error {
		opts, err := stopOptions(r)
		if err != nil {
			return err
		}
		if err := b.StopWith(r.Context(), r.PathValue("id"), opts); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/restart", func(w http.ResponseWriter, r *http.Request) error {
		opts, err := stopOptions(r)
		if err != nil {
			return err
		}
		if err := b.Restart(r.Context(), r.PathValue("id"), opts); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/kill", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Kill(r.Context(), r.PathValue("id"), r.URL.Query().Get("signal")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/wait", func(w http.ResponseWriter, r *http.Request) error {
		cond := container.WaitCondition(r.URL.Query().Get("condition"))
		ch, err := b.Wait(r.Context(), r.PathValue("id"), cond)
		if err != nil {
			return err
		}
		// The header goes out at once: the client starts the container
		// only after it knows the wait is registered.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		flush(w)
		select {
		case resp := <-ch:
			return json.NewEncoder(w).Encode(resp)
		case <-r.Context().Done():
			return nil
		}
	})
	s.Handle("DELETE /containers/{id}", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Remove(r.Context(), r.PathValue("id"), BoolValue(r, "force"), BoolValue(r, "v")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/resize", func(w http.ResponseWriter, r *http.Request) error {
		h, wd, err := sizeParams(r)
		if err != nil {
			return err
		}
		return b.Resize(r.Context(), r.PathValue("id"), h, wd)
	})
	s.Handle("POST /containers/{id}/rename", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Rename(r.Context(), r.PathValue("id"), r.URL.Query().Get("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/pause", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Pause(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("POST /containers/{id}/unpause", func(w http.ResponseWriter, r *http.Request) error {
		if err := b.Unpause(r.Context(), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
	s.Handle("GET /containers/{id}/top", func(w http.ResponseWriter, r *http.Request) error {
		resp, err := b.Top(r.Context(), r.PathValue("id"), r.URL.Query().Get("ps_args"))
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, resp)
	})
	s.Handle("GET /containers/{id}/stats", s.containerStats)
	s.Handle("POST /containers/{id}/update", func(w http.ResponseWriter, r *http.Request) error {
		var u container.UpdateConfig
		if err := DecodeJSON(r, &u, false); err != nil {
			return err
		}
		warnings, err := b.Update(r.Context(), r.PathValue("id"), u)
		if err != nil {
			return err
		}
		return WriteJSON(w, http.StatusOK, container.UpdateResponse{Warnings: warnings})
	})
	s.Handle("GET /containers/{id}/logs", s.containerLogs)
	s.Handle("POST /containers/{id}/attach", s.containerAttach)
	s.registerExecRoutes()
}

func listOptions(r *http.Request) (backend.ListOptions, error) {
	f, err := Filters(r)
	if err != nil {
		return backend.ListOptions{}, err
	}
	limit, err := IntValue(r, "limit", 0)
	if err != nil {
		return backend.ListOptions{}, err
	}
	return backend.ListOptions{All: BoolValue(r, "all"), Limit: int(limit), Size: BoolValue(r, "size"), Filters: f}, nil
}

func stopOptions(r *http.Request) (backend.StopOptions, error) {
	var opts backend.StopOptions
	if t := r.URL.Query().Get("t"); t != "" {
		v, err := strconv.Atoi(t)
		if err != nil {
			return opts, errdefs.InvalidParameter("invalid value for t: %q", t)
		}
		opts.Timeout = &v
	}
	opts.Signal = r.URL.Query().Get("signal")
	return opts, nil
}

func sizeParams(r *http.Request) (uint, uint, error) {
	h, err1 := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
	w, err2 := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, errdefs.InvalidParameter("invalid resize parameters: h=%q w=%q", r.URL.Query().Get("h"), r.URL.Query().Get("w"))
	}
	return uint(h), uint(w), nil
}

func (s *Server) containerLogs(w http.ResponseWriter, r *http.Request) error {
	b := s.b.Containers
	q := r.URL.Query()
	opts := backend.LogsOptions{
		ShowStdout: BoolValue(r, "stdout"),
		ShowStderr: BoolValue(r, "stderr"),
		Timestamps: BoolValue(r, "timestamps"),
		Follow:     BoolValue(r, "follow"),
		Tail:       -1,
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return errdefs.InvalidParameter("Bad parameters: you must choose at least one stream")
	}
	if t := q.Get("tail"); t != "" && t != "all" {
		if n, err := strconv.Atoi(t); err == nil && n >= 0 {
			opts.Tail = n
		}
	}
	for k, dst := range map[string]*time.Time{"since": &opts.Since, "until": &opts.Until} {
		if v := q.Get(k); v != "" && v != "0" {
			t, err := parseTimestamp(v) // services.go: docker's "seconds[.nanos]"
			if err != nil {
				return err
			}
			*dst = t
		}
	}
	ins, err := b.Inspect(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	rc, err := b.Logs(r.Context(), ins.ID, opts)
	if err != nil {
		return err
	}
	defer rc.Close()
	w.Header().Set("Content-Type", streamType(r, ins.Config != nil && ins.Config.Tty))
	w.WriteHeader(http.StatusOK)
	flush(w)
	var dst io.Writer = w
	if opts.Follow {
		dst = flushWriter{w}
	}
	io.Copy(dst, rc)
	return nil
}

// streamType is the media type of a container's output stream.
func streamType(r *http.Request, tty bool) string {
	if !tty && !VersionLess(VersionFrom(r.Context()), "1.42") {
		return mediaMultiplexedStream
	}
	return mediaRawStream
}

func (s *Server) containerStats(w http.ResponseWriter, r *http.Request) error {
	b := s.b.Containers
	id := r.PathValue("id")
	stream := r.URL.Query().Get("stream") == "" || BoolValue(r, "stream")
	oneShot := BoolValue(r, "one-shot")
	first, err := b.Stats(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if !stream && oneShot {
		return WriteJSON(w, http.StatusOK, first)
	}
	w.WriteHeader(http.StatusOK)
	flush(w)
	prev := first
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		// CPU percentages need the previous sample: the first answer
		// comes a second in, as docker's does.
		select {
		case <-r.Context().Done():
			return nil
		case <-tick.C:
		}
		cur, err := b.Stats(r.Context(), id)
		if err != nil {
			return nil
		}
		cur.PreCPUStats, cur.PreRead = prev.CPUStats, prev.Read
		if err := enc.Encode(cur); err != nil || !stream {
			return nil
		}
		flush(w)
		if cur.PidsStats.Current == 0 && cur.MemoryStats.Usage == 0 {
			return nil // stopped
		}
		prev = cur
	}
}

func flush(w http.ResponseWriter) {
	_ = http.NewResponseController(w).Flush()
}

// flushWriter flushes after every write, for followed streams.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	flush(f.w)
	return n, err
}

// consoleSize keeps a docker console size within what a TTY can hold.
func consoleSize(v *[2]uint) *[2]uint {
	if v == nil || (v[0] == 0 && v[1] == 0) {
		return nil
	}
	return &[2]uint{min(v[0], math.MaxUint16), min(v[1], math.MaxUint16)}
}
