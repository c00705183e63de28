package cluster

import (
	"context"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/controlapi"
	"github.com/shoal/shoal/errdefs"
)

// The swarm and node routes (api.SwarmBackend). Each needs this node to be
// a manager; workers and nodes outside a swarm get docker's errors.

// Inspect is GET /swarm.
func (c *Cluster) Inspect(ctx context.Context) (swarm.Swarm, error) {
	s, err := c.Control()
	if err != nil {
		return swarm.Swarm{}, err
	}
	return s.InspectSwarm(ctx)
}

// Update is POST /swarm/update.
func (c *Cluster) Update(ctx context.Context, version uint64, spec swarm.Spec, rotateWorkerToken, rotateManagerToken, rotateManagerUnlockKey bool) error {
	s, err := c.Control()
	if err != nil {
		return err
	}
	return s.UpdateSwarm(ctx, version, spec, controlapi.UpdateFlags{
		RotateWorkerToken: rotateWorkerToken, RotateManagerToken: rotateManagerToken, RotateManagerUnlockKey: rotateManagerUnlockKey,
	})
}

// UnlockKey is GET /swarm/unlockkey. Autolock is not supported, so there
// is never a key.
func (c *Cluster) UnlockKey(ctx context.Context) (string, error) {
	if _, err := c.Control(); err != nil {
		return "", err
	}
	return "", errdefs.NotFound("no unlock key is set")
}

// Unlock is POST /swarm/unlock.
func (c *Cluster) Unlock(ctx context.Context, key string) error {
	if c.node() == nil {
		return controlapi.ErrNotInSwarm
	}
	return errdefs.InvalidParameter("swarm is not locked")
}

// Nodes is GET /nodes.
func (c *Cluster) Nodes(ctx context.Context, args filters.Args) ([]swarm.Node, error) {
	s, err := c.Control()
	if err != nil {
		return nil, err
	}
	return s.ListNodes(ctx, args)
}

// Node is GET /nodes/{id}.
func (c *Cluster) Node(ctx context.Context, ref string) (swarm.Node, error) {
	s, err := c.Control()
	if err != nil {
		return swarm.Node{}, err
	}
	return s.GetNode(ctx, ref)
}

// UpdateNode is POST /nodes/{id}/update.
func (c *Cluster) UpdateNode(ctx context.Context, ref string, version uint64, spec swarm.NodeSpec) error {
	s, err := c.Control()
	if err != nil {
		return err
	}
	return s.UpdateNode(ctx, ref, version, spec)
}

// RemoveNode is DELETE /nodes/{id}.
func (c *Cluster) RemoveNode(ctx context.Context, ref string, force bool) error {
	s, err := c.Control()
	if err != nil {
		return err
	}
	return s.RemoveNode(ctx, ref, force)
}
