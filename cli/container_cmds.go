package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// filterFlag collects --filter k=v values into client.Filters.
type filterFlag struct{ vals []string }

func (f *filterFlag) String() string { return "" }
func (f *filterFlag) Type() string   { return "filter" }
func (f *filterFlag) Set(v string) error {
	if !strings.Contains(v, "=") {
		return errors.New("bad format of filter (expected name=value)")
	}
	f.vals = append(f.vals, v)
	return nil
}

func (f *filterFlag) filters() client.Filters {
	out := client.Filters{}
	for _, v := range f.vals {
		k, val, _ := strings.Cut(v, "=")
		out.Add(strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(val))
	}
	return out
}

// forEach runs fn per argument, printing the argument on success (docker's
// stop/kill/rm/restart/start echo) and collecting failures.
func (c *CLI) forEach(args []string, echo bool, fn func(arg string) error) error {
	var errs []string
	for _, a := range args {
		if err := fn(a); err != nil {
			errs = append(errs, c.errorText(err))
			continue
		}
		if echo {
			fmt.Fprintln(c.Out, a)
		}
	}
	return joinErrors(errs)
}

// forEachParallel is forEach with the calls made concurrently, as docker
// does for stop/kill/restart/rm (several 10 s stops should not add up);
// results are still reported in argument order.
func (c *CLI) forEachParallel(args []string, fn func(arg string) error) error {
	results := make([]error, len(args))
	var wg sync.WaitGroup
	for i, a := range args {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = fn(a)
		}()
	}
	wg.Wait()
	var errs []string
	for i, a := range args {
		if results[i] != nil {
			errs = append(errs, c.errorText(results[i]))
			continue
		}
		fmt.Fprintln(c.Out, a)
	}
	return joinErrors(errs)
}

func newStartCommand(c *CLI) *cobra.Command {
	var attach, interactive bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "start [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Start one or more stopped containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if !attach && !interactive {
				return c.forEach(args, true, func(a string) error {
					_, err := cl.ContainerStart(ctx, a, client.ContainerStartOptions{})
					return err
				})
			}
			if len(args) > 1 {
				return errors.New("you cannot start and attach multiple containers at once")
			}
			return c.startAttached(ctx, cl, args[0], interactive, detachKeys)
		},
	}
	cmd.Flags().BoolVarP(&attach, "attach", "a", false, "Attach STDOUT/STDERR and forward signals")
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "Attach container's STDIN")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

