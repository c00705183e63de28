package cli

import (
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/shoal/shoal/registry"
)

func newRegistryCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "registry", Short: "Run a private image registry"}
	var addr, root string
	serve := &cobra.Command{
		Use:   "serve [--addr HOST:PORT] [--root DIR]",
		Short: "Serve an OCI distribution registry with storage on disk",
		Long: "Serve an OCI distribution registry (docker push/pull through a daemon started " +
			"with --insecure-registry HOST:PORT, or any host on localhost). Tags, manifests and " +
			"blobs live under --root and survive restarts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(c.Err, nil))
			return registry.Serve(ctx, addr, registry.Config{Root: root, Log: log})
		},
	}
	serve.Flags().StringVar(&addr, "addr", ":5000", "Address to listen on")
	serve.Flags().StringVar(&root, "root", "/var/lib/shoal-registry", "Storage directory")
	cmd.AddCommand(serve)
	return cmd
}
