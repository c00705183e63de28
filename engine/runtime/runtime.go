// Package runtime runs OCI containers under runc for shoald: it builds
// runtime specs from docker's container configuration, starts a shoal-shim
// per container, talks to running shims over their sockets, and runs exec
// processes with runc directly.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/shoal/shoal/engine/runtime/shim"
	"github.com/shoal/shoal/errdefs"
)

// Config configures the runtime.
type Config struct {
	ShimPath string // shoal-shim binary; "" looks next to this executable, then on PATH
	RuncPath string // runc binary; "" = "runc" on PATH
	Root     string // runc state directory (runc --root), one per daemon
}

// Runtime starts and drives containers.
type Runtime struct {
	shimPath string
	runcPath string
	root     string
	runc     *runc.Runc
}

// New checks that the shim and runc can be found.
func New(cfg Config) (*Runtime, error) {
	shimPath, err := findShim(cfg.ShimPath)
	if err != nil {
		return nil, err
	}
	runcPath := cfg.RuncPath
	if runcPath == "" {
		runcPath = "runc"
	}
	if runcPath, err = exec.LookPath(runcPath); err != nil {
		return nil, fmt.Errorf("runc not found: %w", err)
	}
	if cfg.Root == "" {
		return nil, errors.New("runtime: Root (runc state dir) is required")
	}
	if err := os.MkdirAll(cfg.Root, 0o700); err != nil {
		return nil, err
	}
	return &Runtime{
		shimPath: shimPath,
		runcPath: runcPath,
		root:     cfg.Root,
		runc:     &runc.Runc{Command: runcPath, Root: cfg.Root},
	}, nil
}

// findShim looks for shoal-shim next to the running executable, then on PATH.
func findShim(p string) (string, error) {
	if p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("shoal-shim: %w", err)
		}
		return filepath.Abs(p)
	}
	if exe, err := os.Executable(); err == nil {
		cand := filepath.Join(filepath.Dir(exe), "shoal-shim")
		if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() {
			return cand, nil
		}
	}
	if p, err := exec.LookPath("shoal-shim"); err == nil {
		return filepath.Abs(p)
	}
	return "", errors.New("shoal-shim not found next to the executable nor on PATH")
}

// ShimPath is the shim binary, which is also the --init binary.
func (r *Runtime) ShimPath() string { return r.shimPath }

// RuncRoot is runc's state directory.
func (r *Runtime) RuncRoot() string { return r.root }

// StartRequest describes a prepared bundle to run.
type StartRequest struct {
	ID      string
	Bundle  string // holds config.json; the shim's sockets and files go here too
	LogPath string // json-file log
	Cgroup  string // cgroupsPath, to detect OOM kills
	TTY     bool
	Stdin   bool
}

// Spawned is a shim that listens on its socket but has not started the
// container: attach early attachers, then call Start.
type Spawned struct {
	Bundle string
	proc   *os.Process
	ctl    *os.File
}

// Spawn starts a shim for req, detached from shoald (own session) so it
// outlives a daemon restart.
func (r *Runtime) Spawn(req StartRequest) (*Spawned, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.SetNonblock(fds[0], true); err != nil {
		syscall.Close(fds[0])
		syscall.Close(fds[1])
		return nil, err
	}
	ctl := os.NewFile(uintptr(fds[0]), "shim-control")
	child := os.NewFile(uintptr(fds[1]), "shim-control-child")
	defer child.Close()
	logf, err := os.OpenFile(filepath.Join(req.Bundle, shim.LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		ctl.Close()
		return nil, err
	}
	defer logf.Close()
	opts := shim.Options{ID: req.ID, Bundle: req.Bundle, RuncRoot: r.root, Runc: r.runcPath,
		LogPath: req.LogPath, Cgroup: req.Cgroup, TTY: req.TTY, Stdin: req.Stdin}
	cmd := exec.Command(r.shimPath, opts.Args()...)
	cmd.Dir = req.Bundle
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = []*os.File{child}
	// One P: the shim mostly sleeps in the poller; fewer Ps mean fewer
	// threads and stacks. The shim drops these for runc.
	cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return nil, errdefs.System("starting shoal-shim: %v", err)
	}
	s := &Spawned{Bundle: req.Bundle, proc: cmd.Process, ctl: ctl}
	ctl.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(ctl)
	if err != nil || line != "ready" {
		msg := s.failure(line, err)
		s.abort()
		return nil, errdefs.System("shoal-shim did not start: %s", msg)
	}
	return s, nil
}