// startAttached is `start -a [-i]`: attach, start, stream, exit with the
// container's status.
func (c *CLI) startAttached(ctx context.Context, cl *client.Client, ref string, interactive bool, detachKeys string) error {
	insp, err := cl.ContainerInspect(ctx, ref, client.ContainerInspectOptions{})
	if err != nil {
		return err
	}
	ctr := insp.Container
	tty := ctr.Config != nil && ctr.Config.Tty
	openStdin := ctr.Config != nil && ctr.Config.OpenStdin
	id := ctr.ID
	if !tty {
		stop := proxySignals(ctx, cl, id, c.Err)
		defer stop()
	}
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	withStdin := interactive && openStdin
	resp, err := cl.ContainerAttach(streamCtx, id, client.ContainerAttachOptions{Stream: true, Stdin: withStdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
	if err != nil {
		return err
	}
	defer resp.Close()
	restore := c.rawTerminal(tty && withStdin)
	defer restore()
	so := streamOptions{tty: tty, stdout: c.Out, stderr: c.Err, detachKeys: detachKeys}
	if withStdin {
		so.stdin = c.In
	}
	streamErr := make(chan error, 1)
	go func() { streamErr <- streamHijacked(streamCtx, resp.HijackedResponse, so) }()
	statusC := waitExit(context.WithoutCancel(ctx), cl, id, false)
	if _, err := cl.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		cancel()
		<-streamErr
		return err
	}
	if tty {
		stopResize := c.monitorTTYSize(ctx, func(h, w uint) error {
			_, err := cl.ContainerResize(ctx, id, client.ContainerResizeOptions{Height: h, Width: w})
			return err
		})
		defer stopResize()
	}
	if err := <-streamErr; errors.Is(err, errDetached) {
		return nil
	} else if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	restore()
	if status := <-statusC; status != 0 {
		return StatusError{Status: status}
	}
	return nil
}

func newStopCommand(c *CLI, restart bool) *cobra.Command {
	var timeout int
	var sig string
	use, short := "stop [OPTIONS] CONTAINER [CONTAINER...]", "Stop one or more running containers"
	if restart {
		use, short = "restart [OPTIONS] CONTAINER [CONTAINER...]", "Restart one or more containers"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var t *int
			if cmd.Flags().Changed("timeout") {
				t = &timeout
			}
			return c.forEachParallel(args, func(a string) error {
				if restart {
					_, err := cl.ContainerRestart(cmd.Context(), a, client.ContainerRestartOptions{Signal: sig, Timeout: t})
					return err
				}
				_, err := cl.ContainerStop(cmd.Context(), a, client.ContainerStopOptions{Signal: sig, Timeout: t})
				return err
			})
		},
	}
	cmd.Flags().IntVarP(&timeout, "timeout", "t", 0, "Seconds to wait before killing the container")
	cmd.Flags().IntVar(&timeout, "time", 0, "Seconds to wait before killing the container (deprecated: use --timeout)")
	cmd.Flags().MarkHidden("time")
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func newKillCommand(c *CLI) *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Kill one or more running containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEachParallel(args, func(a string) error {
				_, err := cl.ContainerKill(cmd.Context(), a, client.ContainerKillOptions{Signal: sig})
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "", "Signal to send to the container")
	return cmd
}

func newRmCommand(c *CLI) *cobra.Command {
	var force, volumes, link bool
	cmd := &cobra.Command{
		Use:   "rm [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Remove one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEachParallel(args, func(a string) error {
				a = strings.Trim(a, "/")
				if a == "" {
					return errors.New("Container name cannot be empty")
				}
				_, err := cl.ContainerRemove(cmd.Context(), a, client.ContainerRemoveOptions{Force: force, RemoveVolumes: volumes, RemoveLinks: link})
				if err != nil && isNotFound(err) && force {
					return nil
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of a running container (uses SIGKILL)")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "Remove anonymous volumes associated with the container")
	cmd.Flags().BoolVarP(&link, "link", "l", false, "Remove the specified link")
	return cmd
}

func newWaitCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER [CONTAINER...]",
		Short: "Block until one or more containers stop, then print their exit codes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var errs []string
			for _, a := range args {
				res := cl.ContainerWait(cmd.Context(), a, client.ContainerWaitOptions{})
				select {
				case r := <-res.Result:
					fmt.Fprintf(c.Out, "%d\n", r.StatusCode)
				case err := <-res.Error:
					errs = append(errs, c.errorText(err))
				}
			}
			return joinErrors(errs)
		},
	}
}

func newRenameCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "rename CONTAINER NEW_NAME",
		Short: "Rename a container",
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			newName := strings.TrimPrefix(strings.TrimSpace(args[1]), "/")
			if newName == "" {
				return errors.New("Error: Neither old nor new names may be empty")
			}
			if _, err := cl.ContainerRename(cmd.Context(), args[0], client.ContainerRenameOptions{NewName: newName}); err != nil {
				return fmt.Errorf("%w\nError: failed to rename container named %s", err, args[0])
			}
			return nil
		},
	}
}

func newPauseCommand(c *CLI, pause bool) *cobra.Command {
	use, short := "pause CONTAINER [CONTAINER...]", "Pause all processes within one or more containers"
	if !pause {
		use, short = "unpause CONTAINER [CONTAINER...]", "Unpause all processes within one or more containers"
	}
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(a string) error {
				if pause {
					_, err := cl.ContainerPause(cmd.Context(), a, client.ContainerPauseOptions{})
					return err
				}
				_, err := cl.ContainerUnpause(cmd.Context(), a, client.ContainerUnpauseOptions{})
				return err
			})
		},
	}
}

func newTopCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Display the running processes of a container",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.ContainerTop(cmd.Context(), args[0], client.ContainerTopOptions{Arguments: args[1:]})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.Out, 20, 1, 3, ' ', 0)
			fmt.Fprintln(w, strings.Join(res.Titles, "\t"))
			for _, p := range res.Processes {
				fmt.Fprintln(w, strings.Join(p, "\t"))
			}
			return w.Flush()
		},
	}
}

func newAttachCommand(c *CLI) *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [OPTIONS] CONTAINER",
		Short: "Attach local standard input, output, and error streams to a running container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			insp, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			ctr := insp.Container
			if ctr.State == nil || !ctr.State.Running {
				return errors.New("You cannot attach to a stopped container, start it first")
			}
			if ctr.State.Paused {
				return errors.New("You cannot attach to a paused container, unpause it first")
			}
			tty := ctr.Config != nil && ctr.Config.Tty
			withStdin := !noStdin && ctr.Config != nil && ctr.Config.OpenStdin
			if withStdin && tty && !isTerminal(c.In) {
				return errors.New("the input device is not a TTY")
			}
			if sigProxy && !tty {
				stop := proxySignals(ctx, cl, ctr.ID, c.Err)
				defer stop()
			}
			resp, err := cl.ContainerAttach(ctx, ctr.ID, client.ContainerAttachOptions{Stream: true, Stdin: withStdin, Stdout: true, Stderr: true, DetachKeys: detachKeys})
			if err != nil {
				return err
			}
			defer resp.Close()
			restore := c.rawTerminal(tty && withStdin)
			defer restore()
			if tty {
				stop := c.monitorTTYSize(ctx, func(h, w uint) error {
					_, err := cl.ContainerResize(ctx, ctr.ID, client.ContainerResizeOptions{Height: h, Width: w})
					return err
				})
				defer stop()
			}
			so := streamOptions{tty: tty, stdout: c.Out, stderr: c.Err, detachKeys: detachKeys}
			if withStdin {
				so.stdin = c.In
			}
			if err := streamHijacked(ctx, resp.HijackedResponse, so); errors.Is(err, errDetached) {
				return nil
			} else if err != nil {
				return err
			}
			restore()
			after, err := cl.ContainerInspect(ctx, ctr.ID, client.ContainerInspectOptions{})
			if err == nil && after.Container.State != nil && !after.Container.State.Running && after.Container.State.ExitCode != 0 {
				return StatusError{Status: after.Container.State.ExitCode}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&noStdin, "no-stdin", false, "Do not attach STDIN")
	cmd.Flags().BoolVar(&sigProxy, "sig-proxy", true, "Proxy all received signals to the process")
	cmd.Flags().StringVar(&detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func newLogsCommand(c *CLI) *cobra.Command {
	var o client.ContainerLogsOptions
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Fetch the logs of a container",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			insp, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			o.ShowStdout, o.ShowStderr = true, true
			rc, err := cl.ContainerLogs(ctx, insp.Container.ID, o)
			if err != nil {
				return err
			}
			defer rc.Close()
			if insp.Container.Config != nil && insp.Container.Config.Tty {
				_, err = io.Copy(c.Out, rc)
				return err
			}
			return demux(c.Out, c.Err, rc)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.Follow, "follow", "f", false, "Follow log output")
	f.StringVar(&o.Since, "since", "", `Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)`)
	f.StringVar(&o.Until, "until", "", `Show logs before a timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m" for 42 minutes)`)
	f.BoolVarP(&o.Timestamps, "timestamps", "t", false, "Show timestamps")
	f.BoolVar(&o.Details, "details", false, "Show extra details provided to logs")
	f.StringVarP(&o.Tail, "tail", "n", "all", "Number of lines to show from the end of the logs")
	return cmd
}

