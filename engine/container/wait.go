package container

import (
	"context"

	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/errdefs"
)

type waiter struct {
	cond container.WaitCondition
	ch   chan container.WaitResponse
}

type waitEvent int

const (
	waitExit    waitEvent = iota // a run ended (or failed to start)
	waitRemoved                  // the container was removed
)

// Wait returns a channel that receives the container's exit code once cond
// holds: "not-running" (default; at once if not running), "next-exit", or
// "removed". It is registered when Wait returns, so a start that follows
// cannot be missed.
func (s *Service) Wait(ctx context.Context, ref string, cond container.WaitCondition) (<-chan container.WaitResponse, error) {
	switch cond {
	case "", container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return nil, errdefs.InvalidParameter("invalid condition: %q", cond)
	}
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	ch := make(chan container.WaitResponse, 1)
	c.mu.Lock()
	defer c.mu.Unlock()
	code := int64(c.rec.State.ExitCode)
	if c.removed {
		ch <- container.WaitResponse{StatusCode: code}
		return ch, nil
	}
	if (cond == "" || cond == container.WaitConditionNotRunning) && !c.rec.running() &&
		c.rec.State.Status != container.StateRestarting && c.starting == nil {
		ch <- container.WaitResponse{StatusCode: code}
		return ch, nil
	}
	w := &waiter{cond: cond, ch: ch}
	c.waiters = append(c.waiters, w)
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, x := range c.waiters {
			if x == w {
				c.waiters = append(c.waiters[:i], c.waiters[i+1:]...)
				break
			}
		}
	})
	return ch, nil
}

// notifyWaiters answers the waiters an event satisfies. restarting means
// the exit is followed by a policy restart: not-running waiters wait on.
func (s *Service) notifyWaiters(c *ctr, ev waitEvent, restarting bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := container.WaitResponse{StatusCode: int64(c.rec.State.ExitCode)}
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		done := false
		switch ev {
		case waitRemoved:
			done = true
		case waitExit:
			switch w.cond {
			case container.WaitConditionNextExit:
				done = true
			case "", container.WaitConditionNotRunning:
				done = !restarting
			}
		}
		if done {
			w.ch <- resp
		} else {
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(c.waiters); i++ {
		c.waiters[i] = nil
	}
	c.waiters = kept
}
