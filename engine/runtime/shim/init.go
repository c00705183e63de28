package shim

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
)

// InitPath is where the shim binary is bind-mounted in containers run with
// --init; invoked under that name it acts as a minimal init.
const InitPath = "/sbin/shoal-init"

// InitMain runs as PID 1 of a container: it starts ARGS (after an optional
// "--") as its child, forwards every signal it receives to it, reaps
// orphaned zombies, and exits with the child's status (128+signal when the
// child was killed).
func InitMain(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		os.Stderr.WriteString("shoal-init: no command given\n")
		return 2
	}
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)

	path, err := lookPath(args[0])
	if err != nil {
		os.Stderr.WriteString("shoal-init: " + err.Error() + "\n")
		return 127
	}
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}, Sys: &syscall.SysProcAttr{}}
	if isTerminal(0) {
		// Own process group in the foreground, so terminal signals (^C)
		// reach the child once, not once from the tty and again from us.
		attr.Sys.Setpgid = true
		attr.Sys.Foreground = true
		attr.Sys.Ctty = 0
	}
	if wd, err := os.Getwd(); err == nil {
		attr.Dir = wd
	}
	child, err := syscall.ForkExec(path, args, attr)
	if err != nil {
		os.Stderr.WriteString("shoal-init: exec " + args[0] + ": " + err.Error() + "\n")
		if err == syscall.ENOENT {
			return 127
		}
		return 126
	}
	for sig := range sigs {
		s, ok := sig.(syscall.Signal)
		if !ok {
			continue
		}
		switch s {
		case syscall.SIGCHLD:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
				if pid == child {
					if ws.Signaled() {
						return 128 + int(ws.Signal())
					}
					return ws.ExitStatus()
				}
			}
		case syscall.SIGURG: // Go's own preemption signal
		default:
			syscall.Kill(child, s)
		}
	}
	return 0
}

func isTerminal(fd int) bool {
	var t syscall.Termios
	_, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return e == 0
}
