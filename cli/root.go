// Package cli is the `shoal` command line: docker's grammar and output over
// the Docker Engine API (github.com/moby/moby/client), plus Shoal's own
// commands (registry, demo, lab).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

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

	// TLS client files for a tcp:// host (docker's --tlsverify family).
	TLS, TLSVerify         bool
	TLSCA, TLSCert, TLSKey string
	useTLSFiles            bool

	// Now is the clock used for "N minutes ago" columns; tests pin it.
	Now func() time.Time
	// PollInterval is the period of the service convergence loop (docker
	// polls every 200ms); tests shorten it.
	PollInterval time.Duration
	// Debug mirrors docker's -D (accepted for compatibility).
	Debug bool
}

// Client returns an API client for the chosen host, negotiating the version.
func (c *CLI) Client() (*client.Client, error) {
	if c.client != nil {
		return c.client, nil
	}
	host := c.Host
	if host == "" {
		host = ResolveHost("")
	}
	opts := []client.Opt{client.WithHost(host), client.WithAPIVersionNegotiation(), client.WithAPIVersionFromEnv(),
		client.WithUserAgent("shoal/" + version.Version)}
	if c.useTLSFiles {
		opts = append(opts, client.WithTLSClientConfig(c.TLSCA, c.TLSCert, c.TLSKey))
	}
	cl, err := client.New(opts...)
	if err != nil {
		return nil, err
	}
	c.client = cl
	return cl, nil
}

func (c *CLI) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *CLI) pollInterval() time.Duration {
	if c.PollInterval > 0 {
		return c.PollInterval
	}
	return 200 * time.Millisecond
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
	return newRoot(c), c
}

func newRoot(c *CLI) *cobra.Command {
	var hostFlag string
	var logLevel string
	root := &cobra.Command{
		Use:           "shoal [OPTIONS]",
		Short:         "Shoal: containers and swarm-mode orchestration, Docker-compatible",
		Version:       version.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			c.Host = ResolveHost(hostFlag)
			return c.resolveTLS(cmd)
		},
		CompletionOptions:     cobra.CompletionOptions{HiddenDefaultCmd: true},
		DisableFlagsInUseLine: true,
		// Global flags before the command are parsed by the root, so a
		// command's own --host (service create) cannot shadow -H.
		TraverseChildren: true,
	}
	root.SetVersionTemplate("Shoal version {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVarP(&hostFlag, "host", "H", "", "Daemon socket to connect to (env SHOAL_HOST, DOCKER_HOST)")
	pf.BoolVarP(&c.Debug, "debug", "D", false, "Enable debug mode")
	pf.StringVar(&logLevel, "log-level", "info", `Set the logging level ("debug", "info", "warn", "error", "fatal")`)
	pf.BoolVar(&c.TLSVerify, "tlsverify", os.Getenv("DOCKER_TLS_VERIFY") != "", "Use TLS and verify the remote")
	pf.BoolVar(&c.TLS, "tls", false, "Use TLS; implied by --tlsverify")
	pf.StringVar(&c.TLSCA, "tlscacert", "", "Trust certs signed only by this CA")
	pf.StringVar(&c.TLSCert, "tlscert", "", "Path to TLS certificate file")
	pf.StringVar(&c.TLSKey, "tlskey", "", "Path to TLS key file")
	root.Flags().BoolP("version", "v", false, "Print version information and quit")
	root.SetOut(c.Out)
	root.SetErr(c.Err)
	root.SetIn(c.In)
	root.SetFlagErrorFunc(flagErrorFunc)
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpTemplate(helpTemplate)
	addEngineCommands(root, c)
	addClusterCommands(root, c)
	root.AddCommand(newRegistryCommand(c), newDemoCommand(c), newLabCommand(c))
	finishTree(root)
	return root
}

// resolveTLS fills the TLS file paths from flags or DOCKER_CERT_PATH, as docker does.
func (c *CLI) resolveTLS(cmd *cobra.Command) error {
	f := cmd.Flags()
	anySet := f.Changed("tlscacert") || f.Changed("tlscert") || f.Changed("tlskey")
	if !c.TLS && !c.TLSVerify && !anySet {
		return nil
	}
	dir := os.Getenv("DOCKER_CERT_PATH")
	if dir == "" {
		if home, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(home, ".docker")
		}
	}
	if c.TLSCA == "" {
		c.TLSCA = filepath.Join(dir, "ca.pem")
	}
	if c.TLSCert == "" {
		c.TLSCert = filepath.Join(dir, "cert.pem")
	}
	if c.TLSKey == "" {
		c.TLSKey = filepath.Join(dir, "key.pem")
	}
	c.useTLSFiles = true
	return nil
}

// finishTree applies docker's conventions to every command: no "[flags]"
// in usage lines, and groups answer unknown subcommands like docker.
func finishTree(cmd *cobra.Command) {
	cmd.DisableFlagsInUseLine = true
	if cmd.HasSubCommands() && cmd.Run == nil && cmd.RunE == nil {
		cmd.Args = noArgs
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.OutOrStdout())
			return cmd.Help()
		}
	}
	for _, sub := range cmd.Commands() {
		finishTree(sub)
	}
}

// Help in docker's layout ("Usage:  shoal ps [OPTIONS]", "Options:").
const usageTemplate = `Usage:  {{.UseLine}}
{{- if .HasAvailableSubCommands}} COMMAND{{end}}

{{.Short}}
{{- if gt (len .Aliases) 0}}

Aliases:
  {{.NameAndAliases}}
{{- end}}
{{- if .HasAvailableSubCommands}}

Commands:
{{- range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}{{if ne .Name "help"}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}
{{- end}}
{{- if .HasAvailableLocalFlags}}

Options:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}
{{- end}}
{{- if and .HasAvailableInheritedFlags (not .HasParent)}}

Global Options:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}
{{- end}}
{{- if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND --help' for more information on a command.
{{- end}}
`

const helpTemplate = `{{.UsageString}}`

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
	return execute(context.Background(), root, c, args)
}

func execute(ctx context.Context, root *cobra.Command, c *CLI, args []string) int {
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if c.client != nil {
		_ = c.client.Close()
	}
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
	fmt.Fprintln(c.Err, strings.TrimSpace(c.errorText(err)))
	return 1
}

// errorText renders err for the user; connection failures name Shoal's
// daemon rather than Docker's.
func (c *CLI) errorText(err error) string {
	if client.IsErrConnectionFailed(err) {
		host := c.Host
		if host == "" {
			host = ResolveHost("")
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Sprintf("permission denied while trying to connect to the Shoal daemon socket at %s", host)
		}
		if strings.HasPrefix(host, "unix://") || strings.HasPrefix(host, "tcp://") || strings.HasPrefix(host, "fd://") {
			return fmt.Sprintf("Cannot connect to the Shoal daemon at %s. Is the shoald daemon running?", host)
		}
	}
	return err.Error()
}

// flagErrorFunc prints flag errors like docker (exit 125).
func flagErrorFunc(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pflag.ErrHelp) {
		return err
	}
	return StatusError{Status: 125, Message: fmt.Sprintf("%s\n\nUsage:  %s\n\nRun '%s --help' for more information",
		err, cmd.UseLine(), cmd.CommandPath())}
}
