package exec

import (
	"context"
	"io"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/registry"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
	enginectr "github.com/shoal/shoal/engine/container"
	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/errdefs"
)

// NewEngine adapts the node's container service to Engine.
func NewEngine(s *enginectr.Service) Engine { return containerService{s} }

// NewImages adapts the node's image store to ImagePuller.
func NewImages(s *image.Store) ImagePuller { return imageStore{s} }

type containerService struct{ s *enginectr.Service }

func (c containerService) Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (string, error) {
	id, _, err := c.s.Create(ctx, name, cfg, hc, nc)
	return id, err
}

func (c containerService) Start(ctx context.Context, id string) error { return c.s.Start(ctx, id) }

func (c containerService) Stop(ctx context.Context, id string, timeout *int) error {
	return c.s.Stop(ctx, id, timeout)
}

func (c containerService) Remove(ctx context.Context, id string) error {
	return c.s.Remove(ctx, id, true, true)
}

func (c containerService) Inspect(ctx context.Context, id string) (Container, error) {
	r, err := c.s.Inspect(ctx, id)
	if err != nil {
		return Container{}, err
	}
	out := Container{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/")}
	if r.Config != nil {
		out.Labels = r.Config.Labels
	}
	if st := r.State; st != nil {
		out.Status, out.Running, out.Pid, out.ExitCode, out.Error = st.Status, st.Running, st.Pid, st.ExitCode, st.Error
	}
	if ns := r.NetworkSettings; ns != nil {
		out.Ports = ns.Ports
		for _, ep := range ns.Networks {
			if ep != nil && ep.IPAddress.IsValid() {
				out.IP = ep.IPAddress
				break
			}
		}
	}
	return out, nil
}

func (c containerService) List(ctx context.Context, labelKey string) ([]Container, error) {
	list, err := c.s.List(ctx, backend.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", labelKey))})
	if err != nil {
		return nil, err
	}
	out := make([]Container, 0, len(list))
	for _, s := range list {
		ct := Container{ID: s.ID, Labels: s.Labels, Status: s.State, Running: s.State == container.StateRunning}
		if len(s.Names) > 0 {
			ct.Name = strings.TrimPrefix(s.Names[0], "/")
		}
		out = append(out, ct)
	}
	return out, nil
}

func (c containerService) Events(ctx context.Context) (<-chan Event, error) {
	in, cancel := c.s.Subscribe()
	out := make(chan Event, 64)
	go func() {
		defer close(out)
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- Event{ID: ev.ID, Action: ev.Action, ExitCode: ev.ExitCode}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// NewLogSource reads task logs from the node's container service.
func NewLogSource(s *enginectr.Service) LogSource { return containerLogs{s} }

type containerLogs struct{ s *enginectr.Service }

func (c containerLogs) TaskLogs(ctx context.Context, taskID string, opts wire.LogOptions, fn func(LogLine) error) error {
	id, err := c.taskContainer(ctx, taskID)
	if err != nil {
		return err
	}
	bo := backend.LogsOptions{ShowStdout: opts.Stdout, ShowStderr: opts.Stderr, Since: opts.Since, Follow: opts.Follow, Tail: opts.Tail}
	return c.s.LogEntries(ctx, id, bo, func(m backend.LogMessage) error {
		return fn(LogLine{Time: m.Time, Stderr: m.Stream == "stderr", Data: m.Line})
	})
}

// taskContainer finds a task's container by the label the executor puts
// on it (as the executor itself finds its containers after a restart):
// the running one if there are two.
func (c containerLogs) taskContainer(ctx context.Context, taskID string) (string, error) {
	list, err := c.s.List(ctx, backend.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", LabelTaskID+"="+taskID))})
	if err != nil {
		return "", err
	}
	id := ""
	for _, s := range list {
		if s.Labels[LabelTaskID] != taskID {
			continue
		}
		if id == "" || s.State == container.StateRunning {
			id = s.ID
		}
	}
	if id == "" {
		return "", errdefs.NotFound("task %s has no container on this node", taskID)
	}
	return id, nil
}

type imageStore struct{ s *image.Store }

func (i imageStore) Has(ctx context.Context, ref string) (bool, error) {
	_, err := i.s.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func (i imageStore) Pull(ctx context.Context, ref string, auth *registry.AuthConfig, progress io.Writer) error {
	_, err := i.s.Pull(ctx, ref, auth, progress)
	return err
}
