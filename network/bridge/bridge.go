// Package bridge gives plain containers their network: a node bridge, a veth
// and network namespace per container, egress NAT and published ports through
// nftables. (Stub: the owner of this package replaces it.)
package bridge

import (
	"context"
	"net/netip"

	"github.com/moby/moby/api/types/network"
)

// Config configures the node bridge.
type Config struct {
	BridgeName string // default "shoal0"
	CIDR       string // gateway address and prefix, default "172.18.0.1/16"
	NftTable   string // nftables table (family inet), default "shoal"
	StateDir   string // where IP allocations and netns files live
}

// AttachRequest asks for a container's network.
type AttachRequest struct {
	ContainerID  string
	Mode         string // "bridge" (default), "host", "none"
	PortBindings network.PortMap
}

// Attachment is what a container got.
type Attachment struct {
	NetNSPath  string // "" for host mode
	IPAddress  netip.Addr
	Gateway    netip.Addr
	PrefixLen  int
	MacAddress string
	Ports      network.PortMap // actual host ports
}

// Manager owns the bridge.
type Manager struct{ cfg Config }

// New sets up the bridge and tables (idempotent).
func New(cfg Config) (*Manager, error) { return &Manager{cfg: cfg}, nil }

// Attach creates the container's network namespace and plumbing.
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (*Attachment, error) {
	return &Attachment{}, nil
}

// Detach removes what Attach made for the container. Idempotent.
func (m *Manager) Detach(ctx context.Context, containerID string) error { return nil }
