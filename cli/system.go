package cli

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"text/template"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"

	"github.com/shoal/shoal/version"
)

// ---- info ----

type clientInfo struct {
	Version    string
	Context    string
	Debug      bool
	Plugins    []struct{} `json:"Plugins"`
	Warnings   []string   `json:",omitempty"`
	APIVersion string     `json:"-"`
}

// infoData is what `info --format` templates see: the daemon's Info plus
// the client's, like docker's.
type infoData struct {
	*system.Info
	ClientInfo   *clientInfo
	ClientErrors []string `json:",omitempty"`
	ServerErrors []string `json:",omitempty"`
}

func newInfoCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			data := infoData{ClientInfo: &clientInfo{Version: version.Version, Context: "default", Debug: c.Debug, Plugins: []struct{}{}}}
			cl, err := c.Client()
			if err == nil {
				var res client.SystemInfoResult
				res, err = cl.Info(cmd.Context(), client.InfoOptions{})
				if err == nil {
					data.Info = &res.Info
				}
			}
			if err != nil {
				data.ServerErrors = append(data.ServerErrors, c.errorText(err))
			}
			if format == "" {
				return printInfo(c.Out, c.Err, data)
			}
			if format == jsonFormatKey {
				format = "{{json .}}"
			}
			tmpl, perr := parseTemplate(format)
			if perr != nil {
				return StatusError{Status: 64, Message: "template parsing error: " + perr.Error()}
			}
			terr := tmpl.Execute(c.Out, data)
			fmt.Fprintln(c.Out)
			if terr != nil {
				return terr
			}
			if len(data.ServerErrors) > 0 {
				return StatusError{Status: 1, Message: strings.Join(data.ServerErrors, "\n")}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template:\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.")
	return cmd
}

func printInfo(out, errOut io.Writer, info infoData) error {
	fmt.Fprintln(out, "Client:")
	if ci := info.ClientInfo; ci != nil {
		fmt.Fprintln(out, " Version:   ", ci.Version)
		fmt.Fprintln(out, " Context:   ", ci.Context)
		fmt.Fprintln(out, " Debug Mode:", ci.Debug)
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "Server:")
	if info.Info != nil {
		printServerInfo(out, errOut, info.Info)
	}
	for _, e := range info.ServerErrors {
		fmt.Fprintln(errOut, "ERROR:", e)
	}
	if len(info.ServerErrors) > 0 {
		return StatusError{Status: 1, Message: "errors pretty printing info"}
	}
	return nil
}

func printlnNonEmpty(w io.Writer, label, value string) {
	if value != "" {
		fmt.Fprintln(w, label, value)
	}
}

