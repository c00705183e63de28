package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// Secrets and configs share their command shapes; kindOps adapts the API.
type kindOps struct {
	kind, title string // "secret"/"Secret"
	create      func(ctx context.Context, cl *client.Client, name string, labels map[string]string, data []byte, driver string) (string, error)
	list        func(ctx context.Context, cl *client.Client, f client.Filters) ([]objRow, error)
	inspect     func(ctx context.Context, cl *client.Client, ref string) (any, []byte, objRow, error)
	remove      func(ctx context.Context, cl *client.Client, ref string) error
}

// objRow is one secret/config for listing and --pretty.
type objRow struct {
	id, name, driver string
	labels           map[string]string
	created, updated time.Time
	data             []byte
	now              time.Time
}

func (r *objRow) MarshalJSON() ([]byte, error) { return marshalMethods(r) }
func (r *objRow) ID() string                   { return r.id }
func (r *objRow) Name() string                 { return r.name }
func (r *objRow) Driver() string               { return r.driver }
func (r *objRow) CreatedAt() string            { return timeAgo(r.now, r.created) }
func (r *objRow) UpdatedAt() string            { return timeAgo(r.now, r.updated) }
func (r *objRow) Labels() string               { return sortedKV(r.labels, ",") }
func (r *objRow) Label(name string) string     { return r.labels[name] }

var secretOps = kindOps{
	kind: "secret", title: "Secret",
	create: func(ctx context.Context, cl *client.Client, name string, labels map[string]string, data []byte, driver string) (string, error) {
		spec := swarm.SecretSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}, Data: data}
		if driver != "" {
			spec.Driver = &swarm.Driver{Name: driver}
		}
		r, err := cl.SecretCreate(ctx, client.SecretCreateOptions{Spec: spec})
		return r.ID, err
	},
	list: func(ctx context.Context, cl *client.Client, f client.Filters) ([]objRow, error) {
		res, err := cl.SecretList(ctx, client.SecretListOptions{Filters: f})
		if err != nil {
			return nil, err
		}
		var out []objRow
		for _, s := range res.Items {
			out = append(out, secretRow(s))
		}
		return out, nil
	},
	inspect: func(ctx context.Context, cl *client.Client, ref string) (any, []byte, objRow, error) {
		r, err := cl.SecretInspect(ctx, ref, client.SecretInspectOptions{})
		return r.Secret, r.Raw, secretRow(r.Secret), err
	},
	remove: func(ctx context.Context, cl *client.Client, ref string) error {
		_, err := cl.SecretRemove(ctx, ref, client.SecretRemoveOptions{})
		return err
	},
}

func secretRow(s swarm.Secret) objRow {
	r := objRow{id: s.ID, name: s.Spec.Name, labels: s.Spec.Labels, created: s.CreatedAt, updated: s.UpdatedAt}
	if s.Spec.Driver != nil {
		r.driver = s.Spec.Driver.Name
	}
	return r
}

var configOps = kindOps{
	kind: "config", title: "Config",
	create: func(ctx context.Context, cl *client.Client, name string, labels map[string]string, data []byte, driver string) (string, error) {
		spec := swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}, Data: data}
		if driver != "" {
			spec.Templating = &swarm.Driver{Name: driver}
		}
		r, err := cl.ConfigCreate(ctx, client.ConfigCreateOptions{Spec: spec})
		return r.ID, err
	},
	list: func(ctx context.Context, cl *client.Client, f client.Filters) ([]objRow, error) {
		res, err := cl.ConfigList(ctx, client.ConfigListOptions{Filters: f})
		if err != nil {
			return nil, err
		}
		var out []objRow
		for _, s := range res.Items {
			out = append(out, configRow(s))
		}
		return out, nil
	},
	inspect: func(ctx context.Context, cl *client.Client, ref string) (any, []byte, objRow, error) {
		r, err := cl.ConfigInspect(ctx, ref, client.ConfigInspectOptions{})
		return r.Config, r.Raw, configRow(r.Config), err
	},
	remove: func(ctx context.Context, cl *client.Client, ref string) error {
		_, err := cl.ConfigRemove(ctx, ref, client.ConfigRemoveOptions{})
		return err
	},
}

func configRow(s swarm.Config) objRow {
	return objRow{id: s.ID, name: s.Spec.Name, labels: s.Spec.Labels, created: s.CreatedAt, updated: s.UpdatedAt, data: s.Spec.Data}
}

func newSecretCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "secret", Short: "Manage Swarm secrets"}
	cmd.AddCommand(newObjCreateCommand(c, secretOps), newObjLsCommand(c, secretOps), newObjInspectCommand(c, secretOps), newObjRmCommand(c, secretOps))
	return cmd
}

func newConfigCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage Swarm configs"}
	cmd.AddCommand(newObjCreateCommand(c, configOps), newObjLsCommand(c, configOps), newObjInspectCommand(c, configOps), newObjRmCommand(c, configOps))
	return cmd
}

