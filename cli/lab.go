package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal/shoal/errdefs"
	"github.com/shoal/shoal/lab"
)

// newLabCommand is `shoal lab`: many hosts on this machine, and faults.
func newLabCommand(c *CLI) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a cluster of Shoal hosts on this machine, and break it on purpose",
		Long: `A lab is a set of "hosts" on this machine: each node is a network namespace
with its own hostname and its own shoald, joined to the others by a bridge.
By default the nodes form a swarm and a registry runs on the bridge.

  shoal lab up --nodes 5 --managers 3
  eval "$(shoal lab env node1)"; docker node ls
  shoal lab partition node1 --from node2
  shoal lab kill node3; shoal lab start node3
  shoal lab down`,
	}
	def := os.Getenv("SHOAL_LAB")
	if def == "" {
		def = lab.DefaultName
	}
	cmd.PersistentFlags().StringVar(&name, "name", def, "Lab name (env SHOAL_LAB)")
	cmd.AddCommand(
		newLabUpCommand(c, &name),
		newLabDownCommand(c, &name),
		newLabLsCommand(c, &name),
		newLabEnvCommand(c, &name),
		newLabFaultCommand(c, &name, "stop", "Shut nodes down cleanly (daemon, then containers)", (*lab.Lab).Stop),
		newLabFaultCommand(c, &name, "start", "Boot stopped or killed nodes again, keeping their data", (*lab.Lab).Start),
		newLabFaultCommand(c, &name, "kill", "Make nodes die at once: SIGKILL to the daemon and everything it runs", (*lab.Lab).Kill),
		newLabFaultCommand(c, &name, "restart-daemon", "Restart only the nodes' daemons (containers keep running), as an engine upgrade does", (*lab.Lab).RestartDaemon),
		newLabPartitionCommand(c, &name),
		newLabHealCommand(c, &name),
		newLabExecCommand(c, &name),
		newLabLogsCommand(c, &name),
	)
	return cmd
}

// signalContext ends when the user interrupts the command.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
}

func newLabUpCommand(c *CLI, name *string) *cobra.Command {
	var o lab.Options
	var quiet bool
	cmd := &cobra.Command{
		Use:   "up [OPTIONS]",
		Short: "Create a lab: nodes, daemons, registry and swarm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			o.Name = *name
			if !quiet {
				o.Progress = c.Err
			}
			l, err := lab.Up(ctx, o)
			if err != nil {
				return err
			}
			defer l.Close()
			return printLab(c.Out, l)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Nodes, "nodes", 3, "Number of nodes")
	f.IntVar(&o.Managers, "managers", 1, "Number of swarm managers (node1 first)")
	f.StringVar(&o.Subnet, "subnet", lab.DefaultSubnet, "IPv4 subnet of the lab network")
	f.BoolVar(&o.NoSwarm, "no-swarm", false, "Do not form a swarm")
	f.BoolVar(&o.NoRegistry, "no-registry", false, "Do not run a registry on the bridge")
	f.BoolVar(&o.NoImages, "no-images", false, "Do not push the demo images to the lab registry")
	f.StringVar(&o.ShoaldPath, "shoald", "", "shoald binary (default: next to shoal, else PATH)")
	f.StringArrayVar(&o.DaemonArgs, "daemon-arg", nil, "Extra shoald flag for every node (repeatable)")
	f.DurationVar(&o.HeartbeatPeriod, "heartbeat", 0, "Swarm dispatcher heartbeat period (default 5s)")
	f.DurationVar(&o.StopTimeout, "stop-timeout", 10*time.Second, "Grace period for containers when a node stops")
	f.BoolVarP(&quiet, "quiet", "q", false, "Print only the summary")
	return cmd
}

// printLab prints each node's name, address, role, state and DOCKER_HOST.
func printLab(w io.Writer, l *lab.Lab) error {
	st, err := l.State()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tIP\tROLE\tSTATE\tDOCKER_HOST")
	for _, n := range st.Nodes {
		role := n.Role
		if role == "" {
			role = "-"
		}
		state, err := l.Status(n.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.Name, n.IP, role, state, n.Host())
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.Registry != "" {
		fmt.Fprintf(w, "registry: %s\n", st.Registry)
	}
	for _, p := range st.Partitions {
		fmt.Fprintf(w, "partitioned: %s <-/-> %s\n", p[0], p[1])
	}
	if len(st.Nodes) > 0 {
		flag := ""
		if st.Name != lab.DefaultName {
			flag = " --name " + st.Name
		}
		fmt.Fprintf(w, "use a node: eval \"$(shoal lab env%s %s)\"\n", flag, st.Nodes[0].Name)
	}
	return nil
}

func newLabDownCommand(c *CLI, name *string) *cobra.Command {
	var keep, verbose bool
	cmd := &cobra.Command{
		Use:   "down [OPTIONS]",
		Short: "Remove a lab and everything it made",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			o := lab.DownOptions{KeepData: keep}
			if verbose {
				o.Progress = c.Err
			}
			found, err := lab.Down(ctx, *name, o)
			if err != nil {
				return err
			}
			if !found {
				fmt.Fprintf(c.Err, "no lab named %q\n", *name)
				return nil
			}
			fmt.Fprintf(c.Out, "lab %q removed\n", *name)
			return nil
		},
	}
	cmd.Flags().BoolVar(&keep, "keep-data", false, "Keep the nodes' data roots and the registry storage")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "Say what is removed")
	return cmd
}

