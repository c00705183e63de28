package controlapi

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/identity"
	"github.com/shoal/shoal/cluster/orchestrator"
	"github.com/shoal/shoal/cluster/store"
	"github.com/shoal/shoal/errdefs"
)

// Services is the control API for services and tasks: validation, defaults
// and the store writes behind /services and /tasks. Writes must run where
// the store's proposer is the Raft leader; reads work on any manager.
type Services struct {
	Store *store.Store
	// ValidatePlacement checks constraints and preferences (the scheduler's
	// parser). Nil accepts everything.
	ValidatePlacement ConstraintValidator
	// HistoryLimit is how many earlier specs a service keeps for
	// `shoal service rollback --to` (default 10).
	HistoryLimit int
	Now          func() time.Time
}

// Ingress published ports picked for the user come from this range, as docker's.
const (
	dynamicPortStart = 30000
	dynamicPortEnd   = 32767
)

func (c *Services) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Services) historyLimit() int {
	if c.HistoryLimit > 0 {
		return c.HistoryLimit
	}
	return 10
}

// resolveService finds a service by ID, exact name, then unique ID prefix.
func resolveService(rt store.ReadTx, ref string) (*store.Service, error) {
	if ref == "" {
		return nil, errdefs.InvalidParameter("service name or ID must not be empty")
	}
	if s := rt.GetService(ref); s != nil {
		return s, nil
	}
	if ss := rt.FindServices(store.ByName(ref)); len(ss) == 1 {
		return ss[0], nil
	}
	ss := rt.FindServices(store.ByIDPrefix(ref))
	switch len(ss) {
	case 0:
		return nil, errdefs.NotFound("service %s not found", ref)
	case 1:
		return ss[0], nil
	}
	return nil, errdefs.InvalidParameter("service %s is ambiguous (%d matches found)", ref, len(ss))
}

// allocatePorts resolves the service's published ports: ingress ports must
// be unique across services, and an ingress port without a published
// number gets one from the dynamic range.
func allocatePorts(rt store.ReadTx, self string, spec *swarm.EndpointSpec) ([]swarm.PortConfig, error) {
	if spec == nil || len(spec.Ports) == 0 {
		return nil, nil
	}
	used := map[string]*store.Service{}
	for _, s := range rt.FindServices(store.All()) {
		if s.ID == self {
			continue
		}
		for _, p := range s.Endpoint.Ports {
			if p.PublishMode == swarm.PortConfigPublishModeIngress && p.PublishedPort != 0 {
				used[string(protocolOf(p))+"/"+itoa(p.PublishedPort)] = s
			}
		}
	}
	out := make([]swarm.PortConfig, 0, len(spec.Ports))
	for _, p := range spec.Ports {
		p.Protocol = protocolOf(p)
		if p.PublishMode == "" {
			p.PublishMode = swarm.PortConfigPublishModeIngress
		}
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			key := string(p.Protocol) + "/" + itoa(p.PublishedPort)
			if p.PublishedPort != 0 {
				if owner := used[key]; owner != nil {
					return nil, errdefs.InvalidParameter("port '%d' is already in use by service '%s' (%s) as an ingress port", p.PublishedPort, owner.Spec.Name, owner.ID)
				}
			} else {
				for port := uint32(dynamicPortStart); port <= dynamicPortEnd; port++ {
					if used[string(p.Protocol)+"/"+itoa(port)] == nil {
						p.PublishedPort = port
						break
					}
				}
				if p.PublishedPort == 0 {
					return nil, errdefs.Unavailable("no free ingress port left in %d-%d", dynamicPortStart, dynamicPortEnd)
				}
			}
			used[string(p.Protocol)+"/"+itoa(p.PublishedPort)] = &store.Service{}
		}
		out = append(out, p)
	}
	return out, nil
}

