package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/shoal/shoal/errdefs"
)

// startDaemon starts a node's shoald inside the node (network and UTS
// namespaces, daemon cgroup) and waits until it answers /_ping.
func (l *Lab) startDaemon(ctx context.Context, st *State, ni *NodeInfo, timeout time.Duration) (int, error) {
	for _, d := range []string{ni.RunDir, ni.ExecRoot, ni.DataRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return 0, err
		}
	}
	logf, err := os.OpenFile(ni.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(logf, "=== shoal lab: starting %s at %s\n", ni.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(st.Shoald, ni.Args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = daemonEnv()
	cmd.Dir = "/"
	// Its own session: a ^C at the terminal that ran `shoal lab up` must not
	// reach the hosts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pl, err := l.placement(ni.DaemonCgroup)
	if err != nil {
		logf.Close()
		return 0, err
	}
	pl.Netns, pl.UTS = ni.Netns, ni.UTS
	err = spawn(cmd, pl)
	logf.Close()
	if err != nil {
		return 0, fmt.Errorf("start shoald on %s: %w", ni.Name, err)
	}
	done := l.reap(cmd)
	c := l.client(ni.Name)
	var lastErr error
	ok := waitFor(ctx, timeout, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, lastErr = c.Ping(pctx, client.PingOptions{})
		return lastErr == nil
	})
	select {
	case <-done:
		return 0, errdefs.System("shoald on %s exited during start-up; its log %s ends:\n%s", ni.Name, ni.Log, tail(ni.Log, 20))
	default:
	}
	if !ok {
		_ = cmd.Process.Kill()
		return 0, errdefs.Unavailable("shoald on %s did not answer on %s within %v (%v); its log %s ends:\n%s", ni.Name, ni.Socket, timeout, lastErr, ni.Log, tail(ni.Log, 20))
	}
	return cmd.Process.Pid, nil
}

// startRegistry runs `shoal registry serve` on the bridge address, in the
// lab's registry cgroup, and waits until it answers.
func (l *Lab) startRegistry(ctx context.Context, shoal, addr string) (int, error) {
	n := l.names
	if err := os.MkdirAll(n.registryRoot(), 0o700); err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(n.registryLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	cmd := exec.Command(shoal, "registry", "serve", "--addr", addr, "--root", n.registryRoot())
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = daemonEnv()
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	pl, err := l.placement(n.registryCgroup())
	if err != nil {
		logf.Close()
		return 0, err
	}
	err = spawn(cmd, pl)
	logf.Close()
	if err != nil {
		return 0, fmt.Errorf("start the lab registry: %w", err)
	}
	done := l.reap(cmd)
	ok := waitFor(ctx, 10*time.Second, func() bool {
		select {
		case <-done:
			return true
		default:
		}
		return registryAlive(ctx, addr)
	})
	select {
	case <-done:
		return 0, errdefs.Unavailable("the lab registry (`%s registry serve`) exited at once; is the registry command built? (--no-registry skips it). Its log %s ends:\n%s", shoal, n.registryLog(), tail(n.registryLog(), 20))
	default:
	}
	if !ok {
		_ = cmd.Process.Kill()
		return 0, errdefs.Unavailable("the lab registry did not answer on http://%s/v2/ in time (--no-registry skips it); its log %s ends:\n%s", addr, n.registryLog(), tail(n.registryLog(), 20))
	}
	return cmd.Process.Pid, nil
}

// placement creates the cgroup rel in the hierarchies a lab process joins.
func (l *Lab) placement(rel string) (placement, error) {
	var p placement
	v1, v2 := joinHierarchies(l.hs)
	for _, h := range v1 {
		dir := filepath.Join(h.Mount, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return p, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		p.CgroupsV1 = append(p.CgroupsV1, dir)
	}
	if v2 != nil {
		dir := filepath.Join(v2.Mount, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return p, fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		p.CgroupV2 = dir
	}
	return p, nil
}

// reap waits for a child this process started, so that a killed daemon
// does not linger as a zombie of a long-lived caller (a test binary).
func (l *Lab) reap(cmd *exec.Cmd) <-chan struct{} {
	done := make(chan struct{})
	l.mu.Lock()
	l.started[cmd.Process.Pid] = done
	l.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	return done
}

// reapStarted waits (bounded) until every child this Lab started is reaped.
func (l *Lab) reapStarted(timeout time.Duration) {
	l.mu.Lock()
	chans := make([]chan struct{}, 0, len(l.started))
	for pid, c := range l.started {
		chans = append(chans, c)
		delete(l.started, pid)
	}
	l.mu.Unlock()
	deadline := time.After(timeout)
	for _, c := range chans {
		select {
		case <-c:
		case <-deadline:
			return
		}
	}
}

// daemonEnv is the environment of lab daemons: the caller's, minus the
// variables that would point a daemon's own clients at another node.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DOCKER_HOST", "SHOAL_HOST", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// findBinary resolves a binary: the override, else next to the running
// executable (or the executable itself), else PATH.
func findBinary(override, name string) (string, error) {
	if override != "" {
		p, err := filepath.Abs(override)
		if err != nil {
			return "", err
		}
		if !isExecutable(p) {
			return "", errdefs.NotFound("%s binary %s is not an executable file", name, p)
		}
		return p, nil
	}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		if filepath.Base(exe) == name {
			return exe, nil
		}
		if p := filepath.Join(filepath.Dir(exe), name); isExecutable(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", errdefs.NotFound("%s binary not found next to this executable or on PATH (build it with `make build`)", name)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