func newLabLsCommand(c *CLI, name *string) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "ps"},
		Short:   "List a lab's nodes and their state",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all {
				names, err := lab.List()
				if err != nil {
					return err
				}
				for _, n := range names {
					fmt.Fprintln(c.Out, n)
				}
				return nil
			}
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			return printLab(c.Out, l)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "List the names of every lab on this machine")
	return cmd
}

func newLabEnvCommand(c *CLI, name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "env NODE",
		Short: "Print the shell exports that point docker and shoal at a node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			n := l.Node(args[0])
			if n == nil {
				return errdefs.NotFound("lab %q has no node %q", *name, args[0])
			}
			fmt.Fprintf(c.Out, "export DOCKER_HOST=%s\n", n.Host())
			fmt.Fprintf(c.Out, "export SHOAL_HOST=%s\n", n.Host())
			fmt.Fprintf(c.Out, "# run this command with eval \"$(shoal lab env %s)\"\n", n.Name)
			return nil
		},
	}
}

// newLabFaultCommand builds stop/start/kill, which act on each named node.
func newLabFaultCommand(c *CLI, name *string, verb, short string, op func(*lab.Lab, context.Context, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NODE [NODE...]",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext(cmd)
			defer cancel()
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			for _, n := range args {
				if err := op(l, ctx, n); err != nil {
					return err
				}
				fmt.Fprintln(c.Out, n)
			}
			return nil
		},
	}
}

func newLabPartitionCommand(c *CLI, name *string) *cobra.Command {
	var from []string
	cmd := &cobra.Command{
		Use:   "partition NODE [NODE...] [--from NODE...]",
		Short: "Cut all traffic between the nodes and the others (or only those --from)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			if err := l.Partition(cmd.Context(), args, from); err != nil {
				return err
			}
			other := "the rest of the lab"
			if len(from) > 0 {
				other = strings.Join(from, " ")
			}
			fmt.Fprintf(c.Out, "partitioned %s from %s\n", strings.Join(args, " "), other)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&from, "from", nil, "Cut only from these nodes (repeatable or comma-separated)")
	return cmd
}

func newLabHealCommand(c *CLI, name *string) *cobra.Command {
	return &cobra.Command{
		Use:   "heal",
		Short: "Remove every partition",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			if err := l.Heal(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(c.Out, "healed")
			return nil
		},
	}
}

func newLabExecCommand(c *CLI, name *string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec NODE [--] COMMAND [ARG...]",
		Short: "Run a command inside a node, with DOCKER_HOST set to its daemon",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			argv := args[1:]
			if argv[0] == "--" {
				argv = argv[1:]
			}
			if len(argv) == 0 {
				return errdefs.InvalidParameter("lab exec needs a command after %s", args[0])
			}
			x, err := l.Command(cmd.Context(), args[0], argv[0], argv[1:]...)
			if err != nil {
				return err
			}
			x.Stdin, x.Stdout, x.Stderr = c.In, c.Out, c.Err
			// The terminal's ^C reaches the command directly; shoal waits.
			signal.Ignore(os.Interrupt)
			err = x.Run()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code := ee.ExitCode()
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					code = 128 + int(ws.Signal())
				}
				return StatusError{Status: code}
			}
			return err
		},
	}
	// Everything after NODE belongs to the command, flags included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}

func newLabLogsCommand(c *CLI, name *string) *cobra.Command {
	var path bool
	cmd := &cobra.Command{
		Use:   "logs NODE",
		Short: "Print a node daemon's log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := lab.Open(*name)
			if err != nil {
				return err
			}
			defer l.Close()
			n := l.Node(args[0])
			if n == nil {
				return errdefs.NotFound("lab %q has no node %q", *name, args[0])
			}
			if path {
				fmt.Fprintln(c.Out, n.Logs())
				return nil
			}
			f, err := os.Open(n.Logs())
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(c.Out, f)
			return err
		},
	}
	cmd.Flags().BoolVar(&path, "path", false, "Print the log file's path only")
	return cmd
}