func printServerInfo(out, errOut io.Writer, info *system.Info) {
	fmt.Fprintln(out, " Containers:", info.Containers)
	fmt.Fprintln(out, "  Running:", info.ContainersRunning)
	fmt.Fprintln(out, "  Paused:", info.ContainersPaused)
	fmt.Fprintln(out, "  Stopped:", info.ContainersStopped)
	fmt.Fprintln(out, " Images:", info.Images)
	printlnNonEmpty(out, " Server Version:", info.ServerVersion)
	printlnNonEmpty(out, " Storage Driver:", info.Driver)
	for _, pair := range info.DriverStatus {
		fmt.Fprintf(out, "  %s: %s\n", pair[0], pair[1])
	}
	printlnNonEmpty(out, " Logging Driver:", info.LoggingDriver)
	printlnNonEmpty(out, " Cgroup Driver:", info.CgroupDriver)
	printlnNonEmpty(out, " Cgroup Version:", info.CgroupVersion)
	fmt.Fprintln(out, " Plugins:")
	fmt.Fprintln(out, "  Volume:", strings.Join(info.Plugins.Volume, " "))
	fmt.Fprintln(out, "  Network:", strings.Join(info.Plugins.Network, " "))
	if len(info.Plugins.Authorization) != 0 {
		fmt.Fprintln(out, "  Authorization:", strings.Join(info.Plugins.Authorization, " "))
	}
	fmt.Fprintln(out, "  Log:", strings.Join(info.Plugins.Log, " "))
	fmt.Fprintln(out, " Swarm:", info.Swarm.LocalNodeState)
	printSwarmInfo(out, info)
	if len(info.Runtimes) > 0 {
		names := make([]string, 0, len(info.Runtimes))
		for name := range info.Runtimes {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintln(out, " Runtimes:", strings.Join(names, " "))
		fmt.Fprintln(out, " Default Runtime:", info.DefaultRuntime)
	}
	if info.OSType == "linux" {
		fmt.Fprintln(out, " Init Binary:", info.InitBinary)
		fmt.Fprintln(out, " containerd version:", info.ContainerdCommit.ID)
		fmt.Fprintln(out, " runc version:", info.RuncCommit.ID)
		fmt.Fprintln(out, " init version:", info.InitCommit.ID)
		if len(info.SecurityOptions) > 0 {
			fmt.Fprintln(out, " Security Options:")
			for _, so := range info.SecurityOptions {
				name, opts := decodeSecurityOption(so)
				fmt.Fprintln(out, "  "+name)
				if p, ok := opts["profile"]; ok {
					fmt.Fprintln(out, "   Profile:", p)
				}
			}
		}
	}
	printlnNonEmpty(out, " Kernel Version:", info.KernelVersion)
	printlnNonEmpty(out, " Operating System:", info.OperatingSystem)
	printlnNonEmpty(out, " OSType:", info.OSType)
	printlnNonEmpty(out, " Architecture:", info.Architecture)
	fmt.Fprintln(out, " CPUs:", info.NCPU)
	fmt.Fprintln(out, " Total Memory:", bytesSize(float64(info.MemTotal)))
	printlnNonEmpty(out, " Name:", info.Name)
	printlnNonEmpty(out, " ID:", info.ID)
	fmt.Fprintln(out, " Docker Root Dir:", info.DockerRootDir)
	fmt.Fprintln(out, " Debug Mode:", info.Debug)
	if info.Debug {
		fmt.Fprintln(out, "  File Descriptors:", info.NFd)
		fmt.Fprintln(out, "  Goroutines:", info.NGoroutines)
		fmt.Fprintln(out, "  System Time:", info.SystemTime)
		fmt.Fprintln(out, "  EventsListeners:", info.NEventsListener)
	}
	printlnNonEmpty(out, " HTTP Proxy:", info.HTTPProxy)
	printlnNonEmpty(out, " HTTPS Proxy:", info.HTTPSProxy)
	printlnNonEmpty(out, " No Proxy:", info.NoProxy)
	if len(info.Labels) > 0 {
		fmt.Fprintln(out, " Labels:")
		for _, l := range info.Labels {
			fmt.Fprintln(out, "  "+l)
		}
	}
	fmt.Fprintln(out, " Experimental:", info.ExperimentalBuild)
	if rc := info.RegistryConfig; rc != nil && (len(rc.InsecureRegistryCIDRs) > 0 || len(rc.IndexConfigs) > 0) {
		fmt.Fprintln(out, " Insecure Registries:")
		names := make([]string, 0, len(rc.IndexConfigs))
		for _, ic := range rc.IndexConfigs {
			if !ic.Secure {
				names = append(names, ic.Name)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintln(out, "  "+n)
		}
		for _, cidr := range rc.InsecureRegistryCIDRs {
			fmt.Fprintf(out, "  %s\n", cidr)
		}
	}
	if rc := info.RegistryConfig; rc != nil && len(rc.Mirrors) > 0 {
		fmt.Fprintln(out, " Registry Mirrors:")
		for _, m := range rc.Mirrors {
			fmt.Fprintln(out, "  "+m)
		}
	}
	fmt.Fprintln(out, " Live Restore Enabled:", info.LiveRestoreEnabled)
	if len(info.DefaultAddressPools) > 0 {
		fmt.Fprintln(out, " Default Address Pools:")
		for _, p := range info.DefaultAddressPools {
			fmt.Fprintf(out, "   Base: %s, Size: %d\n", p.Base, p.Size)
		}
	}
	if fb := info.FirewallBackend; fb != nil {
		fmt.Fprintln(out, " Firewall Backend:", fb.Driver)
		for _, v := range fb.Info {
			fmt.Fprintf(out, "  %s: %s\n", v[0], v[1])
		}
	}
	fmt.Fprintln(out)
	for _, w := range info.Warnings {
		fmt.Fprintln(errOut, w)
	}
}

// decodeSecurityOption splits "name=seccomp,profile=builtin".
func decodeSecurityOption(s string) (string, map[string]string) {
	opts := map[string]string{}
	name := s
	for i, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			if i == 0 {
				name = kv
			}
			continue
		}
		if k == "name" {
			name = v
			continue
		}
		opts[k] = v
	}
	return name, opts
}

