// Package backend holds the request and event types the container service
// and the API layer share, so neither depends on the other's internals.
package backend

import (
	"io"
	"time"

	"github.com/docker/docker/api/types/filters"
)

// StopOptions are the parameters of stop and restart.
type StopOptions struct {
	Timeout *int   // seconds before SIGKILL; nil = the container's StopTimeout or 10; -1 = wait forever
	Signal  string // "" = the container's stop signal
}

// ListOptions are the parameters of GET /containers/json.
type ListOptions struct {
	All     bool
	Limit   int // > 0: the newest N containers (implies All)
	Size    bool
	Filters filters.Args
}

// LogsOptions select log records.
type LogsOptions struct {
	ShowStdout bool
	ShowStderr bool
	Since      time.Time // zero: from the start
	Until      time.Time // zero: no end
	Timestamps bool      // prefix each line with its RFC3339Nano time
	Follow     bool      // keep streaming until the container stops
	Tail       int       // < 0: all; otherwise the last N records
}

// LogMessage is one log record.
type LogMessage struct {
	Stream string // "stdout" or "stderr"
	Line   []byte // including its newline, unless a partial record
	Time   time.Time
}

// AttachOptions are the parameters of an attach. Output is written to
// Stdout as the API sends it: stdcopy frames without a TTY, raw with one.
type AttachOptions struct {
	Stdin      io.Reader // the client's input, nil if none
	Stdout     io.Writer
	UseStdin   bool
	UseStdout  bool
	UseStderr  bool
	Logs       bool   // replay the log first
	Stream     bool   // then follow the live streams
	DetachKeys string // e.g. "ctrl-p,ctrl-q"; TTY only
}

// ExecStartOptions are the parameters of an exec start. Output is written to
// Stdout framed as for attach.
type ExecStartOptions struct {
	Stdin       io.Reader
	Stdout      io.Writer
	Detach      bool
	ConsoleSize *[2]uint // height, width
}

// Event is a change in a container's life, as docker's /events reports it.
type Event struct {
	ID         string
	Name       string // without the leading "/"
	Image      string // as the user named it
	Action     string // create, start, die, stop, kill, destroy, rename, restart, pause, unpause, oom, exec_create, exec_start, exec_die, attach, resize
	ExitCode   int    // for die
	Attributes map[string]string
	Time       time.Time
}
