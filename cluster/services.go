package cluster

import (
	"context"
	"net/http"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/errdefs"
)

// Services, tasks, secrets and configs through the manager's control API
// (api.ServiceBackend and api.SecretBackend). Workers and nodes outside a
// swarm get docker's errors from Control.

// logStreamer is what a manager's dispatcher offers for service logs (see
// package pipeline).
type logStreamer interface {
	Logs(ctx context.Context, client *http.Client, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error)
}

func (c *Cluster) CreateService(ctx context.Context, spec swarm.ServiceSpec, encodedAuth string) (swarm.ServiceCreateResponse, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	return ctl.CreateService(ctx, spec, encodedAuth)
}

func (c *Cluster) UpdateService(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, opts api.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	return ctl.UpdateService(ctx, ref, version, spec, controlapi.UpdateOptions{
		Rollback: opts.Rollback, RollbackTo: opts.RollbackTo, EncodedAuth: opts.EncodedAuth,
	})
}

func (c *Cluster) RemoveService(ctx context.Context, ref string) error {
	ctl, err := c.Control()
	if err != nil {
		return err
	}
	return ctl.RemoveService(ctx, ref)
}

func (c *Cluster) GetService(ctx context.Context, ref string, insertDefaults bool) (swarm.Service, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.Service{}, err
	}
	return ctl.GetService(ctx, ref, insertDefaults)
}

func (c *Cluster) ListServices(ctx context.Context, args filters.Args, status bool) ([]swarm.Service, error) {
	ctl, err := c.Control()
	if err != nil {
		return nil, err
	}
	return ctl.ListServices(ctx, args, status)
}

func (c *Cluster) ServiceHistory(ctx context.Context, ref string) ([]api.ServiceHistoryEntry, error) {
	ctl, err := c.Control()
	if err != nil {
		return nil, err
	}
	h, err := ctl.ServiceHistory(ctx, ref)
	if err != nil {
		return nil, err
	}
	out := make([]api.ServiceHistoryEntry, len(h))
	for i, e := range h {
		out[i] = api.ServiceHistoryEntry{Version: e.Version, CreatedAt: e.CreatedAt, Current: e.Current, Spec: e.Spec}
	}
	return out, nil
}

func (c *Cluster) ListTasks(ctx context.Context, args filters.Args) ([]swarm.Task, error) {
	ctl, err := c.Control()
	if err != nil {
		return nil, err
	}
	return ctl.ListTasks(ctx, args, c.NodeID())
}

func (c *Cluster) GetTask(ctx context.Context, ref string) (swarm.Task, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.Task{}, err
	}
	return ctl.GetTask(ctx, ref)
}

// Logs streams a service's (or a task's) logs from every node, through the
// leader's log broker.
func (c *Cluster) Logs(ctx context.Context, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error) {
	if _, err := c.Control(); err != nil {
		return nil, err
	}
	n := c.node()
	if n == nil {
		return nil, controlapi.ErrNoSwarm
	}
	m := n.manager()
	if m == nil {
		return nil, controlapi.ErrNotManager
	}
	ls, ok := m.Dispatcher().(logStreamer)
	if !ok {
		return nil, errdefs.NotImplemented("service logs need the dispatcher, which this daemon was built without")
	}
	// Fail fast on an unknown service or task, with docker's 404 (the
	// docker CLI then retries the name as a task).
	if taskRef == "" {
		if _, err := c.GetService(ctx, serviceRef, false); err != nil {
			return nil, err
		}
	} else if _, err := c.GetTask(ctx, taskRef); err != nil {
		return nil, err
	}
	return ls.Logs(ctx, m.Client(), serviceRef, taskRef, opts)
}

func (c *Cluster) CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	ctl, err := c.Control()
	if err != nil {
		return "", err
	}
	return ctl.CreateSecret(ctx, spec)
}

func (c *Cluster) GetSecret(ctx context.Context, ref string) (swarm.Secret, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.Secret{}, err
	}
	return ctl.GetSecret(ctx, ref)
}

func (c *Cluster) ListSecrets(ctx context.Context, args filters.Args) ([]swarm.Secret, error) {
	ctl, err := c.Control()
	if err != nil {
		return nil, err
	}
	return ctl.ListSecrets(ctx, args)
}

func (c *Cluster) UpdateSecret(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error {
	ctl, err := c.Control()
	if err != nil {
		return err
	}
	return ctl.UpdateSecret(ctx, ref, version, spec)
}

func (c *Cluster) RemoveSecret(ctx context.Context, ref string) error {
	ctl, err := c.Control()
	if err != nil {
		return err
	}
	return ctl.RemoveSecret(ctx, ref)
}

func (c *Cluster) CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	ctl, err := c.Control()
	if err != nil {
		return "", err
	}
	return ctl.CreateConfig(ctx, spec)
}

func (c *Cluster) GetConfig(ctx context.Context, ref string) (swarm.Config, error) {
	ctl, err := c.Control()
	if err != nil {
		return swarm.Config{}, err
	}
	return ctl.GetConfig(ctx, ref)
}

func (c *Cluster) ListConfigs(ctx context.Context, args filters.Args) ([]swarm.Config, error) {
	ctl, err := c.Control()
	if err != nil {
		return nil, err
	}
	return ctl.ListConfigs(ctx, args)
}

func (c *Cluster) UpdateConfig(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error {
	ctl, err := c.Control()
	if err != nil {
		return err
	}
	return ctl.UpdateConfig(ctx, ref, version, spec)
}

func (c *Cluster) RemoveConfig(ctx context.Context, ref string) error {
	ctl, err := c.Control()
	if err != nil {
		return err
	}
	return ctl.RemoveConfig(ctx, ref)
}

var (
	_ api.ServiceBackend = (*Cluster)(nil)
	_ api.SecretBackend  = (*Cluster)(nil)
)
