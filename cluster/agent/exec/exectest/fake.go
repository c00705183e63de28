// Package exectest has in-memory fakes of the executor's engine and image
// store, for unit tests of the executor and the agent. The real adapters
// over engine/container and engine/image have their own end-to-end test.
package exectest

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"sync"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/registry"

	"github.com/shoal/shoal/cluster/agent/exec"
	"github.com/shoal/shoal/errdefs"
)

// Ctr is a fake container.
type Ctr struct {
	ID         string
	Name       string
	Config     *container.Config
	HostConfig *container.HostConfig
	Status     container.ContainerState
	Running    bool
	Pid        int
	ExitCode   int
	Starts     int
	Stops      []int // timeouts of Stop calls (-1: the container's own)
	// IP and Ports are what a started container got from the "bridge":
	// an address, and its port bindings with ephemeral host ports filled
	// in (from 32768 on).
	IP    netip.Addr
	Ports network.PortMap
}

// Engine is a fake container engine. Containers never exit on their own:
// tests call Exit.
type Engine struct {
	mu        sync.Mutex
	ctrs      map[string]*Ctr
	seq       int
	subs      map[chan exec.Event]struct{}
	Creates   int
	ips       int // addresses handed out
	hostPorts int // ephemeral host ports handed out
	// StartErr, if set, is returned by Start.
	StartErr error
	// StopExit is the exit code a stopped container gets (default 143).
	StopExit int
}

// NewEngine returns an empty engine.
func NewEngine() *Engine {
	return &Engine{ctrs: map[string]*Ctr{}, subs: map[chan exec.Event]struct{}{}, StopExit: 143}
}

func (e *Engine) emitLocked(ev exec.Event) {
	for ch := range e.subs {
		select {
		case ch <- ev:
		default: // a slow test subscriber loses events, as with a real engine
		}
	}
}

// Create implements exec.Engine.
func (e *Engine) Create(_ context.Context, name string, cfg *container.Config, hc *container.HostConfig, _ *network.NetworkingConfig) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.ctrs {
		if c.Name == name {
			return "", errdefs.Conflict("Conflict. The container name %q is already in use by container %q", "/"+name, c.ID)
		}
	}
	e.seq++
	e.Creates++
	id := fmt.Sprintf("ctr%04d", e.seq)
	e.ctrs[id] = &Ctr{ID: id, Name: name, Config: cfg, HostConfig: hc, Status: container.StateCreated}
	e.emitLocked(exec.Event{ID: id, Action: "create"})
	return id, nil
}

// Start implements exec.Engine.
func (e *Engine) Start(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.ctrs[id]
	if c == nil {
		return errdefs.NotFound("No such container: %s", id)
	}
	if e.StartErr != nil {
		c.Status = container.StateExited
		c.ExitCode = 128
		return e.StartErr
	}
	c.Running, c.Status, c.Pid = true, container.StateRunning, 1000+e.seq
	c.Starts++
	if !c.IP.IsValid() {
		e.ips++
		c.IP = netip.AddrFrom4([4]byte{172, 18, byte(e.ips >> 8), byte(e.ips)})
		c.Ports = network.PortMap{}
		var pm network.PortMap
		if c.HostConfig != nil {
			pm = c.HostConfig.PortBindings
		}
		for p, bs := range pm {
			for _, b := range bs {
				if b.HostPort == "" || b.HostPort == "0" {
					b.HostPort = strconv.Itoa(32768 + e.hostPorts)
					e.hostPorts++
				}
				c.Ports[p] = append(c.Ports[p], b)
			}
		}
	}
	e.emitLocked(exec.Event{ID: id, Action: "start"})
	return nil
}

// Stop implements exec.Engine.
func (e *Engine) Stop(_ context.Context, id string, timeout *int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.ctrs[id]
	if c == nil {
		return errdefs.NotFound("No such container: %s", id)
	}
	t := -1 // the container's own
	if timeout != nil {
		t = *timeout
	}
	c.Stops = append(c.Stops, t)
	if c.Running {
		c.Running, c.Status, c.Pid, c.ExitCode = false, container.StateExited, 0, e.StopExit
		e.emitLocked(exec.Event{ID: id, Action: "die", ExitCode: e.StopExit})
	}
	return nil
}

