// Package exec runs a node's assigned tasks as containers: it drives each
// task through ACCEPTED → PREPARING → READY → STARTING → RUNNING →
// COMPLETE|FAILED (or SHUTDOWN when told to stop, REJECTED when it cannot
// be prepared), reports every change, and adopts the task containers it
// finds after a restart.
package exec

import (
	"context"
	"io"
	"net/netip"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/registry"
)

// Engine is what the executor needs from the node's container engine.
// Errors are typed (errdefs): NotFound for a missing container, Conflict
// for a name in use, Unavailable for "try again later".
type Engine interface {
	Create(ctx context.Context, name string, cfg *container.Config, hc *container.HostConfig, nc *network.NetworkingConfig) (id string, err error)
	Start(ctx context.Context, id string) error
	// Stop sends the container's stop signal, then SIGKILL after timeout
	// seconds (nil: the container's own stop timeout).
	Stop(ctx context.Context, id string, timeout *int) error
	// Remove force-removes the container and its anonymous volumes.
	Remove(ctx context.Context, id string) error
	Inspect(ctx context.Context, id string) (Container, error)
	// List returns every container (running or not) carrying label key.
	List(ctx context.Context, labelKey string) ([]Container, error)
	// Events delivers container events until ctx ends or the engine
	// closes the channel.
	Events(ctx context.Context) (<-chan Event, error)
}

// Container is the executor's view of a container.
type Container struct {
	ID     string
	Name   string
	Labels map[string]string
	// Status is docker's: "created", "running", "exited", ...
	Status   container.ContainerState
	Running  bool
	Pid      int
	ExitCode int
	// Error is the engine's reason a container failed to run, if any.
	Error string
	// IP is the container's address on the node bridge, Ports the host
	// ports it publishes (Inspect only, while running).
	IP    netip.Addr
	Ports network.PortMap
}

// Event is a container event.
type Event struct {
	ID       string
	Action   string // "start", "die", "destroy", ...
	ExitCode int
}

// ImagePuller is what the executor needs from the node's image store.
type ImagePuller interface {
	// Has reports whether ref is present locally.
	Has(ctx context.Context, ref string) (bool, error)
	// Pull fetches ref from the registry named in it. A missing image is a
	// NotFound error.
	Pull(ctx context.Context, ref string, auth *registry.AuthConfig, progress io.Writer) error
}
