package cli

import "github.com/spf13/cobra"

func newDemoCommand(c *CLI) *cobra.Command {
	return &cobra.Command{Use: "demo", Short: "demo (not yet built)", Hidden: true}
}
