package cli

import "github.com/spf13/cobra"

func newLabCommand(c *CLI) *cobra.Command {
	return &cobra.Command{Use: "lab", Short: "lab (not yet built)", Hidden: true}
}
