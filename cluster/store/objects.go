package store

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// Kind names a table of the store.
type Kind string

const (
	KindCluster Kind = "cluster"
	KindNode    Kind = "node"
	KindService Kind = "service"
	KindTask    Kind = "task"
	KindNetwork Kind = "network"
	KindSecret  Kind = "secret"
	KindConfig  Kind = "config"
)

// Kinds lists every table, in the order snapshots write them.
var Kinds = []Kind{KindCluster, KindNode, KindNetwork, KindSecret, KindConfig, KindService, KindTask}

// Object is anything the store holds. Objects in the store are immutable:
// read one, Copy it, change the copy, write the copy. Nested maps and slices
// are shared between copies, so replace them rather than mutate in place.
type Object interface {
	Kind() Kind
	GetID() string
	GetMeta() swarm.Meta
	SetMeta(swarm.Meta)
	CopyObject() Object
}

// Node is a cluster member. The wire type is embedded; Shoal keeps a little
// more beside it.
type Node struct {
	swarm.Node
	// Role the node's certificate was last issued for; the dispatcher hands
	// out a new certificate when Spec.Role differs.
	CertRole swarm.NodeRole `json:",omitempty"`
	// CertSerial of the node's current certificate (hex); a removed node's
	// serial is refused by the servers.
	CertSerial string `json:",omitempty"`
}

func (n *Node) Kind() Kind                           { return KindNode }
func (n *Node) GetID() string                        { return n.ID }
func (n *Node) GetMeta() swarm.Meta                  { return n.Meta }
func (n *Node) SetMeta(m swarm.Meta)                 { n.Meta = m }
func (n *Node) CopyObject() Object                   { return n.Copy() }
func (n *Node) Copy() *Node                          { c := *n; return &c }
func (n *Node) Hostname() string                     { return n.Description.Hostname }
func (n *Node) IsManager() bool                      { return n.Spec.Role == swarm.NodeRoleManager }
func (n *Node) IsReady() bool                        { return n.Status.State == swarm.NodeStateReady }
func (n *Node) Availability() swarm.NodeAvailability { return n.Spec.Availability }

// SpecVersion is one remembered service spec, for multi-step rollback.
type SpecVersion struct {
	Version   uint64 // the service's SpecVersion when this spec was current
	CreatedAt time.Time
	Spec      swarm.ServiceSpec
}

// Service is a declared service.
type Service struct {
	swarm.Service
	// SpecVersion is the store index at which Spec last changed (status-only
	// updates leave it alone). Tasks record it to tell up-to-date ones.
	SpecVersion uint64
	// History holds earlier specs, newest last (Shoal extension: rollback to
	// any of them, not only PreviousSpec).
	History []SpecVersion `json:",omitempty"`
	// RegistryAuth is the encoded X-Registry-Auth the service was created
	// or last updated with (`--with-registry-auth`); agents pull with it.
	// Never shown through the API.
	RegistryAuth string `json:",omitempty"`
}

func (s *Service) Kind() Kind           { return KindService }
func (s *Service) GetID() string        { return s.ID }
func (s *Service) GetMeta() swarm.Meta  { return s.Meta }
func (s *Service) SetMeta(m swarm.Meta) { s.Meta = m }
func (s *Service) CopyObject() Object   { return s.Copy() }
func (s *Service) Copy() *Service       { c := *s; return &c }

// Replicas returns the replica count of a replicated service, and false for
// other modes.
func (s *Service) Replicas() (uint64, bool) {
	if s.Spec.Mode.Replicated == nil {
		return 0, false
	}
	if s.Spec.Mode.Replicated.Replicas == nil {
		return 1, true
	}
	return *s.Spec.Mode.Replicated.Replicas, true
}

// IsGlobal reports global mode.
func (s *Service) IsGlobal() bool { return s.Spec.Mode.Global != nil }

// Task is one scheduled unit of a service.
type Task struct {
	swarm.Task
	// SpecVersion of the service spec this task runs.
	SpecVersion uint64
}

func (t *Task) Kind() Kind           { return KindTask }
func (t *Task) GetID() string        { return t.ID }
func (t *Task) GetMeta() swarm.Meta  { return t.Meta }
func (t *Task) SetMeta(m swarm.Meta) { t.Meta = m }
func (t *Task) CopyObject() Object   { return t.Copy() }
func (t *Task) Copy() *Task          { c := *t; return &c }