func endpointOf(spec *swarm.EndpointSpec, ports []swarm.PortConfig) swarm.Endpoint {
	e := swarm.Endpoint{Ports: ports}
	if spec != nil {
		cp := *spec
		e.Spec = cp
	}
	if e.Spec.Mode == "" {
		e.Spec.Mode = swarm.ResolutionModeVIP
	}
	return e
}

// CreateService validates spec and stores a new service.
func (c *Services) CreateService(ctx context.Context, spec swarm.ServiceSpec, encodedAuth string) (swarm.ServiceCreateResponse, error) {
	NormalizeServiceSpec(&spec)
	if err := ValidateServiceSpec(&spec, c.ValidatePlacement); err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	svc := &store.Service{}
	svc.ID = identity.NewID()
	svc.Spec = spec
	svc.RegistryAuth = encodedAuth
	err := c.Store.Update(ctx, func(tx store.Tx) error {
		if len(tx.FindServices(store.ByName(spec.Name))) > 0 {
			return errdefs.Conflict("rpc error: code = AlreadyExists desc = name conflicts with an existing object: service %s already exists", spec.Name)
		}
		if err := checkReferences(tx, spec.TaskTemplate.ContainerSpec); err != nil {
			return err
		}
		ports, err := allocatePorts(tx, svc.ID, spec.EndpointSpec)
		if err != nil {
			return err
		}
		svc.Endpoint = endpointOf(spec.EndpointSpec, ports)
		svc.SpecVersion = 0
		return tx.Create(svc)
	})
	if err != nil {
		return swarm.ServiceCreateResponse{}, err
	}
	return swarm.ServiceCreateResponse{ID: svc.ID}, nil
}

// UpdateOptions are the query parameters of POST /services/{id}/update.
type UpdateOptions struct {
	// Rollback is "previous" for docker's rollback (swap in PreviousSpec).
	Rollback string
	// RollbackTo, when non-zero, rolls back to that remembered spec version
	// (Shoal extension, see ServiceHistory).
	RollbackTo uint64
	// EncodedAuth, when set, replaces the registry credentials agents pull
	// with (docker sends it with --with-registry-auth).
	EncodedAuth string
}

// UpdateService replaces a service's spec (version must match the stored
// one), or rolls it back.
func (c *Services) UpdateService(ctx context.Context, ref string, version uint64, spec swarm.ServiceSpec, opts UpdateOptions) (swarm.ServiceUpdateResponse, error) {
	rolling := opts.Rollback == "previous" || opts.RollbackTo != 0
	if opts.Rollback != "" && opts.Rollback != "previous" {
		return swarm.ServiceUpdateResponse{}, errdefs.InvalidParameter("unrecognized rollback option %q", opts.Rollback)
	}
	if !rolling {
		NormalizeServiceSpec(&spec)
		if err := ValidateServiceSpec(&spec, c.ValidatePlacement); err != nil {
			return swarm.ServiceUpdateResponse{}, err
		}
	}
	err := c.Store.Update(ctx, func(tx store.Tx) error {
		cur, err := resolveService(tx, ref)
		if err != nil {
			return err
		}
		if cur.Meta.Version.Index != version {
			return errdefs.Conflict("update out of sequence: service %s is at version %d, the request was for version %d", cur.Spec.Name, cur.Meta.Version.Index, version)
		}
		next := cur.Copy()
		now := c.now()
		newSpec := spec
		switch {
		case opts.RollbackTo != 0:
			var found *store.SpecVersion
			for i := range cur.History {
				if cur.History[i].Version == opts.RollbackTo {
					found = &cur.History[i]
				}
			}
			if found == nil {
				return errdefs.NotFound("service %s has no remembered spec version %d (see `shoal service history %s`)", cur.Spec.Name, opts.RollbackTo, cur.Spec.Name)
			}
			newSpec = found.Spec
			next.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateRollbackStarted, StartedAt: &now,
				Message: fmt.Sprintf("manually requested rollback to version %d", opts.RollbackTo)}
		case opts.Rollback == "previous":
			if cur.PreviousSpec == nil {
				return errdefs.InvalidParameter("service %s does not have a previous spec", cur.ID)
			}
			newSpec = *cur.PreviousSpec
			next.UpdateStatus = &swarm.UpdateStatus{State: swarm.UpdateStateRollbackStarted, StartedAt: &now,
				Message: "manually requested rollback"}
		default:
			// A new spec supersedes any update in progress; the updater
			// reports on the new one.
			next.UpdateStatus = nil
		}
		if (newSpec.Mode.Global != nil) != (cur.Spec.Mode.Global != nil) {
			return errdefs.InvalidParameter("service mode change is not allowed")
		}
		if newSpec.Name != cur.Spec.Name {
			return errdefs.InvalidParameter("renaming services is not supported")
		}
		if err := checkReferences(tx, newSpec.TaskTemplate.ContainerSpec); err != nil {
			return err
		}
		ports, err := allocatePorts(tx, cur.ID, newSpec.EndpointSpec)
		if err != nil {
			return err
		}
		prev := cur.Spec
		next.PreviousSpec = &prev
		next.Spec = newSpec
		next.Endpoint = endpointOf(newSpec.EndpointSpec, ports)
		next.History = appendHistory(cur.History, store.SpecVersion{Version: cur.SpecVersion, CreatedAt: cur.UpdatedAt, Spec: prev}, c.historyLimit())
		next.SpecVersion = 0 // the spec changed: the store stamps the new version
		if opts.EncodedAuth != "" {
			next.RegistryAuth = opts.EncodedAuth
		}
		return tx.Update(next)
	})
	return swarm.ServiceUpdateResponse{}, err
}

