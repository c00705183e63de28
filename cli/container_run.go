package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

type runOptions struct {
	containerOptions
	detach     bool
	sigProxy   bool
	detachKeys string
}

func newRunCommand(c *CLI) *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create and run a new container from an image",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runRun(cmd, cmd.Flags(), &o, args)
		},
	}
	flags := cmd.Flags()
	addContainerFlags(flags, &o.containerOptions)
	flags.BoolVarP(&o.detach, "detach", "d", false, "Run container in background and print container ID")
	flags.BoolVar(&o.sigProxy, "sig-proxy", true, "Proxy received signals to the process")
	flags.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func newCreateCommand(c *CLI) *cobra.Command {
	var o containerOptions
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Create a new container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.toConfig(cmd.Flags(), args)
			if err != nil {
				return c.runUsageError(cmd, err)
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			id, err := c.createContainer(cmd.Context(), cl, cfg, &o)
			if err != nil {
				return c.runUsageError(cmd, err)
			}
			fmt.Fprintln(c.Out, id)
			return nil
		},
	}
	addContainerFlags(cmd.Flags(), &o)
	return cmd
}

// runUsageError is how docker run/create report failures: prefixed with
// the program name, a pointer to --help, exit status 125.
func (c *CLI) runUsageError(cmd *cobra.Command, err error) error {
	var se StatusError
	if errors.As(err, &se) {
		return err
	}
	return StatusError{Status: 125, Message: fmt.Sprintf("%s: %s\n\nRun '%s --help' for more information", binName(cmd), c.errorText(err), cmd.CommandPath())}
}

func (c *CLI) runRun(cmd *cobra.Command, flags *pflag.FlagSet, o *runOptions, args []string) error {
	ctx := cmd.Context()
	cfg, err := o.toConfig(flags, args)
	if err != nil {
		return c.runUsageError(cmd, err)
	}
	config := cfg.Config
	if o.detach {
		if len(o.attach) != 0 {
			return c.runUsageError(cmd, errors.New("conflicting options: cannot specify both --attach and --detach"))
		}
		config.AttachStdin, config.AttachStdout, config.AttachStderr, config.StdinOnce = false, false, false, false
	} else if config.AttachStdin && config.Tty && !isTerminal(c.In) {
		return c.runUsageError(cmd, errors.New("the input device is not a TTY"))
	}
	cl, err := c.Client()
	if err != nil {
		return err
	}
	if config.Tty {
		cfg.HostConfig.ConsoleSize = c.terminalSize()
	}
	id, err := c.createContainer(ctx, cl, cfg, &o.containerOptions)
	if err != nil {
		return c.runUsageError(cmd, err)
	}
	if o.sigProxy && !o.detach {
		stop := proxySignals(ctx, cl, id, c.Err)
		defer stop()
	}

	attach := config.AttachStdin || config.AttachStdout || config.AttachStderr
	streamCtx, cancelStream := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStream()
	var streamErr chan error
	restore := func() {}
	if attach {
		resp, err := cl.ContainerAttach(streamCtx, id, client.ContainerAttachOptions{
			Stream: true, Stdin: config.AttachStdin, Stdout: config.AttachStdout, Stderr: config.AttachStderr,
			DetachKeys: o.detachKeys,
		})
		if err != nil {
			return c.runUsageError(cmd, err)
		}
		defer resp.Close()
		restore = c.rawTerminal(config.Tty && config.AttachStdin)
		defer restore()
		so := streamOptions{tty: config.Tty, detachKeys: o.detachKeys}
		if config.AttachStdin {
			so.stdin = c.In
		}
		if config.AttachStdout {
			so.stdout = c.Out
		}
		if config.AttachStderr {
			so.stderr = c.Err
		}
		streamErr = make(chan error, 1)
		go func() { streamErr <- streamHijacked(streamCtx, resp.HijackedResponse, so) }()
	}

	statusCtx, cancelStatus := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelStatus()
	statusC := waitExit(statusCtx, cl, id, o.autoRemove)

	if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		if attach {
			cancelStream()
			<-streamErr
		}
		restore()
		if o.autoRemove {
			<-statusC
		}
		return c.runUsageError(cmd, err)
	}
	if !attach {
		fmt.Fprintln(c.Out, id)
		return nil
	}
	if config.Tty {
		stop := c.monitorTTYSize(ctx, func(h, w uint) error {
			_, err := cl.ContainerResize(ctx, id, client.ContainerResizeOptions{Height: h, Width: w})
			return err
		})
		defer stop()
	}
	select {
	case err := <-streamErr:
		if errors.Is(err, errDetached) {
			restore()
			return nil
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			restore()
			return err
		}
		status := <-statusC
		restore()
		if status != 0 {
			return StatusError{Status: status}
		}
	case status := <-statusC:
		if !config.AttachStdout && !config.AttachStderr {
			cancelStream()
		}
		<-streamErr
		restore()
		if status != 0 {
			return StatusError{Status: status}
		}
	}
	return nil
}

