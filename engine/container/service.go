// Package container runs the node's containers: create, start, stop, kill,
// remove, logs, attach, exec, restart policies, and recovery of running
// containers after a daemon restart.
//
// Each running container has a shoal-shim process (engine/runtime) that
// outlives shoald; the service keeps one goroutine per running container
// watching its shim, and a small record per container on disk.
package container

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/network/bridge"
)

// ImageProvider resolves images (engine/image.Store).
type ImageProvider interface {
	Get(ctx context.Context, ref string) (*image.Image, error)
}

// NetworkProvider gives containers their network (network/bridge.Manager).
type NetworkProvider interface {
	Attach(ctx context.Context, req bridge.AttachRequest) (*bridge.Attachment, error)
	Detach(ctx context.Context, containerID string) error
}

// Config wires the container service to the rest of the node.
type Config struct {
	Root         string // container records, logs, rootfs: e.g. /var/lib/shoal/containers
	VolumesRoot  string // local volumes; default: Root/../volumes
	ExecRoot     string // bundles, shim sockets, runc state: e.g. /run/shoal
	CgroupParent string // default "shoal"
	Images       ImageProvider
	Network      NetworkProvider
	ShimPath     string // default: next to the executable, then PATH
	RuncPath     string // default: runc on PATH
	Log          *slog.Logger
}

// Service manages the node's containers.
type Service struct {
	cfg  Config
	log  *slog.Logger
	rt   *runtime.Runtime
	rtEr error
	vols *volumes
	ncpu int

	mu    sync.RWMutex
	byID  map[string]*ctr
	names map[string]string // name (no "/") → ID
	execs map[string]*execInst

	events  eventBus
	closed  atomic.Bool
	watches sync.WaitGroup

	afterFunc func(time.Duration, func()) interface{ Stop() bool }
}

// NewService loads existing containers and reconnects to running ones.
func NewService(cfg Config) (*Service, error) {
	if cfg.Root == "" || cfg.ExecRoot == "" {
		return nil, errors.New("container service: Root and ExecRoot are required")
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "shoal"
	}
	if cfg.VolumesRoot == "" {
		cfg.VolumesRoot = filepath.Join(filepath.Dir(filepath.Clean(cfg.Root)), "volumes")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	for _, d := range []string{cfg.Root, filepath.Join(cfg.ExecRoot, "containers"), cfg.VolumesRoot} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	s := &Service{
		cfg:   cfg,
		log:   cfg.Log,
		vols:  &volumes{root: cfg.VolumesRoot},
		ncpu:  goruntime.NumCPU(),
		byID:  map[string]*ctr{},
		names: map[string]string{},
		execs: map[string]*execInst{},
		afterFunc: func(d time.Duration, f func()) interface{ Stop() bool } {
			return time.AfterFunc(d, f)
		},
	}
	s.rt, s.rtEr = runtime.New(runtime.Config{ShimPath: cfg.ShimPath, RuncPath: cfg.RuncPath, Root: filepath.Join(cfg.ExecRoot, "runc")})
	if s.rtEr != nil {
		s.log.Error("container runtime unavailable: containers cannot start", "err", s.rtEr)
	}
	entries, err := os.ReadDir(cfg.Root)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(cfg.Root, e.Name())
		rec, err := loadRecord(dir)
		if err != nil || rec.ID != e.Name() {
			s.log.Warn("skipping unreadable container record", "dir", dir, "err", err)
			continue
		}
		c := s.newCtr(rec)
		s.byID[rec.ID] = c
		s.names[rec.Name] = rec.ID
	}
	var boot []*ctr
	for _, c := range s.byID {
		if s.recover(c) {
			boot = append(boot, c)
		}
	}
	if len(boot) > 0 {
		go s.bootStart(boot)
	}
	return s, nil
}

func (s *Service) newCtr(rec record) *ctr {
	return &ctr{
		rec:    rec,
		dir:    filepath.Join(s.cfg.Root, rec.ID),
		bundle: filepath.Join(s.cfg.ExecRoot, "containers", rec.ID),
	}
}

// recover brings a loaded container's state up to date with reality and
// reports whether its restart policy wants it started with the daemon.
func (s *Service) recover(c *ctr) bool {
	c.mounted = isMounted(filepath.Join(c.dir, "rootfs"))
	switch c.rec.State.Status {
	case container.StateRunning, container.StatePaused:
		// An exit file means the run is over (its shim may still be
		// finishing runc's cleanup).
		if exit, err := runtime.ReadExit(c.bundle); err == nil {
			c.exitCh = make(chan struct{})
			s.handleExit(c, exit)
			return false
		}
		if w, err := runtime.WatchShim(c.bundle); err == nil {
			c.watch = w
			c.exitCh = make(chan struct{})
			if w.Pid > 0 {
				c.rec.State.Pid = w.Pid
			}
			s.watches.Add(1)
			go s.watchExit(c, w, nil)
			return false
		}
		// No exit file and no shim: it died without recording the exit
		// (host crash, or killed).
		exit := s.shimLost(c)
		c.exitCh = make(chan struct{})
		s.handleExit(c, exit)
		return false
	case container.StateRestarting:
		c.rec.State.Status = container.StateExited
		c.save()
		return !c.rec.ManuallyStopped
	case container.StateCreated, container.StateExited, container.StateDead:
		if c.rec.State.StartedAt.IsZero() {
			return false // never started: nothing to bring back
		}
		return restartOnBoot(c.rec.HostConfig.RestartPolicy, c.rec.ManuallyStopped)
	}
	return false
}

