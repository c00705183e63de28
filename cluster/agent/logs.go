package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sync"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	"github.com/shoal/shoal/errdefs"
)

// Publishing bounds: a batch is sent when nothing more is ready or it
// reaches these sizes (so a record stays far below wire.MaxLogRecord); a
// single longer line is cut.
const (
	maxBatchLines = 256
	maxBatchBytes = 256 << 10
	maxLineBytes  = 1 << 20
	// logQueue bounds the lines read ahead of the network per
	// subscription.
	logQueue = 256
	// flushAt: buffered records are written to the request once this
	// large even if more lines are ready.
	flushAt = 64 << 10
)

// publishers runs the log subscriptions of one session: each publishes
// on its own request, and all stop when the session ends.
type publishers struct {
	a    *Agent
	ctx  context.Context // the session's
	addr string

	mu   sync.Mutex
	subs map[string]context.CancelFunc
	wg   sync.WaitGroup
}

func newPublishers(a *Agent, ctx context.Context, addr string) *publishers {
	return &publishers{a: a, ctx: ctx, addr: addr, subs: map[string]context.CancelFunc{}}
}

// handle starts or stops a subscription.
func (p *publishers) handle(r wire.LogsRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Close {
		if cancel := p.subs[r.SubscriptionID]; cancel != nil {
			cancel()
			delete(p.subs, r.SubscriptionID)
		}
		return
	}
	if _, dup := p.subs[r.SubscriptionID]; dup || r.SubscriptionID == "" || p.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	p.subs[r.SubscriptionID] = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() {
			p.mu.Lock()
			delete(p.subs, r.SubscriptionID)
			p.mu.Unlock()
			cancel()
		}()
		p.a.publishLogs(ctx, p.addr, r)
	}()
}

// wait returns once every publisher stopped (after the session ended).
func (p *publishers) wait() { p.wg.Wait() }

// logItem is a line of a task, or its end (end; err when unreadable).
type logItem struct {
	task int
	line wire.LogLine
	end  bool
	err  string
}

// publishLogs reads the subscription's tasks' logs and streams them to
// the dispatcher until they are all done, the dispatcher answers (the
// subscriber is gone) or ctx ends (cancelled, session over).
func (a *Agent) publishLogs(ctx context.Context, addr string, r wire.LogsRequest) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	items := make(chan logItem, logQueue)
	var readers sync.WaitGroup
	for i, id := range r.TaskIDs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			a.readTaskLogs(ctx, i, id, r.Options, items)
		}()
	}
	go func() {
		readers.Wait()
		close(items)
	}()

	pr, pw := io.Pipe()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		pw.CloseWithError(writeLogs(ctx, r.TaskIDs, items, pw))
	}()

	u := a.url(addr, wire.PathLogs) + "?" + wire.QuerySubscription + "=" + url.QueryEscape(r.SubscriptionID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, pr)
	if err == nil {
		req.Header.Set("Content-Type", wire.ContentTypeStream)
		var resp *http.Response
		resp, err = a.cfg.Client.Do(req)
		if err == nil {
			if resp.StatusCode >= 300 {
				err = readError(resp)
			}
			resp.Body.Close()
		}
	}
	switch {
	case err == nil, ctx.Err() != nil:
	case errdefs.IsNotFound(err), isGone(err):
		a.log.Debug("log subscriber gone", "subscription", r.SubscriptionID)
	default:
		a.log.Warn("publishing logs failed", "subscription", r.SubscriptionID, "err", err)
	}
	// The dispatcher answered (or the request failed): stop reading.
	cancel()
	_ = pr.CloseWithError(context.Canceled)
	<-writerDone
	readers.Wait()
}

// errGone marks a 410 answer.
var errGone = errors.New("log subscriber gone")

func isGone(err error) bool { return errors.Is(err, errGone) }

// readTaskLogs sends one task's lines, then its end.
func (a *Agent) readTaskLogs(ctx context.Context, idx int, taskID string, opts wire.LogOptions, items chan<- logItem) {
	var err error
	if a.cfg.Logs == nil {
		err = errdefs.NotImplemented("this node cannot read container logs")
	} else {
		err = a.cfg.Logs.TaskLogs(ctx, taskID, opts, func(l LogLine) error {
			it := logItem{task: idx, line: wire.LogLine{Stderr: l.Stderr, Data: l.Data}}
			if !l.Time.IsZero() {
				it.line.Time = l.Time.UnixNano()
			}
			if len(it.line.Data) > maxLineBytes {
				it.line.Data = it.line.Data[:maxLineBytes]
			}
			select {
			case items <- it:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}
	if ctx.Err() != nil {
		return
	}
	end := logItem{task: idx, end: true}
	// A task whose container is gone (removed) has nothing to show.
	if err != nil && !errdefs.IsNotFound(err) {
		end.err = err.Error()
	}
	select {
	case items <- end:
	case <-ctx.Done():
	}
}

// writeLogs encodes items as LogBatch records: consecutive lines of a task
// go in one record; records are written out as soon as no more lines are
// ready, so a quiet follow still delivers each line at once.
func writeLogs(ctx context.Context, taskIDs []string, items <-chan logItem, w io.Writer) error {
	var (
		buf  = make([]byte, 0, flushAt+4096)
		b    wire.LogBatch
		size int
	)
	emit := func() {
		if len(b.Lines) == 0 && !b.Done && b.Err == "" {
			return
		}
		buf = b.AppendJSON(buf)
		clear(b.Lines) // drop references to sent data
		b = wire.LogBatch{Lines: b.Lines[:0]}
		size = 0
	}
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	for {
		var (
			it logItem
			ok bool
		)
		select {
		case it, ok = <-items:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			emit()
			return flush()
		}
		id := taskIDs[it.task]
		if len(b.Lines) > 0 && (b.TaskID != id || len(b.Lines) >= maxBatchLines || size >= maxBatchBytes) {
			emit()
		}
		b.TaskID = id
		if it.end {
			b.Done, b.Err = it.err == "", it.err
			emit()
		} else {
			b.Lines = append(b.Lines, it.line)
			size += len(it.line.Data)
		}
		if len(items) == 0 || len(buf) >= flushAt {
			if len(items) == 0 {
				emit()
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
}
