package container

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/engine/runtime/shim"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/network/bridge"
)

const defaultStopTimeout = 10

// Start starts a created or stopped container.
func (s *Service) Start(ctx context.Context, ref string) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	return s.startCtr(ctx, c, startByUser)
}

// Why a container starts.
type startReason int

const (
	startByUser   startReason = iota // resets the restart count and the manual-stop mark
	startByPolicy                    // a restart after backoff: only if still restarting
	startAtBoot                      // the daemon brings back a restart-policy container
)

// startCtr starts c.
func (s *Service) startCtr(ctx context.Context, c *ctr, why startReason) error {
	rt, err := s.runtime()
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	switch {
	case c.removed:
		c.mu.Unlock()
		return errdefs.NotFound("No such container: %s", c.rec.ID)
	case c.rec.State.Status == container.StatePaused:
		c.mu.Unlock()
		return errdefs.Conflict("cannot start a paused container, try unpause instead")
	case c.rec.running():
		c.mu.Unlock()
		return errdefs.NotModified("container %s is already running", c.rec.ID)
	}
	if why == startByPolicy && (c.rec.State.Status != container.StateRestarting || c.rec.ManuallyStopped) {
		c.mu.Unlock()
		return nil // stopped (or started) while the backoff ran
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if why == startByUser {
		c.rec.ManuallyStopped = false
		c.rec.RestartCount = 0
		c.restart = restartState{}
	}
	c.mu.Unlock()

	if err := s.launch(ctx, rt, c); err != nil {
		c.mu.Lock()
		c.rec.State.Error = err.Error()
		var se *runtime.StartError
		if errors.As(err, &se) {
			c.rec.State.ExitCode = se.ExitCode
		}
		if c.rec.State.Status == container.StateRestarting {
			c.rec.State.Status = container.StateExited
		}
		c.mu.Unlock()
		c.save()
		s.notifyWaiters(c, waitExit, false)
		return err
	}
	return nil
}

// launch prepares everything a run needs and starts the shim. What it
// made is undone on failure. Called with c.op held.
func (s *Service) launch(ctx context.Context, rt *runtime.Runtime, c *ctr) (retErr error) {
	c.mu.Lock()
	id := c.rec.ID
	cfg, hc := c.rec.Config, c.rec.HostConfig
	mounts := append([]runtime.Mount(nil), c.rec.Mounts...)
	imageID, cgroup := c.rec.Image, c.rec.Cgroup
	c.mu.Unlock()

	var undo []func()
	defer func() {
		if retErr != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	img, err := s.cfg.Images.Get(ctx, imageID)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return errdefs.NotFound("No such image: %s", cfg.Image)
		}
		return err
	}
	rootfs := filepath.Join(c.dir, rootfsDir)
	if !c.mounted {
		if err := mountRootfs(c.dir, img.LayerDirs); err != nil {
			return err
		}
		c.mounted = true
		undo = append(undo, func() { s.unmount(c) })
	}
	userMounts, err := s.prepareMounts(rootfs, mounts)
	if err != nil {
		return err
	}

	var att *bridge.Attachment
	if s.cfg.Network != nil {
		att, err = s.cfg.Network.Attach(ctx, bridge.AttachRequest{ContainerID: id, Mode: string(hc.NetworkMode), PortBindings: portBindings(cfg, hc)})
		if err != nil {
			return err
		}
		undo = append(undo, func() { s.cfg.Network.Detach(context.Background(), id) })
	} else {
		att = &bridge.Attachment{}
	}
	if err := runtime.WaitGone(c.bundle, 10*time.Second); err != nil {
		return err
	}
	os.RemoveAll(c.bundle) // the previous run's files
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		return errdefs.System("creating bundle: %v", err)
	}
	undo = append(undo, func() { os.RemoveAll(c.bundle) })
	// Generated afresh at every start, so they live with the bundle in the
	// exec root (a tmpfs on a systemd host), not in the data root.
	netFiles, err := writeNetFiles(c.bundle, cfg, hc, att.IPAddress, att.Gateway, userMounts)
	if err != nil {
		return err
	}
	user, err := runtime.ResolveUser(rootfs, cfg.User, hc.GroupAdd)
	if err != nil {
		return err
	}
	if cfg.WorkingDir != "" {
		if wd, err := runtime.SecureJoin(rootfs, cfg.WorkingDir); err == nil {
			if _, err := os.Stat(wd); errors.Is(err, os.ErrNotExist) {
				os.MkdirAll(wd, 0o755)
				os.Chown(wd, int(user.UID), int(user.GID))
			}
		}
	}
	spec, err := runtime.Spec(runtime.SpecInput{
		ID: id, Config: cfg, HostConfig: hc, Rootfs: rootfs, User: user,
		NetNSPath: att.NetNSPath, CgroupsPath: cgroup,
		Mounts:   append(netFiles, userMounts...),
		InitPath: rt.ShimPath(),
	})
	if err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return errdefs.System("encoding spec: %v", err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o600); err != nil {
		return errdefs.System("writing spec: %v", err)
	}

	spawned, err := rt.Spawn(runtime.StartRequest{ID: id, Bundle: c.bundle, LogPath: s.logPath(c),
		Cgroup: cgroup, TTY: cfg.Tty, Stdin: cfg.OpenStdin})
	if err != nil {
		return err
	}
	// Attachers that were waiting connect before the container runs, so
	// they see all its output; later ones attach to the shim directly.
	c.mu.Lock()
	pending := c.pending
	c.pending = nil
	c.starting = spawned
	c.mu.Unlock()
	for _, p := range pending {
		conn, err := spawned.Attach(p.flags)
		p.ready <- attachResult{conn: conn, err: err}
	}
	pid, err := spawned.Start()
	c.mu.Lock()
	c.starting = nil
	c.mu.Unlock()
	if err != nil {
		return err
	}

	w, werr := runtime.WatchShim(c.bundle)
	c.mu.Lock()
	st := &c.rec.State
	st.Status = container.StateRunning
	st.Pid = pid
	st.StartedAt = time.Now().UTC()
	st.ExitCode, st.Error, st.OOMKilled = 0, "", false
	c.rec.Net = &netState{Mode: string(hc.NetworkMode), NetNSPath: att.NetNSPath, IPAddress: att.IPAddress,
		Gateway: att.Gateway, PrefixLen: att.PrefixLen, MacAddress: att.MacAddress, Ports: att.Ports}
	c.exitCh = make(chan struct{})
	c.watch = w
	c.mu.Unlock()
	if err := c.save(); err != nil {
		s.log.Error("saving container state", "id", id, "err", err)
	}
	s.emit(c, "start", 0, nil)
	s.watches.Add(1)
	if werr != nil {
		// Gone already: its exit file tells how.
		go func() {
			defer s.watches.Done()
			spawned.Process().Wait()
			exit, err := runtime.ReadExit(c.bundle)
			if err != nil {
				exit = s.shimLost(c)
			}
			s.handleExit(c, exit)
		}()
		return nil
	}
	go s.watchExit(c, w, spawned.Process())
	return nil
}

