package shim

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// Options configure one shim (the command line of "shoal-shim run").
type Options struct {
	ID       string // container ID, also runc's
	Bundle   string // bundle dir: config.json, sockets, exit and pid files
	RuncRoot string // runc --root
	Runc     string // runc binary; "" finds it on PATH
	LogPath  string // json-file log of the container
	Cgroup   string // cgroupsPath of the container, to read OOM kills
	TTY      bool   // the container has a console
	Stdin    bool   // the container's stdin is open
}

// Args renders o as the arguments of "shoal-shim run".
func (o Options) Args() []string {
	a := []string{"run", "--id", o.ID, "--bundle", o.Bundle, "--runc-root", o.RuncRoot, "--log", o.LogPath}
	if o.Runc != "" {
		a = append(a, "--runc", o.Runc)
	}
	if o.Cgroup != "" {
		a = append(a, "--cgroup", o.Cgroup)
	}
	if o.TTY {
		a = append(a, "--tty")
	}
	if o.Stdin {
		a = append(a, "--stdin")
	}
	return a
}

func parseArgs(args []string) (Options, error) {
	var o Options
	str := map[string]*string{"--id": &o.ID, "--bundle": &o.Bundle, "--runc-root": &o.RuncRoot,
		"--runc": &o.Runc, "--log": &o.LogPath, "--cgroup": &o.Cgroup}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--tty":
			o.TTY = true
		case "--stdin":
			o.Stdin = true
		default:
			p, ok := str[a]
			if !ok || i+1 >= len(args) {
				return o, errorString("bad argument " + strconv.Quote(a))
			}
			i++
			*p = args[i]
		}
	}
	if o.ID == "" || o.Bundle == "" || o.RuncRoot == "" || o.LogPath == "" {
		return o, errorString("--id, --bundle, --runc-root and --log are required")
	}
	return o, nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func logf(parts ...string) {
	os.Stderr.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + " shoal-shim: " + strings.Join(parts, " ") + "\n")
}

// shim is the state of one running shim process.
type shim struct {
	opt  Options
	runc string
	ctl  *os.File // control channel to shoald (fd 3), closed once started

	listener *os.File

	mu        sync.Mutex
	attachers map[*attacher]struct{}
	waiters   []*os.File
	initPid   int
	done      bool // exited, output drained, runc state deleted
	exit      Exit
	console   *os.File // pty master with a TTY

	stdinMu     sync.Mutex
	stdin       *os.File // where attachers' input goes: pipe or pty master
	stdinClosed bool

	outMu sync.Mutex // orders log records and attach frames across streams
	log   *os.File
	buf   []byte
}

// Main runs "shoal-shim run ARGS" and returns the process exit code.
func Main(args []string) int {
	opt, err := parseArgs(args)
	if err != nil {
		logf(err.Error())
		return 2
	}
	s := &shim{opt: opt, attachers: map[*attacher]struct{}{}}
	// Pollable, so waiting for shoald parks a goroutine instead of a thread.
	syscall.SetNonblock(3, true)
	s.ctl = os.NewFile(3, "control")
	if err := s.run(); err != nil {
		logf(opt.ID, err.Error())
		return 1
	}
	return 0
}

