package runtime

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/errdefs"
)

// ExecRequest runs an extra process in a running container.
type ExecRequest struct {
	ContainerID string
	Process     specs.Process // Terminal selects a TTY
	PidFile     string        // where runc writes the process's pid
	ConsoleSize [2]uint       // height, width of the TTY
	Stdin       io.Reader     // nil: no stdin
	Stdout      io.Writer     // nil: discarded; with a TTY it gets everything
	Stderr      io.Writer     // nil: discarded; unused with a TTY
}

// ExecProcess is a running exec.
type ExecProcess struct {
	pidFile string
	master  console.Console // TTY master, nil without a TTY
	done    chan struct{}
	code    int
	err     error
	pidOnce sync.Once
	pid     int
}

// Exec starts req with runc exec (in the foreground: runc stays the
// process's parent and reports its exit status). With a TTY, runc gets a
// pty of ours as its controlling terminal and relays it to the container's
// console; resizing ours reaches the container through SIGWINCH.
func (r *Runtime) Exec(req ExecRequest) (*ExecProcess, error) {
	p := &ExecProcess{pidFile: req.PidFile, done: make(chan struct{})}
	eio := &execIO{}
	var copies sync.WaitGroup
	fail := func(err error) (*ExecProcess, error) {
		eio.closeAll()
		if p.master != nil {
			p.master.Close()
		}
		return nil, err
	}
	if req.Process.Terminal {
		master, slavePath, err := console.NewPty()
		if err != nil {
			return fail(errdefs.System("allocating a pty: %v", err))
		}
		p.master = master
		if req.ConsoleSize[0] > 0 && req.ConsoleSize[1] > 0 {
			master.Resize(console.WinSize{Height: uint16(req.ConsoleSize[0]), Width: uint16(req.ConsoleSize[1])})
		}
		slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			return fail(errdefs.System("opening pty: %v", err))
		}
		eio.stdin, eio.stdout, eio.stderr = slave, slave, slave
		eio.childs = []*os.File{slave}
		eio.tty = true
		out := req.Stdout
		if out == nil {
			out = io.Discard
		}
		copies.Add(1)
		go func() {
			defer copies.Done()
			io.Copy(out, master) // ends with EIO once runc and the process are gone
		}()
		if req.Stdin != nil {
			go io.Copy(master, req.Stdin)
		}
	} else {
		if req.Stdin != nil {
			r, w, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			eio.stdin = r
			eio.childs = append(eio.childs, r)
			go func() {
				io.Copy(w, req.Stdin)
				w.Close()
			}()
		}
		for i, dst := range []io.Writer{req.Stdout, req.Stderr} {
			if dst == nil {
				dst = io.Discard
			}
			r, w, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			if i == 0 {
				eio.stdout = w
			} else {
				eio.stderr = w
			}
			eio.childs = append(eio.childs, w)
			copies.Add(1)
			go func() {
				defer copies.Done()
				defer r.Close()
				io.Copy(dst, r)
			}()
		}
	}

	started := make(chan int, 1)
	opts := &runc.ExecOpts{IO: eio, PidFile: req.PidFile, Started: started}
	go func() {
		// Not the request's context: a client going away must not kill the exec.
		err := r.runc.Exec(context.Background(), req.ContainerID, req.Process, opts)
		eio.closeAll() // if Exec failed before start
		var ee *runc.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			p.code = ee.Status
		default:
			p.code, p.err = 126, err
		}
		// Output may outlive the process (a background child keeps the
		// pipe); do not hang the exec on it forever.
		drained := make(chan struct{})
		go func() { copies.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
		}
		if p.master != nil {
			p.master.Close()
		}
		close(p.done)
	}()
	if _, ok := <-started; !ok {
		<-p.done
		if p.err == nil {
			p.err = errors.New("runc exec did not start")
		}
		return nil, errdefs.System("exec: %v", p.err)
	}
	return p, nil
}

// Done is closed when the process has exited and its output was copied.
func (p *ExecProcess) Done() <-chan struct{} { return p.done }

// ExitCode is valid after Done.
func (p *ExecProcess) ExitCode() int { return p.code }

// Err is a failure of runc itself (not of the process), after Done.
func (p *ExecProcess) Err() error { return p.err }

// Pid is the process's pid in the host namespace, 0 until runc reported it.
func (p *ExecProcess) Pid() int {
	if p.pid != 0 {
		return p.pid
	}
	b, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	p.pidOnce.Do(func() { p.pid = pid })
	return pid
}

// Resize sets the TTY size of the exec.
func (p *ExecProcess) Resize(h, w uint) error {
	if p.master == nil {
		return errdefs.Conflict("exec has no TTY")
	}
	select {
	case <-p.done:
		return errdefs.Conflict("exec has exited")
	default:
	}
	return p.master.Resize(console.WinSize{Height: uint16(h), Width: uint16(w)})
}

// execIO hands runc its stdio; CloseAfterStart drops our copies of the
// child ends so EOF arrives when the process is done.
type execIO struct {
	stdin, stdout, stderr *os.File
	childs                []*os.File
	tty                   bool
	once                  sync.Once
}

func (e *execIO) Close() error           { return nil }
func (e *execIO) Stdin() io.WriteCloser  { return nil }
func (e *execIO) Stdout() io.ReadCloser  { return nil }
func (e *execIO) Stderr() io.ReadCloser  { return nil }
func (e *execIO) CloseAfterStart() error { e.closeAll(); return nil }
func (e *execIO) closeAll()              { e.once.Do(func() { closeFiles(e.childs) }) }
func closeFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
func (e *execIO) Set(cmd *exec.Cmd) {
	if e.stdin != nil {
		cmd.Stdin = e.stdin
	}
	cmd.Stdout, cmd.Stderr = e.stdout, e.stderr
	if e.tty {
		// runc relays its controlling terminal (our pty) to the container's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
}
