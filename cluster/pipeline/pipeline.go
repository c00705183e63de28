// Package pipeline assembles swarm mode's moving parts around the cluster
// core: the leader-only stages (allocator → scheduler, with the replicated
// and global orchestrators and the task reaper feeding them), the
// dispatcher with its log broker, and each node's agent over the local
// engine. The daemon passes these builders to cluster.New; the core
// (membership, Raft, CA) knows nothing of them.
package pipeline

import (
	"context"
	"log/slog"
	"net/http"
	"path/filepath"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster"
	"github.com/shoal/shoal/cluster/agent"
	"github.com/shoal/shoal/cluster/allocator"
	"github.com/shoal/shoal/cluster/ca"
	"github.com/shoal/shoal/cluster/dispatcher"
	"github.com/shoal/shoal/cluster/logbroker"
	"github.com/shoal/shoal/cluster/manager"
	"github.com/shoal/shoal/cluster/orchestrator/global"
	"github.com/shoal/shoal/cluster/orchestrator/replicated"
	"github.com/shoal/shoal/cluster/orchestrator/taskreaper"
	"github.com/shoal/shoal/cluster/scheduler"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/engine/container"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/network/ingress"
)

// Components returns the leader-only stages, built afresh each time this
// manager becomes leader.
func Components(log *slog.Logger) func(*store.Store) []manager.Component {
	return func(s *store.Store) []manager.Component {
		return []manager.Component{
			replicated.New(s, replicated.Config{Logger: log.With("component", "orchestrator/replicated")}),
			global.New(s, global.Config{Logger: log.With("component", "orchestrator/global")}),
			allocator.New(s, allocator.Config{Logger: log.With("component", "allocator")}),
			scheduler.New(s, scheduler.Config{Logger: log.With("component", "scheduler")}),
			// The dispatcher orphans tasks of long-gone nodes; the reaper
			// only trims history.
			taskreaper.New(s, taskreaper.Config{Logger: log.With("component", "taskreaper"), OrphanTimeout: -1}),
		}
	}
}

// Dispatch is a manager's dispatcher together with the log broker that
// rides on its sessions.
type Dispatch struct {
	*dispatcher.Dispatcher
	broker *logbroker.Broker
	leader func() (bool, string)
}

// Dispatcher builds the dispatcher (and log broker) of a manager.
func Dispatcher() func(manager.Env) manager.Dispatcher {
	return func(env manager.Env) manager.Dispatcher {
		d := dispatcher.New(env.Store, dispatcher.Config{
			Log:      env.Log,
			Leader:   env.Leader,
			Managers: env.Managers,
			Identity: func(r *http.Request) (string, string, error) {
				id, err := ca.PeerIdentity(r)
				return id.NodeID, string(id.Role), err
			},
			RegistryAuth: func(s *store.Service) string { return s.RegistryAuth },
		})
		b := logbroker.New(logbroker.Config{Store: env.Store, Dispatcher: d, Log: env.Log})
		return &Dispatch{Dispatcher: d, broker: b, leader: env.Leader}
	}
}

// ManagerHandlers are mounted (managers only) on the cluster port: the
// leader serves log requests other managers forward to it.
func (d *Dispatch) ManagerHandlers() map[string]http.Handler {
	return map[string]http.Handler{
		"POST " + logbroker.PathForward: logbroker.ForwardHandler(func() *logbroker.Broker {
			if ok, _ := d.leader(); ok {
				return d.broker
			}
			return nil
		}),
	}
}

// Logs streams service or task logs: from this manager's broker when it
// leads, else through the leader.
func (d *Dispatch) Logs(ctx context.Context, client *http.Client, serviceRef, taskRef string, opts api.LogsOptions) (<-chan api.LogMessage, error) {
	if ok, addr := d.leader(); !ok {
		if addr == "" {
			return nil, logbroker.ErrNotLeader
		}
		return logbroker.Forward(ctx, client, addr, serviceRef, taskRef, opts)
	}
	return d.broker.Logs(ctx, serviceRef, taskRef, opts)
}

// Agent builds the node's agent, running tasks on the local engine. Secret
// and config files go under execRoot (a tmpfs on real hosts). mesh is the
// node's share of the ingress routing mesh (nil: the node forwards none of
// it); it outlives agents, which come and go with swarm membership.
func Agent(containers *container.Service, images *image.Store, execRoot string, mesh *ingress.Mesh) func(cluster.AgentConfig) (manager.Component, error) {
	return func(c cluster.AgentConfig) (manager.Component, error) {
		var in agent.Ingress
		if mesh != nil {
			in = mesh
		}
		return agent.New(agent.Config{
			NodeID:      c.NodeID,
			Client:      c.Client,
			Managers:    c.Managers,
			Description: c.Description,
			Addr:        c.Addr,
			Engine:      agent.NewEngine(containers),
			Images:      agent.NewImages(images),
			Logs:        agent.NewLogSource(containers),
			PayloadDir:  filepath.Join(execRoot, "swarm", "payloads"),
			Ingress:     in,
			Log:         c.Log,
		}), nil
	}
}