func newObjCreateCommand(c *CLI, ops kindOps) *cobra.Command {
	var labels []string
	var driver string
	upper := map[string]string{"secret": "SECRET", "config": "CONFIG"}[ops.kind]
	cmd := &cobra.Command{
		Use:   fmt.Sprintf("create [OPTIONS] %s file|-", upper),
		Short: fmt.Sprintf("Create a %s from a file or STDIN as content", ops.kind),
		Args:  exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := buildLabels(nil, labels)
			if err != nil {
				return err
			}
			data, err := c.readAllFrom(args[1])
			if err != nil {
				return fmt.Errorf("error reading content from %q: %w", args[1], err)
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			id, err := ops.create(cmd.Context(), cl, args[0], l, data, driver)
			if err != nil {
				return err
			}
			fmt.Fprintln(c.Out, id)
			return nil
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, fmt.Sprintf("%s labels", ops.title))
	if ops.kind == "secret" {
		cmd.Flags().StringVarP(&driver, "driver", "d", "", "Secret driver")
	} else {
		cmd.Flags().StringVar(&driver, "template-driver", "", "Template driver")
	}
	return cmd
}

func newObjLsCommand(c *CLI, ops kindOps) *cobra.Command {
	var quiet bool
	var format string
	var filter filterFlag
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   fmt.Sprintf("List %ss", ops.kind),
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			items, err := ops.list(cmd.Context(), cl, filter.filters())
			if err != nil {
				return err
			}
			sort.SliceStable(items, func(i, j int) bool { return naturalLess(items[i].name, items[j].name) })
			def := "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
			if ops.kind == "secret" {
				def = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}"
			}
			switch {
			case quiet && (format == "" || isTableFormat(format)):
				format = quietFormat
			case format == "" || format == tableFormatKey:
				format = def
			}
			now := c.now()
			var rows []any
			for i := range items {
				items[i].now = now
				rows = append(rows, &items[i])
			}
			return writeList(c.Out, format, map[string]string{"ID": "ID", "Name": "NAME", "Driver": "DRIVER",
				"CreatedAt": "CREATED", "UpdatedAt": "UPDATED", "Labels": "LABELS"}, rows)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "Only display IDs")
	cmd.Flags().StringVar(&format, "format", "", "Format output using a custom template")
	cmd.Flags().VarP(&filter, "filter", "f", "Filter output based on conditions provided")
	return cmd
}

const objPrettyTemplate = `ID:              {{.ID}}
Name:              {{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .LabelMap }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Created at:        {{.Created}}
Updated at:        {{.Updated}}`

type objPretty struct{ r objRow }

func (p *objPretty) ID() string                  { return p.r.id }
func (p *objPretty) Name() string                { return p.r.name }
func (p *objPretty) Labels() bool                { return len(p.r.labels) > 0 }
func (p *objPretty) LabelMap() map[string]string { return p.r.labels }
func (p *objPretty) Created() string             { return p.r.created.String() }
func (p *objPretty) Updated() string             { return p.r.updated.String() }

func newObjInspectCommand(c *CLI, ops kindOps) *cobra.Command {
	var format string
	var pretty bool
	upper := map[string]string{"secret": "SECRET", "config": "CONFIG"}[ops.kind]
	cmd := &cobra.Command{
		Use:   fmt.Sprintf("inspect [OPTIONS] %s [%s...]", upper, upper),
		Short: fmt.Sprintf("Display detailed information on one or more %ss", ops.kind),
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cl, err := c.Client()
			if err != nil {
				return err
			}
			if !pretty {
				return inspectAll(ctx, c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
					v, raw, _, err := ops.inspect(ctx, cl, ref)
					return v, raw, err
				})
			}
			tmpl, err := parseTemplate(objPrettyTemplate)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			for _, ref := range args {
				_, _, row, err := ops.inspect(ctx, cl, ref)
				if err != nil {
					return err
				}
				if err := tmpl.Execute(&buf, &objPretty{row}); err != nil {
					return err
				}
				buf.WriteString("\n")
				if ops.kind == "config" {
					buf.WriteString("Data:\n")
					buf.Write(row.data)
					if len(row.data) > 0 && row.data[len(row.data)-1] != '\n' {
						buf.WriteString("\n")
					}
				}
			}
			_, err = io.Copy(c.Out, &buf)
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().BoolVar(&pretty, "pretty", false, "Print the information in a human friendly format")
	return cmd
}

func newObjRmCommand(c *CLI, ops kindOps) *cobra.Command {
	upper := map[string]string{"secret": "SECRET", "config": "CONFIG"}[ops.kind]
	return &cobra.Command{
		Use:     fmt.Sprintf("rm %s [%s...]", upper, upper),
		Aliases: []string{"remove"},
		Short:   fmt.Sprintf("Remove one or more %ss", ops.kind),
		Args:    minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			return c.forEach(args, true, func(ref string) error { return ops.remove(cmd.Context(), cl, ref) })
		},
	}
}