func newExecCommand(c *CLI) *cobra.Command {
	var o struct {
		detach, interactive, tty, privileged bool
		env, envFile                         []string
		user, workdir, detachKeys            string
	}
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Execute a command in a running container",
		Args:  minArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			env, err := buildEnv(o.envFile, o.env)
			if err != nil {
				return err
			}
			if !o.detach && o.interactive && o.tty && !isTerminal(c.In) {
				return errors.New("the input device is not a TTY")
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := cl.ContainerInspect(ctx, args[0], client.ContainerInspectOptions{}); err != nil {
				return err
			}
			create := client.ExecCreateOptions{
				User: o.user, Privileged: o.privileged, TTY: o.tty, Env: env, WorkingDir: o.workdir, Cmd: args[1:],
				DetachKeys: o.detachKeys,
			}
			if !o.detach {
				create.AttachStdin = o.interactive
				create.AttachStdout, create.AttachStderr = true, true
			}
			if o.tty {
				sz := c.terminalSize()
				create.ConsoleSize = client.ConsoleSize{Height: sz[0], Width: sz[1]}
			}
			ex, err := cl.ExecCreate(ctx, args[0], create)
			if err != nil {
				return err
			}
			if o.detach {
				_, err := cl.ExecStart(ctx, ex.ID, client.ExecStartOptions{Detach: true, TTY: o.tty})
				return err
			}
			resp, err := cl.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{TTY: o.tty, ConsoleSize: create.ConsoleSize})
			if err != nil {
				return err
			}
			defer resp.Close()
			restore := c.rawTerminal(o.tty && o.interactive)
			defer restore()
			if o.tty {
				stop := c.monitorTTYSize(ctx, func(h, w uint) error {
					_, err := cl.ExecResize(ctx, ex.ID, client.ExecResizeOptions{Height: h, Width: w})
					return err
				})
				defer stop()
			}
			so := streamOptions{tty: o.tty, stdout: c.Out, stderr: c.Err, detachKeys: o.detachKeys}
			if o.interactive {
				so.stdin = c.In
			}
			if err := streamHijacked(ctx, resp.HijackedResponse, so); errors.Is(err, errDetached) {
				return nil
			} else if err != nil {
				return err
			}
			restore()
			st, err := cl.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
			if err != nil {
				return err
			}
			if st.ExitCode != 0 {
				return StatusError{Status: st.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.BoolVarP(&o.detach, "detach", "d", false, "Detached mode: run command in the background")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "Keep STDIN open even if not attached")
	f.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.BoolVar(&o.privileged, "privileged", false, "Give extended privileges to the command")
	f.StringArrayVarP(&o.env, "env", "e", nil, "Set environment variables")
	f.StringArrayVar(&o.envFile, "env-file", nil, "Read in a file of environment variables")
	f.StringVarP(&o.user, "user", "u", "", `Username or UID (format: "<name|uid>[:<group|gid>]")`)
	f.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	f.StringVar(&o.detachKeys, "detach-keys", "", "Override the key sequence for detaching a container")
	return cmd
}

func newContainerInspectCommand(c *CLI) *cobra.Command {
	var format string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Display detailed information on one or more containers",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return inspectAll(cmd.Context(), c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				r, err := cl.ContainerInspect(ctx, ref, client.ContainerInspectOptions{Size: size})
				return r.Container, r.Raw, err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "Display total file sizes")
	return cmd
}

func newPortCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List port mappings or a specific mapping for the container",
		Args:  rangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			insp, err := cl.ContainerInspect(cmd.Context(), args[0], client.ContainerInspectOptions{})
			if err != nil {
				return err
			}
			ns := insp.Container.NetworkSettings
			if ns == nil {
				return nil
			}
			var lines []string
			for p, bs := range ns.Ports {
				if len(args) == 2 {
					want := args[1]
					if !strings.Contains(want, "/") {
						want += "/tcp"
					}
					if p.String() != want {
						continue
					}
				}
				for _, b := range bs {
					host := "0.0.0.0"
					if b.HostIP.IsValid() {
						host = b.HostIP.String()
					}
					if len(args) == 2 {
						lines = append(lines, fmt.Sprintf("%s:%s", host, b.HostPort))
					} else {
						lines = append(lines, fmt.Sprintf("%s -> %s:%s", p, host, b.HostPort))
					}
				}
			}
			if len(args) == 2 && len(lines) == 0 {
				return fmt.Errorf("Error: No public port '%s' published for %s", args[1], args[0])
			}
			sort.Strings(lines)
			for _, l := range lines {
				fmt.Fprintln(c.Out, l)
			}
			return nil
		},
	}
}
