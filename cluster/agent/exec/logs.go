package exec

import (
	"context"
	"time"

	"github.com/shoal/shoal/cluster/dispatcher/wire"
)

// LogSource reads the logs of this node's task containers (for `service
// logs`, published to the leader by the agent).
type LogSource interface {
	// TaskLogs calls fn with each line of taskID's container log that
	// opts select, oldest first, until the log ends — with Follow, until
	// the container stops — or ctx ends (then it returns nil or ctx's
	// error). A task without a container is a NotFound error; an error
	// from fn stops the read and is returned.
	TaskLogs(ctx context.Context, taskID string, opts wire.LogOptions, fn func(LogLine) error) error
}

// LogLine is one line of a container's log.
type LogLine struct {
	Time   time.Time
	Stderr bool
	// Data is the line with its newline; fn may keep it.
	Data []byte
}
