package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

// TimestampFormat is docker's fixed-width RFC3339Nano for log timestamps.
const TimestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// Logs returns the container's log as the API sends it: stdcopy frames
// without a TTY, raw with one, each line prefixed with its time when asked.
func (s *Service) Logs(ctx context.Context, ref string, opts backend.LogsOptions) (io.ReadCloser, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	if !opts.ShowStdout && !opts.ShowStderr {
		return nil, errdefs.InvalidParameter("Bad parameters: you must choose at least one stream")
	}
	c.mu.Lock()
	tty := c.rec.Config.Tty
	c.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		write := frameWriter(pw, tty)
		var prefixed []byte
		err := s.readLogs(ctx, c, opts, func(m backend.LogMessage) error {
			line := m.Line
			if opts.Timestamps {
				prefixed = append(m.Time.UTC().AppendFormat(prefixed[:0], TimestampFormat), ' ')
				line = append(prefixed, line...)
			}
			return write(m.Stream, line)
		})
		pw.CloseWithError(err)
	}()
	return &logReader{PipeReader: pr, cancel: cancel}, nil
}

type logReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *logReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}

// LogEntries calls fn for each selected log record (for the swarm agent,
// which formats service logs itself). An error from fn stops the stream.
func (s *Service) LogEntries(ctx context.Context, ref string, opts backend.LogsOptions, fn func(backend.LogMessage) error) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	return s.readLogs(ctx, c, opts, fn)
}

type jsonLogEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// readLogs reads the json-file log of c, filtered by opts; with Follow it
// keeps reading as the shim appends until the container's run ends.
func (s *Service) readLogs(ctx context.Context, c *ctr, opts backend.LogsOptions, fn func(backend.LogMessage) error) error {
	path := s.logPath(c)
	var exitCh chan struct{}
	var changes <-chan struct{}
	if opts.Follow {
		c.mu.Lock()
		following := c.rec.running() || c.starting != nil
		exitCh = c.exitCh
		c.mu.Unlock()
		if following && exitCh != nil {
			// Watch before reading, so no append is missed in between.
			w, err := watchFile(path)
			if err == nil {
				defer w.Close()
				changes = w.changes
			} else {
				s.log.Warn("cannot follow log", "path", path, "err", err)
			}
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never started
	}
	if err != nil {
		return errdefs.System("opening log: %v", err)
	}
	defer f.Close()
	if opts.Tail >= 0 {
		off, err := tailOffset(f, opts.Tail)
		if err != nil {
			return errdefs.System("reading log: %v", err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return errdefs.System("reading log: %v", err)
		}
	}
	r := bufio.NewReaderSize(f, 64*1024)
	var partial []byte
	exited := false
	for {
		line, err := r.ReadBytes('\n')
		if err == nil {
			if len(partial) > 0 {
				line = append(partial, line...)
				partial = nil
			}
			stop, ferr := emitLogLine(line, opts, fn)
			if ferr != nil || stop {
				return ferr
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return errdefs.System("reading log: %v", err)
		}
		// The shim may be half-way through a write: keep the tail.
		partial = append(partial, line...)
		if changes == nil || exited {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				return nil // the file was removed
			}
		case <-exitCh:
			exited = true // read what is left, then stop
		}
	}
}

// emitLogLine decodes one record and passes it to fn if opts select it.
// stop reports that Until was passed.
func emitLogLine(line []byte, opts backend.LogsOptions, fn func(backend.LogMessage) error) (stop bool, err error) {
	var e jsonLogEntry
	if err := json.Unmarshal(bytes.TrimSpace(line), &e); err != nil {
		return false, nil // a torn record (crash mid-write) is skipped
	}
	if !opts.Until.IsZero() && e.Time.After(opts.Until) {
		return true, nil
	}
	if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
		return false, nil
	}
	if (e.Stream == "stdout" && !opts.ShowStdout) || (e.Stream == "stderr" && !opts.ShowStderr) {
		return false, nil
	}
	return false, fn(backend.LogMessage{Stream: e.Stream, Line: []byte(e.Log), Time: e.Time})
}

// tailOffset finds where the last n records of f start.
func tailOffset(f *os.File, n int) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if n == 0 {
		return size, nil
	}
	const chunk = 32 * 1024
	buf := make([]byte, chunk)
	pos := size
	count := 0
	for pos > 0 {
		sz := int64(chunk)
		if pos < sz {
			sz = pos
		}
		pos -= sz
		if _, err := f.ReadAt(buf[:sz], pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := sz - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == size-1 {
				continue
			}
			count++
			if count == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

// fileWatch signals appends to a file through inotify.
type fileWatch struct {
	f       *os.File
	changes chan struct{}
}

func watchFile(path string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) {
			// Not created yet (the shim creates it as it starts): follow
			// the directory instead.
			return watchDirFor(path)
		}
		return nil, err
	}
	w := &fileWatch{f: os.NewFile(uintptr(fd), "inotify"), changes: make(chan struct{}, 1)}
	go w.loop()
	return w, nil
}

func watchDirFor(path string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	dir := path[:bytes.LastIndexByte([]byte(path), '/')]
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_CREATE); err != nil {
		unix.Close(fd)
		return nil, err
	}
	w := &fileWatch{f: os.NewFile(uintptr(fd), "inotify"), changes: make(chan struct{}, 1)}
	go w.loop()
	return w, nil
}

func (w *fileWatch) loop() {
	defer close(w.changes)
	buf := make([]byte, 4096)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		gone := false
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			mask := uint32(buf[off+4]) | uint32(buf[off+5])<<8 | uint32(buf[off+6])<<16 | uint32(buf[off+7])<<24
			nameLen := int(uint32(buf[off+12]) | uint32(buf[off+13])<<8 | uint32(buf[off+14])<<16 | uint32(buf[off+15])<<24)
			if mask&(unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_IGNORED) != 0 {
				gone = true
			}
			off += unix.SizeofInotifyEvent + nameLen
		}
		if gone {
			return
		}
		select {
		case w.changes <- struct{}{}:
		default:
		}
	}
}

func (w *fileWatch) Close() error { return w.f.Close() }