// failure reads the rest of a "failed" answer (or explains a bad one).
func (s *Spawned) failure(line string, err error) string {
	if line == "failed" {
		b, _ := io.ReadAll(io.LimitReader(s.ctl, 64<<10))
		return strings.TrimSpace(string(b))
	}
	if err != nil {
		tail := shimLogTail(s.Bundle)
		return fmt.Sprintf("%v (shim log: %s)", err, tail)
	}
	return fmt.Sprintf("unexpected answer %q", line)
}

func (s *Spawned) abort() {
	s.ctl.Close()
	s.proc.Kill()
	s.proc.Wait()
}

// Process is the shim process (a child of this daemon until it exits: the
// caller must Wait for it).
func (s *Spawned) Process() *os.Process { return s.proc }

// Attach connects an attacher before the container runs, so it misses no output.
func (s *Spawned) Attach(f AttachFlags) (*net.UnixConn, error) {
	return Attach(s.Bundle, f)
}

// StartError is runc's refusal to start a container.
type StartError struct {
	Msg      string
	ExitCode int // docker's: 127 command not found, 126 not executable, 128 otherwise
}

func (e *StartError) Error() string {
	return "failed to create task for container: OCI runtime create failed: " + e.Msg + ": unknown"
}

// Start runs the container and returns its init's pid. On failure the shim
// has cleaned up and exited.
func (s *Spawned) Start() (int, error) {
	defer s.ctl.Close()
	s.ctl.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := s.ctl.WriteString("start\n"); err != nil {
		s.abort()
		return 0, errdefs.System("shoal-shim: %v", err)
	}
	line, err := readLine(s.ctl)
	if pidStr, ok := strings.CutPrefix(line, "started "); ok && err == nil {
		pid, err := strconv.Atoi(pidStr)
		if err != nil {
			return 0, errdefs.System("shoal-shim: bad pid %q", pidStr)
		}
		return pid, nil
	}
	msg := s.failure(line, err)
	s.proc.Wait()
	if line != "failed" {
		return 0, errdefs.System("shoal-shim: %s", msg)
	}
	return 0, classifyStartError(msg)
}

// classifyStartError gives runc's start failure docker's status and exit
// code. runc reports only text, so the text is all there is to go on.
func classifyStartError(msg string) error {
	se := &StartError{Msg: msg, ExitCode: 128}
	kind := errdefs.KindSystem
	switch {
	case strings.Contains(msg, "executable file not found") || strings.Contains(msg, "no such file or directory"):
		se.ExitCode, kind = 127, errdefs.KindInvalidParameter
	case strings.Contains(msg, "permission denied"):
		se.ExitCode, kind = 126, errdefs.KindInvalidParameter
	}
	return errdefs.Wrap(kind, se)
}

func shimLogTail(bundle string) string {
	b, err := os.ReadFile(filepath.Join(bundle, shim.LogName))
	if err != nil {
		return "unavailable"
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return "empty"
	}
	return s
}

// ErrNoShim means no shim answers for the container.
var ErrNoShim = errors.New("no shim is running for the container")

// dial connects to the shim socket of bundle. Long bundle paths go through
// /proc/self/fd so they fit in sun_path.
func dial(bundle string) (*net.UnixConn, error) {
	p := filepath.Join(bundle, shim.SocketName)
	if len(p) >= 100 {
		dir, err := os.OpenFile(bundle, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, ErrNoShim
		}
		defer dir.Close()
		p = "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + shim.SocketName
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: p, Net: "unix"})
	if err != nil {
		return nil, ErrNoShim
	}
	return c, nil
}

// request sends one request line and returns the connection and the
// argument of the "ok" answer.
func request(bundle, line string) (*net.UnixConn, string, error) {
	c, err := dial(bundle)
	if err != nil {
		return nil, "", err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte(line + "\n")); err != nil {
		c.Close()
		return nil, "", ErrNoShim
	}
	ans, err := readLine(c)
	c.SetDeadline(time.Time{})
	if err != nil {
		c.Close()
		return nil, "", ErrNoShim
	}
	if ans == "ok" || strings.HasPrefix(ans, "ok ") {
		return c, strings.TrimPrefix(strings.TrimPrefix(ans, "ok"), " "), nil
	}
	c.Close()
	return nil, "", errdefs.Conflict("%s", strings.TrimPrefix(ans, "error "))
}

func simple(bundle, line string) error {
	c, _, err := request(bundle, line)
	if err != nil {
		return err
	}
	return c.Close()
}

