package controlapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// LeaderInfo is what forwarding needs from Raft.
type LeaderInfo interface {
	IsLeader() bool
	Leader() (id, addr string)
}

// Handler runs a call on the leader: it decodes req and returns a reply to
// encode as JSON, or a typed error.
type Handler func(ctx context.Context, req json.RawMessage) (any, error)

// Forwarder runs writes on the leader. On the leader a call runs its
// registered handler directly; on a follower it is sent to the leader as a
// small JSON RPC over the cluster port (POST /control/{method}, mTLS,
// managers only), and error kinds, messages and sentinel errors (sequence
// conflicts) come back intact. Handlers are registered by method name, so
// any package can add its own (the services/tasks/secrets control API
// does).
type Forwarder struct {
	raft   LeaderInfo
	client *http.Client
	store  *store.Store // for read-your-writes; optional

	mu       sync.RWMutex
	handlers map[string]Handler
}

// NewForwarder returns a forwarder that asks r who leads and reaches the
// leader with client (the node's mTLS client).
func NewForwarder(r LeaderInfo, client *http.Client) *Forwarder {
	return &Forwarder{raft: r, client: client, handlers: map[string]Handler{}}
}

// indexHeader carries the leader's store index after a forwarded call.
const indexHeader = "Shoal-Store-Index"

// readYourWritesWait bounds how long a follower waits to apply a write it
// forwarded before answering.
const readYourWritesWait = 2 * time.Second

// ReadYourWrites makes forwarded calls return only once s (this manager's
// replica) has applied what the leader had applied when it answered, so a
// client that writes through a follower and reads it back sees its write
// (docker clients read-modify-write with version checks).
func (f *Forwarder) ReadYourWrites(s *store.Store) { f.store = s }

// Register adds the leader-side handler of method.
func (f *Forwarder) Register(method string, h Handler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.handlers[method]; dup {
		panic("controlapi: duplicate handler " + method)
	}
	f.handlers[method] = h
}

// Handle registers a typed leader-side handler.
func Handle[Req, Resp any](f *Forwarder, method string, fn func(ctx context.Context, req Req) (Resp, error)) {
	f.Register(method, func(ctx context.Context, raw json.RawMessage) (any, error) {
		var req Req
		if len(raw) > 0 && string(raw) != "null" {
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, errdefs.Wrapf(errdefs.KindInvalidParameter, err, "%s: bad request", method)
			}
		}
		return fn(ctx, req)
	})
}

// Call forwards a typed call (Forward with the reply as return value).
func Call[Resp any](ctx context.Context, f *Forwarder, method string, req any) (Resp, error) {
	var resp Resp
	err := f.Forward(ctx, method, req, &resp)
	return resp, err
}

// forwardAttempts bounds retries when leadership moves during a call
// (about 3 s in all: a leadership transfer takes a few hundred ms).
const forwardAttempts = 8

// Forward runs method on the leader with req and decodes its reply into
// resp (a pointer, or nil to discard).
func (f *Forwarder) Forward(ctx context.Context, method string, req, resp any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	var last error
	for attempt := 0; attempt < forwardAttempts; attempt++ {
		if attempt > 0 {
			// Leadership moved: give the new leader a moment to be known.
			t := time.NewTimer(time.Duration(attempt) * 100 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		var out []byte
		if f.raft.IsLeader() {
			out, err = f.local(ctx, method, body)
		} else {
			_, addr := f.raft.Leader()
			if addr == "" {
				return ErrNoLeader
			}
			var index uint64
			out, index, err = f.remote(ctx, addr, method, body)
			if err == nil {
				f.waitApplied(ctx, index)
			}
		}
		if err == nil {
			if resp == nil || len(out) == 0 {
				return nil
			}
			return json.Unmarshal(out, resp)
		}
		if !errors.Is(err, errNotLeader) && !sraft.Retryable(err) {
			return err
		}
		last = err
	}
	return errdefs.Wrapf(errdefs.KindUnavailable, last, "%s", ErrNoLeader.Error())
}

func (f *Forwarder) handler(method string) (Handler, error) {
	f.mu.RLock()
	h := f.handlers[method]
	f.mu.RUnlock()
	if h == nil {
		return nil, errdefs.NotImplemented("control method %q is not implemented", method)
	}
	return h, nil
}

func (f *Forwarder) local(ctx context.Context, method string, body []byte) ([]byte, error) {
	h, err := f.handler(method)
	if err != nil {
		return nil, err
	}
	out, err := h(ctx, body)
	if err != nil {
		return nil, err
	}
	if out == nil {
		return nil, nil
	}
	return json.Marshal(out)
}

// waitApplied waits (bounded) until the local replica reached index.
func (f *Forwarder) waitApplied(ctx context.Context, index uint64) {
	if f.store == nil || index == 0 || f.store.LastIndex() >= index {
		return
	}
	events, cancel := f.store.Watch()
	defer cancel()
	t := time.NewTimer(readYourWritesWait)
	defer t.Stop()
	for f.store.LastIndex() < index {
		select {
		case <-events:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// leaderPoll is how often a forwarded call checks that the leader it went
// to is still the leader.
const leaderPoll = 100 * time.Millisecond

func (f *Forwarder) remote(ctx context.Context, addr, method string, body []byte) ([]byte, uint64, error) {
	// A leader cut off by the network leaves the request hanging: give up
	// on it as soon as this manager learns of another leader (or of none);
	// a leader without quorum could not have committed the write.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var moved atomic.Bool
	go func() {
		t := time.NewTicker(leaderPoll)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, now := f.raft.Leader(); now != addr || f.raft.IsLeader() {
					moved.Store(true)
					cancel()
					return
				}
			}
		}
	}()
	out, index, err := f.post(ctx, addr, method, body)
	if err != nil && moved.Load() && parent.Err() == nil {
		return nil, 0, errdefs.Wrap(errdefs.KindUnavailable, errNotLeader)
	}
	return out, index, err
}

func (f *Forwarder) post(ctx context.Context, addr, method string, body []byte) ([]byte, uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, transport.URL(addr, "/control/"+method), strings.NewReader(string(body)))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		// The leader we knew is gone; until a new one is elected there is
		// no leader to write to.
		return nil, 0, errdefs.Wrapf(errdefs.KindUnavailable, err, "%s", ErrNoLeader.Error())
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return nil, 0, transport.DecodeError(resp)
	}
	out, err := io.ReadAll(resp.Body)
	index, _ := strconv.ParseUint(resp.Header.Get(indexHeader), 10, 64)
	return out, index, err
}

// ServeHTTP serves POST /control/{method} on the leader. The caller must be
// a manager (mount it behind transport.Server.ManagerOnly).
func (f *Forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	if method == "" {
		method = strings.TrimPrefix(r.URL.Path, "/control/")
	}
	if !f.raft.IsLeader() {
		// Never forward again: the caller retries with the leader it
		// learns next, so calls cannot loop between managers.
		transport.WriteError(w, errdefs.Wrap(errdefs.KindUnavailable, errNotLeader))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		transport.WriteError(w, errdefs.Wrap(errdefs.KindInvalidParameter, err))
		return
	}
	out, err := f.local(r.Context(), method, body)
	if err != nil {
		transport.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if f.store != nil {
		w.Header().Set(indexHeader, strconv.FormatUint(f.store.LastIndex(), 10))
	}
	if out == nil {
		out = []byte("null")
	}
	_, _ = w.Write(out)
}