func printSwarmInfo(out io.Writer, info *system.Info) {
	sw := info.Swarm
	if sw.LocalNodeState == swarm.LocalNodeStateInactive || sw.LocalNodeState == swarm.LocalNodeStateLocked || sw.LocalNodeState == "" {
		return
	}
	fmt.Fprintln(out, "  NodeID:", sw.NodeID)
	if sw.Error != "" {
		fmt.Fprintln(out, "  Error:", sw.Error)
	}
	fmt.Fprintln(out, "  Is Manager:", sw.ControlAvailable)
	if cl := sw.Cluster; cl != nil && sw.ControlAvailable && sw.Error == "" && sw.LocalNodeState != swarm.LocalNodeStateError {
		fmt.Fprintln(out, "  ClusterID:", cl.ID)
		fmt.Fprintln(out, "  Managers:", sw.Managers)
		fmt.Fprintln(out, "  Nodes:", sw.Nodes)
		if cl.DefaultAddrPool != nil {
			var pools strings.Builder
			for _, p := range cl.DefaultAddrPool {
				pools.WriteString(p.String() + "  ")
			}
			fmt.Fprintln(out, "  Default Address Pool:", pools.String())
			fmt.Fprintln(out, "  SubnetSize:", cl.SubnetSize)
		}
		if cl.DataPathPort > 0 {
			fmt.Fprintln(out, "  Data Path Port:", cl.DataPathPort)
		}
		fmt.Fprintln(out, "  Orchestration:")
		var limit int64
		if cl.Spec.Orchestration.TaskHistoryRetentionLimit != nil {
			limit = *cl.Spec.Orchestration.TaskHistoryRetentionLimit
		}
		fmt.Fprintln(out, "   Task History Retention Limit:", limit)
		fmt.Fprintln(out, "  Raft:")
		fmt.Fprintln(out, "   Snapshot Interval:", cl.Spec.Raft.SnapshotInterval)
		if cl.Spec.Raft.KeepOldSnapshots != nil {
			fmt.Fprintf(out, "   Number of Old Snapshots to Retain: %d\n", *cl.Spec.Raft.KeepOldSnapshots)
		}
		fmt.Fprintln(out, "   Heartbeat Tick:", cl.Spec.Raft.HeartbeatTick)
		fmt.Fprintln(out, "   Election Tick:", cl.Spec.Raft.ElectionTick)
		fmt.Fprintln(out, "  Dispatcher:")
		fmt.Fprintln(out, "   Heartbeat Period:", humanDuration(cl.Spec.Dispatcher.HeartbeatPeriod))
		fmt.Fprintln(out, "  CA Configuration:")
		fmt.Fprintln(out, "   Expiry Duration:", humanDuration(cl.Spec.CAConfig.NodeCertExpiry))
		fmt.Fprintln(out, "   Force Rotate:", cl.Spec.CAConfig.ForceRotate)
		if ca := strings.TrimSpace(cl.Spec.CAConfig.SigningCACert); ca != "" {
			fmt.Fprintf(out, "   Signing CA Certificate: \n%s\n\n", ca)
		}
		if len(cl.Spec.CAConfig.ExternalCAs) > 0 {
			fmt.Fprintln(out, "   External CAs:")
			for _, e := range cl.Spec.CAConfig.ExternalCAs {
				fmt.Fprintf(out, "     %s: %s\n", e.Protocol, e.URL)
			}
		}
		fmt.Fprintln(out, "  Autolock Managers:", cl.Spec.EncryptionConfig.AutoLockManagers)
		fmt.Fprintln(out, "  Root Rotation In Progress:", cl.RootRotationInProgress)
	}
	fmt.Fprintln(out, "  Node Address:", sw.NodeAddr)
	if len(sw.RemoteManagers) > 0 {
		addrs := make([]string, 0, len(sw.RemoteManagers))
		for _, m := range sw.RemoteManagers {
			addrs = append(addrs, m.Addr)
		}
		sort.Strings(addrs)
		fmt.Fprintln(out, "  Manager Addresses:")
		for _, a := range addrs {
			fmt.Fprintf(out, "   %s\n", a)
		}
	}
}

// ---- version ----

const versionTemplate = `{{with .Client -}}
Client:{{if ne .Platform nil}}{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}{{end}}
 Version:	{{.Version}}
 API version:	{{.APIVersion}}{{if ne .APIVersion .DefaultAPIVersion}} (downgraded from {{.DefaultAPIVersion}}){{end}}
 Go version:	{{.GoVersion}}
 Git commit:	{{.GitCommit}}
 Built:	{{.BuildTime}}
 OS/Arch:	{{.Os}}/{{.Arch}}
 Context:	{{.Context}}
{{- end}}

{{- if ne .Server nil}}{{with .Server}}

Server:{{if ne .Platform.Name ""}} {{.Platform.Name}}{{end}}
 {{- range $component := .Components}}
 {{$component.Name}}:
  {{- if eq $component.Name "Engine" }}
  Version:	{{.Version}}
  API version:	{{index .Details "ApiVersion"}} (minimum version {{index .Details "MinAPIVersion"}})
  Go version:	{{index .Details "GoVersion"}}
  Git commit:	{{index .Details "GitCommit"}}
  Built:	{{index .Details "BuildTime"}}
  OS/Arch:	{{index .Details "Os"}}/{{index .Details "Arch"}}
  Experimental:	{{index .Details "Experimental"}}
  {{- else }}
  Version:	{{$component.Version}}
  {{- range $key := detailsOrder $component}}
  {{$key}}:	{{index $component.Details $key}}
  {{- end}}
  {{- end}}
 {{- end}}
 {{- end}}{{- end}}`

