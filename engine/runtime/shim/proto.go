// Package shim is the per-container supervisor that runs inside the small
// shoal-shim process, plus the wire protocol shoald uses to talk to it.
//
// The shim outlives shoald: it is the container's subreaper, writes the
// container's json-file log, keeps the exit status in a file, and serves a
// unix socket for attach, resize, signals and exit notification. The package
// imports only the standard library so the shim stays a few hundred KiB of
// private memory per container.
//
// # Control channel (fd 3 of the shim, a socketpair to shoald)
//
//	shim → shoald: "ready\n"          the socket listens; attachers may connect
//	shoald → shim: "start\n"          run the container now
//	shim → shoald: "started PID\n"    or "failed\n" followed by runc's message until EOF
//
// # Socket requests (file SocketName in the bundle dir; one request per connection)
//
// The client sends one line; the shim answers "ok[ ARG]\n" or "error MSG\n".
//
//	attach FLAGS   FLAGS ⊆ "ioec": stdin, stdout, stderr, close stdin on client EOF.
//	               After "ok" the shim streams output (stdcopy frames without a
//	               TTY, raw bytes with one) and reads stdin from the connection;
//	               the client's half-close ends stdin. The shim closes the
//	               connection once all output of the container has been sent.
//	wait           After "ok PID" the shim writes an exit line (FormatExit) when
//	               the container has exited and been deleted, then closes.
//	kill SIG       Sends SIG to the container's init.
//	resize H W     Sets the TTY window size.
package shim

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"time"
)

// File names inside the bundle (= exec) directory of a container.
const (
	SocketName  = "shim.sock"
	ConsoleName = "console.sock"
	ExitName    = "exit"
	LogName     = "shim.log" // the shim's own diagnostics
)

// Stream ids used in stdcopy frames (same values as docker's stdcopy).
const (
	StreamStdout = 1
	StreamStderr = 2
)

// Exit is how a container's init ended.
type Exit struct {
	Code     int       // exit code; 128+signal when killed by a signal
	Signal   int       // signal that killed it, 0 if it exited
	OOM      bool      // the memory cgroup OOM-killed a process
	Finished time.Time // when the shim reaped it
}

// FormatExit renders e as one line: "CODE SIGNAL OOM UNIXNANO\n".
func FormatExit(e Exit) string {
	oom := "0"
	if e.OOM {
		oom = "1"
	}
	return strconv.Itoa(e.Code) + " " + strconv.Itoa(e.Signal) + " " + oom + " " +
		strconv.FormatInt(e.Finished.UnixNano(), 10) + "\n"
}

// ParseExit reads a line written by FormatExit.
func ParseExit(s string) (Exit, error) {
	f := strings.Fields(s)
	if len(f) != 4 {
		return Exit{}, errors.New("malformed exit record: " + strconv.Quote(s))
	}
	code, err1 := strconv.Atoi(f[0])
	sig, err2 := strconv.Atoi(f[1])
	ns, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Exit{}, errors.New("malformed exit record: " + strconv.Quote(s))
	}
	return Exit{Code: code, Signal: sig, OOM: f[2] == "1", Finished: time.Unix(0, ns)}, nil
}

// ReadExitFile reads the exit file of a bundle dir; os.ErrNotExist (wrapped)
// when the container has not exited (or its shim died before recording it).
func ReadExitFile(path string) (Exit, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Exit{}, err
	}
	return ParseExit(string(b))
}

// writeFileAtomic writes data to path through a temporary file and rename,
// so readers see either nothing or the whole record. No fsync: the exit
// file lives in the exec root, a tmpfs that a host crash wipes anyway.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err1 := f.Close(); err == nil {
		err = err1
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