func (s *shim) run() error {
	if err := os.Chdir(s.opt.Bundle); err != nil {
		return s.fail(err.Error())
	}
	if err := setSubreaper(); err != nil {
		return s.fail("set child subreaper: " + err.Error())
	}
	runc := s.opt.Runc
	if runc == "" {
		var err error
		if runc, err = lookPath("runc"); err != nil {
			return s.fail(err.Error())
		}
	}
	s.runc = runc
	logFile, err := os.OpenFile(s.opt.LogPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return s.fail("open log: " + err.Error())
	}
	s.log = logFile

	// Container stdio. Without a TTY, runc hands the child ends to the
	// container's init; with one, runc sends the pty master to ConsoleName
	// and its own stdio only carries runc's errors.
	var childFds []int
	defer func() {
		for _, fd := range childFds {
			syscall.Close(fd)
		}
	}()
	devnull, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return s.fail(err.Error())
	}
	childFds = append(childFds, devnull)
	var stdoutR, stderrR *os.File
	var stdio [3]int
	var consoleL *os.File
	stderrR, stdio[2], err = pipe(true)
	if err != nil {
		return s.fail(err.Error())
	}
	childFds = append(childFds, stdio[2])
	if s.opt.TTY {
		stdio[0], stdio[1] = devnull, devnull
		if consoleL, err = listenUnix(ConsoleName); err != nil {
			return s.fail("console socket: " + err.Error())
		}
		defer func() { consoleL.Close(); os.Remove(ConsoleName) }()
	} else {
		stdoutR, stdio[1], err = pipe(true)
		if err != nil {
			return s.fail(err.Error())
		}
		childFds = append(childFds, stdio[1])
		stdio[0] = devnull
		if s.opt.Stdin {
			var w *os.File
			if w, stdio[0], err = pipe(false); err != nil {
				return s.fail(err.Error())
			}
			childFds = append(childFds, stdio[0])
			s.stdin = w
		}
	}

	if s.listener, err = listenUnix(SocketName); err != nil {
		return s.fail("listen: " + err.Error())
	}
	go s.serve()

	// Handshake: shoald attaches early attachers between "ready" and "start"
	// so no output of a short-lived container is lost.
	if _, err := s.ctl.WriteString("ready\n"); err != nil {
		return s.fail("telling shoald: " + err.Error())
	}
	if line, err := readLine(s.ctl); err != nil || line != "start" {
		return s.fail("no start command from shoald")
	}

	type consoleResult struct {
		f   *os.File
		err error
	}
	consoleCh := make(chan consoleResult, 1)
	if consoleL != nil {
		go func() {
			c, err := accept(consoleL)
			if err != nil {
				consoleCh <- consoleResult{nil, err}
				return
			}
			defer c.Close()
			fd, err := recvFd(c)
			if err != nil {
				consoleCh <- consoleResult{nil, err}
				return
			}
			syscall.SetNonblock(fd, true)
			consoleCh <- consoleResult{os.NewFile(uintptr(fd), "console"), nil}
		}()
	}

	// No --pid-file: runc writes it with O_SYNC, a journal commit (~4 ms
	// on ext4) on every start. findInit learns the pid from the cgroup.
	args := []string{"--root", s.opt.RuncRoot, "--log", "runc.log", "run", "--detach", "--bundle", s.opt.Bundle}
	if s.opt.TTY {
		args = append(args, "--console-socket", ConsoleName)
	}
	ws, err := s.runRunc(stdio, append(args, s.opt.ID)...)
	for _, fd := range childFds {
		syscall.Close(fd)
	}
	childFds = nil
	if err == nil && !(ws.Exited() && ws.ExitStatus() == 0) {
		// runc printed why on its stderr; the container never ran, so the
		// pipe holds nothing else.
		msg := readAllNonblock(stderrR)
		if msg == "" {
			msg = "runc run failed: " + describeStatus(ws)
		}
		err = errorString(msg)
	}
	if err != nil {
		return s.fail(err.Error())
	}
	pid, err := s.findInit()
	if err != nil {
		return s.fail("finding the container's init: " + err.Error())
	}
	if consoleL != nil {
		select {
		case r := <-consoleCh:
			if r.err != nil {
				syscall.Kill(pid, syscall.SIGKILL)
				s.waitInit(pid)
				return s.fail("receiving the console: " + r.err.Error())
			}
			s.mu.Lock()
			s.console = r.f
			s.mu.Unlock()
			s.stdinMu.Lock()
			s.stdin = r.f
			s.stdinMu.Unlock()
		case <-time.After(10 * time.Second):
			syscall.Kill(pid, syscall.SIGKILL)
			s.waitInit(pid)
			return s.fail("runc did not send the console")
		}
	}
	s.mu.Lock()
	s.initPid = pid
	s.mu.Unlock()
	s.ctl.WriteString("started " + strconv.Itoa(pid) + "\n")
	s.ctl.Close()

	var pumps sync.WaitGroup
	if s.opt.TTY {
		stderrR.Close()
		pumps.Add(1)
		go s.pump(&pumps, s.console, StreamStdout)
	} else {
		pumps.Add(2)
		go s.pump(&pumps, stdoutR, StreamStdout)
		go s.pump(&pumps, stderrR, StreamStderr)
	}
	trimMemory()

	ws = s.waitInit(pid)
	exit := Exit{Finished: time.Now()}
	if ws.Signaled() {
		exit.Signal = int(ws.Signal())
		exit.Code = 128 + exit.Signal
	} else {
		exit.Code = ws.ExitStatus()
	}
	// The pid namespace dies with init, so the pipes reach EOF promptly; the
	// bound only guards against a process that escaped it.
	drained := make(chan struct{})
	go func() { pumps.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
		logf(s.opt.ID, "output still open 5s after exit; closing")
	}
	s.outMu.Lock()
	s.log.Close()
	s.outMu.Unlock()
	exit.OOM = oomKilled(s.opt.Cgroup)
	s.closeAttachers()

	// Record and announce the exit before runc's cleanup (a runc process
	// of its own, ~10 ms): shoald needs the exit now, and waits for this
	// shim's socket to go away before it reuses the container's ID.
	if err := writeFileAtomic(ExitName, []byte(FormatExit(exit))); err != nil {
		logf(s.opt.ID, "write exit file:", err.Error())
	}
	waiters := s.announce(exit)
	if _, err := s.runRunc([3]int{-1, -1, -1}, "--root", s.opt.RuncRoot, "delete", "--force", s.opt.ID); err != nil {
		logf(s.opt.ID, "runc delete:", err.Error())
	}
	s.finish(waiters)
	return nil
}