func (s *Service) logPath(c *ctr) string {
	return filepath.Join(c.dir, c.rec.ID+"-json.log")
}

// portBindings is what to publish: -p bindings, plus every exposed port on
// a random host port with -P.
func portBindings(cfg *container.Config, hc *container.HostConfig) network.PortMap {
	if !hc.PublishAllPorts {
		return hc.PortBindings
	}
	out := network.PortMap{}
	for p, b := range hc.PortBindings {
		out[p] = b
	}
	for p := range cfg.ExposedPorts {
		if _, ok := out[p]; !ok {
			out[p] = []network.PortBinding{{}}
		}
	}
	return out
}

// watchExit waits for the shim to report the container's exit.
func (s *Service) watchExit(c *ctr, w *runtime.Watch, proc *os.Process) {
	defer s.watches.Done()
	exit, err := w.Wait()
	if proc != nil {
		go proc.Wait() // reap the shim, which exits right after answering
	}
	if s.closed.Load() {
		return // the daemon is going away; the next one picks the exit up
	}
	if err != nil {
		exit = s.shimLost(c)
	}
	s.handleExit(c, exit)
}

// shimLost handles a shim that died without recording an exit: a
// container left without supervision is killed, and the exit says so.
func (s *Service) shimLost(c *ctr) shim.Exit {
	exit := shim.Exit{Code: 255, Finished: time.Now()}
	if s.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if st, _ := s.rt.State(ctx, c.rec.ID); st == "running" || st == "paused" || st == "created" {
			s.rt.Kill(ctx, c.rec.ID, syscall.SIGKILL)
			exit = shim.Exit{Code: 137, Signal: int(syscall.SIGKILL), Finished: time.Now()}
		}
		s.rt.Delete(ctx, c.rec.ID)
	}
	c.mu.Lock()
	c.rec.State.Error = "container supervisor (shoal-shim) died"
	c.mu.Unlock()
	return exit
}

