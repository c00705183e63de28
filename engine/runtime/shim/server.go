package shim

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// attacher is one attach connection.
type attacher struct {
	c               *os.File
	stdin, out, err bool
	closeStdinOnEOF bool
	closeOnce       sync.Once
}

func (a *attacher) close() {
	a.closeOnce.Do(func() { a.c.Close() })
}

// serve accepts requests until the listener closes.
func (s *shim) serve() {
	for {
		c, err := accept(s.listener)
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *shim) handle(c *os.File) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	verb, arg, _ := strings.Cut(line, " ")
	reply := func(err error, ok string) {
		if err != nil {
			c.WriteString("error " + err.Error() + "\n")
		} else if ok != "" {
			c.WriteString("ok " + ok + "\n")
		} else {
			c.WriteString("ok\n")
		}
	}
	switch verb {
	case "attach":
		s.attach(c, arg)
		return
	case "wait":
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.done {
			c.WriteString("ok 0\n" + FormatExit(s.exit))
			c.Close()
			return
		}
		// Under mu, so announce's exit line cannot come first.
		c.WriteString("ok " + strconv.Itoa(s.initPid) + "\n")
		s.waiters = append(s.waiters, c)
		return // announce answers, finish closes
	case "kill":
		sig, err := strconv.Atoi(arg)
		if err == nil {
			err = s.kill(syscall.Signal(sig))
		}
		reply(err, "")
	case "resize":
		h, w, _ := strings.Cut(arg, " ")
		hh, err1 := strconv.ParseUint(h, 10, 16)
		ww, err2 := strconv.ParseUint(w, 10, 16)
		var err error
		if err1 != nil || err2 != nil {
			err = errorString("bad size " + strconv.Quote(arg))
		} else {
			err = s.resize(uint16(hh), uint16(ww))
		}
		reply(err, "")
	default:
		reply(errorString("unknown request "+strconv.Quote(verb)), "")
	}
	c.Close()
}

func (s *shim) kill(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// The shim reaps init, so its pid cannot be reused while done is false.
	if s.initPid == 0 || s.done {
		return errorString("container is not running")
	}
	return syscall.Kill(s.initPid, sig)
}

func (s *shim) resize(h, w uint16) error {
	s.mu.Lock()
	console := s.console
	s.mu.Unlock()
	if console == nil {
		return errorString("container has no TTY")
	}
	return setWinsize(console, h, w)
}

func (s *shim) closeStdin() {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if s.stdinClosed || s.stdin == nil {
		return
	}
	s.stdinClosed = true
	if s.opt.TTY {
		// A pty has no half-close: send EOF the way a terminal does.
		s.stdin.Write([]byte{4})
		return
	}
	s.stdin.Close()
}

func (s *shim) writeStdin(p []byte) {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if s.stdin == nil || s.stdinClosed {
		return
	}
	s.stdin.Write(p)
}

func (s *shim) attach(c *os.File, flags string) {
	a := &attacher{c: c,
		stdin:           strings.Contains(flags, "i"),
		out:             strings.Contains(flags, "o"),
		err:             strings.Contains(flags, "e"),
		closeStdinOnEOF: strings.Contains(flags, "c"),
	}
	s.outMu.Lock()
	s.mu.Lock()
	done := s.done
	if !done && (a.out || a.err) {
		s.attachers[a] = struct{}{}
	}
	s.mu.Unlock()
	c.WriteString("ok\n")
	s.outMu.Unlock()
	if done {
		a.close()
		return
	}
	// Read stdin (or just wait for the client to go away).
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if n > 0 && a.stdin {
			s.writeStdin(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if a.stdin && a.closeStdinOnEOF {
		s.closeStdin()
	}
	if !a.out && !a.err {
		a.close()
	}
}

// closeAttachers ends every attach stream once all output has been sent.
func (s *shim) closeAttachers() {
	s.outMu.Lock()
	s.mu.Lock()
	as := s.attachers
	s.attachers = map[*attacher]struct{}{}
	s.mu.Unlock()
	s.outMu.Unlock()
	for a := range as {
		shutdownWrite(a.c)
		a.close()
	}
}

// pump copies one output stream of the container to the log and attachers.
func (s *shim) pump(wg *sync.WaitGroup, r *os.File, stream int) {
	defer wg.Done()
	defer r.Close()
	name := "stdout"
	if stream == StreamStderr {
		name = "stderr"
	}
	var split lineSplitter
	buf := make([]byte, 8*1024)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.output(&split, name, stream, buf[:n])
		}
		if err != nil {
			break // EOF, or EIO from a pty whose other end closed
		}
	}
	s.outMu.Lock()
	now := time.Now()
	split.Flush(func(msg []byte) { s.buf = AppendLogEntry(s.buf, name, msg, now) })
	s.flushLog()
	s.outMu.Unlock()
}

func (s *shim) output(split *lineSplitter, name string, stream int, p []byte) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	now := time.Now()
	split.Split(p, func(msg []byte) { s.buf = AppendLogEntry(s.buf, name, msg, now) })
	s.flushLog()

	s.mu.Lock()
	n := len(s.attachers)
	s.mu.Unlock()
	if n == 0 {
		return
	}
	frame := p
	if !s.opt.TTY {
		frame = make([]byte, 8+len(p))
		frame[0] = byte(stream)
		n := uint32(len(p))
		frame[4], frame[5], frame[6], frame[7] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		copy(frame[8:], p)
	}
	s.mu.Lock()
	as := make([]*attacher, 0, len(s.attachers))
	for a := range s.attachers {
		as = append(as, a)
	}
	s.mu.Unlock()
	for _, a := range as {
		if (stream == StreamStdout && !a.out) || (stream == StreamStderr && !a.err) {
			continue
		}
		if _, err := a.c.Write(frame); err != nil {
			s.mu.Lock()
			delete(s.attachers, a)
			s.mu.Unlock()
			a.close()
		}
	}
}

func (s *shim) flushLog() {
	if len(s.buf) == 0 {
		return
	}
	if _, err := s.log.Write(s.buf); err != nil {
		logf(s.opt.ID, "write log:", err.Error())
	}
	if cap(s.buf) > 64*1024 {
		s.buf = nil // do not keep a burst's buffer for the container's life
	} else {
		s.buf = s.buf[:0]
	}
}
