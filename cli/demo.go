package cli

import (
	"fmt"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/shoal/shoal/demo"
)

func newDemoCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "Demo images built from the host's busybox"}
	var push string
	build := &cobra.Command{
		Use:   "build [--push REGISTRY] [IMAGE...]",
		Short: "Build the demo images and load them into the daemon",
		Long: "Build " + strings.Join(demo.Names, ", ") + " (all :latest) from the host's static busybox " +
			"and load them into the daemon; with --push REGISTRY (host:port) also tag them " +
			"REGISTRY/NAME:latest and push them there.",
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := demo.Load(ctx, cl, c.Out, args...); err != nil {
				return err
			}
			if push == "" {
				return nil
			}
			names := args
			if len(names) == 0 {
				names = demo.Names
			}
			for _, n := range names {
				src := strings.TrimSuffix(n, ":latest") + ":latest"
				target := strings.TrimSuffix(push, "/") + "/" + src
				if _, err := cl.ImageTag(ctx, client.ImageTagOptions{Source: src, Target: target}); err != nil {
					return err
				}
				resp, err := cl.ImagePush(ctx, target, client.ImagePushOptions{RegistryAuth: "e30="})
				if err != nil {
					return err
				}
				err = demo.PrintMessages(resp, c.Out)
				resp.Close()
				if err != nil {
					return fmt.Errorf("pushing %s: %w", target, err)
				}
			}
			return nil
		},
	}
	build.Flags().StringVar(&push, "push", "", "Also push the images to this registry (host:port)")
	cmd.AddCommand(build)
	return cmd
}
