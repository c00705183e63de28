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
//	    change, MsgNotice for node-level events, MsgLogs when the
//	    leader's log broker wants some of the node's task logs (or no
//	    longer does: Close), and MsgIngress: the routing mesh's table,
//	    full right after the full assignments, then the ports whose
//	    backends changed (batched like assignments).
//	POST /dispatcher/heartbeat  body HeartbeatRequest → HeartbeatResponse
//	    Must arrive within Period × 3 of the previous one (or of the session
//	    start) or the node is marked DOWN ("heartbeat failure").
//	POST /dispatcher/status     body StatusRequest → 204
//	    Task status changes observed by the agent, batched. Only tasks
//	    assigned to the caller are accepted (403 otherwise); states only
//	    move forward, stale reports are ignored.
//	POST /dispatcher/logs?subscription=ID  body: a stream of LogBatch lines
//	    The agent's answer to a MsgLogs: the log lines of the subscription's
//	    tasks, as newline-delimited JSON LogBatch records, each task ending
//	    with a Done (or Err) record. 204 once every task is done; 410
//	    (CodeLogsGone) as soon as the subscriber is gone, which tells the
//	    agent to stop; 403 for a task that is not the caller's.
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
	"encoding/base64"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/swarm"
)

// Paths of the dispatcher endpoints.
const (
	PathSession   = "/dispatcher/session"
	PathHeartbeat = "/dispatcher/heartbeat"
	PathStatus    = "/dispatcher/status"
	PathLogs      = "/dispatcher/logs"
)

// QuerySubscription names the subscription a PathLogs request publishes to.
const QuerySubscription = "subscription"

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
	// MsgLogs carries Logs: publish (or, with Close, stop publishing) the
	// logs of some of the node's tasks.
	MsgLogs MessageType = "logs"
	// MsgIngress carries Ingress: the ingress routing mesh's table.
	MsgIngress MessageType = "ingress"
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
	Logs        *LogsRequest `json:",omitempty"`
	Ingress     *Ingress     `json:",omitempty"`
}

// LogsRequest asks the agent to publish the logs of TaskIDs (its own
// tasks) to PathLogs under SubscriptionID, or, with Close, to stop.
type LogsRequest struct {
	SubscriptionID string
	TaskIDs        []string `json:",omitempty"`
	Options        LogOptions
	Close          bool `json:",omitempty"`
}

// LogOptions select the lines of each task's container log.
type LogOptions struct {
	// Follow keeps streaming while the container runs.
	Follow bool `json:",omitempty"`
	// Tail is the number of last lines per task; < 0 means all.
	Tail int
	// Since drops older lines (zero: none).
	Since  time.Time `json:",omitempty"`
	Stdout bool      `json:",omitempty"`
	Stderr bool      `json:",omitempty"`
}

// LogBatch is one record of a PathLogs stream: lines of one task, or the
// end of its logs (Done; Err when they could not be read). Batching lines
// per task keeps the per-line overhead small.
type LogBatch struct {
	TaskID string    `json:"t"`
	Lines  []LogLine `json:"l,omitempty"`
	Done   bool      `json:"done,omitempty"`
	// Err ends the task's logs with an error (Done is implied).
	Err string `json:"err,omitempty"`
}

// LogLine is one line of a container's log.
type LogLine struct {
	// Time is the line's timestamp, Unix nanoseconds.
	Time   int64 `json:"ts"`
	Stderr bool  `json:"e,omitempty"`
	// Data is the line, with its newline.
	Data []byte `json:"d"`
}

// MaxLogRecord bounds one LogBatch record on the wire; agents keep their
// batches well below it.
const MaxLogRecord = 16 << 20

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
	// Ports are the service's published ports. The agent binds the
	// host-mode ones, and publishes the target port of each ingress one
	// on an ephemeral port of its node: a RUNNING task reports them in
	// Status.PortStatus, host-mode entries as docker does, ingress ones
	// as PublishMode "ingress" with PublishedPort = that node-local port
	// (what IngressEndpoint.Port is made of).
	Ports []swarm.PortConfig `json:",omitempty"`
	// RegistryAuth is the X-Registry-Auth value for pulling the image
	// (service create --with-registry-auth), if any.
	RegistryAuth string `json:",omitempty"`
}

// Ingress is the ingress routing mesh's table (Full) or a change to it.
// Every node gets all of it, workers too: each node answers on every
// published port and forwards to the backends.
type Ingress struct {
	// Full replaces the node's whole table: ports not listed are gone.
	Full bool `json:",omitempty"`
	// Ports are added or changed ports, each with its complete backend
	// list (all of them when Full).
	Ports []IngressPort `json:",omitempty"`
	// Removed are ports no longer published (incremental only).
	Removed []IngressKey `json:",omitempty"`
}

// IngressKey names an ingress published port: protocol and the port every
// node answers on.
type IngressKey struct {
	Protocol      network.IPProtocol
	PublishedPort uint32
}

// IngressPort is one published port and where its traffic goes.
type IngressPort struct {
	IngressKey
	// TargetPort is the port inside the service's containers.
	TargetPort  uint32
	ServiceID   string
	ServiceName string `json:",omitempty"`
	// Endpoints are the service's running tasks that publish TargetPort,
	// sorted by address and port. Empty: nothing answers yet.
	Endpoints []IngressEndpoint `json:",omitempty"`
}

// IngressEndpoint is one task behind a published port: its node's address
// and the node-local port the task's container is published on
// (Task.Status.PortStatus, mode ingress). The node running the task
// reaches the container directly instead.
type IngressEndpoint struct {
	NodeID string
	TaskID string
	Addr   string
	Port   uint32
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
	CodeLogsGone       Code = "logs-gone"       // 410: the log subscriber is gone
	CodeConflict       Code = "conflict"        // 409: already published
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

// Urgent reports states managers act on as soon as they are known: the
// updater waits for RUNNING, the restart supervisor for a stop. Reports of
// the passing states before RUNNING may wait and merge.
func Urgent(st swarm.TaskState) bool {
	return st == swarm.TaskStateRunning || Terminal(st)
}

// AgentState reports states an agent may report (ACCEPTED..REJECTED).
func AgentState(st swarm.TaskState) bool {
	r := Rank(st)
	return r >= rank[swarm.TaskStateAccepted] && r <= rank[swarm.TaskStateRejected]
}

// AppendJSON appends b as one JSON line (with its newline), as
// json.Marshal would encode it, without allocating: agents encode every
// log line through it.
func (b *LogBatch) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"t":`...)
	dst = appendString(dst, b.TaskID)
	if len(b.Lines) > 0 {
		dst = append(dst, `,"l":[`...)
		for i := range b.Lines {
			l := &b.Lines[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"ts":`...)
			dst = strconv.AppendInt(dst, l.Time, 10)
			if l.Stderr {
				dst = append(dst, `,"e":true`...)
			}
			if l.Data == nil {
				dst = append(dst, `,"d":null}`...)
				continue
			}
			dst = append(dst, `,"d":"`...)
			dst = base64.StdEncoding.AppendEncode(dst, l.Data)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	if b.Done {
		dst = append(dst, `,"done":true`...)
	}
	if b.Err != "" {
		dst = append(dst, `,"err":`...)
		dst = appendString(dst, b.Err)
	}
	return append(dst, "}\n"...)
}

// appendString appends s as a JSON string, escaped as encoding/json does
// for ASCII (other bytes are copied: decoders accept them as they are).
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\t':
			dst = append(dst, '\\', 't')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
