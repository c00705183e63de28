package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// swarmSpecOptions are the cluster settings shared by init and update.
type swarmSpecOptions struct {
	taskHistoryLimit    int64
	dispatcherHeartbeat time.Duration
	certExpiry          time.Duration
	maxSnapshots        uint64
	snapshotInterval    uint64
	autolock            bool
}

func addSwarmSpecFlags(f *pflag.FlagSet, o *swarmSpecOptions) {
	f.Int64Var(&o.taskHistoryLimit, "task-history-limit", 5, "Task history retention limit")
	f.DurationVar(&o.dispatcherHeartbeat, "dispatcher-heartbeat", 5*time.Second, "Dispatcher heartbeat period (ns|us|ms|s|m|h)")
	f.DurationVar(&o.certExpiry, "cert-expiry", 90*24*time.Hour, "Validity period for node certificates (ns|us|ms|s|m|h)")
	f.Uint64Var(&o.maxSnapshots, "max-snapshots", 0, "Number of additional Raft snapshots to retain")
	f.Uint64Var(&o.snapshotInterval, "snapshot-interval", 10000, "Number of log entries between Raft snapshots")
}

// mergeSwarmSpec applies only the flags the user set, like docker.
func (o *swarmSpecOptions) mergeSwarmSpec(spec *swarm.Spec, f *pflag.FlagSet) {
	if f.Changed("task-history-limit") {
		v := o.taskHistoryLimit
		spec.Orchestration.TaskHistoryRetentionLimit = &v
	}
	if f.Changed("dispatcher-heartbeat") {
		spec.Dispatcher.HeartbeatPeriod = o.dispatcherHeartbeat
	}
	if f.Changed("max-snapshots") {
		v := o.maxSnapshots
		spec.Raft.KeepOldSnapshots = &v
	}
	if f.Changed("snapshot-interval") {
		spec.Raft.SnapshotInterval = o.snapshotInterval
	}
	if f.Changed("autolock") {
		spec.EncryptionConfig.AutoLockManagers = o.autolock
	}
	if f.Changed("cert-expiry") {
		spec.CAConfig.NodeCertExpiry = o.certExpiry
	}
}

// nodeAddrValue is docker's node-addr flag: "ip|interface[:port]",
// defaulting the port to 2377.
type nodeAddrValue struct{ addr string }

func (a *nodeAddrValue) String() string { return a.addr }
func (a *nodeAddrValue) Type() string   { return "node-addr" }
func (a *nodeAddrValue) Set(v string) error {
	addr, err := normalizeNodeAddr(v, "2377")
	if err != nil {
		return err
	}
	a.addr = addr
	return nil
}

func normalizeNodeAddr(v, defPort string) (string, error) {
	v = strings.TrimPrefix(v, "tcp://")
	if v == "" {
		return "", errors.New("invalid address: empty")
	}
	if strings.Contains(v, "://") {
		return "", fmt.Errorf("invalid proto, expected tcp: %s", v)
	}
	if ap, err := netip.ParseAddrPort(v); err == nil {
		return ap.String(), nil
	}
	if a, err := netip.ParseAddr(strings.Trim(v, "[]")); err == nil {
		return netip.AddrPortFrom(a, 0).Addr().String() + ":" + defPort, nil
	}
	host, port, ok := strings.Cut(v, ":")
	if !ok || port == "" {
		port = defPort
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host + ":" + port, nil
}

func parseAvailability(f *pflag.FlagSet, v string) (swarm.NodeAvailability, error) {
	if !f.Changed("availability") {
		return "", nil
	}
	switch a := swarm.NodeAvailability(strings.ToLower(v)); a {
	case swarm.NodeAvailabilityActive, swarm.NodeAvailabilityPause, swarm.NodeAvailabilityDrain:
		return a, nil
	}
	return "", fmt.Errorf("invalid availability %q, only active, pause and drain are supported", v)
}

func newSwarmCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "swarm", Short: "Manage Swarm"}
	cmd.AddCommand(newSwarmInitCommand(c), newSwarmJoinCommand(c), newSwarmJoinTokenCommand(c),
		newSwarmLeaveCommand(c), newSwarmUpdateCommand(c), newSwarmUnlockKeyCommand(c), newSwarmUnlockCommand(c),
		newSwarmCACommand(c))
	return cmd
}

