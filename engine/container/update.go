package container

import (
	"context"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/engine/runtime"
	"github.com/shoal/shoal/errdefs"
)

// Update is POST /containers/{id}/update (`docker update`): the resource
// limits and restart policy given (fields left zero keep their value)
// replace the container's, on its cgroups at once if it runs. Nothing is
// recorded unless the running container accepted them.
func (s *Service) Update(ctx context.Context, ref string, u container.UpdateConfig) ([]string, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	c.mu.Lock()
	var hc container.HostConfig
	if c.rec.HostConfig != nil {
		hc = *c.rec.HostConfig
	}
	running := c.rec.running()
	id := c.rec.ID
	c.mu.Unlock()

	old := hc.Resources
	res := &hc.Resources
	n := u.Resources
	set := func(dst *int64, v int64) {
		if v != 0 {
			*dst = v
		}
	}
	set(&res.Memory, n.Memory)
	set(&res.MemorySwap, n.MemorySwap)
	set(&res.MemoryReservation, n.MemoryReservation)
	set(&res.NanoCPUs, n.NanoCPUs)
	set(&res.CPUShares, n.CPUShares)
	set(&res.CPUPeriod, n.CPUPeriod)
	set(&res.CPUQuota, n.CPUQuota)
	if n.CpusetCpus != "" {
		res.CpusetCpus = n.CpusetCpus
	}
	if n.CpusetMems != "" {
		res.CpusetMems = n.CpusetMems
	}
	if n.PidsLimit != nil {
		res.PidsLimit = n.PidsLimit
	}
	if n.BlkioWeight != 0 {
		res.BlkioWeight = n.BlkioWeight
	}
	if n.Memory != 0 && n.MemorySwap == 0 && old.MemorySwap > 0 && old.MemorySwap < n.Memory {
		return nil, errdefs.InvalidParameter("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
	}
	if u.RestartPolicy.Name != "" {
		if hc.AutoRemove && !u.RestartPolicy.IsNone() {
			return nil, errdefs.InvalidParameter("Restart policy cannot be updated because AutoRemove is enabled for the container")
		}
		hc.RestartPolicy = u.RestartPolicy
	}
	if err := runtime.ValidateHostConfig(&hc, s.ncpu); err != nil {
		return nil, err
	}
	if running && s.rt != nil {
		if err := s.rt.Update(ctx, id, hc.Resources); err != nil {
			return nil, errdefs.InvalidParameter("Cannot update container %s: %v", id, err)
		}
	}
	c.mu.Lock()
	c.rec.HostConfig = &hc
	c.mu.Unlock()
	if err := c.save(); err != nil {
		return nil, errdefs.System("saving container %s: %v", id, err)
	}
	s.emit(c, "update", 0, nil)
	return []string{}, nil
}
