package cli

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func newNetworkCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}
	cmd.AddCommand(newNetworkCreateCommand(c), newNetworkLsCommand(c), newNetworkInspectCommand(c),
		newNetworkRmCommand(c), newNetworkConnectCommand(c, true), newNetworkConnectCommand(c, false))
	return cmd
}

// buildIPAM pairs each --gateway/--ip-range with the --subnet containing it.
func buildIPAM(driver string, subnets, gateways, ranges []string, opts map[string]string, aux []string) (*network.IPAM, error) {
	ipam := &network.IPAM{Driver: driver, Options: opts}
	if len(subnets) == 0 && (len(gateways) > 0 || len(ranges) > 0 || len(aux) > 0) {
		return nil, errors.New("every ip-range or gateway must have a corresponding subnet")
	}
	for _, s := range splitCommaList(subnets) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("invalid subnet %s: %w", s, err)
		}
		ipam.Config = append(ipam.Config, network.IPAMConfig{Subnet: p})
	}
	for _, g := range splitCommaList(gateways) {
		a, err := netip.ParseAddr(g)
		if err != nil {
			return nil, fmt.Errorf("invalid gateway %s: %w", g, err)
		}
		matched := false
		for i := range ipam.Config {
			if ipam.Config[i].Subnet.Contains(a) {
				if ipam.Config[i].Gateway.IsValid() {
					return nil, fmt.Errorf("cannot configure multiple gateways (%s, %s) for the same subnet (%s)", g, ipam.Config[i].Gateway, ipam.Config[i].Subnet)
				}
				ipam.Config[i].Gateway = a
				matched = true
				break
			}
		}
		if !matched {
			return nil, fmt.Errorf("no matching subnet for gateway %s", g)
		}
	}
	for _, r := range splitCommaList(ranges) {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return nil, fmt.Errorf("invalid ip-range %s: %w", r, err)
		}
		matched := false
		for i := range ipam.Config {
			if ipam.Config[i].Subnet.Contains(p.Addr()) {
				if ipam.Config[i].IPRange.IsValid() {
					return nil, fmt.Errorf("cannot configure multiple ranges (%s, %s) on the same subnet (%s)", r, ipam.Config[i].IPRange, ipam.Config[i].Subnet)
				}
				ipam.Config[i].IPRange = p
				matched = true
				break
			}
		}
		if !matched {
			return nil, fmt.Errorf("no matching subnet for range %s", r)
		}
	}
	for _, kv := range aux {
		k, v, ok := strings.Cut(kv, "=")
		a, err := netip.ParseAddr(v)
		if !ok || err != nil {
			return nil, fmt.Errorf("invalid auxiliary address %s", kv)
		}
		matched := false
		for i := range ipam.Config {
			if ipam.Config[i].Subnet.Contains(a) {
				if ipam.Config[i].AuxAddress == nil {
					ipam.Config[i].AuxAddress = map[string]netip.Addr{}
				}
				ipam.Config[i].AuxAddress[k] = a
				matched = true
			}
		}
		if !matched {
			return nil, fmt.Errorf("no matching subnet for aux-address %s", a)
		}
	}
	return ipam, nil
}

func newNetworkCreateCommand(c *CLI) *cobra.Command {
	var o struct {
		driver, ipamDriver, scope, configFrom     string
		subnets, gateways, ranges, labels, opts   []string
		ipamOpts, aux                             []string
		attachable, internal, ipv6, ipv4, ingress bool
		configOnly                                bool
	}
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NETWORK",
		Short: "Create a network",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ipam, err := buildIPAM(o.ipamDriver, o.subnets, o.gateways, o.ranges, kvMap(o.ipamOpts), o.aux)
			if err != nil {
				return err
			}
			labels, err := buildLabels(nil, o.labels)
			if err != nil {
				return err
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			opts := client.NetworkCreateOptions{
				Driver: o.driver, Scope: o.scope, IPAM: ipam, Internal: o.internal, Attachable: o.attachable,
				Ingress: o.ingress, ConfigOnly: o.configOnly, ConfigFrom: o.configFrom,
				Options: kvMap(o.opts), Labels: labels,
			}
			if cmd.Flags().Changed("ipv6") {
				v := o.ipv6
				opts.EnableIPv6 = &v
			}
			if cmd.Flags().Changed("ipv4") {
				v := o.ipv4
				opts.EnableIPv4 = &v
			}
			res, err := cl.NetworkCreate(cmd.Context(), args[0], opts)
			if err != nil {
				return err
			}
			for _, w := range res.Warning {
				fmt.Fprintln(c.Err, "WARNING:", w)
			}
			fmt.Fprintln(c.Out, res.ID)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.driver, "driver", "d", "bridge", "Driver to manage the Network")
	f.StringArrayVarP(&o.opts, "opt", "o", nil, "Set driver specific options")
	f.StringArrayVar(&o.labels, "label", nil, "Set metadata on a network")
	f.BoolVar(&o.internal, "internal", false, "Restrict external access to the network")
	f.BoolVar(&o.ipv6, "ipv6", false, "Enable or disable IPv6 address assignment")
	f.BoolVar(&o.ipv4, "ipv4", true, "Enable or disable IPv4 address assignment")
	f.BoolVar(&o.attachable, "attachable", false, "Enable manual container attachment")
	f.BoolVar(&o.ingress, "ingress", false, "Create swarm routing-mesh network")
	f.StringVar(&o.scope, "scope", "", "Control the network's scope")
	f.BoolVar(&o.configOnly, "config-only", false, "Create a configuration only network")
	f.StringVar(&o.configFrom, "config-from", "", "The network from which to copy the configuration")
	f.StringVar(&o.ipamDriver, "ipam-driver", "default", "IP Address Management Driver")
	f.StringSliceVar(&o.subnets, "subnet", nil, "Subnet in CIDR format that represents a network segment")
	f.StringSliceVar(&o.ranges, "ip-range", nil, "Allocate container ip from a sub-range")
	f.StringSliceVar(&o.gateways, "gateway", nil, "IPv4 or IPv6 Gateway for the master subnet")
	f.StringArrayVar(&o.aux, "aux-address", nil, "Auxiliary IPv4 or IPv6 addresses used by Network driver")
	f.StringArrayVar(&o.ipamOpts, "ipam-opt", nil, "Set IPAM driver specific options")
	return cmd
}

