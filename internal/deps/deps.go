package deps

import (
	_ "github.com/containerd/go-runc"
	_ "github.com/docker/docker/api/types/filters"
	_ "github.com/google/go-containerregistry/pkg/registry"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/google/nftables"
	_ "github.com/hashicorp/raft"
	_ "github.com/hashicorp/raft-boltdb/v2"
	_ "github.com/miekg/dns"
	_ "github.com/moby/moby/api/pkg/stdcopy"
	_ "github.com/moby/moby/api/types/container"
	_ "github.com/moby/moby/api/types/swarm"
	_ "github.com/moby/moby/client"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/spf13/cobra"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
)
