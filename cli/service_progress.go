package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/moby/moby/client/pkg/progress"
	"github.com/moby/moby/client/pkg/streamformatter"
)

// Task states in lifecycle order; the wait loop draws them as a bar.
var numberedStates = map[swarm.TaskState]int64{
	swarm.TaskStateNew: 1, swarm.TaskStateAllocated: 2, swarm.TaskStatePending: 3, swarm.TaskStateAssigned: 4,
	swarm.TaskStateAccepted: 5, swarm.TaskStatePreparing: 6, swarm.TaskStateReady: 7, swarm.TaskStateStarting: 8,
	swarm.TaskStateRunning: 9, swarm.TaskStateComplete: 10, swarm.TaskStateShutdown: 11, swarm.TaskStateFailed: 12,
	swarm.TaskStateRejected: 13,
}

const (
	maxProgress     = 9
	maxProgressBars = 20
)

var longestState = func() int {
	n := 0
	for s := range numberedStates {
		if (!terminalState(s) || s == swarm.TaskStateComplete) && len(s) > n {
			n = len(s)
		}
	}
	return n
}()

func terminalState(s swarm.TaskState) bool {
	return numberedStates[s] > numberedStates[swarm.TaskStateRunning]
}

// waitOnService shows docker's convergence progress for a service until
// it converges (or fails), unless quiet.
func (c *CLI) waitOnService(ctx context.Context, cl *client.Client, serviceID string, quiet bool) error {
	pr, pw := io.Pipe()
	errC := make(chan error, 1)
	go func() {
		err := c.serviceProgress(ctx, cl, serviceID, pw)
		pw.CloseWithError(err)
		errC <- err
	}()
	if quiet {
		_, _ = io.Copy(io.Discard, pr)
		return <-errC
	}
	err := displayJSONStream(pr, c.Out)
	if perr := <-errC; perr != nil {
		return perr
	}
	return err
}