// WaitGone waits until no shim serves bundle: a shim announces the exit
// before it deletes runc's state, and the container's ID must not be
// reused before that is done.
func WaitGone(bundle string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := dial(bundle)
		if err != nil {
			return nil
		}
		c.Close()
		if time.Now().After(deadline) {
			return errdefs.Conflict("the previous run of the container is still being cleaned up")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Signal sends sig to the container's init through its shim.
func Signal(bundle string, sig syscall.Signal) error {
	return simple(bundle, "kill "+strconv.Itoa(int(sig)))
}

// Resize sets the container's TTY size.
func Resize(bundle string, h, w uint) error {
	return simple(bundle, "resize "+strconv.FormatUint(uint64(h), 10)+" "+strconv.FormatUint(uint64(w), 10))
}

// AttachFlags choose the streams of an attach.
type AttachFlags struct {
	Stdin, Stdout, Stderr bool
	CloseStdinOnEOF       bool // the client's half-close closes the container's stdin
}

func (f AttachFlags) String() string {
	s := ""
	if f.Stdin {
		s += "i"
	}
	if f.Stdout {
		s += "o"
	}
	if f.Stderr {
		s += "e"
	}
	if f.CloseStdinOnEOF {
		s += "c"
	}
	return s
}

// Attach opens an attach stream: reads give the container's output
// (stdcopy-framed without a TTY, raw with one) until it exits; writes feed
// its stdin; CloseWrite ends stdin.
func Attach(bundle string, f AttachFlags) (*net.UnixConn, error) {
	c, _, err := request(bundle, "attach "+f.String())
	return c, err
}

// Watch follows a running container's shim until the container exits.
type Watch struct {
	Pid    int
	bundle string
	c      *net.UnixConn
}

// WatchShim connects to the shim of bundle; ErrNoShim if none answers.
func WatchShim(bundle string) (*Watch, error) {
	c, arg, err := request(bundle, "wait")
	if err != nil {
		return nil, err
	}
	pid, _ := strconv.Atoi(arg)
	return &Watch{Pid: pid, bundle: bundle, c: c}, nil
}

// ErrShimDied means the shim went away without recording an exit status.
var ErrShimDied = errors.New("shim died without recording the container's exit")

// Wait blocks until the container exited and its runc state was deleted.
func (w *Watch) Wait() (shim.Exit, error) {
	defer w.c.Close()
	line, err := readLine(w.c)
	if err == nil {
		if e, err := shim.ParseExit(line); err == nil {
			return e, nil
		}
	}
	if e, err := shim.ReadExitFile(filepath.Join(w.bundle, shim.ExitName)); err == nil {
		return e, nil
	}
	return shim.Exit{}, ErrShimDied
}

// Close stops watching (the container keeps running).
func (w *Watch) Close() error { return w.c.Close() }

// ReadExit reads the exit file of a bundle.
func ReadExit(bundle string) (shim.Exit, error) {
	return shim.ReadExitFile(filepath.Join(bundle, shim.ExitName))
}

// Kill signals a container through runc (used when its shim is gone).
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	return r.runc.Kill(ctx, id, int(sig), &runc.KillOpts{All: true})
}

// Delete removes runc's state of a container (forcefully: killing what is left).
func (r *Runtime) Delete(ctx context.Context, id string) error {
	if _, err := os.Stat(filepath.Join(r.root, id)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return r.runc.Delete(ctx, id, &runc.DeleteOpts{Force: true})
}

// State is runc's view of a container: "created", "running", "paused",
// "stopped", or "" when runc does not know it.
func (r *Runtime) State(ctx context.Context, id string) (status string, pid int) {
	if _, err := os.Stat(filepath.Join(r.root, id)); errors.Is(err, os.ErrNotExist) {
		return "", 0
	}
	st, err := r.runc.State(ctx, id)
	if err != nil {
		return "", 0
	}
	return st.Status, st.Pid
}

// Pause freezes a container; Resume thaws it.
func (r *Runtime) Pause(ctx context.Context, id string) error  { return r.runc.Pause(ctx, id) }
func (r *Runtime) Resume(ctx context.Context, id string) error { return r.runc.Resume(ctx, id) }

// Pids lists the host pids of a container's processes.
func (r *Runtime) Pids(ctx context.Context, id string) ([]int, error) { return r.runc.Ps(ctx, id) }

func readLine(r io.Reader) (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < 4096 {
		n, err := r.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(line), nil
			}
			line = append(line, b[0])
			continue
		}
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return string(line), io.ErrUnexpectedEOF
			}
			return string(line), err
		}
	}
	return string(line), errors.New("line too long")
}

// Update applies new resource limits to a running container (runc update).
func (r *Runtime) Update(ctx context.Context, id string, res container.Resources) error {
	var lr specs.LinuxResources
	if err := setResources(&lr, res); err != nil {
		return err
	}
	return r.runc.Update(ctx, id, &lr)
}