func newSwarmInitCommand(c *CLI) *cobra.Command {
	var o struct {
		spec                           swarmSpecOptions
		listen                         nodeAddrValue
		advertise, dataPathAddr, avail string
		dataPathPort, poolMaskLen      uint32
		forceNewCluster                bool
		pools                          []string
	}
	o.listen.addr = "0.0.0.0:2377"
	cmd := &cobra.Command{
		Use:   "init [OPTIONS]",
		Short: "Initialize a swarm",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			f := cmd.Flags()
			avail, err := parseAvailability(f, o.avail)
			if err != nil {
				return err
			}
			pools := []netip.Prefix{}
			for _, p := range o.pools {
				for _, s := range strings.Split(p, ",") {
					pf, err := netip.ParsePrefix(strings.TrimSpace(s))
					if err != nil {
						return fmt.Errorf("invalid argument %q for \"--default-addr-pool\" flag: %w", s, err)
					}
					pools = append(pools, pf)
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			var spec swarm.Spec
			o.spec.mergeSwarmSpec(&spec, f)
			res, err := cl.SwarmInit(ctx, client.SwarmInitOptions{
				ListenAddr: o.listen.addr, AdvertiseAddr: o.advertise, DataPathAddr: o.dataPathAddr,
				DataPathPort: o.dataPathPort, DefaultAddrPool: pools, ForceNewCluster: o.forceNewCluster,
				Spec: spec, AutoLockManagers: o.spec.autolock, Availability: avail, SubnetSize: o.poolMaskLen,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.Out, "Swarm initialized: current node (%s) is now a manager.\n\n", res.NodeID)
			if err := c.printJoinCommand(ctx, cl, res.NodeID, true, false); err != nil {
				return err
			}
			fmt.Fprintf(c.Out, "To add a manager to this swarm, run '%s swarm join-token manager' and follow the instructions.\n", binName(cmd))
			if o.spec.autolock {
				k, err := cl.SwarmGetUnlockKey(ctx)
				if err != nil {
					return fmt.Errorf("could not fetch unlock key: %w", err)
				}
				printUnlockCommand(c.Out, binName(cmd), k.Key)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Var(&o.listen, "listen-addr", `Listen address (format: "<ip|interface>[:port]")`)
	f.StringVar(&o.advertise, "advertise-addr", "", `Advertised address (format: "<ip|interface>[:port]")`)
	f.StringVar(&o.dataPathAddr, "data-path-addr", "", `Address or interface to use for data path traffic (format: "<ip|interface>")`)
	f.Uint32Var(&o.dataPathPort, "data-path-port", 0, "Port number to use for data path traffic (1024 - 49151). If no value is set or is set to 0, the default port (4789) is used.")
	f.BoolVar(&o.forceNewCluster, "force-new-cluster", false, "Force create a new cluster from current state")
	f.BoolVar(&o.spec.autolock, "autolock", false, "Enable manager autolocking (requiring an unlock key to start a stopped manager)")
	f.StringVar(&o.avail, "availability", "active", `Availability of the node ("active", "pause", "drain")`)
	f.StringArrayVar(&o.pools, "default-addr-pool", nil, "default address pool in CIDR format")
	f.Uint32Var(&o.poolMaskLen, "default-addr-pool-mask-length", 24, "default address pool subnet mask length")
	addSwarmSpecFlags(f, &o.spec)
	return cmd
}

// printJoinCommand prints docker's "To add a worker ..." hint using the
// node's manager address and the cluster's join tokens.
func (c *CLI) printJoinCommand(ctx context.Context, cl *client.Client, nodeID string, worker, manager bool) error {
	node, err := cl.NodeInspect(ctx, nodeID, client.NodeInspectOptions{})
	if err != nil {
		return err
	}
	sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
	if err != nil {
		return err
	}
	if node.Node.ManagerStatus == nil {
		return nil
	}
	bin := "shoal"
	if worker {
		fmt.Fprintf(c.Out, "To add a worker to this swarm, run the following command:\n\n    %s swarm join --token %s %s\n\n",
			bin, sw.Swarm.JoinTokens.Worker, node.Node.ManagerStatus.Addr)
	}
	if manager {
		fmt.Fprintf(c.Out, "To add a manager to this swarm, run the following command:\n\n    %s swarm join --token %s %s\n\n",
			bin, sw.Swarm.JoinTokens.Manager, node.Node.ManagerStatus.Addr)
	}
	return nil
}

func printUnlockCommand(out io.Writer, bin, key string) {
	if key == "" {
		return
	}
	fmt.Fprintf(out, "To unlock a swarm manager after it restarts, run the `%s swarm unlock`\ncommand and provide the following key:\n\n    %s\n\n"+
		"Remember to store this key in a password manager, since without it you\nwill not be able to restart the manager.\n", bin, key)
}

func newSwarmJoinCommand(c *CLI) *cobra.Command {
	var o struct {
		listen                                nodeAddrValue
		advertise, dataPathAddr, token, avail string
	}
	o.listen.addr = "0.0.0.0:2377"
	cmd := &cobra.Command{
		Use:   "join [OPTIONS] HOST:PORT",
		Short: "Join a swarm as a node and/or manager",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			avail, err := parseAvailability(cmd.Flags(), o.avail)
			if err != nil {
				return err
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := cl.SwarmJoin(ctx, client.SwarmJoinOptions{
				JoinToken: o.token, ListenAddr: o.listen.addr, AdvertiseAddr: o.advertise, DataPathAddr: o.dataPathAddr,
				RemoteAddrs: []string{args[0]}, Availability: avail,
			}); err != nil {
				return err
			}
			info, err := cl.Info(ctx, client.InfoOptions{})
			if err != nil {
				return err
			}
			if info.Info.Swarm.ControlAvailable {
				fmt.Fprintln(c.Out, "This node joined a swarm as a manager.")
			} else {
				fmt.Fprintln(c.Out, "This node joined a swarm as a worker.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.Var(&o.listen, "listen-addr", `Listen address (format: "<ip|interface>[:port]")`)
	f.StringVar(&o.advertise, "advertise-addr", "", `Advertised address (format: "<ip|interface>[:port]")`)
	f.StringVar(&o.dataPathAddr, "data-path-addr", "", `Address or interface to use for data path traffic (format: "<ip|interface>")`)
	f.StringVar(&o.token, "token", "", "Token for entry into the swarm")
	f.StringVar(&o.avail, "availability", "active", `Availability of the node ("active", "pause", "drain")`)
	return cmd
}

func newSwarmJoinTokenCommand(c *CLI) *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:   "join-token [OPTIONS] (worker|manager)",
		Short: "Manage join tokens",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			role := args[0]
			worker, manager := role == "worker", role == "manager"
			if !worker && !manager {
				return errors.New("unknown role " + role)
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if rotate {
				sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
				if err != nil {
					return err
				}
				if _, err := cl.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Swarm.Version, Spec: sw.Swarm.Spec,
					RotateWorkerToken: worker, RotateManagerToken: manager}); err != nil {
					return err
				}
				if !quiet {
					fmt.Fprintf(c.Out, "Successfully rotated %s join token.\n\n", role)
				}
			}
			sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
			if err != nil {
				return err
			}
			if quiet {
				if worker {
					fmt.Fprintln(c.Out, sw.Swarm.JoinTokens.Worker)
				} else {
					fmt.Fprintln(c.Out, sw.Swarm.JoinTokens.Manager)
				}
				return nil
			}
			info, err := cl.Info(ctx, client.InfoOptions{})
			if err != nil {
				return err
			}
			if info.Info.Swarm.NodeID == "" {
				return errors.New("invalid node name or ID: value is empty")
			}
			return c.printJoinCommand(ctx, cl, info.Info.Swarm.NodeID, worker, manager)
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Rotate join token")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display token")
	return cmd
}

func newSwarmLeaveCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "leave [OPTIONS]",
		Short: "Leave the swarm",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if _, err := cl.SwarmLeave(cmd.Context(), client.SwarmLeaveOptions{Force: force}); err != nil {
				return err
			}
			fmt.Fprintln(c.Out, "Node left the swarm.")
			return nil
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force this node to leave the swarm, ignoring warnings")
	return cmd
}

func newSwarmUpdateCommand(c *CLI) *cobra.Command {
	var o swarmSpecOptions
	cmd := &cobra.Command{
		Use:   "update [OPTIONS]",
		Short: "Update the swarm",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().NFlag() == 0 {
				return StatusError{Status: 1, Message: fmt.Sprintf("%s: '%s' requires at least one flag\n\nUsage:  %s\n\nRun '%s --help' for more information",
					binName(cmd), cmd.CommandPath(), cmd.UseLine(), cmd.CommandPath())}
			}
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
			if err != nil {
				return err
			}
			prev := sw.Swarm.Spec.EncryptionConfig.AutoLockManagers
			o.mergeSwarmSpec(&sw.Swarm.Spec, cmd.Flags())
			if _, err := cl.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Swarm.Version, Spec: sw.Swarm.Spec}); err != nil {
				return err
			}
			fmt.Fprintln(c.Out, "Swarm updated.")
			if sw.Swarm.Spec.EncryptionConfig.AutoLockManagers && !prev {
				k, err := cl.SwarmGetUnlockKey(ctx)
				if err != nil {
					return fmt.Errorf("could not fetch unlock key: %w", err)
				}
				printUnlockCommand(c.Out, binName(cmd), k.Key)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.autolock, "autolock", false, "Change manager autolocking setting (true|false)")
	addSwarmSpecFlags(cmd.Flags(), &o)
	return cmd
}

func newSwarmUnlockKeyCommand(c *CLI) *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:   "unlock-key [OPTIONS]",
		Short: "Manage the unlock key",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if rotate {
				sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
				if err != nil {
					return err
				}
				if !sw.Swarm.Spec.EncryptionConfig.AutoLockManagers {
					return errors.New("cannot rotate because autolock is not turned on")
				}
				if _, err := cl.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Swarm.Version, Spec: sw.Swarm.Spec, RotateManagerUnlockKey: true}); err != nil {
					return err
				}
				if !quiet {
					fmt.Fprintln(c.Out, "Successfully rotated manager unlock key.")
				}
			}
			k, err := cl.SwarmGetUnlockKey(ctx)
			if err != nil {
				return fmt.Errorf("could not fetch unlock key: %w", err)
			}
			if k.Key == "" {
				return errors.New("no unlock key is set")
			}
			if quiet {
				fmt.Fprintln(c.Out, k.Key)
				return nil
			}
			printUnlockCommand(c.Out, binName(cmd), k.Key)
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Rotate unlock key")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display token")
	return cmd
}

