package dispatcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Log subscriptions (swarmkit's log broker model, over our sessions): the
// log broker asks a node, through the node's session stream, to publish
// the logs of some of its tasks (wire.MsgLogs); the agent POSTs them to
// wire.PathLogs as a stream of wire.LogBatch records, which the dispatcher
// hands to the broker's LogSink as they arrive. Workers never listen on a
// port: logs travel on connections the agents open.

// ErrStreamLost is in the error a LogSink's Done gets when the node's part
// ended because its session or its publishing request broke (an agent
// reconnecting, a network glitch) rather than because the node refused or
// failed: subscribing again once the node is back may resume it.
var ErrStreamLost = errors.New("log stream lost")

// DefaultLogsAttachTimeout is how long a node has to start publishing
// after it was asked (it only has to open the request; reading the logs
// comes after).
const DefaultLogsAttachTimeout = 15 * time.Second

// LogSink receives what one node publishes for one subscription. The log
// broker implements it.
type LogSink interface {
	// Publish delivers a record of one of the subscription's tasks: lines,
	// and/or the end of its logs (b.Done; b.Err when the node could not
	// read them). It blocks while the subscriber is behind, so that
	// backpressure reaches the agent, and returns an error when the
	// subscriber is gone (or ctx ends): the agent is then told to stop. b
	// and b.Lines are reused once Publish returns; the Data slices are
	// the sink's to keep.
	Publish(ctx context.Context, b *wire.LogBatch) error
	// Done is called once, after the last Publish has returned: err is
	// nil when the node finished every task, otherwise why its part
	// ended (session lost, no answer, bad stream, cancelled).
	Done(err error)
}

// logStream is one node's part of a log subscription.
type logStream struct {
	id     string
	nodeID string
	sess   *session
	sink   LogSink
	// ctx ends with the stream; it bounds Publish and unblocks the
	// publisher's reads.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	tasks    map[string]bool // task ID → done
	left     int             // tasks not done
	attached bool            // a publisher is (or was) connected
	ended    bool
	pubs     sync.WaitGroup // Publish calls in flight
}

// SubscribeLogs asks nodeID's agent to publish the logs of taskIDs to
// sink. Tasks that are not (or no longer) assigned to nodeID are left out,
// NotFound if that leaves none. It fails with an Unavailable error when
// the dispatcher does not run or the node has no live session; after that
// sink.Done reports how the node's part ended. cancel stops it (the agent
// is told to stop; Done gets context.Canceled unless it ended before);
// it does not wait and may be called any number of times, but not from
// inside sink.Publish.
func (d *Dispatcher) SubscribeLogs(nodeID string, taskIDs []string, opts wire.LogOptions, sink LogSink) (cancel func(), err error) {
	if len(taskIDs) == 0 {
		return nil, errdefs.InvalidParameter("no tasks to read logs of")
	}
	tasks := make(map[string]bool, len(taskIDs))
	ids := make([]string, 0, len(taskIDs))
	for _, id := range taskIDs {
		if id == "" {
			return nil, errdefs.InvalidParameter("empty task ID")
		}
		if _, dup := tasks[id]; !dup {
			tasks[id] = false
			ids = append(ids, id)
		}
	}
	// Only the node's own tasks: a node learns no other node's logs,
	// and publishes only what it was asked for.
	d.s.View(func(rt store.ReadTx) {
		for _, id := range ids {
			if t := rt.GetTask(id); t == nil || t.NodeID != nodeID {
				delete(tasks, id)
			}
		}
	})
	if len(tasks) < len(ids) {
		kept := ids[:0]
		for _, id := range ids {
			if _, ok := tasks[id]; ok {
				kept = append(kept, id)
			}
		}
		ids = kept
	}
	if len(ids) == 0 {
		return nil, errdefs.NotFound("none of the tasks is assigned to node %s", nodeID)
	}
	d.mu.Lock()
	running := d.running
	s := d.sessions[nodeID]
	_, down := d.down[nodeID]
	d.mu.Unlock()
	switch {
	case !running:
		return nil, errdefs.Unavailable("dispatcher is not running: this manager is not the leader")
	case s == nil && down:
		return nil, errdefs.Unavailable("node %s is down", nodeID)
	case s == nil:
		return nil, errdefs.Unavailable("node %s is not connected to the leader", nodeID)
	}
	ctx, stop := context.WithCancel(context.Background())
	ls := &logStream{id: newID(), nodeID: nodeID, sess: s, sink: sink, ctx: ctx, cancel: stop, tasks: tasks, left: len(ids)}
	d.lmu.Lock()
	if d.logs == nil {
		d.logs = map[string]*logStream{}
	}
	d.logs[ls.id] = ls
	d.lmu.Unlock()
	s.queueLogs(wire.LogsRequest{SubscriptionID: ls.id, TaskIDs: ids, Options: opts})
	go d.watchLogs(ls)
	return func() { d.finishLogs(ls, context.Canceled) }, nil
}

// watchLogs ends the stream when the node's session ends or the node does
// not start publishing in time.
func (d *Dispatcher) watchLogs(ls *logStream) {
	attach := time.NewTimer(d.cfg.LogsAttachTimeout)
	defer attach.Stop()
	for {
		select {
		case <-ls.ctx.Done():
			return
		case <-ls.sess.done:
			d.finishLogs(ls, errdefs.Wrapf(errdefs.KindUnavailable, ErrStreamLost, "node %s: its session with the leader ended before all its logs were sent", ls.nodeID))
			return
		case <-attach.C:
			ls.mu.Lock()
			attached := ls.attached
			ls.mu.Unlock()
			if !attached {
				d.finishLogs(ls, errdefs.Unavailable("node %s did not publish its logs", ls.nodeID))
				return
			}
		}
	}
}

// finishLogs ends a stream once: forgets it, tells the agent to stop if it
// still has work, and reports to the sink after the last Publish.
func (d *Dispatcher) finishLogs(ls *logStream, err error) {
	ls.mu.Lock()
	if ls.ended {
		ls.mu.Unlock()
		return
	}
	ls.ended = true
	left := ls.left
	ls.mu.Unlock()
	ls.cancel()
	d.lmu.Lock()
	delete(d.logs, ls.id)
	d.lmu.Unlock()
	if left > 0 {
		ls.sess.cancelLogs(ls.id)
	}
	go func() {
		ls.pubs.Wait()
		ls.sink.Done(err)
	}()
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// errRecordTooLarge: a record over wire.MaxLogRecord.
var errRecordTooLarge = errors.New("log record too large")

// handleLogs receives a node's logs for a subscription.
func (d *Dispatcher) handleLogs(w http.ResponseWriter, r *http.Request) {
	nodeID, ok := d.admit(w, r)
	if !ok {
		return
	}
	id := r.URL.Query().Get(wire.QuerySubscription)
	d.lmu.Lock()
	ls := d.logs[id]
	d.lmu.Unlock()
	if ls == nil {
		writeError(w, http.StatusGone, wire.Error{Code: wire.CodeLogsGone, Message: "log subscription " + id + " is gone"})
		return
	}
	if ls.nodeID != nodeID {
		writeError(w, http.StatusForbidden, wire.Error{Code: wire.CodeForbidden,
			Message: "log subscription " + id + " is not for node " + nodeID})
		return
	}
	ls.mu.Lock()
	ended, attached := ls.ended, ls.attached
	ls.attached = true
	ls.mu.Unlock()
	switch {
	case ended:
		writeError(w, http.StatusGone, wire.Error{Code: wire.CodeLogsGone, Message: "log subscription " + id + " is gone"})
		return
	case attached:
		writeError(w, http.StatusConflict, wire.Error{Code: wire.CodeConflict, Message: "log subscription " + id + " is already being published"})
		return
	}
	status, werr := d.receiveLogs(w, r, ls)
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	writeError(w, status, werr)
}

// receiveLogs reads the records of a publisher until every task is done,
// the stream ends or breaks; it says how to answer.
func (d *Dispatcher) receiveLogs(w http.ResponseWriter, r *http.Request, ls *logStream) (int, wire.Error) {
	// When the stream ends elsewhere (subscriber gone, session lost), a
	// read deadline unblocks the body read so the agent is answered now.
	// Full duplex: HTTP/1 would otherwise drain the rest of the body
	// before sending the answer, and a follow stream has no rest.
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	var dmu sync.Mutex
	returned := false
	stopDeadline := context.AfterFunc(ls.ctx, func() {
		dmu.Lock()
		defer dmu.Unlock()
		if !returned {
			_ = rc.SetReadDeadline(time.Now())
		}
	})
	defer func() {
		stopDeadline()
		dmu.Lock()
		returned = true
		dmu.Unlock()
	}()
	gone := func() (int, wire.Error) {
		return http.StatusGone, wire.Error{Code: wire.CodeLogsGone, Message: "log subscription " + ls.id + " is gone"}
	}
	fail := func(status int, code wire.Code, err error) (int, wire.Error) {
		d.finishLogs(ls, err)
		return status, wire.Error{Code: code, Message: err.Error()}
	}

	br := bufio.NewReaderSize(r.Body, 64<<10)
	var (
		big []byte
		b   wire.LogBatch
	)
	for {
		rec, err := readRecord(br, &big)
		if err != nil {
			if ls.ctx.Err() != nil {
				return gone()
			}
			switch {
			case errors.Is(err, errRecordTooLarge):
				return fail(http.StatusRequestEntityTooLarge, wire.CodeInvalid,
					errdefs.InvalidParameter("node %s sent a log record over %d bytes", ls.nodeID, wire.MaxLogRecord))
			case errors.Is(err, io.EOF):
				return fail(http.StatusBadRequest, wire.CodeInvalid,
					errdefs.Wrapf(errdefs.KindUnavailable, ErrStreamLost, "node %s ended its log stream before every task was done", ls.nodeID))
			}
			return fail(http.StatusBadRequest, wire.CodeInvalid, errdefs.Wrapf(errdefs.KindUnavailable, fmt.Errorf("%v (%w)", err, ErrStreamLost), "node %s: log stream broken", ls.nodeID))
		}
		if len(rec) == 0 {
			continue
		}
		// Reset, keeping the lines' storage: a field absent from the
		// record must not keep the previous record's value.
		lines := b.Lines[:cap(b.Lines)]
		clear(lines)
		b = wire.LogBatch{Lines: lines[:0]}
		if err := json.Unmarshal(rec, &b); err != nil {
			return fail(http.StatusBadRequest, wire.CodeInvalid, errdefs.InvalidParameter("node %s sent a bad log record: %v", ls.nodeID, err))
		}
		ls.mu.Lock()
		done, listed := ls.tasks[b.TaskID]
		if !listed {
			ls.mu.Unlock()
			return fail(http.StatusForbidden, wire.CodeForbidden,
				errdefs.Forbidden("cannot publish logs of task %s: not assigned to node %s in this subscription", b.TaskID, ls.nodeID))
		}
		if done {
			ls.mu.Unlock()
			return fail(http.StatusBadRequest, wire.CodeInvalid,
				errdefs.InvalidParameter("node %s published logs of task %s after its end", ls.nodeID, b.TaskID))
		}
		if ls.ended {
			ls.mu.Unlock()
			return gone()
		}
		end := b.Done || b.Err != ""
		if end {
			ls.tasks[b.TaskID] = true
			ls.left--
		}
		left := ls.left
		ls.pubs.Add(1)
		ls.mu.Unlock()
		err = ls.sink.Publish(ls.ctx, &b)
		ls.pubs.Done()
		if err != nil {
			d.finishLogs(ls, err)
			return gone()
		}
		if end && left == 0 {
			d.finishLogs(ls, nil)
			return http.StatusNoContent, wire.Error{}
		}
	}
}

// readRecord returns the next line of br without its newline, from br's
// buffer when it fits (valid until the next read), else from *big.
func readRecord(br *bufio.Reader, big *[]byte) ([]byte, error) {
	buf := (*big)[:0]
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if len(buf) == 0 {
				return bytes.TrimRight(chunk, "\r\n"), nil
			}
			buf = append(buf, chunk...)
			*big = buf
			return bytes.TrimRight(buf, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			buf = append(buf, chunk...)
			*big = buf
			if len(buf) > wire.MaxLogRecord {
				return nil, errRecordTooLarge
			}
		case errors.Is(err, io.EOF) && len(buf)+len(chunk) > 0:
			// A last record without its newline.
			buf = append(buf, chunk...)
			*big = buf
			return buf, nil
		default:
			return nil, err
		}
	}
}
