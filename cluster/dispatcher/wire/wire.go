// Package wire is the dispatcher protocol between the leader's dispatcher
// and every node's agent. It is plain HTTP with JSON bodies on the cluster
// HTTP API (mutual TLS; the caller's node ID comes from its certificate):
//
//	POST /dispatcher/session    body SessionRequest
//	    200: a stream of newline-delimited JSON Messages that lasts as long
//	    as the session. The first is a MsgSession (session ID, heartbeat
//	    period, managers, the node object), the second a full MsgAssignments;
//	    later ones are incremental assignments (batched, at most every
//	    ~100 ms), MsgSession when the period, manager list or node object
//	    change, and MsgNotice for node-level events.
//	POST /dispatcher/heartbeat  body HeartbeatRequest → HeartbeatResponse
//	    Must arrive within Period × 3 of the previous one (or of the session
//	    start) or the node is marked DOWN ("heartbeat failure").
//	POST /dispatcher/status     body StatusRequest → 204
//	    Task status changes observed by the agent, batched. Only tasks
//	    assigned to the caller are accepted (403 otherwise); states only
//	    move forward, stale reports are ignored.
//
// Errors are a status and an Error body. CodeNotLeader (421) carries the
// leader's address: the agent reconnects there. CodeSessionInvalid (409)
// means the session ended (replaced, expired, or the dispatcher restarted):
// open a new one. 503 means no leader or the dispatcher is starting: retry
// with backoff.
//
// Agents report states ACCEPTED through REJECTED; everything before
// belongs to the managers.
package wire

import (
	"time"

	"github.com/moby/moby/api/types/swarm"
)

// Paths of the dispatcher endpoints.
const (
	PathSession   = "/dispatcher/session"
	PathHeartbeat = "/dispatcher/heartbeat"
	PathStatus    = "/dispatcher/status"
)

// ContentTypeStream is the session stream's content type.
const ContentTypeStream = "application/x-ndjson"

// SessionRequest opens a session.
type SessionRequest struct {
	Description swarm.NodeDescription
	// Addr is the address other nodes reach this node at (its advertise
	// or data-path IP). Empty: the dispatcher uses the connection's
	// remote IP.
	Addr string `json:",omitempty"`
}

// MessageType tells which fields of a Message are set.
type MessageType string

const (
	// MsgSession carries SessionID, HeartbeatPeriod, Managers and Node.
	MsgSession MessageType = "session"
	// MsgAssignments carries Assignments.
	MsgAssignments MessageType = "assignments"
	// MsgNotice carries Notice.
	MsgNotice MessageType = "notice"
)

// Message is one line of the session stream.
type Message struct {
	Type            MessageType
	SessionID       string        `json:",omitempty"`
	HeartbeatPeriod time.Duration `json:",omitempty"`
	// Managers are the cluster addresses (host:port) of every manager, the
	// leader first; agents fail over through them.
	Managers    []string     `json:",omitempty"`
	Node        *swarm.Node  `json:",omitempty"`
	Assignments *Assignments `json:",omitempty"`
	Notice      *Notice      `json:",omitempty"`
}

// Assignments is the set of tasks a node must run (Full) or a change to it.
type Assignments struct {
	// Full replaces the agent's whole set: tasks it has that are not
	// listed here are gone.
	Full bool `json:",omitempty"`
	// Tasks are added or changed tasks (all of them when Full).
	Tasks []Assignment `json:",omitempty"`
	// Removed are IDs of tasks deleted from the store (incremental only).
	Removed []string `json:",omitempty"`
}

// Assignment is a task plus what the agent needs from its service.
type Assignment struct {
	Task    swarm.Task
	Service ServiceInfo
	// Secrets and Configs carry the payloads of the secrets and configs
	// the task's container spec references (and only those: a node learns
	// the secrets of its own tasks).
	Secrets []Payload `json:",omitempty"`
	Configs []Payload `json:",omitempty"`
}

// Payload is the content of a secret or config.
type Payload struct {
	ID   string
	Data []byte
}