func newSwarmUnlockCommand(c *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "unlock",
		Short: "Unlock swarm",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			info, err := cl.Info(ctx, client.InfoOptions{})
			if err != nil {
				return err
			}
			switch info.Info.Swarm.LocalNodeState {
			case swarm.LocalNodeStateInactive:
				return errors.New("Error: This node is not part of a swarm")
			case swarm.LocalNodeStateLocked:
			default:
				return errors.New("Error: swarm is not locked")
			}
			if isTerminal(c.In) {
				fmt.Fprint(c.Out, "Enter unlock key: ")
			}
			key, err := readLine(c.In)
			if err != nil {
				return err
			}
			_, err = cl.SwarmUnlock(ctx, client.SwarmUnlockOptions{Key: key})
			return err
		},
	}
}

// readLine reads one line without buffering past it.
func readLine(in io.Reader) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
	}
	return strings.TrimSpace(b.String()), nil
}

func newSwarmCACommand(c *CLI) *cobra.Command {
	var rotate, detach, quiet bool
	var certExpiry time.Duration
	cmd := &cobra.Command{
		Use:   "ca [OPTIONS]",
		Short: "Display and rotate the root CA",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			sw, err := cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
			if err != nil {
				return err
			}
			if !rotate && cmd.Flags().Changed("cert-expiry") {
				return errors.New("`--cert-expiry` flag requires the `--rotate` flag to update the CA")
			}
			if rotate {
				sw.Swarm.Spec.CAConfig.ForceRotate++
				if cmd.Flags().Changed("cert-expiry") {
					sw.Swarm.Spec.CAConfig.NodeCertExpiry = certExpiry
				}
				if _, err := cl.SwarmUpdate(ctx, client.SwarmUpdateOptions{Version: sw.Swarm.Version, Spec: sw.Swarm.Spec}); err != nil {
					return err
				}
				sw, err = cl.SwarmInspect(ctx, client.SwarmInspectOptions{})
				if err != nil {
					return err
				}
			}
			fmt.Fprintln(c.Out, strings.TrimSpace(sw.Swarm.ClusterInfo.TLSInfo.TrustRoot))
			return nil
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "Rotate the swarm CA - if no certificate or key are provided, new ones will be generated")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "Exit immediately instead of waiting for the root rotation to converge")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Suppress progress output")
	cmd.Flags().DurationVar(&certExpiry, "cert-expiry", 90*24*time.Hour, "Validity period for node certificates (ns|us|ms|s|m|h)")
	return cmd
}
