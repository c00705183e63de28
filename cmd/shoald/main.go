// Command shoald is the Shoal node daemon.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal/shoal/daemon"
	"github.com/shoal/shoal/version"
)

func main() {
	var cfg daemon.Config
	cmd := &cobra.Command{
		Use:           "shoald [OPTIONS]",
		Short:         "Shoal node daemon: containers, and swarm mode",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if cfg.Debug {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			slog.SetDefault(log)
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			d, err := daemon.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			return d.Serve(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.DataRoot, "data-root", "/var/lib/shoal", "Root directory of persistent state")
	f.StringVar(&cfg.ExecRoot, "exec-root", "/run/shoal", "Root directory for execution state files")
	f.StringArrayVarP(&cfg.Hosts, "host", "H", nil, "Daemon socket(s) to listen on (unix://PATH, tcp://ADDR)")
	f.StringVarP(&cfg.Pidfile, "pidfile", "p", "", "Path to use for the daemon PID file (default EXEC_ROOT/shoald.pid)")
	f.StringArrayVar(&cfg.Labels, "label", nil, "Set key=value engine labels on the daemon")
	f.StringArrayVar(&cfg.InsecureRegistries, "insecure-registry", nil, "Enable insecure (plain HTTP) registry communication")
	f.StringVar(&cfg.CgroupParent, "cgroup-parent", "shoal", "Parent cgroup for all containers")
	f.StringVarP(&cfg.Bridge, "bridge", "b", "shoal0", "Name of the node bridge for plain containers")
	f.StringVar(&cfg.BIP, "bip", "172.18.0.1/16", "Gateway address and prefix of the node bridge")
	f.StringVar(&cfg.NftTable, "nft-table", "shoal", "nftables table the daemon owns")
	f.StringVar(&cfg.IngressNftTable, "ingress-nft-table", "shoal_ingress", "nftables table of the node's share of the swarm routing mesh")
	f.StringVar(&cfg.SwarmDefaultAdvertiseAddr, "swarm-default-advertise-addr", "", "Set default address or interface for swarm advertised address")
	f.BoolVarP(&cfg.Debug, "debug", "D", false, "Enable debug logging")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shoald:", err)
		os.Exit(1)
	}
}
