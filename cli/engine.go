package cli

import "github.com/spf13/cobra"

// addEngineCommands adds container, image and system commands (run, ps, logs,
// exec, images, pull, push, load, save, import, tag, rmi, info, version...).
func addEngineCommands(root *cobra.Command, c *CLI) {}
