// Package agent is the node's end of the dispatcher protocol (package
// wire): it keeps one session with the leader (trying the managers in turn
// and following redirects to the leader), heartbeats on the period the
// dispatcher gives, hands assignments to the executor and reports task
// status back in batches. Every node in a swarm runs one, managers too.
package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/cluster/agent/exec"
	"github.com/shoal/shoal/cluster/dispatcher/wire"
)

// Engine and ImagePuller are the executor's seams to the node engine.
type (
	Engine      = exec.Engine
	ImagePuller = exec.ImagePuller
	Notice      = wire.Notice
	// LogSource reads task container logs for `service logs`.
	LogSource = exec.LogSource
	LogLine   = exec.LogLine
)

// NewEngine and NewImages adapt engine/container.Service and
// engine/image.Store to the seams.
var (
	NewEngine = exec.NewEngine
	NewImages = exec.NewImages
	// NewLogSource reads task logs from engine/container.Service.
	NewLogSource = exec.NewLogSource
)

// Config wires an agent.
type Config struct {
	NodeID string
	// Client talks to the managers (mutual TLS with the node certificate).
	Client *http.Client
	// Scheme of the manager URLs: "https" (default) or "http" (tests).
	Scheme string
	// Managers returns manager cluster addresses (host:port) to try when
	// the session has not told us better ones.
	Managers func() []string
	// Description describes this node (hostname, platform, resources,
	// engine version and labels). Read at each session start, and
	// compared at each heartbeat: a change reopens the session.
	Description func() swarm.NodeDescription
	// Addr is the address other nodes reach this node at; "" lets the
	// dispatcher use the connection's source IP.
	Addr   string
	Engine Engine
	Images ImagePuller
	// Logs reads task container logs, which the agent publishes to the
	// leader when the session asks (service logs). Nil: such requests
	// are answered with an error per task.
	Logs LogSource
	// PayloadDir holds the secret and config files of running tasks; put
	// it on a tmpfs (e.g. /run/shoal/swarm/payloads).
	PayloadDir string
	// Ingress programs the node's share of the routing mesh from the
	// table the sessions send. Nil: the node takes no part in it (its
	// tasks still publish their ingress ports for the other nodes).
	Ingress Ingress
	Log     *slog.Logger

	// OnManagers is told the manager list whenever the session sends a
	// new one (to persist it for the next start).
	OnManagers func([]string)
	// OnNode is told the node object whenever its spec changes.
	OnNode func(*swarm.Node)
	// OnNotice is told node-level events: role change (renew the
	// certificate), node removed.
	OnNotice func(Notice)

	// BackoffMin and BackoffMax bound reconnection delays (defaults
	// 100 ms and 8 s, with jitter).
	BackoffMin, BackoffMax time.Duration
	// ReportDelay batches status reports (default 50 ms): a task's
	// passing states (ACCEPTED ... STARTING) usually merge into one
	// report. A task that reached RUNNING or stopped is reported after
	// UrgentDelay instead (default 5 ms): the updater, the restart
	// supervisor and `service ls` wait for exactly that.
	ReportDelay time.Duration
	UrgentDelay time.Duration
	// RetryDelay paces executor retries of temporary engine errors.
	RetryDelay time.Duration
}

// Agent runs a node's side of the cluster.
type Agent struct {
	cfg  Config
	log  *slog.Logger
	exec *exec.Executor
	rep  *reporter
	ing  *ingressState

	mu        sync.Mutex
	managers  []string // learned from the session
	leader    string   // where a redirect told us to go
	next      int      // rotation through the candidates
	connected string   // manager of the current session
	sessionID string
}