// fail reports a start failure to shoald and undoes what the start made.
func (s *shim) fail(msg string) error {
	s.ctl.WriteString("failed\n" + msg)
	s.ctl.Close()
	if s.listener != nil {
		s.cleanupFailed()
	}
	return errorString(msg)
}

// cleanupFailed removes what a failed start left: runc state, the socket,
// attachers.
func (s *shim) cleanupFailed() {
	s.runRunc([3]int{-1, -1, -1}, "--root", s.opt.RuncRoot, "delete", "--force", s.opt.ID)
	s.closeAttachers()
	s.finish(s.announce(Exit{Code: -1, Finished: time.Now()}))
}

// announce records exit, answers the waiters, and returns their
// connections (closed by finish). Later requests see the container done.
func (s *shim) announce(exit Exit) []*os.File {
	s.mu.Lock()
	s.done = true
	s.exit = exit
	waiters := s.waiters
	s.waiters = nil
	s.mu.Unlock()
	line := FormatExit(exit)
	for _, w := range waiters {
		w.WriteString(line)
	}
	return waiters
}

// finish stops serving: the socket disappears last, when nothing of the
// container is left.
func (s *shim) finish(waiters []*os.File) {
	for _, w := range waiters {
		w.Close()
	}
	if s.listener != nil {
		os.Remove(SocketName)
		s.listener.Close()
	}
}

func (s *shim) waitInit(pid int) syscall.WaitStatus {
	ws, err := waitPid(pid)
	if err != nil {
		logf(s.opt.ID, "waiting for init:", err.Error())
	}
	// Reap anything else that ended up parented to the shim.
	for {
		var other syscall.WaitStatus
		if p, err := syscall.Wait4(-1, &other, syscall.WNOHANG, nil); p <= 0 || err != nil {
			break
		}
	}
	return ws
}

