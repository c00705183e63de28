package controlapi

import (
	"context"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/constraint"
)

// This file plugs services, tasks, secrets and configs into the Server:
// writes are registered as leader-side handlers and reach the leader
// through the Forwarder; reads are served from this manager's replica after
// SyncRead.

func init() { RegisterPart(registerServices) }

func (s *Server) services() *Services {
	return &Services{Store: s.store, ValidatePlacement: constraint.ValidatePlacement}
}

func (s *Server) payloads() *Payloads { return &Payloads{Store: s.store} }

type serviceCreateReq struct {
	Spec swarm.ServiceSpec
	Auth string
}

type serviceUpdateReq struct {
	Ref     string
	Version uint64
	Spec    swarm.ServiceSpec
	Opts    UpdateOptions
}

type refReq struct{ Ref string }

type secretCreateReq struct{ Spec swarm.SecretSpec }

type configCreateReq struct{ Spec swarm.ConfigSpec }

type secretUpdateReq struct {
	Ref     string
	Version uint64
	Spec    swarm.SecretSpec
}

type configUpdateReq struct {
	Ref     string
	Version uint64
	Spec    swarm.ConfigSpec
}

type none struct{}

func registerServices(s *Server) {
	Handle(s.fwd, "service.create", func(ctx context.Context, r serviceCreateReq) (swarm.ServiceCreateResponse, error) {
		return s.services().CreateService(ctx, r.Spec, r.Auth)
	})
	Handle(s.fwd, "service.update", func(ctx context.Context, r serviceUpdateReq) (swarm.ServiceUpdateResponse, error) {
		return s.services().UpdateService(ctx, r.Ref, r.Version, r.Spec, r.Opts)
	})
	Handle(s.fwd, "service.remove", func(ctx context.Context, r refReq) (none, error) {
		return none{}, s.services().RemoveService(ctx, r.Ref)
	})
	Handle(s.fwd, "secret.create", func(ctx context.Context, r secretCreateReq) (string, error) {
		return s.payloads().CreateSecret(ctx, r.Spec)
	})
	Handle(s.fwd, "secret.update", func(ctx context.Context, r secretUpdateReq) (none, error) {
		return none{}, s.payloads().UpdateSecret(ctx, r.Ref, r.Version, r.Spec)
	})
	Handle(s.fwd, "secret.remove", func(ctx context.Context, r refReq) (none, error) {
		return none{}, s.payloads().RemoveSecret(ctx, r.Ref)
	})
	Handle(s.fwd, "config.create", func(ctx context.Context, r configCreateReq) (string, error) {
		return s.payloads().CreateConfig(ctx, r.Spec)
	})
	Handle(s.fwd, "config.update", func(ctx context.Context, r configUpdateReq) (none, error) {
		return none{}, s.payloads().UpdateConfig(ctx, r.Ref, r.Version, r.Spec)
	})
	Handle(s.fwd, "config.remove", func(ctx context.Context, r refReq) (none, error) {
		return none{}, s.payloads().RemoveConfig(ctx, r.Ref)
	})
}

// CreateService creates a service (on the leader).
func (s *Server) CreateService(ctx context.Context, spec swarm.ServiceSpec, auth string) (swarm.ServiceCreateResponse, error) {
	return Call[swarm.ServiceCreateResponse](ctx, s.fwd, "service.create", serviceCreateReq{Spec: spec, Auth: auth})
}

// UpdateService updates or rolls back a service (on the leader).
func (s *Server) UpdateService(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, opts UpdateOptions) (swarm.ServiceUpdateResponse, error) {
	return Call[swarm.ServiceUpdateResponse](ctx, s.fwd, "service.update", serviceUpdateReq{Ref: ref, Version: version, Spec: spec, Opts: opts})
}

// RemoveService removes a service (on the leader).
func (s *Server) RemoveService(ctx context.Context, ref string) error {
	return s.fwd.Forward(ctx, "service.remove", refReq{Ref: ref}, nil)
}

// GetService reads a service.
func (s *Server) GetService(ctx context.Context, ref string, insertDefaults bool) (swarm.Service, error) {
	s.SyncRead(ctx)
	return s.services().GetService(ref, insertDefaults)
}

// ListServices lists services.
func (s *Server) ListServices(ctx context.Context, args filters.Args, status bool) ([]swarm.Service, error) {
	s.SyncRead(ctx)
	return s.services().ListServices(args, status)
}

// ServiceHistory lists a service's remembered specs.
func (s *Server) ServiceHistory(ctx context.Context, ref string) ([]HistoryEntry, error) {
	s.SyncRead(ctx)
	return s.services().ServiceHistory(ref)
}

// ListTasks lists tasks; selfNodeID resolves the "self" node filter.
func (s *Server) ListTasks(ctx context.Context, args filters.Args, selfNodeID string) ([]swarm.Task, error) {
	s.SyncRead(ctx)
	return s.services().ListTasks(args, selfNodeID)
}

// GetTask reads a task.
func (s *Server) GetTask(ctx context.Context, ref string) (swarm.Task, error) {
	s.SyncRead(ctx)
	return s.services().GetTask(ref)
}

// CreateSecret creates a secret (on the leader).
func (s *Server) CreateSecret(ctx context.Context, spec swarm.SecretSpec) (string, error) {
	return Call[string](ctx, s.fwd, "secret.create", secretCreateReq{Spec: spec})
}

// UpdateSecret changes a secret's labels (on the leader).
func (s *Server) UpdateSecret(ctx context.Context, ref string, version uint64, spec swarm.SecretSpec) error {
	return s.fwd.Forward(ctx, "secret.update", secretUpdateReq{Ref: ref, Version: version, Spec: spec}, nil)
}

// RemoveSecret removes a secret (on the leader).
func (s *Server) RemoveSecret(ctx context.Context, ref string) error {
	return s.fwd.Forward(ctx, "secret.remove", refReq{Ref: ref}, nil)
}

// GetSecret reads a secret (without its data).
func (s *Server) GetSecret(ctx context.Context, ref string) (swarm.Secret, error) {
	s.SyncRead(ctx)
	return s.payloads().GetSecret(ref)
}

// ListSecrets lists secrets (without their data).
func (s *Server) ListSecrets(ctx context.Context, args filters.Args) ([]swarm.Secret, error) {
	s.SyncRead(ctx)
	return s.payloads().ListSecrets(args)
}

// CreateConfig creates a config (on the leader).
func (s *Server) CreateConfig(ctx context.Context, spec swarm.ConfigSpec) (string, error) {
	return Call[string](ctx, s.fwd, "config.create", configCreateReq{Spec: spec})
}

// UpdateConfig changes a config's labels (on the leader).
func (s *Server) UpdateConfig(ctx context.Context, ref string, version uint64, spec swarm.ConfigSpec) error {
	return s.fwd.Forward(ctx, "config.update", configUpdateReq{Ref: ref, Version: version, Spec: spec}, nil)
}

// RemoveConfig removes a config (on the leader).
func (s *Server) RemoveConfig(ctx context.Context, ref string) error {
	return s.fwd.Forward(ctx, "config.remove", refReq{Ref: ref}, nil)
}

// GetConfig reads a config.
func (s *Server) GetConfig(ctx context.Context, ref string) (swarm.Config, error) {
	s.SyncRead(ctx)
	return s.payloads().GetConfig(ref)
}

// ListConfigs lists configs.
func (s *Server) ListConfigs(ctx context.Context, args filters.Args) ([]swarm.Config, error) {
	s.SyncRead(ctx)
	return s.payloads().ListConfigs(args)
}