// Cluster is the single cluster-wide object: settings, join tokens and the
// root CA. The CA key lives in the replicated state so any manager can sign
// after a failover.
type Cluster struct {
	swarm.Swarm
	RootCACertPEM []byte `json:",omitempty"`
	RootCAKeyPEM  []byte `json:",omitempty"`
	// Removed node certificate serials (hex) that servers must refuse:
	// how removals were recorded before RemovedNodes (read, not written).
	RevokedSerials []string `json:",omitempty"`
	// RemovedNodes are the nodes removed from the swarm: servers refuse
	// every certificate issued to them (node IDs are never reused; a node
	// that joins again gets a new one), the current one and any older one
	// still valid. An entry goes once every certificate issued before the
	// removal has expired.
	RemovedNodes []RemovedNode `json:",omitempty"`
}

// RemovedNode records a node's removal from the swarm.
type RemovedNode struct {
	ID string
	At time.Time
}

// IsRemoved reports whether nodeID was removed from the swarm.
func (c *Cluster) IsRemoved(nodeID string) bool {
	for _, r := range c.RemovedNodes {
		if r.ID == nodeID {
			return true
		}
	}
	return false
}

// WithRemoved returns RemovedNodes with nodeID added at now, without the
// entries older than keep (a new slice: objects are never changed in
// place).
func (c *Cluster) WithRemoved(nodeID string, now time.Time, keep time.Duration) []RemovedNode {
	out := make([]RemovedNode, 0, len(c.RemovedNodes)+1)
	for _, r := range c.RemovedNodes {
		if now.Sub(r.At) <= keep && r.ID != nodeID {
			out = append(out, r)
		}
	}
	return append(out, RemovedNode{ID: nodeID, At: now})
}

func (c *Cluster) Kind() Kind           { return KindCluster }
func (c *Cluster) GetID() string        { return c.ID }
func (c *Cluster) GetMeta() swarm.Meta  { return c.Meta }
func (c *Cluster) SetMeta(m swarm.Meta) { c.Meta = m }
func (c *Cluster) CopyObject() Object   { return c.Copy() }
func (c *Cluster) Copy() *Cluster       { x := *c; return &x }

// Network is a swarm-scoped network.
type Network struct {
	swarm.Network
}

func (n *Network) Kind() Kind           { return KindNetwork }
func (n *Network) GetID() string        { return n.ID }
func (n *Network) GetMeta() swarm.Meta  { return n.Meta }
func (n *Network) SetMeta(m swarm.Meta) { n.Meta = m }
func (n *Network) CopyObject() Object   { return n.Copy() }
func (n *Network) Copy() *Network       { c := *n; return &c }

// Secret is a cluster secret; Data is kept only in the store.
type Secret struct {
	swarm.Secret
}

func (s *Secret) Kind() Kind           { return KindSecret }
func (s *Secret) GetID() string        { return s.ID }
func (s *Secret) GetMeta() swarm.Meta  { return s.Meta }
func (s *Secret) SetMeta(m swarm.Meta) { s.Meta = m }
func (s *Secret) CopyObject() Object   { return s.Copy() }
func (s *Secret) Copy() *Secret        { c := *s; return &c }

// Config is a cluster config.
type Config struct {
	swarm.Config
}

func (c *Config) Kind() Kind           { return KindConfig }
func (c *Config) GetID() string        { return c.ID }
func (c *Config) GetMeta() swarm.Meta  { return c.Meta }
func (c *Config) SetMeta(m swarm.Meta) { c.Meta = m }
func (c *Config) CopyObject() Object   { return c.Copy() }
func (c *Config) Copy() *Config        { x := *c; return &x }

// newObject returns an empty object of kind k, for decoding.
func newObject(k Kind) (Object, error) {
	switch k {
	case KindCluster:
		return &Cluster{}, nil
	case KindNode:
		return &Node{}, nil
	case KindService:
		return &Service{}, nil
	case KindTask:
		return &Task{}, nil
	case KindNetwork:
		return &Network{}, nil
	case KindSecret:
		return &Secret{}, nil
	case KindConfig:
		return &Config{}, nil
	}
	return nil, fmt.Errorf("store: unknown kind %q", k)
}

// Clone deep-copies v through JSON. Use it where a nested map or slice must
// be changed in place; it is too slow for hot paths.
func Clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("store.Clone: %v", err))
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("store.Clone: %v", err))
	}
	return out
}
