package cli

import "github.com/spf13/cobra"

// addClusterCommands adds swarm, node, service, network, secret, config and
// stack commands.
func addClusterCommands(root *cobra.Command, c *CLI) {
	root.AddCommand(newSwarmCommand(c), newNodeCommand(c), newServiceCommand(c), newNetworkCommand(c),
		newSecretCommand(c), newConfigCommand(c), newStackCommand(c))
}
