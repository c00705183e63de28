package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
	mterm "github.com/moby/term"
	"golang.org/x/term"
)

// streamOptions say which local streams a hijacked connection is wired to.
type streamOptions struct {
	tty        bool
	stdin      io.Reader // nil: not attached
	stdout     io.Writer // nil: not attached
	stderr     io.Writer
	detachKeys string // "" means docker's ctrl-p,ctrl-q
}

// errDetached reports that the user typed the detach sequence: the
// container keeps running and the command exits 0, as in docker.
var errDetached = errors.New("detached")

// rawTerminal puts stdin in raw mode when it is a terminal and we run with
// a TTY, so keystrokes (Ctrl-C, Ctrl-P Ctrl-Q) reach the container as bytes.
// The returned func restores the terminal.
func (c *CLI) rawTerminal(tty bool) func() {
	if !tty {
		return func() {}
	}
	fd, ok := terminalFd(c.In)
	if !ok {
		return func() {}
	}
	state, err := term.MakeRaw(fd)
	if err != nil {
		return func() {}
	}
	var once sync.Once
	return func() { once.Do(func() { _ = term.Restore(fd, state) }) }
}

// streamHijacked copies between the local streams and a hijacked attach or
// exec connection until the output side ends (or ctx is done). Without a
// TTY the output is demultiplexed from docker's 8-byte stdcopy framing.
func streamHijacked(ctx context.Context, resp client.HijackedResponse, o streamOptions) error {
	outDone := make(chan error, 1)
	inDone := make(chan struct{})
	go func() {
		var err error
		switch {
		case o.stdout == nil && o.stderr == nil:
			_, err = io.Copy(io.Discard, resp.Reader)
		case o.tty:
			out := o.stdout
			if out == nil {
				out = io.Discard
			}
			_, err = io.Copy(out, resp.Reader)
		default:
			out, errw := o.stdout, o.stderr
			if out == nil {
				out = io.Discard
			}
			if errw == nil {
				errw = io.Discard
			}
			_, err = stdcopy.StdCopy(out, errw, resp.Reader)
		}
		outDone <- err
	}()
	if o.stdin != nil {
		keys := o.detachKeys
		if keys == "" {
			keys = "ctrl-p,ctrl-q"
		}
		in := o.stdin
		if seq, err := mterm.ToBytes(keys); err == nil {
			in = mterm.NewEscapeProxy(in, seq)
		}
		go func() {
			_, err := io.Copy(resp.Conn, in)
			var esc mterm.EscapeError
			if errors.As(err, &esc) {
				close(inDone)
				return
			}
			// Half-close so the process sees EOF on its stdin.
			_ = resp.CloseWrite()
		}()
	}
	select {
	case err := <-outDone:
		return err
	case <-inDone:
		return errDetached
	case <-ctx.Done():
		return ctx.Err()
	}
}

// monitorTTYSize keeps the container's (or exec's) TTY the size of our
// terminal: once now, then on every SIGWINCH.
func (c *CLI) monitorTTYSize(ctx context.Context, resize func(h, w uint) error) func() {
	fd, ok := terminalFd(c.Out)
	if !ok {
		return func() {}
	}
	do := func() {
		w, h, err := term.GetSize(fd)
		if err == nil && h > 0 && w > 0 {
			_ = resize(uint(h), uint(w))
		}
	}
	do()
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGWINCH)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		for {
			select {
			case <-sigc:
				do()
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(sigc); cancel() }
}

// terminalSize returns [height, width] of our stdout terminal, or zeros.
func (c *CLI) terminalSize() [2]uint {
	fd, ok := terminalFd(c.Out)
	if !ok {
		return [2]uint{}
	}
	w, h, err := term.GetSize(fd)
	if err != nil {
		return [2]uint{}
	}
	return [2]uint{uint(h), uint(w)}
}

// proxySignals forwards the signals a user sends to us (Ctrl-C when not in
// raw mode, kill -TERM ...) to the container, like docker's --sig-proxy.
func proxySignals(ctx context.Context, cl *client.Client, id string, errOut io.Writer) func() {
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		for {
			select {
			case s := <-sigc:
				sig, ok := s.(syscall.Signal)
				if !ok {
					continue
				}
				if _, err := cl.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: fmt.Sprint(int(sig))}); err != nil {
					fmt.Fprintf(errOut, "error sending signal: %v\n", err)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() { signal.Stop(sigc); cancel() }
}

// demux splits docker's multiplexed (non-TTY) stream into stdout/stderr.
func demux(out, errw io.Writer, r io.Reader) error {
	_, err := stdcopy.StdCopy(out, errw, r)
	return err
}
