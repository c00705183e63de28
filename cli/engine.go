package cli

import (
	"strings"

	"github.com/spf13/cobra"
)

// addEngineCommands adds container, image and system commands (run, ps, logs,
// exec, images, pull, push, load, save, import, tag, rmi, info, version...),
// both at the top level and under the `container`, `image` and `system`
// management commands, as docker does.
func addEngineCommands(root *cobra.Command, c *CLI) {
	root.AddCommand(containerCommands(c)...)
	root.AddCommand(
		newPsCommand(c),
		newImagesCommand(c, "images [OPTIONS] [REPOSITORY[:TAG]]"),
		newPullCommand(c), newPushCommand(c), newLoadCommand(c), newSaveCommand(c),
		newImportCommand(c), newTagCommand(c), newRmiCommand(c), newHistoryCommand(c), newBuildCommand(c),
		newInspectCommand(c), newInfoCommand(c), newVersionCommand(c), newSystemCommand(c), newVolumeCommand(c),
		newEventsCommand(c),
	)

	ctr := &cobra.Command{Use: "container", Short: "Manage containers"}
	ctr.AddCommand(containerCommands(c)...)
	ls := newPsCommand(c)
	ls.Use, ls.Aliases = "ls [OPTIONS]", []string{"ps", "list"}
	ctr.AddCommand(ls, newContainerInspectCommand(c))
	for _, sub := range ctr.Commands() {
		if strings.HasPrefix(sub.Use, "rm ") {
			sub.Aliases = []string{"remove"}
		}
	}

	img := &cobra.Command{Use: "image", Short: "Manage images"}
	ils := newImagesCommand(c, "ls [OPTIONS] [REPOSITORY[:TAG]]")
	ils.Aliases = []string{"list"}
	irm := newRmiCommand(c)
	irm.Use, irm.Aliases = "rm [OPTIONS] IMAGE [IMAGE...]", []string{"rmi", "remove"}
	img.AddCommand(ils, irm, newPullCommand(c), newPushCommand(c), newLoadCommand(c), newSaveCommand(c),
		newImportCommand(c), newTagCommand(c), newHistoryCommand(c), newImageInspectCommand(c), newBuildCommand(c))

	root.AddCommand(ctr, img)
}

// containerCommands builds a fresh set of the container verbs (cobra needs
// one instance per parent).
func containerCommands(c *CLI) []*cobra.Command {
	return []*cobra.Command{
		newRunCommand(c), newCreateCommand(c), newStartCommand(c),
		newStopCommand(c, false), newStopCommand(c, true), newKillCommand(c), newRmCommand(c),
		newLogsCommand(c), newExecCommand(c), newWaitCommand(c), newAttachCommand(c), newRenameCommand(c),
		newTopCommand(c), newStatsCommand(c), newPauseCommand(c, true), newPauseCommand(c, false), newPortCommand(c),
		newCpCommand(c), newDiffCommand(c), newExportCommand(c), newUpdateCommand(c), newCommitCommand(c),
	}
}