// New returns an agent; Run starts it.
func New(cfg Config) *Agent {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = http.DefaultClient
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "https"
	}
	if cfg.Managers == nil {
		cfg.Managers = func() []string { return nil }
	}
	if cfg.Description == nil {
		cfg.Description = func() swarm.NodeDescription { return swarm.NodeDescription{} }
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 8 * time.Second
	}
	if cfg.ReportDelay <= 0 {
		cfg.ReportDelay = 50 * time.Millisecond
	}
	if cfg.UrgentDelay <= 0 {
		cfg.UrgentDelay = 5 * time.Millisecond
	}
	a := &Agent{cfg: cfg, log: cfg.Log.With("component", "agent", "node", cfg.NodeID), rep: newReporter(), ing: newIngressState()}
	a.exec = exec.New(exec.Config{
		Engine:       cfg.Engine,
		Images:       cfg.Images,
		Node:         cfg.Description,
		Report:       a.rep.add,
		Log:          cfg.Log,
		RetryDelay:   cfg.RetryDelay,
		PayloadDir:   cfg.PayloadDir,
		IngressOwner: a.ing.owner,
	})
	return a
}

// Run keeps a session with the leader until ctx ends. Task containers
// keep running when it returns.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.cfg.BackoffMin
	for {
		err := a.exec.Start(ctx)
		if err == nil {
			break
		}
		a.log.Warn("cannot reach the engine, retrying", "err", err)
		if !sleep(ctx, jitter(backoff)) {
			return nil
		}
		backoff = min(backoff*2, a.cfg.BackoffMax)
	}
	defer a.exec.Wait()
	if a.cfg.Ingress != nil {
		ictx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a.ingressLoop(ictx)
		}()
		defer func() { stop(); <-done }()
	}

	backoff = a.cfg.BackoffMin
	redirects := 0
	for ctx.Err() == nil {
		addr := a.pick()
		if addr == "" {
			a.log.Warn("no manager address known")
		} else {
			established, err := a.session(ctx, addr)
			if established {
				backoff = a.cfg.BackoffMin
			}
			var nl *notLeaderError
			switch {
			case errors.As(err, &nl) && redirects < 3:
				// Go straight to the leader.
				redirects++
				a.mu.Lock()
				a.leader = nl.leader
				a.mu.Unlock()
				continue
			case err != nil && ctx.Err() == nil:
				a.log.Info("session ended", "manager", addr, "err", err)
				a.mu.Lock()
				a.next++
				a.mu.Unlock()
			}
		}
		redirects = 0
		if !sleep(ctx, jitter(backoff)) {
			break
		}
		backoff = min(backoff*2, a.cfg.BackoffMax)
	}
	return nil
}

// Connected returns the manager address of the live session ("" if none).
func (a *Agent) Connected() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

// IngressTable returns the routing mesh's table as the sessions sent it,
// sorted (for tests and diagnostics).
func (a *Agent) IngressTable() []wire.IngressPort {
	ports, _, _ := a.ing.snapshot()
	slices.SortFunc(ports, func(x, y wire.IngressPort) int {
		if x.Protocol != y.Protocol {
			if x.Protocol < y.Protocol {
				return -1
			}
			return 1
		}
		return int(x.PublishedPort) - int(y.PublishedPort)
	})
	return ports
}

// Statuses returns what the executor knows of each task.
func (a *Agent) Statuses() map[string]swarm.TaskStatus { return a.exec.Statuses() }

// pick chooses the manager to try: the leader we were sent to, else the
// next of the known managers.
func (a *Agent) pick() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.leader != "" {
		l := a.leader
		a.leader = ""
		return l
	}
	var cands []string
	for _, m := range append(slices.Clone(a.managers), a.cfg.Managers()...) {
		if m != "" && !slices.Contains(cands, m) {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		return ""
	}
	return cands[a.next%len(cands)]
}

func (a *Agent) setManagers(m []string) {
	a.mu.Lock()
	changed := !slices.Equal(a.managers, m)
	a.managers = slices.Clone(m)
	a.next = 0
	a.mu.Unlock()
	if changed && a.cfg.OnManagers != nil {
		a.cfg.OnManagers(slices.Clone(m))
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter spreads reconnections of many nodes: d ± 25 %.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*3/4 + time.Duration(rand.Int64N(int64(d/2)+1))
}
