// Package cli is the `shoal` command line: docker's grammar and output over
// the Docker Engine API (github.com/moby/moby/client), plus Shoal's own
// commands (registry, demo, lab).
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/shoal/shoal/version"
)

// DefaultHost is where shoald listens by default.
const DefaultHost = "unix:///run/shoal/shoald.sock"

// CLI carries what every command needs.
type CLI struct {
	Host   string
	Out    io.Writer
	Err    io.Writer
	In     io.Reader
	client *client.Client
}

// Client returns an API client for the chosen host, negotiating the version.
func (c *CLI) Client() (*client.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	cl, err := client.New(client.WithHost(c.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	c.client = cl
	return cl, nil
}

// ResolveHost picks -H, then SHOAL_HOST, then DOCKER_HOST, then the default.
func ResolveHost(flag string) string {
	for _, h := range []string{flag, os.Getenv("SHOAL_HOST"), os.Getenv("DOCKER_HOST")} {
		if h != "" {
			return h
		}
	}
	return DefaultHost
}

// NewRootCommand builds the `shoal` command tree.
func NewRootCommand() (*cobra.Command, *CLI) {
	c := &CLI{Out: os.Stdout, Err: os.Stderr, In: os.Stdin}
	var hostFlag string
	root := &cobra.Command{
		Use:           "shoal [OPTIONS] COMMAND",
		Short:         "Shoal: containers and swarm-mode orchestration, Docker-compatible",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			c.Host = ResolveHost(hostFlag)
		},
	}
	root.PersistentFlags().StringVarP(&hostFlag, "host", "H", "", "Daemon socket to connect to (env SHOAL_HOST, DOCKER_HOST)")
	root.SetOut(c.Out)
	root.SetErr(c.Err)
	addEngineCommands(root, c)
	addClusterCommands(root, c)
	root.AddCommand(newRegistryCommand(c), newDemoCommand(c), newLabCommand(c))
	return root, c
}

// StatusError makes the process exit with Status after printing Message (if any).
type StatusError struct {
	Status  int
	Message string
}

func (e StatusError) Error() string { return e.Message }

// Main runs the CLI and returns the process exit code. Errors are printed as
// one readable line, as docker does.
func Main(args []string) int {
	root, c := NewRootCommand()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var se StatusError
	if errors.As(err, &se) {
		if se.Message != "" {
			fmt.Fprintln(c.Err, se.Message)
		}
		if se.Status == 0 {
			return 1
		}
		return se.Status
	}
	msg := strings.TrimSpace(err.Error())
	fmt.Fprintln(c.Err, msg)
	return 1
}
