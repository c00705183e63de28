package container

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
)

type pendingAttach struct {
	flags runtime.AttachFlags
	ready chan attachResult // buffered: launch never blocks on it
}

type attachResult struct {
	conn *net.UnixConn
	err  error
}

// Attach streams a container's output to opts.Stdout (stdcopy frames
// without a TTY, raw with one) and opts.Stdin to its stdin. With Logs the
// log is replayed first; with Stream it follows the live streams until the
// container exits, waiting for the next start if it is not running (that is
// how "docker run" and "docker start -a" see every byte).
func (s *Service) Attach(ctx context.Context, ref string, opts backend.AttachOptions) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	cfg := c.rec.Config
	c.mu.Unlock()
	var keys []byte
	if cfg.Tty && opts.UseStdin {
		if keys, err = parseDetachKeys(opts.DetachKeys); err != nil {
			return err
		}
	}
	out := opts.Stdout
	if out == nil {
		out = io.Discard
	}
	c.attaches.Add(1)
	defer c.attaches.Done()

	if opts.Logs {
		write := frameWriter(out, cfg.Tty)
		err := s.readLogs(ctx, c, backend.LogsOptions{ShowStdout: opts.UseStdout, ShowStderr: opts.UseStderr, Tail: -1},
			func(m backend.LogMessage) error { return write(m.Stream, m.Line) })
		if err != nil {
			return err
		}
	}
	if !opts.Stream {
		return nil
	}
	flags := runtime.AttachFlags{
		Stdin:           opts.UseStdin && opts.Stdin != nil && cfg.OpenStdin,
		Stdout:          opts.UseStdout,
		Stderr:          opts.UseStderr,
		CloseStdinOnEOF: cfg.StdinOnce,
	}
	conn, err := s.attachConn(ctx, c, flags)
	if err != nil || conn == nil {
		return err
	}
	defer conn.Close()
	s.emit(c, "attach", 0, nil)
	if flags.Stdin {
		go func() {
			detached, _ := copyStdin(conn, opts.Stdin, keys)
			if detached {
				conn.Close() // ends the output copy below
				return
			}
			conn.CloseWrite()
		}()
	}
	io.Copy(out, conn)
	return nil
}

// attachConn connects an attach stream to the container's shim, now or at
// its next start. A nil conn means the container exited meanwhile.
func (s *Service) attachConn(ctx context.Context, c *ctr, flags runtime.AttachFlags) (*net.UnixConn, error) {
	c.mu.Lock()
	switch {
	case c.removed:
		c.mu.Unlock()
		return nil, errdefs.NotFound("No such container: %s", c.rec.ID)
	case c.starting != nil:
		sp := c.starting
		c.mu.Unlock()
		return sp.Attach(flags)
	case c.watch != nil:
		c.mu.Unlock()
		conn, err := runtime.Attach(c.bundle, flags)
		if errors.Is(err, runtime.ErrNoShim) {
			return nil, nil
		}
		return conn, err
	}
	p := &pendingAttach{flags: flags, ready: make(chan attachResult, 1)}
	c.pending = append(c.pending, p)
	c.mu.Unlock()
	select {
	case r := <-p.ready:
		return r.conn, r.err
	case <-ctx.Done():
		c.mu.Lock()
		for i, x := range c.pending {
			if x == p {
				c.pending = append(c.pending[:i], c.pending[i+1:]...)
				c.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		c.mu.Unlock()
		// launch took it and answers right away.
		if r := <-p.ready; r.conn != nil {
			r.conn.Close()
		}
		return nil, ctx.Err()
	}
}

// frameWriter writes one stream's bytes as the API sends them.
func frameWriter(w io.Writer, tty bool) func(stream string, p []byte) error {
	if tty {
		return func(_ string, p []byte) error { _, err := w.Write(p); return err }
	}
	stdout := newStdWriter(w, streamStdout)
	stderr := newStdWriter(w, streamStderr)
	return func(stream string, p []byte) error {
		var err error
		if stream == "stderr" {
			_, err = stderr.Write(p)
		} else {
			_, err = stdout.Write(p)
		}
		return err
	}
}

// parseDetachKeys parses docker's detach key spec ("ctrl-p,ctrl-q" is the
// default; "" means the default).
func parseDetachKeys(spec string) ([]byte, error) {
	if spec == "" {
		spec = "ctrl-p,ctrl-q"
	}
	var out []byte
	for _, k := range strings.Split(spec, ",") {
		k = strings.TrimSpace(k)
		switch {
		case len(k) == 1:
			out = append(out, k[0])
		case strings.HasPrefix(strings.ToLower(k), "ctrl-") && len(k) == 6:
			c := k[5]
			switch {
			case c >= 'a' && c <= 'z':
				out = append(out, c-'a'+1)
			case c >= 'A' && c <= 'Z':
				out = append(out, c-'A'+1)
			case c == '@':
				out = append(out, 0)
			case c >= '[' && c <= '_':
				out = append(out, c-'['+27)
			default:
				return nil, errdefs.InvalidParameter("Invalid detach keys (%s) provided", spec)
			}
		default:
			return nil, errdefs.InvalidParameter("Invalid detach keys (%s) provided", spec)
		}
	}
	return out, nil
}

// copyStdin copies src to dst until EOF, or until the detach sequence keys
// is typed (then it reports detached and does not forward the sequence).
func copyStdin(dst io.Writer, src io.Reader, keys []byte) (detached bool, err error) {
	if len(keys) == 0 {
		_, err = io.Copy(dst, src)
		return false, err
	}
	buf := make([]byte, 32*1024)
	matched := 0
	for {
		n, rerr := src.Read(buf)
		out := make([]byte, 0, n+matched)
		for _, b := range buf[:n] {
			if b == keys[matched] {
				matched++
				if matched == len(keys) {
					if len(out) > 0 {
						dst.Write(out)
					}
					return true, nil
				}
				continue
			}
			out = append(out, keys[:matched]...)
			matched = 0
			if b == keys[0] {
				matched = 1
				continue
			}
			out = append(out, b)
		}
		if len(out) > 0 {
			if _, err := dst.Write(out); err != nil {
				return false, err
			}
		}
		if rerr != nil {
			if rerr == io.EOF {
				return false, nil
			}
			return false, rerr
		}
	}
}
