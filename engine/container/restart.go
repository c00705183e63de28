package container

import (
	"time"

	"github.com/moby/moby/api/types/container"
)

// Docker's restart backoff: 100ms doubling up to a minute, back to 100ms
// once a run lasted 10s.
const (
	restartInitialDelay = 100 * time.Millisecond
	restartMaxDelay     = time.Minute
	restartResetAfter   = 10 * time.Second
)

// restartState is the backoff of one container's restart policy.
type restartState struct {
	delay time.Duration // last delay used; 0 = none yet
}

// decideRestart applies policy to an exit, as docker's restart manager:
// it returns whether to restart, after which delay, and updates rs. count
// is the number of restarts already done (RestartCount).
func decideRestart(policy container.RestartPolicy, rs *restartState, count, exitCode int, manuallyStopped bool, ranFor time.Duration) (bool, time.Duration) {
	if policy.IsNone() || manuallyStopped {
		return false, 0
	}
	if ranFor >= restartResetAfter {
		rs.delay = 0
	}
	if rs.delay == 0 {
		rs.delay = restartInitialDelay
	} else if rs.delay < restartMaxDelay {
		rs.delay *= 2
	}
	if rs.delay > restartMaxDelay {
		rs.delay = restartMaxDelay
	}
	restart := false
	switch {
	case policy.IsAlways(), policy.IsUnlessStopped():
		restart = true
	case policy.IsOnFailure():
		if max := policy.MaximumRetryCount; max == 0 || count < max {
			restart = exitCode != 0
		}
	}
	if !restart {
		return false, 0
	}
	return true, rs.delay
}

// restartOnBoot reports whether a stopped container starts with the daemon:
// always does (docker restarts even manually stopped ones then),
// unless-stopped does unless the user stopped it.
func restartOnBoot(policy container.RestartPolicy, manuallyStopped bool) bool {
	switch {
	case policy.IsAlways():
		return true
	case policy.IsUnlessStopped():
		return !manuallyStopped
	}
	return false
}