// Remove implements exec.Engine.
func (e *Engine) Remove(_ context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ctrs[id] == nil {
		return errdefs.NotFound("No such container: %s", id)
	}
	delete(e.ctrs, id)
	e.emitLocked(exec.Event{ID: id, Action: "destroy"})
	return nil
}

func (c *Ctr) view() exec.Container {
	v := exec.Container{ID: c.ID, Name: c.Name, Labels: c.Config.Labels, Status: c.Status,
		Running: c.Running, Pid: c.Pid, ExitCode: c.ExitCode}
	if c.Running {
		v.IP, v.Ports = c.IP, c.Ports
	}
	return v
}

// Inspect implements exec.Engine.
func (e *Engine) Inspect(_ context.Context, id string) (exec.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.ctrs[id]
	if c == nil {
		return exec.Container{}, errdefs.NotFound("No such container: %s", id)
	}
	return c.view(), nil
}

// List implements exec.Engine.
func (e *Engine) List(_ context.Context, labelKey string) ([]exec.Container, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []exec.Container
	for _, c := range e.ctrs {
		if _, ok := c.Config.Labels[labelKey]; ok {
			out = append(out, c.view())
		}
	}
	return out, nil
}

// Events implements exec.Engine.
func (e *Engine) Events(ctx context.Context) (<-chan exec.Event, error) {
	ch := make(chan exec.Event, 256)
	e.mu.Lock()
	e.subs[ch] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.subs, ch)
		close(ch)
		e.mu.Unlock()
	}()
	return ch, nil
}

// Exit makes a running container exit with code.
func (e *Engine) Exit(id string, code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.ctrs[id]
	if c == nil || !c.Running {
		return
	}
	c.Running, c.Status, c.Pid, c.ExitCode = false, container.StateExited, 0, code
	e.emitLocked(exec.Event{ID: id, Action: "die", ExitCode: code})
}

// Put adds a container as if it existed before (adoption tests).
func (e *Engine) Put(c Ctr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cp := c
	if cp.Config == nil {
		cp.Config = &container.Config{}
	}
	e.ctrs[c.ID] = &cp
}

// Containers returns copies of all containers, sorted by name.
func (e *Engine) Containers() []Ctr {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Ctr, 0, len(e.ctrs))
	for _, c := range e.ctrs {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ByTask returns the container of a task.
func (e *Engine) ByTask(taskID string) (Ctr, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, c := range e.ctrs {
		if c.Config.Labels[exec.LabelTaskID] == taskID {
			return *c, true
		}
	}
	return Ctr{}, false
}

// Images is a fake image store: images are present, pullable, or neither.
type Images struct {
	mu       sync.Mutex
	present  map[string]bool
	pullable map[string]bool
	Pulls    []string
	// Block, if set, makes Pull wait for it to close (or ctx to end).
	Block chan struct{}
}

// NewImages returns a store with the given images present.
func NewImages(present ...string) *Images {
	im := &Images{present: map[string]bool{}, pullable: map[string]bool{}}
	for _, p := range present {
		im.present[p] = true
	}
	return im
}

// Pullable makes refs available from their "registry".
func (im *Images) Pullable(refs ...string) {
	im.mu.Lock()
	defer im.mu.Unlock()
	for _, r := range refs {
		im.pullable[r] = true
	}
}

// Has implements exec.ImagePuller.
func (im *Images) Has(_ context.Context, ref string) (bool, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.present[ref], nil
}

// Pull implements exec.ImagePuller.
func (im *Images) Pull(ctx context.Context, ref string, _ *registry.AuthConfig, _ io.Writer) error {
	im.mu.Lock()
	im.Pulls = append(im.Pulls, ref)
	block := im.Block
	im.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	im.mu.Lock()
	defer im.mu.Unlock()
	if !im.pullable[ref] {
		return errdefs.NotFound("pull access denied for %s, repository does not exist or may require 'docker login'", ref)
	}
	im.present[ref] = true
	return nil
}

// PullCount returns how many pulls were attempted.
func (im *Images) PullCount() int {
	im.mu.Lock()
	defer im.mu.Unlock()
	return len(im.Pulls)
}