// runRunc runs runc with the given stdio (-1 = /dev/null) and waits for it
// (the shim reaps every child itself).
func (s *shim) runRunc(stdio [3]int, args ...string) (syscall.WaitStatus, error) {
	files := make([]uintptr, 3)
	var devnull int = -1
	for i, fd := range stdio {
		if fd < 0 {
			if devnull < 0 {
				var err error
				if devnull, err = syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0); err != nil {
					return 0, err
				}
				defer syscall.Close(devnull)
			}
			fd = devnull
		}
		files[i] = uintptr(fd)
	}
	pid, err := syscall.ForkExec(s.runc, append([]string{"runc"}, args...), &syscall.ProcAttr{
		Dir:   s.opt.Bundle,
		Env:   runcEnv(),
		Files: files,
	})
	if err != nil {
		return 0, errorString("exec " + s.runc + ": " + err.Error())
	}
	return waitPid(pid)
}

func describeStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "killed by signal " + strconv.Itoa(int(ws.Signal()))
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

func errString(errs ...error) string {
	for _, e := range errs {
		if e != nil {
			return e.Error()
		}
	}
	return ""
}

// readAllNonblock reads what a pipe holds without waiting for writers that
// may never close it.
func readAllNonblock(f *os.File) string {
	f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var out []byte
	buf := make([]byte, 4096)
	for len(out) < 64*1024 {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	return strings.TrimSpace(string(out))
}

func readLine(f *os.File) (string, error) {
	var line []byte
	var b [1]byte
	for len(line) < 4096 {
		n, err := f.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				return string(line), nil
			}
			line = append(line, b[0])
		}
		if err != nil {
			return string(line), err
		}
	}
	return string(line), errorString("line too long")
}

// findInit finds the container's init once "runc run -d" returned. runc
// has exited, so init is now this shim's only child (re-parented to its
// subreaper): the process of the container's cgroup whose parent we are,
// or, if it already exited, the zombie waitid shows without reaping it.
func (s *shim) findInit() (int, error) {
	self := os.Getpid()
	if s.opt.Cgroup != "" {
		for _, dir := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
			b, err := os.ReadFile(dir + s.opt.Cgroup + "/cgroup.procs")
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err == nil && parentOf(pid) == self {
					return pid, nil
				}
			}
			break
		}
	}
	// Gone already (zombies leave their cgroup), or no cgroup to look in.
	var info siginfo
	const pAll, wNowait = 0, 0x1000000
	_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pAll, 0, uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOHANG|wNowait, 0, 0)
	if e == 0 && info.pid > 0 {
		return int(info.pid), nil
	}
	// Alive without a cgroup we could read: find our child in /proc.
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range entries {
		if pid, err := strconv.Atoi(d.Name()); err == nil && parentOf(pid) == self {
			return pid, nil
		}
	}
	return 0, errorString("no child process after runc run")
}

// parentOf reads a process's parent pid from /proc/PID/stat.
func parentOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// "PID (comm) STATE PPID ...": comm may hold spaces and parens.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// oomKilled reports whether the container's memory cgroup recorded an OOM
// kill (cgroup v1 memory.oom_control, or v2 memory.events).
func oomKilled(cgroup string) bool {
	if cgroup == "" {
		return false
	}
	for _, p := range []string{
		"/sys/fs/cgroup/memory" + cgroup + "/memory.oom_control",
		"/sys/fs/cgroup" + cgroup + "/memory.events",
	} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "oom_kill "); ok {
				return strings.TrimSpace(v) != "0"
			}
		}
	}
	return false
}

// lookPath finds an executable on PATH (os/exec is avoided to keep the shim small).
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	for _, dir := range strings.Split(path, ":") {
		if dir == "" {
			dir = "."
		}
		p := dir + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errorString(name + ": executable file not found in $PATH")
}

// runcEnv is the shim's environment minus the Go runtime tuning meant for
// the shim itself.
func runcEnv() []string {
	env := os.Environ()
	out := env[:0]
	for _, e := range env {
		if !strings.HasPrefix(e, "GOMAXPROCS=") {
			out = append(out, e)
		}
	}
	return out
}