func appendHistory(h []store.SpecVersion, v store.SpecVersion, limit int) []store.SpecVersion {
	out := make([]store.SpecVersion, 0, len(h)+1)
	for _, old := range h {
		if old.Version != v.Version {
			out = append(out, old)
		}
	}
	out = append(out, v)
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// RemoveService deletes a service; the orchestrators then remove its tasks.
func (c *Services) RemoveService(ctx context.Context, ref string) error {
	return c.Store.Update(ctx, func(tx store.Tx) error {
		s, err := resolveService(tx, ref)
		if err != nil {
			return err
		}
		return tx.Delete(store.KindService, s.ID)
	})
}

// GetService returns a service for the API; with insertDefaults the spec
// shows every default docker would.
func (c *Services) GetService(ref string, insertDefaults bool) (swarm.Service, error) {
	var (
		s   *store.Service
		err error
	)
	c.Store.View(func(rt store.ReadTx) { s, err = resolveService(rt, ref) })
	if err != nil {
		return swarm.Service{}, err
	}
	out := wireService(s)
	if insertDefaults {
		out.Spec = WithDefaults(out.Spec)
		if out.PreviousSpec != nil {
			p := WithDefaults(*out.PreviousSpec)
			out.PreviousSpec = &p
		}
	}
	return out, nil
}

func wireService(s *store.Service) swarm.Service {
	out := s.Service
	if out.Spec.TaskTemplate.ContainerSpec == nil {
		out.Spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{}
	}
	return out
}

// HistoryEntry is one remembered spec (GET /services/{id}/history).
type HistoryEntry struct {
	Version   uint64
	CreatedAt time.Time
	Current   bool `json:",omitempty"`
	Spec      swarm.ServiceSpec
}

// ServiceHistory lists a service's remembered specs, oldest first, ending
// with the current one.
func (c *Services) ServiceHistory(ref string) ([]HistoryEntry, error) {
	var (
		s   *store.Service
		err error
	)
	c.Store.View(func(rt store.ReadTx) { s, err = resolveService(rt, ref) })
	if err != nil {
		return nil, err
	}
	out := make([]HistoryEntry, 0, len(s.History)+1)
	for _, h := range s.History {
		out = append(out, HistoryEntry{Version: h.Version, CreatedAt: h.CreatedAt, Spec: h.Spec})
	}
	return append(out, HistoryEntry{Version: s.SpecVersion, CreatedAt: s.UpdatedAt, Current: true, Spec: s.Spec}), nil
}

var serviceFilters = []string{"id", "name", "label", "mode"}

// ListServices lists services matching args; with status it adds
// ServiceStatus (what `docker service ls` reads).
func (c *Services) ListServices(args filters.Args, status bool) ([]swarm.Service, error) {
	for _, k := range args.Keys() {
		if !contains(serviceFilters, k) {
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	if args.Contains("mode") {
		for _, m := range args.Get("mode") {
			if m != "replicated" && m != "global" {
				return nil, errdefs.InvalidParameter("invalid filter 'mode=%s'", m)
			}
		}
	}
	var out []swarm.Service
	c.Store.View(func(rt store.ReadTx) {
		var down map[string]bool
		if status {
			down = map[string]bool{}
			for _, n := range rt.FindNodes(store.All()) {
				if n.Status.State == swarm.NodeStateDown {
					down[n.ID] = true
				}
			}
		}
		for _, s := range rt.FindServices(store.All()) {
			if !matchService(s, args) {
				continue
			}
			w := wireService(s)
			if status {
				w.ServiceStatus = serviceStatus(rt, s, down)
			}
			out = append(out, w)
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Spec.Name < out[j].Spec.Name })
	return out, nil
}

func matchService(s *store.Service, args filters.Args) bool {
	if args.Contains("id") && !args.FuzzyMatch("id", s.ID) {
		return false
	}
	if args.Contains("name") && !args.FuzzyMatch("name", s.Spec.Name) {
		return false
	}
	if args.Contains("label") && !args.MatchKVList("label", s.Spec.Labels) {
		return false
	}
	if args.Contains("mode") {
		mode := "replicated"
		if s.IsGlobal() {
			mode = "global"
		}
		if !args.ExactMatch("mode", mode) {
			return false
		}
	}
	return true
}

func serviceStatus(rt store.ReadTx, s *store.Service, down map[string]bool) *swarm.ServiceStatus {
	st := &swarm.ServiceStatus{}
	for _, t := range rt.FindTasks(store.ByServiceID(s.ID)) {
		if t.DesiredState != swarm.TaskStateRunning {
			continue
		}
		if s.IsGlobal() {
			st.DesiredTasks++
		}
		if t.Status.State == swarm.TaskStateRunning && !down[t.NodeID] {
			st.RunningTasks++
		}
	}
	if n, ok := s.Replicas(); ok {
		st.DesiredTasks = n
	}
	return st
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var taskFilters = []string{"id", "name", "service", "node", "label", "desired-state", "_up-to-date"}

// ListTasks lists tasks matching docker's task filters. The label filter
// matches the service's labels (what `docker stack ps` relies on).
func (c *Services) ListTasks(args filters.Args, selfNodeID string) ([]swarm.Task, error) {
	for _, k := range args.Keys() {
		if !contains(taskFilters, k) {
			return nil, errdefs.InvalidParameter("invalid filter '%s'", k)
		}
	}
	for _, v := range args.Get("desired-state") {
		switch v {
		case "running", "shutdown", "accepted":
		default:
			return nil, errdefs.InvalidParameter("Invalid task desired state filter value: %s", v)
		}
	}
	var (
		out []swarm.Task
		err error
	)
	c.Store.View(func(rt store.ReadTx) {
		var candidates []*store.Task
		services := map[string]*store.Service{}
		if vals := args.Get("service"); len(vals) > 0 {
			for _, ref := range vals {
				s, rerr := resolveService(rt, ref)
				if errdefs.IsNotFound(rerr) {
					continue
				}
				if rerr != nil {
					err = rerr
					return
				}
				services[s.ID] = s
				candidates = append(candidates, rt.FindTasks(store.ByServiceID(s.ID))...)
			}
		} else {
			candidates = rt.FindTasks(store.All())
		}
		nodeIDs := map[string]bool{}
		for _, ref := range args.Get("node") {
			if ref == "self" {
				ref = selfNodeID
			}
			for _, n := range rt.FindNodes(store.All()) {
				if n.ID == ref || n.Description.Hostname == ref || n.Spec.Name == ref || strings.HasPrefix(n.ID, ref) {
					nodeIDs[n.ID] = true
				}
			}
		}
		for _, t := range candidates {
			s := services[t.ServiceID]
			if s == nil {
				s = rt.GetService(t.ServiceID)
				if s != nil {
					services[s.ID] = s
				}
			}
			var node *store.Node
			if t.NodeID != "" && args.Contains("_up-to-date") {
				node = rt.GetNode(t.NodeID)
			}
			if !matchTask(t, s, node, args, nodeIDs) {
				continue
			}
			out = append(out, wireTask(t, s))
		}
	})
	if err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ServiceID != out[j].ServiceID {
			return out[i].ServiceID < out[j].ServiceID
		}
		if out[i].Slot != out[j].Slot {
			return out[i].Slot < out[j].Slot
		}
		return out[i].CreatedAt.After(out[j].CreatedAt)
	})
	return out, nil
}

// TaskName is docker's display name: service.slot or service.nodeID.
func TaskName(t *store.Task, serviceName string) string {
	if t.Slot != 0 {
		return serviceName + "." + strconv.Itoa(t.Slot)
	}
	return serviceName + "." + t.NodeID
}

func matchTask(t *store.Task, s *store.Service, node *store.Node, args filters.Args, nodeIDs map[string]bool) bool {
	if args.Contains("id") && !args.FuzzyMatch("id", t.ID) {
		return false
	}
	if args.Contains("name") {
		name := t.ID
		if s != nil {
			name = TaskName(t, s.Spec.Name)
		}
		if !args.FuzzyMatch("name", name) {
			return false
		}
	}
	if args.Contains("node") && !nodeIDs[t.NodeID] {
		return false
	}
	if args.Contains("label") {
		var labels map[string]string
		if s != nil {
			labels = s.Spec.Labels
		}
		if !args.MatchKVList("label", labels) {
			return false
		}
	}
	if args.Contains("desired-state") {
		ok := false
		for _, v := range args.Get("desired-state") {
			switch v {
			case "running":
				ok = ok || t.DesiredState == swarm.TaskStateRunning
			case "shutdown":
				ok = ok || t.DesiredState == swarm.TaskStateShutdown || t.DesiredState == swarm.TaskStateRemove
			case "accepted":
				ok = ok || t.DesiredState == swarm.TaskStateAccepted
			}
		}
		if !ok {
			return false
		}
	}
	if args.Contains("_up-to-date") {
		// Not "same spec version": a change that replaces no task (an
		// UpdateConfig-only change) leaves tasks up to date, or docker's
		// progress display would wait forever.
		if s == nil || orchestrator.IsTaskDirty(s, t, node) {
			return false
		}
	}
	return true
}

func wireTask(t *store.Task, s *store.Service) swarm.Task {
	out := t.Task
	if out.Spec.ContainerSpec == nil {
		out.Spec.ContainerSpec = &swarm.ContainerSpec{}
	}
	return out
}

// GetTask returns one task by ID or unique ID prefix.
func (c *Services) GetTask(ref string) (swarm.Task, error) {
	var (
		out swarm.Task
		err error
	)
	c.Store.View(func(rt store.ReadTx) {
		t := rt.GetTask(ref)
		if t == nil {
			ts := rt.FindTasks(store.ByIDPrefix(ref))
			switch len(ts) {
			case 0:
				err = errdefs.NotFound("task %s not found", ref)
				return
			case 1:
				t = ts[0]
			default:
				err = errdefs.InvalidParameter("task %s is ambiguous (%d matches found)", ref, len(ts))
				return
			}
		}
		out = wireTask(t, rt.GetService(t.ServiceID))
	})
	return out, err
}