// handleExit records an exit, releases the run's resources, and applies
// the restart policy or auto-removal.
func (s *Service) handleExit(c *ctr, exit shim.Exit) {
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return
	}
	st := &c.rec.State
	ranFor := exit.Finished.Sub(st.StartedAt)
	st.Status = container.StateExited
	st.Pid = 0
	st.ExitCode = exit.Code
	st.OOMKilled = exit.OOM
	st.FinishedAt = exit.Finished.UTC()
	c.watch = nil
	exitCh := c.exitCh
	c.exitCh = nil
	restart, delay := decideRestart(c.rec.HostConfig.RestartPolicy, &c.restart, c.rec.RestartCount, exit.Code, c.rec.ManuallyStopped, ranFor)
	if restart {
		st.Status = container.StateRestarting
		c.rec.RestartCount++
	}
	autoRemove := c.rec.HostConfig.AutoRemove && !restart
	c.mu.Unlock()

	if err := c.save(); err != nil {
		s.log.Error("saving container state", "id", c.rec.ID, "err", err)
	}
	if exit.OOM {
		s.emit(c, "oom", 0, nil)
	}
	s.emit(c, "die", exit.Code, map[string]string{"exitCode": strconv.Itoa(exit.Code)})
	if exitCh != nil {
		close(exitCh)
	}
	s.notifyWaiters(c, waitExit, restart)
	// Unmounting (overlay syncs its upper dir) and detaching the network
	// come after the exit is reported; c.op keeps a new start out until
	// they are done.
	s.releaseRun(c)
	switch {
	case restart:
		c.mu.Lock()
		c.timer = s.afterFunc(delay, func() { s.restartAfterBackoff(c) })
		c.mu.Unlock()
	case autoRemove:
		go func() {
			// Let attach streams deliver the last output first.
			done := make(chan struct{})
			go func() { c.attaches.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
			if err := s.remove(c, true); err != nil && !errdefs.IsNotFound(err) {
				s.log.Warn("auto-removing container", "id", c.rec.ID, "err", err)
			}
		}()
	}
}

func (s *Service) restartAfterBackoff(c *ctr) {
	if s.closed.Load() {
		return
	}
	c.mu.Lock()
	c.timer = nil
	c.mu.Unlock()
	if err := s.startCtr(context.Background(), c, startByPolicy); err != nil {
		s.log.Warn("restart policy: starting container failed", "id", c.rec.ID, "err", err)
		return
	}
	c.mu.Lock()
	started := c.rec.running()
	c.mu.Unlock()
	if started {
		s.emit(c, "restart", 0, nil)
	}
}

// releaseRun undoes what launch set up for a run: rootfs mount, network.
func (s *Service) releaseRun(c *ctr) {
	s.unmount(c)
	if s.cfg.Network != nil {
		if err := s.cfg.Network.Detach(context.Background(), c.rec.ID); err != nil {
			s.log.Warn("detaching container network", "id", c.rec.ID, "err", err)
		}
	}
}

func (s *Service) unmount(c *ctr) {
	if err := unmountRootfs(c.dir); err != nil {
		s.log.Warn("unmounting container rootfs", "id", c.rec.ID, "err", err)
		return
	}
	c.mounted = false
}

// signal delivers sig to the container's init through its shim (runc kill
// when the shim is gone).
func (s *Service) signal(ctx context.Context, c *ctr, sig syscall.Signal) error {
	err := runtime.Signal(c.bundle, sig)
	if errors.Is(err, runtime.ErrNoShim) && s.rt != nil {
		return s.rt.Kill(ctx, c.rec.ID, sig)
	}
	return err
}

// Stop stops a container: its stop signal, then SIGKILL after timeout
// seconds (nil: the container's StopTimeout, or 10).
func (s *Service) Stop(ctx context.Context, ref string, timeout *int) error {
	return s.StopWith(ctx, ref, backend.StopOptions{Timeout: timeout})
}

// StopWith is Stop with a signal override.
func (s *Service) StopWith(ctx context.Context, ref string, opts backend.StopOptions) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	return s.stop(ctx, c, opts)
}

