package shim

import (
	"errors"
	"os"
	"strconv"
	"syscall"
	"unsafe"
)

// The shim avoids package net (it would pull in cgo's resolver and make the
// binary dynamic): unix sockets are raw fds wrapped in pollable *os.File.

// listenUnix binds and listens on a unix stream socket at path (relative
// paths resolve against the working directory, which keeps long bundle
// paths under the 108-byte sun_path limit).
func listenUnix(path string) (*os.File, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	_ = os.Remove(path)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 64); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// accept waits for and accepts one connection on l.
func accept(l *os.File) (*os.File, error) {
	rc, err := l.SyscallConn()
	if err != nil {
		return nil, err
	}
	var nfd int
	var aerr error
	err = rc.Read(func(fd uintptr) bool {
		nfd, _, aerr = syscall.Accept4(int(fd), syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK)
		return aerr != syscall.EAGAIN
	})
	if err != nil {
		return nil, err
	}
	if aerr != nil {
		return nil, aerr
	}
	return os.NewFile(uintptr(nfd), "conn"), nil
}

// recvFd receives one file descriptor sent with SCM_RIGHTS (how runc hands
// over the console master).
func recvFd(c *os.File) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	buf := make([]byte, 4096)
	oob := make([]byte, syscall.CmsgSpace(4))
	var oobn int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, oobn, _, _, rerr = syscall.Recvmsg(int(fd), buf, oob, 0)
		return rerr != syscall.EAGAIN
	})
	if err != nil {
		return -1, err
	}
	if rerr != nil {
		return -1, rerr
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return -1, err
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err == nil && len(fds) > 0 {
			for _, extra := range fds[1:] {
				syscall.Close(extra)
			}
			return fds[0], nil
		}
	}
	return -1, errors.New("no file descriptor received on console socket")
}

// shutdownWrite half-closes a socket.
func shutdownWrite(f *os.File) {
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) })
	}
}

type winsize struct{ row, col, x, y uint16 }

// setWinsize sets a TTY's window size.
func setWinsize(f *os.File, h, w uint16) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		ws := winsize{row: h, col: w}
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws)))
		if e != 0 {
			serr = e
		}
	})
	if err != nil {
		return err
	}
	return serr
}

const prSetChildSubreaper = 36

func setSubreaper() error {
	_, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
	if e != 0 {
		return e
	}
	return nil
}

// pipe returns a pipe whose parent end is pollable and whose child end is a
// plain blocking fd to hand to runc (a non-blocking stdio would surprise the
// container's programs).
func pipe(parentReads bool) (parent *os.File, child int, err error) {
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return nil, -1, err
	}
	pr, cw := p[0], p[1]
	if !parentReads {
		pr, cw = p[1], p[0]
	}
	if err := syscall.SetNonblock(pr, true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, -1, err
	}
	return os.NewFile(uintptr(pr), "pipe"), cw, nil
}

// The shim waits for its children through pidfds in the netpoller instead
// of SIGCHLD: os/signal would cost a locked OS thread (and its stacks) per
// shim for the container's whole life.
const (
	sysPidfdOpen  = 434
	pidfdNonblock = syscall.O_NONBLOCK
	pPidfd        = 3
)

// siginfo is the head of siginfo_t for SIGCHLD (x86-64 and arm64 layout).
type siginfo struct {
	signo, errno, code int32
	_                  int32
	pid                int32
	uid                uint32
	status             int32
	_                  [100]byte
}

// waitPid waits for child pid to end and reaps it.
func waitPid(pid int) (syscall.WaitStatus, error) {
	fd, _, e := syscall.Syscall(sysPidfdOpen, uintptr(pid), pidfdNonblock, 0)
	if e != 0 {
		return 0, e
	}
	f := os.NewFile(fd, "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info siginfo
	var werr error
	err = rc.Read(func(fd uintptr) bool {
		info = siginfo{}
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPidfd, fd, uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOHANG, 0, 0)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false
		case e != 0:
			werr = e
			return true
		}
		return info.pid != 0
	})
	if err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	const cldExited, cldKilled, cldDumped = 1, 2, 3
	switch info.code {
	case cldExited:
		return syscall.WaitStatus(uint32(info.status&0xff) << 8), nil
	case cldKilled:
		return syscall.WaitStatus(uint32(info.status & 0x7f)), nil
	case cldDumped:
		return syscall.WaitStatus(uint32(info.status&0x7f) | 0x80), nil
	}
	return 0, errorString("unexpected waitid code " + strconv.Itoa(int(info.code)))
}