const defaultNetworkTableFormat = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"

var networkHeaders = map[string]string{"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
	"IPv4": "IPV4", "IPv6": "IPV6", "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}

type networkRow struct {
	n     network.Summary
	trunc bool
}

func (r *networkRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *networkRow) ID() string {
	if r.trunc {
		return truncateID(r.n.ID)
	}
	return r.n.ID
}
func (r *networkRow) Name() string     { return r.n.Name }
func (r *networkRow) Driver() string   { return r.n.Driver }
func (r *networkRow) Scope() string    { return r.n.Scope }
func (r *networkRow) IPv4() string     { return fmt.Sprint(r.n.EnableIPv4) }
func (r *networkRow) IPv6() string     { return fmt.Sprint(r.n.EnableIPv6) }
func (r *networkRow) Internal() string { return fmt.Sprint(r.n.Internal) }
func (r *networkRow) Labels() string   { return sortedKV(r.n.Labels, ",") }
func (r *networkRow) CreatedAt() string {
	return r.n.Created.Format(time.DateTime + " -0700 MST")
}

func newNetworkLsCommand(c *CLI) *cobra.Command {
	var quiet, noTrunc bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.NetworkList(cmd.Context(), client.NetworkListOptions{Filters: filter.filters()})
			if err != nil {
				return err
			}
			sort.SliceStable(res.Items, func(i, j int) bool { return naturalLess(res.Items[i].Name, res.Items[j].Name) })
			switch {
			case quiet && (format == "" || isTableFormat(format)):
				format = quietFormat
			case format == "" || format == tableFormatKey:
				format = defaultNetworkTableFormat
			}
			var rows []any
			for _, n := range res.Items {
				rows = append(rows, &networkRow{n: n, trunc: !noTrunc})
			}
			return writeList(c.Out, format, networkHeaders, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display network IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "Do not truncate the output")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", `Provide filter values (e.g. "driver=bridge")`)
	return cmd
}

func newNetworkInspectCommand(c *CLI) *cobra.Command {
	var format string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NETWORK [NETWORK...]",
		Short: "Display detailed information on one or more networks",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return inspectAll(cmd.Context(), c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				r, err := cl.NetworkInspect(ctx, ref, client.NetworkInspectOptions{Verbose: verbose})
				return r.Network, r.Raw, err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "Verbose output for diagnostics")
	return cmd
}

func newNetworkRmCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm NETWORK [NETWORK...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more networks",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(name string) error {
				nw, err := cl.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
				if err != nil {
					if force && isNotFound(err) {
						return nil
					}
					return err
				}
				if nw.Network.Ingress && !force {
					if !c.confirm("WARNING! Before removing the routing-mesh network, make sure all the nodes in your swarm run the same docker engine version. Otherwise, removal may not be effective and functionality of newly create ingress networks will be impaired.\nAre you sure you want to continue?") {
						return errCanceled
					}
				}
				_, err = cl.NetworkRemove(ctx, name, client.NetworkRemoveOptions{})
				if err != nil && force && isNotFound(err) {
					return nil
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Do not error if the network does not exist")
	return cmd
}

// confirm asks a yes/no question on the terminal; non-interactive input
// answers no, as docker's prompt does on EOF.
func (c *CLI) confirm(question string) bool {
	fmt.Fprintf(c.Out, "%s [y/N] ", question)
	line, err := readLine(c.In)
	if err != nil {
		return false
	}
	line = strings.ToLower(strings.TrimSpace(line))
	return line == "y" || line == "yes"
}

func newNetworkConnectCommand(c *CLI, connect bool) *cobra.Command {
	var aliases []string
	var ip string
	var force bool
	use, short := "connect [OPTIONS] NETWORK CONTAINER", "Connect a container to a network"
	if !connect {
		use, short = "disconnect [OPTIONS] NETWORK CONTAINER", "Disconnect a container from a network"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if !connect {
				_, err := cl.NetworkDisconnect(cmd.Context(), args[0], client.NetworkDisconnectOptions{Container: args[1], Force: force})
				return err
			}
			ep := &network.EndpointSettings{Aliases: aliases}
			if ip != "" {
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return fmt.Errorf("invalid IP address: %s", ip)
				}
				ep.IPAMConfig = &network.EndpointIPAMConfig{IPv4Address: a}
			}
			_, err = cl.NetworkConnect(cmd.Context(), args[0], client.NetworkConnectOptions{Container: args[1], EndpointConfig: ep})
			return err
		},
	}
	if connect {
		cmd.Flags().StringArrayVar(&aliases, "alias", nil, "Add network-scoped alias for the container")
		cmd.Flags().StringVar(&ip, "ip", "", "IPv4 address (e.g., 172.30.100.104)")
	} else {
		cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the container to disconnect from a network")
	}
	return cmd
}
