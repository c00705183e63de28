package cli

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// newEventsCommand is docker's `events`: the daemon's event stream, from
// --since (the daemon keeps its last 256 events) until --until or ^C.
func newEventsCommand(c *CLI) *cobra.Command {
	var since, until, format string
	var filters filterFlag
	cmd := &cobra.Command{
		Use:   "events [OPTIONS]",
		Short: "Get real time events from the server",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if format == jsonFormatKey {
				format = "{{json .}}"
			}
			var print func(events.Message) error
			if format == "" {
				print = func(m events.Message) error { return printEvent(c.Out, m) }
			} else {
				tmpl, err := parseTemplate(format)
				if err != nil {
					return StatusError{Status: 64, Message: "template parsing error: " + err.Error()}
				}
				print = func(m events.Message) error {
					if err := tmpl.Execute(c.Out, m); err != nil {
						return err
					}
					_, err := fmt.Fprintln(c.Out)
					return err
				}
			}
			cl, err := c.Client()
			if err != nil {
				return err
			}
			res := cl.Events(cmd.Context(), client.EventsListOptions{Since: since, Until: until, Filters: filters.filters()})
			for {
				select {
				case m := <-res.Messages:
					if err := print(m); err != nil {
						return err
					}
				case err := <-res.Err:
					if err == nil || errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "Show all events created since timestamp")
	f.StringVar(&until, "until", "", "Stream events until this timestamp")
	f.VarP(&filters, "filter", "f", "Filter output based on conditions provided")
	f.StringVar(&format, "format", "", "Format output using a custom template")
	return cmd
}

// printEvent writes docker's default line:
// TIME TYPE ACTION ID (key=value, ...), attributes sorted.
func printEvent(w io.Writer, m events.Message) error {
	ts := time.Unix(0, m.TimeNano).Format(time.RFC3339Nano)
	if m.TimeNano == 0 {
		ts = time.Unix(m.Time, 0).Format(time.RFC3339Nano)
	}
	line := fmt.Sprintf("%s %s %s %s", ts, m.Type, m.Action, m.Actor.ID)
	if len(m.Actor.Attributes) > 0 {
		keys := make([]string, 0, len(m.Actor.Attributes))
		for k := range m.Actor.Attributes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		attrs := make([]string, len(keys))
		for i, k := range keys {
			attrs[i] = k + "=" + m.Actor.Attributes[k]
		}
		line += " (" + strings.Join(attrs, ", ") + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
