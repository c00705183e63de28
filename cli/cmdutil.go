package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// binName is the program name used in usage errors ("shoal").
func binName(cmd *cobra.Command) string { return cmd.Root().Name() }

func pluralize(word string, n int) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// noArgs rejects positional arguments with docker's wording; on a command
// group it reports an unknown subcommand.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasSubCommands() {
		return fmt.Errorf("%[1]s: unknown command: %[2]s %[3]s\n\nRun '%[2]s --help' for more information",
			binName(cmd), cmd.CommandPath(), args[0])
	}
	return fmt.Errorf("%[1]s: '%[2]s' accepts no arguments\n\nUsage:  %[3]s\n\nRun '%[2]s --help' for more information",
		binName(cmd), cmd.CommandPath(), cmd.UseLine())
}

func minArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at least %[3]d %[4]s\n\nUsage:  %[5]s\n\nSee '%[2]s --help' for more information",
			binName(cmd), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}

func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) <= n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at most %[3]d %[4]s\n\nUsage:  %[5]s\n\nRun '%[2]s --help' for more information",
			binName(cmd), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires %[3]d %[4]s\n\nUsage:  %[5]s\n\nRun '%[2]s --help' for more information",
			binName(cmd), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}

func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= lo && len(args) <= hi {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at least %[3]d and at most %[4]d %[5]s\n\nUsage:  %[6]s\n\nRun '%[2]s --help' for more information",
			binName(cmd), cmd.CommandPath(), lo, hi, pluralize("argument", hi), cmd.UseLine())
	}
}

// isNotFound reports whether err is the daemon's 404.
func isNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// terminalFd returns the descriptor behind w when it is a terminal.
func terminalFd(v any) (int, bool) {
	f, ok := v.(interface{ Fd() uintptr })
	if !ok {
		return 0, false
	}
	fd := int(f.Fd())
	return fd, term.IsTerminal(fd)
}

func isTerminal(v any) bool {
	_, ok := terminalFd(v)
	return ok
}

// joinErrors prints one line per failure and turns them into exit status 1,
// the way docker reports multi-argument commands (rm, stop, ...).
func joinErrors(errs []string) error {
	if len(errs) == 0 {
		return nil
	}
	return StatusError{Status: 1, Message: strings.Join(errs, "\n")}
}

// rawRequest sends a request the moby client has no method for (Shoal's own
// extensions), over the same connection settings and negotiated version.
func (c *CLI) rawRequest(ctx context.Context, method, path string, query url.Values, body any, out any) error {
	cl, err := c.Client()
	if err != nil {
		return err
	}
	if _, err := cl.Ping(ctx, pingNegotiate); err != nil {
		return err
	}
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rdr = bytes.NewReader(b)
	}
	dial := cl.Dialer()
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}}
	defer hc.CloseIdleConnections()
	u := "http://api.moby.localhost/v" + cl.ClientVersion() + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rdr)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		msg := strings.TrimSpace(string(data))
		var e struct{ Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		err := fmt.Errorf("Error response from daemon: %s", msg)
		if resp.StatusCode == http.StatusNotFound {
			return notFoundError{err}
		}
		return err
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// notFoundError marks a 404 from rawRequest for cerrdefs.IsNotFound.
type notFoundError struct{ error }

func (notFoundError) NotFound() {}
func (e notFoundError) Unwrap() error {
	return e.error
}

// readAllFrom reads a file name or "-" (stdin).
func (c *CLI) readAllFrom(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(c.In)
	}
	return os.ReadFile(name)
}

var errCanceled = errors.New("canceled")
