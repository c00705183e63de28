package cli

import (
	"context"
	"fmt"
	"sort"

	"github.com/moby/moby/api/types/volume"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func newVolumeCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	cmd.AddCommand(newVolumeCreateCommand(c), newVolumeLsCommand(c), newVolumeInspectCommand(c), newVolumeRmCommand(c))
	return cmd
}

func newVolumeCreateCommand(c *CLI) *cobra.Command {
	var driver string
	var opts, labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume",
		Args:  maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := buildLabels(nil, labels)
			if err != nil {
				return err
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			o := client.VolumeCreateOptions{Driver: driver, DriverOpts: kvMap(opts), Labels: l}
			if len(args) == 1 {
				o.Name = args[0]
			}
			res, err := cl.VolumeCreate(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.Out, res.Volume.Name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&driver, "driver", "d", "local", "Specify volume driver name")
	cmd.Flags().StringArrayVarP(&opts, "opt", "o", nil, "Set driver specific options")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "Set metadata for a volume")
	return cmd
}

type volumeRow struct{ v volume.Volume }

func (r *volumeRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *volumeRow) Name() string                 { return r.v.Name }
func (r *volumeRow) Driver() string               { return r.v.Driver }
func (r *volumeRow) Scope() string                { return r.v.Scope }
func (r *volumeRow) Mountpoint() string           { return r.v.Mountpoint }
func (r *volumeRow) Labels() string               { return sortedKV(r.v.Labels, ",") }

func newVolumeLsCommand(c *CLI) *cobra.Command {
	var quiet bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res, err := cl.VolumeList(cmd.Context(), client.VolumeListOptions{Filters: filter.filters()})
			if err != nil {
				return err
			}
			sort.SliceStable(res.Items, func(i, j int) bool { return naturalLess(res.Items[i].Name, res.Items[j].Name) })
			switch {
			case quiet && (format == "" || isTableFormat(format)):
				format = "{{.Name}}"
			case format == "" || format == tableFormatKey:
				format = "table {{.Driver}}\t{{.Name}}"
			}
			var rows []any
			for _, v := range res.Items {
				rows = append(rows, &volumeRow{v: v})
			}
			return writeList(c.Out, format, map[string]string{"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE",
				"Mountpoint": "MOUNTPOINT", "Labels": "LABELS"}, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display volume names")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", `Provide filter values (e.g. "dangling=true")`)
	return cmd
}

func newVolumeInspectCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] VOLUME [VOLUME...]",
		Short: "Display detailed information on one or more volumes",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return inspectAll(cmd.Context(), c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				r, err := cl.VolumeInspect(ctx, ref, client.VolumeInspectOptions{})
				return r.Volume, r.Raw, err
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	return cmd
}

func newVolumeRmCommand(c *CLI) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove one or more volumes",
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(name string) error {
				_, err := cl.VolumeRemove(cmd.Context(), name, client.VolumeRemoveOptions{Force: force})
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "Force the removal of one or more volumes")
	return cmd
}
