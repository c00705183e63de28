package cli

import "github.com/spf13/cobra"

func newRegistryCommand(c *CLI) *cobra.Command {
	return &cobra.Command{Use: "registry", Short: "registry (not yet built)", Hidden: true}
}