// ServiceInfo is the part of a task's service the agent needs to name,
// label and wire its container.
type ServiceInfo struct {
	ID     string
	Name   string
	Labels map[string]string `json:",omitempty"`
	// Ports are the service's published ports; the agent binds the
	// host-mode ones.
	Ports []swarm.PortConfig `json:",omitempty"`
	// RegistryAuth is the X-Registry-Auth value for pulling the image
	// (service create --with-registry-auth), if any.
	RegistryAuth string `json:",omitempty"`
}

// NoticeKind names a node-level event.
type NoticeKind string

const (
	// NoticeRoleChanged: the node's desired role (Node.Spec.Role) differs
	// from the role of its certificate; the node should renew it.
	NoticeRoleChanged NoticeKind = "role-changed"
	// NoticeNodeRemoved: the node was removed from the cluster; the
	// session ends and the node should leave.
	NoticeNodeRemoved NoticeKind = "node-removed"
)

// Notice is a node-level event.
type Notice struct {
	Kind NoticeKind
	// Role is the node's desired role (NoticeRoleChanged).
	Role    swarm.NodeRole `json:",omitempty"`
	Message string         `json:",omitempty"`
}

// HeartbeatRequest keeps a session alive.
type HeartbeatRequest struct {
	SessionID string
}

// HeartbeatResponse says when the next heartbeat is due.
type HeartbeatResponse struct {
	Period time.Duration
}

// StatusRequest reports task status changes.
type StatusRequest struct {
	SessionID string
	Updates   []TaskStatusUpdate
}

// TaskStatusUpdate is one task's new status.
type TaskStatusUpdate struct {
	TaskID string
	Status swarm.TaskStatus
}

// Code classifies an error answer for the agent.
type Code string

const (
	CodeNotLeader      Code = "not-leader"      // 421, Leader set
	CodeNoLeader       Code = "no-leader"       // 503
	CodeUnavailable    Code = "unavailable"     // 503: dispatcher starting or stopping
	CodeSessionInvalid Code = "session-invalid" // 409
	CodeNodeNotFound   Code = "node-not-found"  // 404: removed from the cluster
	CodeForbidden      Code = "forbidden"       // 403
	CodeUnauthorized   Code = "unauthorized"    // 401
	CodeInvalid        Code = "invalid"         // 400
	CodeInternal       Code = "internal"        // 500
)

// Error is the body of every error answer.
type Error struct {
	Message string `json:"message"`
	Code    Code   `json:"code"`
	// Leader is the leader's cluster address (CodeNotLeader).
	Leader string `json:"leader,omitempty"`
}

func (e *Error) Error() string { return e.Message }

// rank orders task states as they progress.
var rank = map[swarm.TaskState]int{
	swarm.TaskStateNew:       0,
	swarm.TaskStateAllocated: 1,
	swarm.TaskStatePending:   2,
	swarm.TaskStateAssigned:  3,
	swarm.TaskStateAccepted:  4,
	swarm.TaskStatePreparing: 5,
	swarm.TaskStateReady:     6,
	swarm.TaskStateStarting:  7,
	swarm.TaskStateRunning:   8,
	swarm.TaskStateComplete:  9,
	swarm.TaskStateShutdown:  10,
	swarm.TaskStateFailed:    11,
	swarm.TaskStateRejected:  12,
	swarm.TaskStateRemove:    13,
	swarm.TaskStateOrphaned:  14,
}

// Rank is the position of st in the task life cycle (-1 if unknown).
func Rank(st swarm.TaskState) int {
	r, ok := rank[st]
	if !ok {
		return -1
	}
	return r
}

// Terminal reports states after which nothing runs (COMPLETE and later).
func Terminal(st swarm.TaskState) bool { return Rank(st) >= rank[swarm.TaskStateComplete] }

// AgentState reports states an agent may report (ACCEPTED..REJECTED).
func AgentState(st swarm.TaskState) bool {
	r := Rank(st)
	return r >= rank[swarm.TaskStateAccepted] && r <= rank[swarm.TaskStateRejected]
}