func (s *Service) bootStart(cs []*ctr) {
	for _, c := range cs {
		if s.closed.Load() {
			return
		}
		if err := s.startCtr(context.Background(), c, startAtBoot); err != nil {
			s.log.Warn("restarting container at daemon start failed", "id", c.rec.ID, "err", err)
		}
	}
}

// Close stops watching containers; running containers keep running under
// their shims, and a new Service on the same directories picks them up.
func (s *Service) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.mu.RLock()
	cs := make([]*ctr, 0, len(s.byID))
	for _, c := range s.byID {
		cs = append(cs, c)
	}
	s.mu.RUnlock()
	for _, c := range cs {
		c.mu.Lock()
		if c.timer != nil {
			c.timer.Stop()
		}
		if c.watch != nil {
			c.watch.Close()
		}
		c.mu.Unlock()
	}
	done := make(chan struct{})
	go func() { s.watches.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	s.events.close()
	return nil
}

// ImageInUse reports whether any container uses imageID, and which.
func (s *Service) ImageInUse(imageID string) (string, bool) {
	ref, _, used := s.ImageUsage(imageID)
	return ref, used
}

// ImageUsage reports a container using imageID, preferring a running one,
// so image removal can tell docker's "must be forced" (stopped) from
// "cannot be forced" (running).
func (s *Service) ImageUsage(imageID string) (ref string, running, used bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.byID {
		c.mu.Lock()
		img, id, st := c.rec.Image, c.rec.ID, c.rec.State.Status
		c.mu.Unlock()
		if img != imageID {
			continue
		}
		isRunning := st == container.StateRunning || st == container.StateRestarting || st == container.StatePaused
		if !used || isRunning {
			ref, running, used = id[:12], isRunning, true
		}
		if running {
			break
		}
	}
	return ref, running, used
}

// Counts returns how many containers exist, run, are paused and stopped (for /info).
func (s *Service) Counts() (total, running, paused, stopped int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, c := range s.byID {
		c.mu.Lock()
		st := c.rec.State.Status
		c.mu.Unlock()
		total++
		switch st {
		case container.StateRunning, container.StateRestarting:
			running++
		case container.StatePaused:
			paused++
		default:
			stopped++
		}
	}
	return
}

// Subscribe returns a stream of container events; cancel ends it.
func (s *Service) Subscribe() (<-chan backend.Event, func()) {
	return s.events.subscribe()
}

// SubscribeSince is Subscribe that also returns the recent events (the
// last 256) at or after since, seamlessly before the live ones.
func (s *Service) SubscribeSince(since time.Time) ([]backend.Event, <-chan backend.Event, func()) {
	return s.events.subscribeSince(since, true)
}

// lookup resolves a full ID, a name (with or without "/"), or a unique ID prefix.
func (s *Service) lookup(ref string) (*ctr, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if ref == "" {
		return nil, errdefs.NotFound("No such container: %s", ref)
	}
	if c, ok := s.byID[ref]; ok {
		return c, nil
	}
	if id, ok := s.names[strings.TrimPrefix(ref, "/")]; ok {
		return s.byID[id], nil
	}
	var found *ctr
	for id, c := range s.byID {
		if strings.HasPrefix(id, ref) {
			if found != nil {
				return nil, errdefs.InvalidParameter("multiple IDs found with provided prefix: %s", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, errdefs.NotFound("No such container: %s", ref)
	}
	return found, nil
}

func (s *Service) runtime() (*runtime.Runtime, error) {
	if s.rt == nil {
		return nil, errdefs.Unavailable("container runtime unavailable: %v", s.rtEr)
	}
	return s.rt, nil
}

// emit publishes a container event with its labels as attributes.
func (s *Service) emit(c *ctr, action string, exitCode int, extra map[string]string) {
	c.mu.Lock()
	ev := backend.Event{ID: c.rec.ID, Name: c.rec.Name, Image: c.rec.Config.Image, Action: action, ExitCode: exitCode,
		Time: time.Now(), Attributes: map[string]string{"name": c.rec.Name, "image": c.rec.Config.Image}}
	for k, v := range c.rec.Config.Labels {
		ev.Attributes[k] = v
	}
	c.mu.Unlock()
	for k, v := range extra {
		ev.Attributes[k] = v
	}
	s.events.publish(ev)
}

// all returns the containers sorted newest first.
func (s *Service) all() []*ctr {
	s.mu.RLock()
	cs := make([]*ctr, 0, len(s.byID))
	for _, c := range s.byID {
		cs = append(cs, c)
	}
	s.mu.RUnlock()
	sort.Slice(cs, func(i, j int) bool { return cs[i].rec.Created.After(cs[j].rec.Created) })
	return cs
}

// isMounted reports whether path is a mount point.
func isMounted(path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

func unescapeMountPath(p string) string {
	if !strings.Contains(p, `\`) {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+3 < len(p) {
			v := (int(p[i+1]-'0') << 6) | (int(p[i+2]-'0') << 3) | int(p[i+3]-'0')
			b.WriteByte(byte(v))
			i += 3
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}
