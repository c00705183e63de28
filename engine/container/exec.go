package container

import (
	"context"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
)

// execInst is one exec (docker exec) of a container. Execs live in memory
// only: they do not survive a daemon restart.
type execInst struct {
	id          string
	containerID string
	cfg         container.ExecCreateRequest

	mu       sync.Mutex
	started  bool
	running  bool
	exitCode *int
	pid      int
	proc     *runtime.ExecProcess
}

// ExecCreate registers an exec in a running container and returns its ID.
func (s *Service) ExecCreate(ctx context.Context, ref string, req container.ExecCreateRequest) (string, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return "", err
	}
	if len(req.Cmd) == 0 {
		return "", errdefs.InvalidParameter("No exec command specified")
	}
	if err := checkRunning(c); err != nil {
		return "", err
	}
	if req.DetachKeys != "" {
		if _, err := parseDetachKeys(req.DetachKeys); err != nil {
			return "", err
		}
	}
	e := &execInst{id: newID(), containerID: c.rec.ID, cfg: req}
	s.mu.Lock()
	s.execs[e.id] = e
	s.mu.Unlock()
	c.mu.Lock()
	c.execs = append(c.execs, e.id)
	c.mu.Unlock()
	s.emit(c, "exec_create: "+strings.Join(req.Cmd, " "), 0, map[string]string{"execID": e.id})
	return e.id, nil
}

func checkRunning(c *ctr) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.rec.State.Status == container.StatePaused:
		return errdefs.Conflict("Container %s is paused, unpause the container before exec", c.rec.ID)
	case !c.rec.running() || c.watch == nil:
		return errdefs.Conflict("Container %s is not running", c.rec.ID)
	}
	return nil
}

func (s *Service) execByID(id string) (*execInst, error) {
	s.mu.RLock()
	e, ok := s.execs[id]
	s.mu.RUnlock()
	if !ok {
		return nil, errdefs.NotFound("No such exec instance: %s", id)
	}
	return e, nil
}

// ExecStart runs an exec. Unless Detach, it streams the process's output to
// opts.Stdout (framed as for attach) and returns when the process ended.
func (s *Service) ExecStart(ctx context.Context, execID string, opts backend.ExecStartOptions) error {
	e, err := s.execByID(execID)
	if err != nil {
		return err
	}
	rt, err := s.runtime()
	if err != nil {
		return err
	}
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		if e.running {
			return errdefs.Conflict("Error: Exec command %s is already running", execID)
		}
		return errdefs.Conflict("Error: Exec command %s has already run", execID)
	}
	e.started = true
	e.mu.Unlock()
	c, err := s.lookup(e.containerID)
	if err != nil {
		return err
	}
	if err := checkRunning(c); err != nil {
		return err
	}
	spec, err := readSpec(c.bundle)
	if err != nil || spec.Process == nil {
		return errdefs.Conflict("Container %s is not running", c.rec.ID)
	}
	proc := *spec.Process
	proc.Args = e.cfg.Cmd
	proc.Terminal = e.cfg.Tty
	proc.ConsoleSize = nil
	proc.Env = runtime.ReplaceOrAppendEnv(proc.Env, e.cfg.Env)
	if e.cfg.WorkingDir != "" {
		proc.Cwd = e.cfg.WorkingDir
	}
	if e.cfg.User != "" {
		c.mu.Lock()
		groupAdd := c.rec.HostConfig.GroupAdd
		c.mu.Unlock()
		u, err := runtime.ResolveUser(spec.Root.Path, e.cfg.User, groupAdd)
		if err != nil {
			return err
		}
		proc.User = u.User
	}
	if e.cfg.Privileged {
		caps := append([]string(nil), runtime.AllCapabilities...)
		proc.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	}
	req := runtime.ExecRequest{ContainerID: c.rec.ID, Process: proc, PidFile: filepath.Join(c.bundle, "exec-"+e.id+".pid")}
	if size := e.cfg.ConsoleSize; size != nil {
		req.ConsoleSize = *size
	}
	if opts.ConsoleSize != nil {
		req.ConsoleSize = *opts.ConsoleSize
	}
	if e.cfg.Tty && req.ConsoleSize[0] > 0 && req.ConsoleSize[1] > 0 {
		// runc sizes the process's console before it runs, so even its
		// first "stty size" sees it.
		req.Process.ConsoleSize = &specs.Box{Height: req.ConsoleSize[0], Width: req.ConsoleSize[1]}
	}
	if !opts.Detach {
		if e.cfg.AttachStdin {
			req.Stdin = opts.Stdin
		}
		if opts.Stdout != nil {
			if e.cfg.Tty {
				req.Stdout = opts.Stdout
			} else {
				lw := &lockedWriter{w: opts.Stdout}
				if e.cfg.AttachStdout {
					req.Stdout = newStdWriter(lw, streamStdout)
				}
				if e.cfg.AttachStderr {
					req.Stderr = newStdWriter(lw, streamStderr)
				}
			}
		}
	}
	p, err := rt.Exec(req)
	if err != nil {
		code := 126
		e.mu.Lock()
		e.exitCode = &code
		e.mu.Unlock()
		return err
	}
	e.mu.Lock()
	e.running = true
	e.proc = p
	e.mu.Unlock()
	s.emit(c, "exec_start: "+strings.Join(e.cfg.Cmd, " "), 0, map[string]string{"execID": e.id})
	finish := func() {
		<-p.Done()
		code := p.ExitCode()
		e.mu.Lock()
		e.running = false
		e.exitCode = &code
		e.pid = p.Pid()
		e.mu.Unlock()
		s.emit(c, "exec_die", code, map[string]string{"execID": e.id, "exitCode": strconv.Itoa(code)})
	}
	if opts.Detach {
		go finish()
		return nil
	}
	finish()
	return nil
}

// ExecInspect reports an exec's state.
func (s *Service) ExecInspect(ctx context.Context, execID string) (*container.ExecInspectResponse, error) {
	e, err := s.execByID(execID)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pid := e.pid
	if e.proc != nil && pid == 0 {
		pid = e.proc.Pid()
	}
	var code *int
	if e.exitCode != nil {
		v := *e.exitCode
		code = &v
	}
	priv := e.cfg.Privileged
	resp := &container.ExecInspectResponse{
		ID:          e.id,
		Running:     e.running,
		ExitCode:    code,
		OpenStdin:   e.cfg.AttachStdin,
		OpenStdout:  e.cfg.AttachStdout,
		OpenStderr:  e.cfg.AttachStderr,
		ContainerID: e.containerID,
		DetachKeys:  []byte(e.cfg.DetachKeys),
		Pid:         pid,
		ProcessConfig: &container.ExecProcessConfig{
			Tty:        e.cfg.Tty,
			Entrypoint: e.cfg.Cmd[0],
			Arguments:  append([]string{}, e.cfg.Cmd[1:]...),
			Privileged: &priv,
			User:       e.cfg.User,
		},
	}
	return resp, nil
}

// ExecResize sets an exec's TTY size.
func (s *Service) ExecResize(ctx context.Context, execID string, h, w uint) error {
	e, err := s.execByID(execID)
	if err != nil {
		return err
	}
	e.mu.Lock()
	p := e.proc
	e.mu.Unlock()
	if p == nil {
		return errdefs.Conflict("Exec %s is not running", execID)
	}
	return p.Resize(h, w)
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