// serviceProgress is docker's wait loop: every poll interval GET the
// service, its up-to-date tasks and the nodes, and report per slot (or per
// node for global services) until every task runs, then watch for the
// update monitor period before declaring convergence.
func (c *CLI) serviceProgress(ctx context.Context, cl *client.Client, serviceID string, w io.Writer) error {
	out := streamformatter.NewJSONProgressOutput(w, false)
	sigint := make(chan os.Signal, 1)
	signal.Notify(sigint, os.Interrupt)
	defer signal.Stop(sigint)

	var (
		updater     progressUpdater
		converged   bool
		convergedAt time.Time
		monitor     = 5 * time.Second
		rollback    bool
		message     *progress.Progress
	)
	for {
		res, err := cl.ServiceInspect(ctx, serviceID, client.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		svc := res.Service
		if svc.Spec.UpdateConfig != nil && svc.Spec.UpdateConfig.Monitor != 0 {
			monitor = svc.Spec.UpdateConfig.Monitor
		}
		if updater == nil {
			if updater, err = newProgressUpdater(svc, out); err != nil {
				return err
			}
		}
		if us := svc.UpdateStatus; us != nil {
			switch us.State {
			case swarm.UpdateStateUpdating:
				rollback = false
			case swarm.UpdateStateCompleted:
				if !converged {
					return nil
				}
			case swarm.UpdateStatePaused:
				return fmt.Errorf("service update paused: %s", us.Message)
			case swarm.UpdateStateRollbackStarted:
				if !rollback && us.Message != "" {
					out.WriteProgress(progress.Progress{ID: "rollback", Action: us.Message})
				}
				rollback = true
			case swarm.UpdateStateRollbackPaused:
				return fmt.Errorf("service rollback paused: %s", us.Message)
			case swarm.UpdateStateRollbackCompleted:
				if !converged {
					message = &progress.Progress{ID: "rollback", Message: us.Message}
				}
				rollback = true
			}
		}
		if converged && time.Since(convergedAt) >= monitor {
			out.WriteProgress(progress.Progress{ID: "verify", Action: fmt.Sprintf("Service %s converged", serviceID)})
			if message != nil {
				out.WriteProgress(*message)
			}
			return nil
		}
		tasks, err := cl.TaskList(ctx, client.TaskListOptions{
			Filters: make(client.Filters).Add("service", svc.ID).Add("_up-to-date", "true"),
		})
		if err != nil {
			return err
		}
		nodes, err := cl.NodeList(ctx, client.NodeListOptions{})
		if err != nil {
			return err
		}
		active := map[string]bool{}
		for _, n := range nodes.Items {
			if n.Status.State != swarm.NodeStateDown {
				active[n.ID] = true
			}
		}
		converged, err = updater.update(svc, tasks.Items, active, rollback)
		if err != nil {
			return err
		}
		if converged {
			if svc.JobStatus != nil {
				progress.Message(out, "", "job complete")
				return nil
			}
			if convergedAt.IsZero() {
				convergedAt = time.Now()
			}
			if wait := monitor - time.Since(convergedAt); wait >= 0 {
				out.WriteProgress(progress.Progress{ID: "verify", Action: fmt.Sprintf("Waiting %d seconds to verify that tasks are stable...", wait/time.Second+1)})
			}
		} else {
			if !convergedAt.IsZero() {
				out.WriteProgress(progress.Progress{ID: "verify", Action: "Detected task failure"})
			}
			convergedAt = time.Time{}
		}
		select {
		case <-time.After(c.pollInterval()):
		case <-sigint:
			if !converged {
				progress.Message(out, "", "Operation continuing in background.")
				progress.Messagef(out, "", "Use `shoal service ps %s` to check progress.", serviceID)
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type progressUpdater interface {
	update(svc swarm.Service, tasks []swarm.Task, activeNodes map[string]bool, rollback bool) (bool, error)
}

func newProgressUpdater(svc swarm.Service, out progress.Output) (progressUpdater, error) {
	m := svc.Spec.Mode
	switch {
	case m.Replicated != nil && m.Replicated.Replicas != nil:
		return &replicatedProgress{out: out}, nil
	case m.Global != nil:
		return &globalProgress{out: out}, nil
	case m.ReplicatedJob != nil, m.GlobalJob != nil:
		return &jobProgress{out: out}, nil
	}
	return nil, errors.New("unrecognized service mode")
}

func writeOverallProgress(out progress.Output, n, total int, rollback bool) {
	if rollback {
		out.WriteProgress(progress.Progress{ID: "overall progress", Action: fmt.Sprintf("rolling back update: %d out of %d tasks", n, total)})
		return
	}
	out.WriteProgress(progress.Progress{ID: "overall progress", Action: fmt.Sprintf("%d out of %d tasks", n, total)})
}

func truncError(msg string) string {
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 75 {
		msg = msg[:74] + "…"
	}
	return msg
}

// pickTask keeps, for one slot/node, the task with the lowest desired
// state and then the most advanced observed state (docker's rule).
func pickTask(existing swarm.Task, ok bool, t swarm.Task) bool {
	if !ok {
		return true
	}
	if numberedStates[existing.DesiredState] < numberedStates[t.DesiredState] {
		return false
	}
	if numberedStates[existing.DesiredState] == numberedStates[t.DesiredState] &&
		numberedStates[existing.Status.State] <= numberedStates[t.Status.State] {
		return false
	}
	return true
}

func writeTaskProgress(out progress.Output, id string, t swarm.Task) {
	if t.Status.Err != "" {
		out.WriteProgress(progress.Progress{ID: id, Action: truncError(t.Status.Err)})
		return
	}
	if !terminalState(t.DesiredState) && !terminalState(t.Status.State) {
		out.WriteProgress(progress.Progress{ID: id, Action: fmt.Sprintf("%-[1]*s", longestState, t.Status.State),
			Current: numberedStates[t.Status.State], Total: maxProgress, HideCounts: true})
	}
}

type replicatedProgress struct {
	out         progress.Output
	slotMap     map[int]int
	initialized bool
	done        bool
}

func (u *replicatedProgress) update(svc swarm.Service, tasks []swarm.Task, active map[string]bool, rollback bool) (bool, error) {
	if svc.Spec.Mode.Replicated == nil || svc.Spec.Mode.Replicated.Replicas == nil {
		return false, errors.New("no replica count")
	}
	replicas := *svc.Spec.Mode.Replicated.Replicas
	if !u.initialized {
		u.slotMap = map[int]int{}
		writeOverallProgress(u.out, 0, int(replicas), rollback)
		if replicas <= maxProgressBars {
			for i := uint64(1); i <= replicas; i++ {
				progress.Update(u.out, fmt.Sprintf("%d/%d", i, replicas), " ")
			}
		}
		u.initialized = true
	}
	bySlot := map[int]swarm.Task{}
	for _, t := range tasks {
		if numberedStates[t.DesiredState] == 0 || numberedStates[t.Status.State] == 0 {
			continue
		}
		ex, ok := bySlot[t.Slot]
		if !pickTask(ex, ok, t) {
			continue
		}
		if t.NodeID != "" && !active[t.NodeID] {
			continue
		}
		bySlot[t.Slot] = t
	}
	if u.done {
		for _, t := range bySlot {
			if t.Status.State != swarm.TaskStateRunning {
				u.done = false
				break
			}
		}
	}
	running := uint64(0)
	slots := make([]int, 0, len(bySlot))
	for s := range bySlot {
		slots = append(slots, s)
	}
	sortInts(slots)
	for _, s := range slots {
		t := bySlot[s]
		mapped := u.slotMap[t.Slot]
		if mapped == 0 {
			mapped = len(u.slotMap) + 1
			u.slotMap[t.Slot] = mapped
		}
		if !terminalState(t.DesiredState) && t.Status.State == swarm.TaskStateRunning {
			running++
		}
		if !u.done && replicas <= maxProgressBars && uint64(mapped) <= replicas {
			writeTaskProgress(u.out, fmt.Sprintf("%d/%d", mapped, replicas), t)
		}
	}
	if !u.done {
		writeOverallProgress(u.out, int(running), int(replicas), rollback)
		if running == replicas {
			u.done = true
		}
	}
	return running == replicas, nil
}

type globalProgress struct {
	out         progress.Output
	initialized bool
	done        bool
}

func (u *globalProgress) update(_ swarm.Service, tasks []swarm.Task, active map[string]bool, rollback bool) (bool, error) {
	byNode := map[string]swarm.Task{}
	for _, t := range tasks {
		if numberedStates[t.DesiredState] == 0 || numberedStates[t.Status.State] == 0 {
			continue
		}
		ex, ok := byNode[t.NodeID]
		if !pickTask(ex, ok, t) {
			continue
		}
		byNode[t.NodeID] = t
	}
	nodeCount := len(byNode)
	if !u.initialized {
		if nodeCount == 0 {
			u.out.WriteProgress(progress.Progress{ID: "overall progress", Action: "waiting for new tasks"})
			return false, nil
		}
		writeOverallProgress(u.out, 0, nodeCount, rollback)
		u.initialized = true
	}
	if u.done {
		for _, t := range byNode {
			if t.Status.State != swarm.TaskStateRunning {
				u.done = false
				break
			}
		}
	}
	running := 0
	for _, id := range sortedKeys(byNode) {
		t := byNode[id]
		if !active[t.NodeID] {
			continue
		}
		if !terminalState(t.DesiredState) && t.Status.State == swarm.TaskStateRunning {
			running++
		}
		if !u.done && nodeCount <= maxProgressBars {
			writeTaskProgress(u.out, truncateID(t.NodeID), t)
		}
	}
	if !u.done {
		writeOverallProgress(u.out, running, nodeCount, rollback)
		if running == nodeCount {
			u.done = true
		}
	}
	return running == nodeCount, nil
}

// jobProgress reports jobs by completed tasks.
type jobProgress struct {
	out progress.Output
}

func (u *jobProgress) update(svc swarm.Service, tasks []swarm.Task, _ map[string]bool, _ bool) (bool, error) {
	total := 0
	if m := svc.Spec.Mode.ReplicatedJob; m != nil && m.TotalCompletions != nil {
		total = int(*m.TotalCompletions)
	}
	done, failed := 0, 0
	for _, t := range tasks {
		switch t.Status.State {
		case swarm.TaskStateComplete:
			done++
		case swarm.TaskStateFailed, swarm.TaskStateRejected:
			failed++
		}
	}
	if svc.Spec.Mode.GlobalJob != nil {
		total = len(tasks)
	}
	u.out.WriteProgress(progress.Progress{ID: "overall progress", Action: fmt.Sprintf("%d out of %d complete", done, total)})
	if failed > 0 {
		u.out.WriteProgress(progress.Progress{ID: "failures", Action: fmt.Sprintf("%d tasks failed", failed)})
	}
	return total > 0 && done >= total, nil
}

func sortInts(a []int) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j] < a[j-1]; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}