type platformInfo struct {
	Name string `json:"Name,omitempty"`
}

type clientVersion struct {
	Platform          *platformInfo `json:"Platform,omitempty"`
	Version           string        `json:"Version,omitempty"`
	APIVersion        string        `json:"ApiVersion,omitempty"`
	DefaultAPIVersion string        `json:"DefaultAPIVersion,omitempty"`
	GitCommit         string        `json:"GitCommit,omitempty"`
	GoVersion         string        `json:"GoVersion,omitempty"`
	Os                string        `json:"Os,omitempty"`
	Arch              string        `json:"Arch,omitempty"`
	BuildTime         string        `json:"BuildTime,omitempty"`
	Context           string        `json:"Context"`
}

type serverVersion struct {
	Platform      platformInfo
	Version       string
	APIVersion    string `json:"ApiVersion"`
	MinAPIVersion string `json:"MinAPIVersion,omitempty"`
	Os            string
	Arch          string
	Components    []system.ComponentVersion `json:",omitempty"`
	GitCommit     string                    `json:",omitempty"`
	GoVersion     string                    `json:",omitempty"`
	KernelVersion string                    `json:",omitempty"`
	Experimental  bool                      `json:",omitempty"`
	BuildTime     string                    `json:",omitempty"`
}

type versionInfo struct {
	Client clientVersion
	Server *serverVersion
}

func newVersionCommand(c *CLI) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the Shoal version information",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			vd := versionInfo{Client: clientVersion{
				Platform:          &platformInfo{Name: "Shoal"},
				Version:           version.Version,
				APIVersion:        client.MaxAPIVersion,
				DefaultAPIVersion: client.MaxAPIVersion,
				GitCommit:         version.GitCommit,
				GoVersion:         runtime.Version(),
				Os:                runtime.GOOS,
				Arch:              runtime.GOARCH,
				Context:           "default",
			}}
			cl, err := c.Client()
			if err == nil {
				var sv client.ServerVersionResult
				sv, err = cl.ServerVersion(cmd.Context(), client.ServerVersionOptions{})
				if err == nil {
					vd.Client.APIVersion = cl.ClientVersion()
					vd.Server = newServerVersion(sv)
				}
			}
			tmplText := versionTemplate
			switch format {
			case "":
			case jsonFormatKey:
				tmplText = "{{json .}}"
			default:
				tmplText = format
			}
			tmpl, perr := template.New("version").Funcs(templateFuncs).Funcs(template.FuncMap{"detailsOrder": detailsOrder}).Parse(tmplText)
			if perr != nil {
				return StatusError{Status: 64, Message: "template parsing error: " + perr.Error()}
			}
			if format == "" {
				tw := tabwriter.NewWriter(c.Out, 20, 1, 1, ' ', 0)
				terr := tmpl.Execute(tw, vd)
				tw.Write([]byte("\n"))
				tw.Flush()
				if terr != nil {
					return terr
				}
			} else {
				if terr := tmpl.Execute(c.Out, vd); terr != nil {
					return terr
				}
				fmt.Fprintln(c.Out)
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "Format output using a custom template:\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.")
	return cmd
}

func newServerVersion(sv client.ServerVersionResult) *serverVersion {
	out := &serverVersion{
		Platform:      platformInfo{Name: sv.Platform.Name},
		Version:       sv.Version,
		APIVersion:    sv.APIVersion,
		MinAPIVersion: sv.MinAPIVersion,
		Os:            sv.Os,
		Arch:          sv.Arch,
		Experimental:  sv.Experimental,
	}
	for _, comp := range sv.Components {
		if comp.Name == "Engine" {
			out.GitCommit = comp.Details["GitCommit"]
			out.GoVersion = comp.Details["GoVersion"]
			out.KernelVersion = comp.Details["KernelVersion"]
			out.BuildTime = comp.Details["BuildTime"]
		}
		out.Components = append(out.Components, comp)
	}
	if len(out.Components) == 0 {
		// An engine that lists no components still gets an Engine block.
		out.Components = []system.ComponentVersion{{Name: "Engine", Version: sv.Version, Details: map[string]string{
			"ApiVersion": sv.APIVersion, "MinAPIVersion": sv.MinAPIVersion, "Os": sv.Os, "Arch": sv.Arch,
			"Experimental": fmt.Sprint(sv.Experimental),
		}}}
	}
	return out
}

func detailsOrder(v system.ComponentVersion) []string {
	out := make([]string, 0, len(v.Details))
	for k := range v.Details {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func newSystemCommand(c *CLI) *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage Shoal"}
	cmd.AddCommand(newInfoCommand(c), newEventsCommand(c))
	return cmd
}
