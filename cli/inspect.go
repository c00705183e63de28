package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/template"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// getRefFunc fetches one object for inspect: the typed value and the raw
// JSON the daemon sent (printed verbatim, indented, like docker).
type getRefFunc func(ctx context.Context, ref string) (any, []byte, error)

// inspectAll prints objects as docker inspect does: an indented JSON array
// by default, "json" for one compact array, or a Go template per object.
// Failures are collected; the command exits 1 listing them.
func inspectAll(ctx context.Context, out io.Writer, refs []string, format string, get getRefFunc) error {
	var tmpl = (*templateInspector)(nil)
	if format != "" && format != jsonFormatKey {
		t, err := parseTemplate(format)
		if err != nil {
			return StatusError{Status: 64, Message: "template parsing error: " + err.Error()}
		}
		tmpl = &templateInspector{tmpl: t}
	}
	var raws [][]byte
	var errs []string
	var buf bytes.Buffer
	for _, ref := range refs {
		v, raw, err := get(ctx, ref)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if raw == nil {
			raw, err = json.Marshal(v)
			if err != nil {
				errs = append(errs, err.Error())
				continue
			}
		}
		if tmpl != nil {
			if err := tmpl.execute(&buf, v, raw); err != nil {
				errs = append(errs, err.Error())
			}
			continue
		}
		raws = append(raws, raw)
	}
	if tmpl != nil {
		if buf.Len() == 0 {
			io.WriteString(out, "\n")
		} else {
			buf.WriteTo(out)
		}
	} else {
		writeJSONArray(out, raws, format == jsonFormatKey)
	}
	if len(errs) > 0 {
		return StatusError{Status: 1, Message: strings.Join(errs, "\n")}
	}
	return nil
}

func writeJSONArray(out io.Writer, raws [][]byte, compact bool) {
	if len(raws) == 0 {
		io.WriteString(out, "[]\n")
		return
	}
	joined := append([]byte("["), bytes.Join(raws, []byte(","))...)
	joined = append(joined, ']')
	var dst bytes.Buffer
	var err error
	if compact {
		err = json.Compact(&dst, joined)
	} else {
		err = json.Indent(&dst, joined, "", "    ")
	}
	if err != nil {
		out.Write(joined)
	} else {
		dst.WriteTo(out)
	}
	io.WriteString(out, "\n")
}

type templateInspector struct {
	tmpl *template.Template
}

func (t *templateInspector) execute(out *bytes.Buffer, v any, raw []byte) error {
	var b bytes.Buffer
	if err := t.tmpl.Execute(&b, v); err != nil {
		// Like docker, retry on the raw JSON so fields newer than our
		// types still resolve.
		var generic any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if derr := dec.Decode(&generic); derr != nil {
			return fmt.Errorf("unable to read inspect data: %w", derr)
		}
		b.Reset()
		strict, cerr := t.tmpl.Clone()
		if cerr != nil {
			return cerr
		}
		if err := strict.Option("missingkey=error").Execute(&b, generic); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
	}
	out.Write(b.Bytes())
	out.WriteByte('\n')
	return nil
}

// newInspectCommand builds docker's generic `inspect`: containers and images
// locally, and swarm objects (nodes, services, tasks, networks, secrets,
// configs) when the daemon is a manager.
func newInspectCommand(c *CLI) *cobra.Command {
	var format, typ string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] NAME|ID [NAME|ID...]",
		Short: "Return low-level information on Docker objects",
		Args:  minArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.Client()
			if err != nil {
				return err
			}
			switch typ {
			case "", "container", "image", "node", "network", "service", "task", "secret", "config", "volume":
			default:
				return fmt.Errorf("%q is not a valid value for --type", typ)
			}
			return inspectAll(cmd.Context(), c.Out, args, format, func(ctx context.Context, ref string) (any, []byte, error) {
				return inspectAny(ctx, cl, typ, ref, size)
			})
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template")
	cmd.Flags().StringVar(&typ, "type", "", "Return JSON for specified type")
	cmd.Flags().BoolVarP(&size, "size", "s", false, "Display total file sizes if the type is container")
	return cmd
}

// inspectAny tries each object kind in docker's order until one is found.
func inspectAny(ctx context.Context, cl *client.Client, typ, ref string, size bool) (any, []byte, error) {
	type getter struct {
		kind  string
		swarm bool
		get   func() (any, []byte, error)
	}
	getters := []getter{
		{"container", false, func() (any, []byte, error) {
			r, err := cl.ContainerInspect(ctx, ref, client.ContainerInspectOptions{Size: size})
			return r.Container, r.Raw, err
		}},
		{"image", false, func() (any, []byte, error) {
			var raw bytes.Buffer
			r, err := cl.ImageInspect(ctx, ref, client.ImageInspectWithRawResponse(&raw))
			return r.InspectResponse, raw.Bytes(), err
		}},
		{"network", false, func() (any, []byte, error) {
			r, err := cl.NetworkInspect(ctx, ref, client.NetworkInspectOptions{})
			return r.Network, r.Raw, err
		}},
		{"volume", false, func() (any, []byte, error) {
			r, err := cl.VolumeInspect(ctx, ref, client.VolumeInspectOptions{})
			return r.Volume, r.Raw, err
		}},
		{"service", true, func() (any, []byte, error) {
			r, err := cl.ServiceInspect(ctx, ref, client.ServiceInspectOptions{InsertDefaults: true})
			return r.Service, r.Raw, err
		}},
		{"task", true, func() (any, []byte, error) {
			r, err := cl.TaskInspect(ctx, ref, client.TaskInspectOptions{})
			return r.Task, r.Raw, err
		}},
		{"node", true, func() (any, []byte, error) {
			r, err := cl.NodeInspect(ctx, ref, client.NodeInspectOptions{})
			return r.Node, r.Raw, err
		}},
		{"secret", true, func() (any, []byte, error) {
			r, err := cl.SecretInspect(ctx, ref, client.SecretInspectOptions{})
			return r.Secret, r.Raw, err
		}},
		{"config", true, func() (any, []byte, error) {
			r, err := cl.ConfigInspect(ctx, ref, client.ConfigInspectOptions{})
			return r.Config, r.Raw, err
		}},
	}
	// Like docker, swarm kinds are only tried on a manager (GET /info),
	// asked once the local kinds came up empty.
	isManager, checked := false, false
	for _, g := range getters {
		if typ != "" && g.kind != typ {
			continue
		}
		if typ == "" && g.swarm {
			if !checked {
				checked = true
				if info, err := cl.Info(ctx, client.InfoOptions{}); err == nil {
					isManager = info.Info.Swarm.ControlAvailable
				}
			}
			if !isManager {
				continue
			}
		}
		v, raw, err := g.get()
		if err == nil {
			return v, raw, nil
		}
		if !isNotFound(err) || typ != "" {
			if typ == "" && isNotFound(err) {
				continue
			}
			return nil, nil, err
		}
	}
	if typ != "" {
		return nil, nil, notFoundError{fmt.Errorf("Error: No such %s: %s", typ, ref)}
	}
	return nil, nil, notFoundError{fmt.Errorf("Error: No such object: %s", ref)}
}

var pingNegotiate = client.PingOptions{NegotiateAPIVersion: true}
