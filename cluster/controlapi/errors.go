package controlapi

import (
	"errors"
	"fmt"

	hraft "github.com/hashicorp/raft"

	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/cluster/transport"
	"github.com/shoal/shoal/errdefs"
)

// Docker's texts for swarm calls a node cannot serve. The API layer only
// maps their kinds (all Unavailable: 503).
var (
	// ErrNoSwarm: a manager-only call on a node that is in no swarm.
	ErrNoSwarm = errdefs.Unavailable(`This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`)
	// ErrNotManager: a manager-only call on a worker.
	ErrNotManager = errdefs.Unavailable(`This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager.`)
	// ErrNotInSwarm: leave on a node that is in no swarm.
	ErrNotInSwarm = errdefs.Unavailable("This node is not part of a swarm")
	// ErrSwarmExists: init or join on a node that is already in one.
	ErrSwarmExists = errdefs.Unavailable(`This node is already part of a swarm. Use "docker swarm leave" to leave this swarm and join another one.`)
	// ErrNoLeader: a write without a Raft leader.
	ErrNoLeader = sraft.ErrNoLeader
	// ErrBadJoinSecret: the token's CA is right but its secret is not (or
	// was rotated).
	ErrBadJoinSecret = grpcInvalidArgument("A valid join token is necessary to join this cluster")
)

// errNotLeader is the sentinel of a forwarded call that reached a manager
// that is no longer the leader; the caller retries on the new one.
var errNotLeader = errors.New("not the leader")

func init() {
	transport.RegisterCode("sequence", store.ErrSequence)
	transport.RegisterCode("not_leader", errNotLeader)
	transport.RegisterCode("raft_not_leader", hraft.ErrNotLeader)
	transport.RegisterCode("raft_transfer", hraft.ErrLeadershipTransferInProgress)
}

// failedPrecondition words an error as docker shows swarmkit's gRPC
// FailedPrecondition errors (HTTP 400).
func failedPrecondition(format string, args ...any) error {
	return errdefs.InvalidParameter("rpc error: code = FailedPrecondition desc = %s", fmt.Sprintf(format, args...))
}

func grpcInvalidArgument(format string, args ...any) error {
	return errdefs.InvalidParameter("rpc error: code = InvalidArgument desc = %s", fmt.Sprintf(format, args...))
}