// waitExit asks the daemon to report the container's next exit (or its
// removal with --rm) and delivers the exit code; 125 if waiting fails.
func waitExit(ctx context.Context, cl *client.Client, id string, removed bool) <-chan int {
	cond := container.WaitConditionNextExit
	if removed {
		cond = container.WaitConditionRemoved
	}
	res := cl.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: cond})
	out := make(chan int, 1)
	go func() {
		select {
		case r := <-res.Result:
			if r.Error != nil && r.Error.Message != "" {
				out <- 125
				return
			}
			out <- int(r.StatusCode)
		case <-res.Error:
			out <- 125
		}
	}()
	return out
}

// createContainer creates the container, pulling the image first with
// --pull=always, or after a 404 with --pull=missing (docker's default),
// printing docker's "Unable to find image" line.
func (c *CLI) createContainer(ctx context.Context, cl *client.Client, cfg *containerConfig, o *containerOptions) (string, error) {
	var named reference.Named
	if ref, err := reference.ParseAnyReference(cfg.Config.Image); err != nil {
		return "", err
	} else if n, ok := ref.(reference.Named); ok {
		named = reference.TagNameOnly(n)
	}
	var platform *ocispec.Platform
	if o.platform != "" {
		p, err := parsePlatform(o.platform)
		if err != nil {
			return "", err
		}
		platform = &p
	}
	switch o.pull {
	case "always", "missing", "never":
	default:
		return "", fmt.Errorf("invalid pull option: '%s': must be one of \"always\", \"missing\" or \"never\"", o.pull)
	}
	if o.cidFile != "" {
		if _, err := os.Stat(o.cidFile); err == nil {
			return "", fmt.Errorf("container ID file found, make sure the other container isn't running or delete %s", o.cidFile)
		}
	}
	pullOut := c.Err
	if o.quiet {
		pullOut = io.Discard
	}
	if o.pull == "always" {
		if err := c.pullImage(ctx, cl, cfg.Config.Image, platform, pullOut); err != nil {
			return "", err
		}
	}
	req := client.ContainerCreateOptions{Name: o.name, Platform: platform, Config: cfg.Config, HostConfig: cfg.HostConfig, NetworkingConfig: cfg.Networking}
	resp, err := cl.ContainerCreate(ctx, req)
	if err != nil {
		if !isNotFound(err) || named == nil || o.pull != "missing" {
			return "", err
		}
		if !o.quiet {
			fmt.Fprintf(c.Err, "Unable to find image '%s' locally\n", reference.FamiliarString(named))
		}
		if err := c.pullImage(ctx, cl, cfg.Config.Image, platform, pullOut); err != nil {
			return "", err
		}
		resp, err = cl.ContainerCreate(ctx, req)
		if err != nil {
			return "", err
		}
	}
	for _, w := range resp.Warnings {
		fmt.Fprintln(c.Err, "WARNING:", w)
	}
	if o.cidFile != "" {
		if err := os.WriteFile(o.cidFile, []byte(resp.ID), 0o644); err != nil {
			return "", fmt.Errorf("failed to write the container ID to the file: %w", err)
		}
	}
	return resp.ID, nil
}

// parsePlatform parses os[/arch[/variant]].
func parsePlatform(s string) (ocispec.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return ocispec.Platform{}, fmt.Errorf("error parsing specified platform: %q: unknown operating system or architecture", s)
	}
	p := ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p, nil
}