func (s *Service) stop(ctx context.Context, c *ctr, opts backend.StopOptions) error {
	c.mu.Lock()
	if c.rec.State.Status == container.StateRestarting {
		if c.timer != nil {
			c.timer.Stop()
			c.timer = nil
		}
		c.rec.State.Status = container.StateExited
		c.rec.ManuallyStopped = true
		c.mu.Unlock()
		c.save()
		s.notifyWaiters(c, waitExit, false)
		s.emit(c, "stop", 0, nil)
		return nil
	}
	if !c.rec.running() {
		c.mu.Unlock()
		return errdefs.NotModified("container %s is already stopped", c.rec.ID)
	}
	c.rec.ManuallyStopped = true
	paused := c.rec.State.Status == container.StatePaused
	exitCh := c.exitCh
	sigName := opts.Signal
	if sigName == "" {
		sigName = c.rec.Config.StopSignal
	}
	timeout := defaultStopTimeout
	if c.rec.Config.StopTimeout != nil {
		timeout = *c.rec.Config.StopTimeout
	}
	if opts.Timeout != nil {
		timeout = *opts.Timeout
	}
	c.mu.Unlock()
	c.save()

	sig := syscall.SIGTERM
	if sigName != "" {
		var err error
		if sig, err = runtime.ParseSignal(sigName); err != nil {
			return err
		}
	}
	s.signal(ctx, c, sig)
	if paused {
		s.resume(ctx, c) // a frozen process cannot act on the signal
	}
	var expire <-chan time.Time
	if timeout >= 0 {
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		expire = t.C
	}
	select {
	case <-exitCh:
	case <-ctx.Done():
		return ctx.Err()
	case <-expire:
		s.signal(ctx, c, syscall.SIGKILL)
		select {
		case <-exitCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.emit(c, "stop", 0, nil)
	return nil
}

// Kill sends a signal (default SIGKILL) to the container. SIGKILL and the
// stop signal count as a user stop: the restart policy does not apply.
func (s *Service) Kill(ctx context.Context, ref, signal string) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != "" {
		if sig, err = runtime.ParseSignal(signal); err != nil {
			return err
		}
	}
	c.mu.Lock()
	if !c.rec.running() {
		c.mu.Unlock()
		return errdefs.Conflict("Cannot kill container: %s: Container %s is not running", c.rec.Name, c.rec.ID)
	}
	stopSig := syscall.SIGTERM
	if c.rec.Config.StopSignal != "" {
		if ss, err := runtime.ParseSignal(c.rec.Config.StopSignal); err == nil {
			stopSig = ss
		}
	}
	if sig == syscall.SIGKILL || sig == stopSig {
		c.rec.ManuallyStopped = true
	}
	paused := c.rec.State.Status == container.StatePaused
	exitCh := c.exitCh
	c.mu.Unlock()
	c.save()
	if err := s.signal(ctx, c, sig); err != nil {
		return errdefs.Conflict("Cannot kill container: %s: %v", c.rec.Name, err)
	}
	s.emit(c, "kill", 0, map[string]string{"signal": strconv.Itoa(int(sig))})
	if paused && sig == syscall.SIGKILL {
		s.resume(ctx, c)
	}
	if sig == syscall.SIGKILL {
		select {
		case <-exitCh:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
	}
	return nil
}

// Restart stops (if running) and starts a container.
func (s *Service) Restart(ctx context.Context, ref string, opts backend.StopOptions) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	if err := s.stop(ctx, c, opts); err != nil && !errdefs.IsNotModified(err) {
		return err
	}
	if err := s.startCtr(ctx, c, startByUser); err != nil {
		return err
	}
	s.emit(c, "restart", 0, nil)
	return nil
}

// Remove deletes a container. A running one is refused unless force, which
// kills it first. removeVolumes also deletes its anonymous volumes.
func (s *Service) Remove(ctx context.Context, ref string, force, removeVolumes bool) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	status := c.rec.State.Status
	if (c.rec.running() || status == container.StateRestarting) && !force {
		c.mu.Unlock()
		what := "running"
		if status == container.StateRestarting {
			what = "restarting"
		}
		return errdefs.Conflict("cannot remove container \"/%s\": container is %s: stop the container before removing or force remove", c.rec.Name, what)
	}
	if status == container.StateRestarting && c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	running := c.rec.running()
	paused := status == container.StatePaused
	exitCh := c.exitCh
	if running {
		c.rec.ManuallyStopped = true
	}
	c.mu.Unlock()
	if running {
		s.signal(ctx, c, syscall.SIGKILL)
		if paused {
			s.resume(ctx, c)
		}
		select {
		case <-exitCh:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.remove(c, removeVolumes)
}

func (s *Service) remove(c *ctr, removeVolumes bool) error {
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	if c.removed {
		c.mu.Unlock()
		return errdefs.NotFound("No such container: %s", c.rec.ID)
	}
	if c.rec.running() {
		c.mu.Unlock()
		return errdefs.Conflict("cannot remove container \"/%s\": container is running: stop the container before removing or force remove", c.rec.Name)
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.rec.State.Status = container.StateRemoving
	pending := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, p := range pending {
		p.ready <- attachResult{err: errdefs.NotFound("No such container: %s", c.rec.ID)}
	}

	s.releaseRun(c)
	runtime.WaitGone(c.bundle, 10*time.Second)
	if s.rt != nil {
		s.rt.Delete(context.Background(), c.rec.ID)
	}
	os.RemoveAll(c.bundle)
	if err := os.RemoveAll(c.dir); err != nil {
		c.mu.Lock()
		c.rec.State.Status = container.StateDead
		c.rec.State.Error = err.Error()
		c.mu.Unlock()
		c.save()
		return errdefs.System("removing container files: %v", err)
	}
	if removeVolumes {
		for _, m := range c.rec.Mounts {
			if m.Anonymous && m.Source != "" {
				if err := s.vols.remove(m.Source); err != nil {
					s.log.Warn("removing anonymous volume", "volume", m.Source, "err", err)
				}
			}
		}
	}
	c.mu.Lock()
	c.removed = true
	execs := c.execs
	c.mu.Unlock()
	s.mu.Lock()
	delete(s.byID, c.rec.ID)
	if s.names[c.rec.Name] == c.rec.ID {
		delete(s.names, c.rec.Name)
	}
	for _, e := range execs {
		delete(s.execs, e)
	}
	s.mu.Unlock()
	s.emit(c, "destroy", 0, nil)
	s.notifyWaiters(c, waitRemoved, false)
	return nil
}

// Pause freezes a running container.
func (s *Service) Pause(ctx context.Context, ref string) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	rt, err := s.runtime()
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	st := c.rec.State.Status
	c.mu.Unlock()
	switch st {
	case container.StatePaused:
		return errdefs.Conflict("Container %s is already paused", c.rec.ID)
	case container.StateRunning:
	default:
		return errdefs.Conflict("Container %s is not running", c.rec.ID)
	}
	if err := rt.Pause(ctx, c.rec.ID); err != nil {
		return errdefs.System("pausing container: %v", err)
	}
	c.mu.Lock()
	if c.rec.State.Status == container.StateRunning {
		c.rec.State.Status = container.StatePaused
	}
	c.mu.Unlock()
	c.save()
	s.emit(c, "pause", 0, nil)
	return nil
}

// Unpause thaws a paused container.
func (s *Service) Unpause(ctx context.Context, ref string) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	st := c.rec.State.Status
	c.mu.Unlock()
	if st != container.StatePaused {
		return errdefs.Conflict("Container %s is not paused", c.rec.ID)
	}
	if err := s.resume(ctx, c); err != nil {
		return errdefs.System("unpausing container: %v", err)
	}
	s.emit(c, "unpause", 0, nil)
	return nil
}

func (s *Service) resume(ctx context.Context, c *ctr) error {
	if s.rt == nil {
		return s.rtEr
	}
	if err := s.rt.Resume(ctx, c.rec.ID); err != nil {
		return err
	}
	c.mu.Lock()
	if c.rec.State.Status == container.StatePaused {
		c.rec.State.Status = container.StateRunning
	}
	c.mu.Unlock()
	c.save()
	return nil
}

// Rename gives a container a new name.
func (s *Service) Rename(ctx context.Context, ref, newName string) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	if newName == "" {
		return errdefs.InvalidParameter("Neither old nor new names may be empty")
	}
	name, err := normalizeName(newName)
	if err != nil {
		return err
	}
	s.mu.Lock()
	c.mu.Lock()
	old := c.rec.Name
	if name == old {
		c.mu.Unlock()
		s.mu.Unlock()
		return errdefs.InvalidParameter("Renaming a container with the same name as its current name")
	}
	if other, ok := s.names[name]; ok {
		c.mu.Unlock()
		s.mu.Unlock()
		return errdefs.Conflict("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", name, other)
	}
	delete(s.names, old)
	s.names[name] = c.rec.ID
	c.rec.Name = name
	c.mu.Unlock()
	s.mu.Unlock()
	c.save()
	s.emit(c, "rename", 0, map[string]string{"oldName": "/" + old})
	return nil
}

// Resize sets the TTY size of a running container.
func (s *Service) Resize(ctx context.Context, ref string, h, w uint) error {
	c, err := s.lookup(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	running := c.rec.running()
	c.mu.Unlock()
	if !running {
		return errdefs.Conflict("Container %s is not running", c.rec.ID)
	}
	if err := runtime.Resize(c.bundle, h, w); err != nil {
		if errors.Is(err, runtime.ErrNoShim) {
			return errdefs.Conflict("Container %s is not running", c.rec.ID)
		}
		return err
	}
	return nil
}

// readSpec loads the bundle's runtime spec (for exec).
func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var sp specs.Spec
	return &sp, json.Unmarshal(b, &sp)
}
