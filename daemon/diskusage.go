package daemon

import (
	"context"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/volume"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/engine/container/backend"
)

// DiskUsage is GET /system/df (`docker system df`): layers counted once,
// images with how many containers use them, containers with their
// writable layer, volumes with their size and users. No build cache.
func (d *Daemon) DiskUsage(ctx context.Context) (*api.DiskUsage, error) {
	ctrs, err := d.containers.List(ctx, backend.ListOptions{All: true, Size: true, Filters: filters.NewArgs()})
	if err != nil {
		return nil, err
	}
	imgs, err := d.images.List(ctx, filters.NewArgs())
	if err != nil {
		return nil, err
	}
	shared := d.images.SharedSizes()
	users := map[string]int64{}
	for _, c := range ctrs {
		users[c.ImageID]++
	}
	out := &api.DiskUsage{LayersSize: d.images.LayersSize(), Images: []*image.Summary{}, Containers: []*container.Summary{}, Volumes: []*volume.Volume{}}
	for i := range imgs {
		im := imgs[i]
		im.Containers = users[im.ID]
		im.SharedSize = shared[im.ID]
		out.Images = append(out.Images, &im)
	}
	for i := range ctrs {
		out.Containers = append(out.Containers, &ctrs[i])
	}
	vols, err := d.containers.VolumeUsage(ctx)
	if err != nil {
		return nil, err
	}
	for i := range vols {
		out.Volumes = append(out.Volumes, &vols[i])
	}
	return out, nil
}
