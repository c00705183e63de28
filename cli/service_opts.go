package cli

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
	"github.com/spf13/pflag"
)

// Swarm's defaults, which docker fills in when only some of a group of
// flags is given (restart policy, update and rollback config).
var (
	defaultRestartDelay  = 5 * time.Second
	defaultUpdateMonitor = 5 * time.Second
	defaultStopGrace     = 10 * time.Second
)

func defaultUpdateConfig() *swarm.UpdateConfig {
	return &swarm.UpdateConfig{Parallelism: 1, Monitor: defaultUpdateMonitor,
		FailureAction: swarm.UpdateFailureActionPause, Order: swarm.UpdateOrderStopFirst}
}

func defaultRestartPolicy() *swarm.RestartPolicy {
	d, n := defaultRestartDelay, uint64(0)
	return &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionAny, Delay: &d, MaxAttempts: &n}
}

type updateFlags struct {
	parallelism     uint64
	delay, monitor  time.Duration
	failureAction   string
	maxFailureRatio float32
	order           string
}

// serviceOptions holds every service create/update flag.
type serviceOptions struct {
	name, mode       string
	replicas         uint64PtrValue
	maxConcurrent    uint64PtrValue
	maxReplicas      uint64
	labels           []string
	containerLabels  []string
	env, envFile     []string
	image            string
	args             string
	entrypoint       string
	workdir, user    string
	hostname         string
	groups           []string
	init             bool
	stopGrace        durationPtrValue
	stopSignal       string
	readOnly, tty    bool
	mounts           []string
	dns, dnsSearch   []string
	dnsOption        []string
	hosts            []string
	constraints      []string
	placementPrefs   []string
	limitCPU, resCPU nanoCPUsValue
	limitMem, resMem memBytesValue
	limitPids        int64
	restartCondition string
	restartDelay     durationPtrValue
	restartMax       uint64PtrValue
	restartWindow    durationPtrValue
	update, rollback updateFlags
	endpointMode     string
	publish          []string
	networks         []string
	secrets, configs []string
	logDriver        string
	logOpts          []string
	healthCmd        string
	healthInterval   durationPtrValue
	healthTimeout    durationPtrValue
	healthStart      durationPtrValue
	healthRetries    int
	noHealthcheck    bool
	capAdd, capDrop  []string
	sysctls          []string
	ulimits          []string
	oomScoreAdj      int64
	isolation        string

	detach, quiet, noResolveImage, withRegistryAuth bool

	// update-only
	force, rollbackNow                      bool
	labelRm, containerLabelRm, envRm        []string
	constraintRm, placementPrefRm, mountRm  []string
	publishRm, networkRm, secretRm          []string
	configRm, groupRm, dnsRm, dnsSearchRm   []string
	dnsOptionRm, hostRm, sysctlRm, ulimitRm []string
}

// addServiceFlags registers the flags shared by create and update; update
// names the list flags "-add"/"-rm" as docker does.
func addServiceFlags(f *pflag.FlagSet, o *serviceOptions, update bool) {
	list := func(p *[]string, createName, short, usage string) {
		name := createName
		if update {
			name = createName + "-add"
			short = ""
		}
		f.StringArrayVarP(p, name, short, nil, usage)
	}
	list(&o.labels, "label", "l", "Service labels")
	list(&o.containerLabels, "container-label", "", "Container labels")
	if update {
		f.StringArrayVar(&o.env, "env-add", nil, "Add or update an environment variable")
	} else {
		f.StringArrayVarP(&o.env, "env", "e", nil, "Set environment variables")
		f.StringArrayVar(&o.envFile, "env-file", nil, "Read in a file of environment variables")
	}
	list(&o.mounts, "mount", "", "Attach a filesystem mount to the service")
	list(&o.constraints, "constraint", "", "Placement constraints")
	list(&o.placementPrefs, "placement-pref", "", "Add a placement preference")
	list(&o.publish, "publish", "p", "Publish a port as a node port")
	list(&o.networks, "network", "", "Network attachments")
	list(&o.secrets, "secret", "", "Specify secrets to expose to the service")
	list(&o.configs, "config", "", "Specify configurations to expose to the service")
	list(&o.dns, "dns", "", "Set custom DNS servers")
	list(&o.dnsSearch, "dns-search", "", "Set custom DNS search domains")
	list(&o.dnsOption, "dns-option", "", "Set DNS options")
	list(&o.sysctls, "sysctl", "", "Sysctl options")
	list(&o.ulimits, "ulimit", "", "Ulimit options")
	if update {
		f.StringArrayVar(&o.hosts, "host-add", nil, "Add a custom host-to-IP mapping (host:ip)")
		f.StringArrayVar(&o.groups, "group-add", nil, "Add an additional supplementary user group to the container")
	} else {
		f.StringArrayVar(&o.hosts, "host", nil, "Set one or more custom host-to-IP mappings (host:ip)")
		f.StringArrayVar(&o.groups, "group", nil, "Set one or more supplementary user groups for the container")
	}
	f.Var(&o.replicas, "replicas", "Number of tasks")
	f.Var(&o.maxConcurrent, "max-concurrent", "Number of job tasks to run concurrently (default equal to --replicas)")
	f.Uint64Var(&o.maxReplicas, "replicas-max-per-node", 0, "Maximum number of tasks per node (default 0 = unlimited)")
	f.StringVar(&o.entrypoint, "entrypoint", "", "Overwrite the default ENTRYPOINT of the image")
	f.StringVarP(&o.workdir, "workdir", "w", "", "Working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "Username or UID (format: <name|uid>[:<group|gid>])")
	f.StringVar(&o.hostname, "hostname", "", "Container hostname")
	f.BoolVar(&o.init, "init", false, "Use an init inside each service container to forward signals and reap processes")
	f.Var(&o.stopGrace, "stop-grace-period", "Time to wait before force killing a container (ns|us|ms|s|m|h) (default 10s)")
	f.StringVar(&o.stopSignal, "stop-signal", "", "Signal to stop the container")
	f.BoolVar(&o.readOnly, "read-only", false, "Mount the container's root filesystem as read only")
	f.BoolVarP(&o.tty, "tty", "t", false, "Allocate a pseudo-TTY")
	f.Var(&o.limitCPU, "limit-cpu", "Limit CPUs")
	f.Var(&o.limitMem, "limit-memory", "Limit Memory")
	f.Int64Var(&o.limitPids, "limit-pids", 0, "Limit maximum number of processes (default 0 = unlimited)")
	f.Var(&o.resCPU, "reserve-cpu", "Reserve CPUs")
	f.Var(&o.resMem, "reserve-memory", "Reserve Memory")
	f.StringVar(&o.restartCondition, "restart-condition", "", `Restart when condition is met ("none", "on-failure", "any") (default "any")`)
	f.Var(&o.restartDelay, "restart-delay", "Delay between restart attempts (ns|us|ms|s|m|h) (default 5s)")
	f.Var(&o.restartMax, "restart-max-attempts", "Maximum number of restarts before giving up")
	f.Var(&o.restartWindow, "restart-window", "Window used to evaluate the restart policy (ns|us|ms|s|m|h)")
	for _, k := range []struct {
		prefix, verb string
		u            *updateFlags
		failures     string
	}{
		{"update", "updated", &o.update, `Action on update failure ("pause", "continue", "rollback")`},
		{"rollback", "rolled back", &o.rollback, `Action on rollback failure ("pause", "continue")`},
	} {
		f.Uint64Var(&k.u.parallelism, k.prefix+"-parallelism", 1, fmt.Sprintf("Maximum number of tasks %s simultaneously (0 to update all at once)", k.verb))
		f.DurationVar(&k.u.delay, k.prefix+"-delay", 0, "Delay between updates (ns|us|ms|s|m|h)")
		f.DurationVar(&k.u.monitor, k.prefix+"-monitor", 0, "Duration after each task update to monitor for failure (ns|us|ms|s|m|h) (default 5s)")
		f.StringVar(&k.u.failureAction, k.prefix+"-failure-action", "", k.failures+` (default "pause")`)
		f.Float32Var(&k.u.maxFailureRatio, k.prefix+"-max-failure-ratio", 0, "Failure rate to tolerate during an update")
		f.StringVar(&k.u.order, k.prefix+"-order", "", `Update order ("start-first", "stop-first") (default "stop-first")`)
	}
	f.StringVar(&o.endpointMode, "endpoint-mode", "vip", "Endpoint mode (vip or dnsrr)")
	f.StringVar(&o.logDriver, "log-driver", "", "Logging driver for service")
	f.StringArrayVar(&o.logOpts, "log-opt", nil, "Logging driver options")
	f.StringVar(&o.healthCmd, "health-cmd", "", "Command to run to check health")
	f.Var(&o.healthInterval, "health-interval", "Time between running the check (ms|s|m|h)")
	f.Var(&o.healthTimeout, "health-timeout", "Maximum time to allow one check to run (ms|s|m|h)")
	f.Var(&o.healthStart, "health-start-period", "Start period for the container to initialize before counting retries towards unstable (ms|s|m|h)")
	f.IntVar(&o.healthRetries, "health-retries", 0, "Consecutive failures needed to report unhealthy")
	f.BoolVar(&o.noHealthcheck, "no-healthcheck", false, "Disable any container-specified HEALTHCHECK")
	f.StringArrayVar(&o.capAdd, "cap-add", nil, "Add Linux capabilities")
	f.StringArrayVar(&o.capDrop, "cap-drop", nil, "Drop Linux capabilities")
	f.Int64Var(&o.oomScoreAdj, "oom-score-adj", 0, "Tune host's OOM preferences (-1000 to 1000) ")
	f.StringVar(&o.isolation, "isolation", "", "Service container isolation mode")
	f.BoolVarP(&o.detach, "detach", "d", false, "Exit immediately instead of waiting for the service to converge")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "Suppress progress output")
	f.BoolVar(&o.noResolveImage, "no-resolve-image", false, "Do not query the registry to resolve image digest and supported platforms")
	f.BoolVar(&o.withRegistryAuth, "with-registry-auth", false, "Send registry authentication details to swarm agents")

	if !update {
		f.StringVar(&o.name, "name", "", "Service name")
		f.StringVar(&o.mode, "mode", "replicated", `Service mode ("replicated", "global", "replicated-job", "global-job")`)
		return
	}
	f.StringVar(&o.image, "image", "", "Service image tag")
	f.StringVar(&o.args, "args", "", "Service command args")
	f.BoolVar(&o.force, "force", false, "Force update even if no changes require it")
	f.BoolVar(&o.rollbackNow, "rollback", false, "Rollback to previous specification")
	rm := func(p *[]string, name, usage string) { f.StringArrayVar(p, name, nil, usage) }
	rm(&o.labelRm, "label-rm", "Remove a label by its key")
	rm(&o.containerLabelRm, "container-label-rm", "Remove a container label by its key")
	rm(&o.envRm, "env-rm", "Remove an environment variable")
	rm(&o.constraintRm, "constraint-rm", "Remove a constraint")
	rm(&o.placementPrefRm, "placement-pref-rm", "Remove a placement preference")
	rm(&o.mountRm, "mount-rm", "Remove a mount by its target path")
	rm(&o.publishRm, "publish-rm", "Remove a published port by its target port")
	rm(&o.networkRm, "network-rm", "Remove a network")
	rm(&o.secretRm, "secret-rm", "Remove a secret")
	rm(&o.configRm, "config-rm", "Remove a configuration file")
	rm(&o.groupRm, "group-rm", "Remove a previously added supplementary user group from the container")
	rm(&o.dnsRm, "dns-rm", "Remove a custom DNS server")
	rm(&o.dnsSearchRm, "dns-search-rm", "Remove a DNS search domain")
	rm(&o.dnsOptionRm, "dns-option-rm", "Remove a DNS option")
	rm(&o.hostRm, "host-rm", "Remove a custom host-to-IP mapping (host:ip)")
	rm(&o.sysctlRm, "sysctl-rm", "Remove a Sysctl option")
	rm(&o.ulimitRm, "ulimit-rm", "Remove a ulimit option")
	// Older tutorials use create's spelling with update (`-p`, `-e`...):
	// accept them as hidden synonyms of the "-add" flags.
	hidden := func(p *[]string, name, short string) {
		f.StringArrayVarP(p, name, short, nil, "")
		f.MarkHidden(name)
	}
	hidden(&o.publish, "publish", "p")
	hidden(&o.env, "env", "e")
	hidden(&o.labels, "label", "l")
	hidden(&o.constraints, "constraint", "")
	hidden(&o.mounts, "mount", "")
	hidden(&o.networks, "network", "")
}

// flagChanged reports whether any of the named flags were given.
func flagChanged(f *pflag.FlagSet, names ...string) bool {
	for _, n := range names {
		if fl := f.Lookup(n); fl != nil && fl.Changed {
			return true
		}
	}
	return false
}

// ---- parsers ----

// shellSplit splits a command line like a POSIX shell (quotes, escapes).
func shellSplit(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
			inWord = true
		case r == '\\' && quote != '\'':
			escaped = true
			inWord = true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, errors.New("EOF found when expecting closing quote")
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

func parsePlacementPref(v string) (swarm.PlacementPreference, error) {
	strategy, arg, ok := strings.Cut(v, "=")
	if !ok || strategy == "" {
		return swarm.PlacementPreference{}, fmt.Errorf("invalid placement preference %q: must be of the form strategy=argument", v)
	}
	if strings.ToLower(strategy) != "spread" {
		return swarm.PlacementPreference{}, fmt.Errorf("unsupported placement preference %s (only spread is supported)", strategy)
	}
	return swarm.PlacementPreference{Spread: &swarm.SpreadOver{SpreadDescriptor: arg}}, nil
}

// networkAttachment parses "--network name" or the long
// "name=..,alias=..,driver-opt=k=v" form.
func parseNetworkAttachment(v string) (swarm.NetworkAttachmentConfig, error) {
	if !strings.Contains(v, "=") {
		return swarm.NetworkAttachmentConfig{Target: v}, nil
	}
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return swarm.NetworkAttachmentConfig{}, err
	}
	var n swarm.NetworkAttachmentConfig
	for _, field := range fields {
		k, val, ok := strings.Cut(field, "=")
		if !ok {
			return n, fmt.Errorf("invalid field %s", field)
		}
		switch strings.ToLower(k) {
		case "name":
			n.Target = val
		case "alias":
			n.Aliases = append(n.Aliases, val)
		case "driver-opt":
			dk, dv, _ := strings.Cut(val, "=")
			if n.DriverOpts == nil {
				n.DriverOpts = map[string]string{}
			}
			n.DriverOpts[dk] = dv
		default:
			return n, fmt.Errorf("invalid field key %s", k)
		}
	}
	if n.Target == "" {
		return n, errors.New("network name/id is not specified")
	}
	return n, nil
}

// fileRef is a parsed --secret/--config value.
type fileRef struct {
	source, target, uid, gid string
	mode                     os.FileMode
}

func parseFileRef(v string, defaultTarget func(string) string) (fileRef, error) {
	r := fileRef{uid: "0", gid: "0", mode: 0o444}
	if !strings.Contains(v, "=") {
		r.source, r.target = v, defaultTarget(v)
		return r, nil
	}
	fields, err := csv.NewReader(strings.NewReader(v)).Read()
	if err != nil {
		return r, err
	}
	for _, field := range fields {
		k, val, ok := strings.Cut(field, "=")
		if !ok {
			return r, fmt.Errorf("invalid field '%s' must be a key=value pair", field)
		}
		switch strings.ToLower(k) {
		case "source", "src":
			r.source = val
		case "target":
			r.target = val
		case "uid":
			r.uid = val
		case "gid":
			r.gid = val
		case "mode":
			m, err := strconv.ParseUint(val, 0, 32)
			if err != nil {
				return r, fmt.Errorf("invalid mode specified: %w", err)
			}
			r.mode = os.FileMode(m)
		default:
			return r, fmt.Errorf("invalid field in secret request: %s", k)
		}
	}
	if r.source == "" {
		return r, errors.New("source is required")
	}
	if r.target == "" {
		r.target = defaultTarget(r.source)
	}
	return r, nil
}

// resolveSecrets turns --secret values into references with IDs, looking
// the names up like docker (GET /secrets?filters={"name":...}).
func resolveSecrets(ctx context.Context, cl *client.Client, vals []string) ([]*swarm.SecretReference, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	var refs []fileRef
	f := client.Filters{}
	seen := map[string]bool{}
	for _, v := range vals {
		r, err := parseFileRef(v, func(s string) string { return s })
		if err != nil {
			return nil, err
		}
		if seen[r.target] {
			return nil, fmt.Errorf("duplicate secret target for %s not allowed", r.source)
		}
		seen[r.target] = true
		refs = append(refs, r)
		f.Add("name", r.source)
	}
	res, err := cl.SecretList(ctx, client.SecretListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, s := range res.Items {
		ids[s.Spec.Name] = s.ID
	}
	var out []*swarm.SecretReference
	for _, r := range refs {
		id, ok := ids[r.source]
		if !ok {
			return nil, fmt.Errorf("secret not found: %s", r.source)
		}
		out = append(out, &swarm.SecretReference{SecretID: id, SecretName: r.source,
			File: &swarm.SecretReferenceFileTarget{Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode}})
	}
	return out, nil
}

func resolveConfigs(ctx context.Context, cl *client.Client, vals []string) ([]*swarm.ConfigReference, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	var refs []fileRef
	f := client.Filters{}
	for _, v := range vals {
		r, err := parseFileRef(v, func(s string) string { return "/" + s })
		if err != nil {
			return nil, err
		}
		refs = append(refs, r)
		f.Add("name", r.source)
	}
	res, err := cl.ConfigList(ctx, client.ConfigListOptions{Filters: f})
	if err != nil {
		return nil, err
	}
	ids := map[string]string{}
	for _, s := range res.Items {
		ids[s.Spec.Name] = s.ID
	}
	var out []*swarm.ConfigReference
	for _, r := range refs {
		id, ok := ids[r.source]
		if !ok {
			return nil, fmt.Errorf("config not found: %s", r.source)
		}
		out = append(out, &swarm.ConfigReference{ConfigID: id, ConfigName: r.source,
			File: &swarm.ConfigReferenceFileTarget{Name: r.target, UID: r.uid, GID: r.gid, Mode: r.mode}})
	}
	return out, nil
}

// hostsToSwarm converts "host:ip" into the "ip host" lines swarm stores.
func hostsToSwarm(hosts []string) []string {
	var out []string
	for _, h := range hosts {
		host, ip, ok := strings.Cut(h, ":")
		if !ok {
			host, ip, ok = strings.Cut(h, "=")
		}
		if ok {
			out = append(out, ip+" "+host)
		}
	}
	return out
}

func (o *serviceOptions) healthConfig(f *pflag.FlagSet) (*container.HealthConfig, error) {
	anySet := flagChanged(f, "health-cmd", "health-interval", "health-timeout", "health-start-period", "health-retries")
	if o.noHealthcheck {
		if anySet {
			return nil, errors.New("--no-healthcheck conflicts with --health-* options")
		}
		return &container.HealthConfig{Test: []string{"NONE"}}, nil
	}
	if !anySet {
		return nil, nil
	}
	h := &container.HealthConfig{Retries: o.healthRetries}
	if o.healthCmd != "" {
		h.Test = []string{"CMD-SHELL", o.healthCmd}
	}
	if o.healthInterval.v != nil {
		h.Interval = *o.healthInterval.v
	}
	if o.healthTimeout.v != nil {
		h.Timeout = *o.healthTimeout.v
	}
	if o.healthStart.v != nil {
		h.StartPeriod = *o.healthStart.v
	}
	if h.Retries < 0 {
		return nil, errors.New("--health-retries cannot be negative")
	}
	return h, nil
}

func validateFailureAction(v string, rollback bool) error {
	switch swarm.FailureAction(v) {
	case swarm.UpdateFailureActionPause, swarm.UpdateFailureActionContinue:
		return nil
	case swarm.UpdateFailureActionRollback:
		if !rollback {
			return nil
		}
	}
	if rollback {
		return fmt.Errorf("invalid argument %q for \"--rollback-failure-action\" flag: must be \"pause\" or \"continue\"", v)
	}
	return fmt.Errorf("invalid argument %q for \"--update-failure-action\" flag: must be \"pause\", \"continue\" or \"rollback\"", v)
}

func validateOrder(v, flag string) error {
	switch swarm.UpdateOrder(v) {
	case swarm.UpdateOrderStartFirst, swarm.UpdateOrderStopFirst:
		return nil
	}
	return fmt.Errorf("invalid argument %q for \"--%s\" flag: must be \"start-first\" or \"stop-first\"", v, flag)
}

// mergeUpdateConfig applies the --update-*/--rollback-* flags the user set
// onto cfg (nil: start from swarm's defaults); nil when none were set.
func mergeUpdateConfig(f *pflag.FlagSet, prefix string, u updateFlags, cfg *swarm.UpdateConfig) (*swarm.UpdateConfig, error) {
	names := []string{"-parallelism", "-delay", "-monitor", "-failure-action", "-max-failure-ratio", "-order"}
	changed := func(n string) bool { return flagChanged(f, prefix+n) }
	any := false
	for _, n := range names {
		any = any || changed(n)
	}
	if !any {
		return cfg, nil
	}
	if cfg == nil {
		cfg = defaultUpdateConfig()
	}
	if changed("-parallelism") {
		cfg.Parallelism = u.parallelism
	}
	if changed("-delay") {
		cfg.Delay = u.delay
	}
	if changed("-monitor") {
		cfg.Monitor = u.monitor
	}
	if changed("-failure-action") {
		if err := validateFailureAction(u.failureAction, prefix == "rollback"); err != nil {
			return nil, err
		}
		cfg.FailureAction = swarm.FailureAction(u.failureAction)
	}
	if changed("-max-failure-ratio") {
		if u.maxFailureRatio < 0 || u.maxFailureRatio > 1 {
			return nil, fmt.Errorf("invalid argument for \"--%s-max-failure-ratio\": must be between 0 and 1", prefix)
		}
		cfg.MaxFailureRatio = u.maxFailureRatio
	}
	if changed("-order") {
		if err := validateOrder(u.order, prefix+"-order"); err != nil {
			return nil, err
		}
		cfg.Order = swarm.UpdateOrder(u.order)
	}
	return cfg, nil
}

// mergeRestartPolicy applies the --restart-* flags the user set.
func (o *serviceOptions) mergeRestartPolicy(f *pflag.FlagSet, rp *swarm.RestartPolicy) (*swarm.RestartPolicy, error) {
	if !flagChanged(f, "restart-condition", "restart-delay", "restart-max-attempts", "restart-window") {
		return rp, nil
	}
	if rp == nil {
		rp = defaultRestartPolicy()
	}
	if flagChanged(f, "restart-condition") {
		switch c := swarm.RestartPolicyCondition(o.restartCondition); c {
		case swarm.RestartPolicyConditionNone, swarm.RestartPolicyConditionOnFailure, swarm.RestartPolicyConditionAny:
			rp.Condition = c
		default:
			return nil, fmt.Errorf("invalid restart condition %q: must be one of \"none\", \"on-failure\" or \"any\"", o.restartCondition)
		}
	}
	if o.restartDelay.v != nil {
		d := *o.restartDelay.v
		rp.Delay = &d
	}
	if o.restartMax.v != nil {
		n := *o.restartMax.v
		rp.MaxAttempts = &n
	}
	if o.restartWindow.v != nil {
		w := *o.restartWindow.v
		rp.Window = &w
	}
	return rp, nil
}

func (o *serviceOptions) serviceMode() (swarm.ServiceMode, error) {
	var m swarm.ServiceMode
	switch o.mode {
	case "global":
		if o.replicas.v != nil {
			return m, errors.New("replicas can only be used with replicated or replicated-job mode")
		}
		if o.maxReplicas > 0 {
			return m, errors.New("replicas-max-per-node can only be used with replicated or replicated-job mode")
		}
		if o.maxConcurrent.v != nil {
			return m, errors.New("max-concurrent can only be used with replicated-job mode")
		}
		m.Global = &swarm.GlobalService{}
	case "replicated":
		if o.maxConcurrent.v != nil {
			return m, errors.New("max-concurrent can only be used with replicated-job mode")
		}
		m.Replicated = &swarm.ReplicatedService{Replicas: o.replicas.v}
	case "replicated-job":
		conc := o.maxConcurrent.v
		if conc == nil {
			conc = o.replicas.v
		}
		m.ReplicatedJob = &swarm.ReplicatedJob{MaxConcurrent: conc, TotalCompletions: o.replicas.v}
	case "global-job":
		if o.maxReplicas > 0 {
			return m, errors.New("replicas-max-per-node can only be used with replicated or replicated-job mode")
		}
		if o.maxConcurrent.v != nil {
			return m, errors.New("max-concurrent can only be used with replicated-job mode")
		}
		if o.replicas.v != nil {
			return m, errors.New("replicas can only be used with replicated or replicated-job mode")
		}
		m.GlobalJob = &swarm.GlobalJob{}
	default:
		return m, fmt.Errorf("unknown mode: %s, only replicated and global supported", o.mode)
	}
	return m, nil
}

// networkResolver maps a network name to its ID (GET /networks/{name}?scope=swarm).
type networkResolver func(ctx context.Context, nameOrID string) (string, error)

func clientNetworkResolver(cl *client.Client) networkResolver {
	return func(ctx context.Context, ref string) (string, error) {
		res, err := cl.NetworkInspect(ctx, ref, client.NetworkInspectOptions{Scope: "swarm"})
		if err != nil {
			return "", err
		}
		return res.Network.ID, nil
	}
}

// toServiceSpec builds the ServiceSpec for `service create` from flags and
// IMAGE [COMMAND] [ARG...]. Names of networks are resolved to IDs with
// resolveNet; secrets/configs are resolved by the caller.
func (o *serviceOptions) toServiceSpec(ctx context.Context, f *pflag.FlagSet, args []string, resolveNet networkResolver) (swarm.ServiceSpec, error) {
	var spec swarm.ServiceSpec
	env, err := buildEnv(o.envFile, o.env)
	if err != nil {
		return spec, err
	}
	env = dedupEnv(env)
	for _, l := range append(append([]string{}, o.labels...), o.containerLabels...) {
		if err := validateLabel(l); err != nil {
			return spec, err
		}
	}
	mode, err := o.serviceMode()
	if err != nil {
		return spec, err
	}
	upd, err := mergeUpdateConfig(f, "update", o.update, nil)
	if err != nil {
		return spec, err
	}
	rb, err := mergeUpdateConfig(f, "rollback", o.rollback, nil)
	if err != nil {
		return spec, err
	}
	if (mode.ReplicatedJob != nil || mode.GlobalJob != nil) && (upd != nil || rb != nil) {
		return spec, errors.New("update and rollback configuration is not supported for jobs")
	}
	restart, err := o.mergeRestartPolicy(f, nil)
	if err != nil {
		return spec, err
	}
	health, err := o.healthConfig(f)
	if err != nil {
		return spec, err
	}
	var nets []swarm.NetworkAttachmentConfig
	for _, n := range o.networks {
		na, err := parseNetworkAttachment(n)
		if err != nil {
			return spec, err
		}
		if resolveNet != nil {
			id, err := resolveNet(ctx, na.Target)
			if err != nil {
				return spec, err
			}
			na.Target = id
		}
		nets = append(nets, na)
	}
	sort.Slice(nets, func(i, j int) bool { return nets[i].Target < nets[j].Target })
	var mounts []mount.Mount
	for _, m := range o.mounts {
		mm, err := parseMount(m)
		if err != nil {
			return spec, fmt.Errorf("invalid argument %q for \"--mount\" flag: %w", m, err)
		}
		mounts = append(mounts, mm)
	}
	var ports []swarm.PortConfig
	for _, p := range o.publish {
		pc, err := parseServicePort(p)
		if err != nil {
			return spec, fmt.Errorf("invalid argument %q for \"-p, --publish\" flag: %w", p, err)
		}
		ports = append(ports, pc...)
	}
	var prefs []swarm.PlacementPreference
	for _, p := range o.placementPrefs {
		pp, err := parsePlacementPref(p)
		if err != nil {
			return spec, fmt.Errorf("invalid argument %q for \"--placement-pref\" flag: %w", p, err)
		}
		prefs = append(prefs, pp)
	}
	dns, err := parseDNS(o.dns)
	if err != nil {
		return spec, err
	}
	ulimits, err := parseUlimits(o.ulimits)
	if err != nil {
		return spec, err
	}
	var entrypoint []string
	if o.entrypoint != "" {
		if entrypoint, err = shellSplit(o.entrypoint); err != nil {
			return spec, err
		}
	}
	switch swarm.ResolutionMode(strings.ToLower(o.endpointMode)) {
	case swarm.ResolutionModeVIP, swarm.ResolutionModeDNSRR:
	default:
		return spec, fmt.Errorf("invalid endpoint mode %q: must be \"vip\" or \"dnsrr\"", o.endpointMode)
	}
	var stopGrace *time.Duration
	if f.Changed("stop-grace-period") {
		stopGrace = o.stopGrace.v
	}
	initv := o.init
	cspec := &swarm.ContainerSpec{
		Image:           args[0],
		Args:            args[1:],
		Command:         entrypoint,
		Env:             env,
		Hostname:        o.hostname,
		Labels:          kvMap(o.containerLabels),
		Dir:             o.workdir,
		User:            o.user,
		Groups:          o.groups,
		StopSignal:      o.stopSignal,
		TTY:             o.tty,
		ReadOnly:        o.readOnly,
		Mounts:          mounts,
		Init:            &initv,
		DNSConfig:       &swarm.DNSConfig{Nameservers: dns, Search: o.dnsSearch, Options: o.dnsOption},
		Hosts:           hostsToSwarm(o.hosts),
		StopGracePeriod: stopGrace,
		Healthcheck:     health,
		Isolation:       container.Isolation(o.isolation),
		Sysctls:         kvMapOrNil(o.sysctls),
		CapabilityAdd:   normalizeCaps(o.capAdd),
		CapabilityDrop:  normalizeCaps(o.capDrop),
		Ulimits:         ulimits,
		OomScoreAdj:     o.oomScoreAdj,
	}
	if len(cspec.Args) == 0 {
		cspec.Args = nil
	}
	var logDriver *swarm.Driver
	if o.logDriver != "" {
		logDriver = &swarm.Driver{Name: o.logDriver, Options: kvMapOrNil(o.logOpts)}
	}
	spec = swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: o.name, Labels: kvMap(o.labels)},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: cspec,
			Networks:      nets,
			Resources: &swarm.ResourceRequirements{
				Limits:       &swarm.Limit{NanoCPUs: o.limitCPU.v, MemoryBytes: o.limitMem.v, Pids: o.limitPids},
				Reservations: &swarm.Resources{NanoCPUs: o.resCPU.v, MemoryBytes: o.resMem.v},
			},
			RestartPolicy: restart,
			Placement:     &swarm.Placement{Constraints: o.constraints, Preferences: prefs, MaxReplicas: o.maxReplicas},
			LogDriver:     logDriver,
		},
		Mode:           mode,
		UpdateConfig:   upd,
		RollbackConfig: rb,
		EndpointSpec:   &swarm.EndpointSpec{Mode: swarm.ResolutionMode(strings.ToLower(o.endpointMode)), Ports: ports},
	}
	return spec, nil
}

// ---- update: merge flags onto the current spec, like docker ----

func envKey(v string) string {
	k, _, _ := strings.Cut(v, "=")
	return k
}

func toSet(items []string) map[string]bool {
	m := make(map[string]bool, len(items))
	for _, i := range items {
		m[i] = true
	}
	return m
}

// mergeEnv removes --env-rm keys then adds/replaces --env-add values,
// keeping the existing order.
func mergeEnv(cur, add, rm []string) ([]string, error) {
	rmSet := toSet(rm)
	var out []string
	for _, e := range cur {
		if !rmSet[envKey(e)] {
			out = append(out, e)
		}
	}
	for _, a := range add {
		n, err := normalizeEnv(a)
		if err != nil {
			return nil, err
		}
		replaced := false
		for i, e := range out {
			if envKey(e) == envKey(n) {
				out[i] = n
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, n)
		}
	}
	return out, nil
}

func mergeLabels(cur map[string]string, add, rm []string) map[string]string {
	if cur != nil {
		for _, k := range rm {
			delete(cur, k)
		}
	}
	if len(add) > 0 {
		if cur == nil {
			cur = map[string]string{}
		}
		for k, v := range kvMap(add) {
			cur[k] = v
		}
	}
	return cur
}

func mergeStringList(cur, add, rm []string, sorted bool) []string {
	rmSet := toSet(rm)
	out := []string{}
	seen := map[string]bool{}
	for _, s := range append(append([]string{}, cur...), add...) {
		if rmSet[s] || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	if sorted {
		sort.Strings(out)
	}
	return out
}

func portKey(p swarm.PortConfig) string {
	proto := p.Protocol
	if proto == "" {
		proto = "tcp"
	}
	mode := p.PublishMode
	if mode == "" {
		mode = swarm.PortConfigPublishModeIngress
	}
	return fmt.Sprintf("%v:%v/%s/%s", p.PublishedPort, p.TargetPort, proto, mode)
}

// mergePorts removes ports matching --publish-rm (by target, protocol and
// mode) and adds --publish-add ones not already there.
func mergePorts(cur []swarm.PortConfig, add, rm []string) ([]swarm.PortConfig, error) {
	var rmPorts []swarm.PortConfig
	for _, r := range rm {
		ps, err := parseServicePort(r)
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--publish-rm\" flag: %w", r, err)
		}
		rmPorts = append(rmPorts, ps...)
	}
	seen := map[string]bool{}
	var out []swarm.PortConfig
	for _, p := range cur {
		k := portKey(p)
		if seen[k] {
			continue
		}
		seen[k] = true
		removed := false
		for _, r := range rmPorts {
			if portKey(swarm.PortConfig{TargetPort: r.TargetPort, Protocol: r.Protocol, PublishMode: r.PublishMode}) ==
				portKey(swarm.PortConfig{TargetPort: p.TargetPort, Protocol: p.Protocol, PublishMode: p.PublishMode}) {
				removed = true
				break
			}
		}
		if !removed {
			out = append(out, p)
		}
	}
	for _, a := range add {
		ps, err := parseServicePort(a)
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--publish-add\" flag: %w", a, err)
		}
		for _, p := range ps {
			if seen[portKey(p)] {
				continue
			}
			seen[portKey(p)] = true
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return portKey(out[i]) < portKey(out[j]) })
	if out == nil {
		out = []swarm.PortConfig{}
	}
	return out, nil
}

// mergeMounts replaces mounts by target, removes --mount-rm targets.
func mergeMounts(cur []mount.Mount, add, rm []string) ([]mount.Mount, error) {
	byTarget := map[string]mount.Mount{}
	for _, a := range add {
		m, err := parseMount(a)
		if err != nil {
			return nil, fmt.Errorf("invalid argument %q for \"--mount-add\" flag: %w", a, err)
		}
		if _, dup := byTarget[m.Target]; dup {
			return nil, errors.New("duplicate mount target")
		}
		byTarget[m.Target] = m
	}
	for _, m := range cur {
		if _, ok := byTarget[m.Target]; !ok {
			byTarget[m.Target] = m
		}
	}
	rmSet := toSet(rm)
	out := []mount.Mount{}
	for _, m := range byTarget {
		if !rmSet[m.Target] {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Source == out[j].Source {
			return out[i].Target < out[j].Target
		}
		return out[i].Source < out[j].Source
	})
	return out, nil
}

func mergeCaps(addCur, dropCur, add, drop []string) ([]string, []string) {
	capAdd, capDrop := toSet(addCur), toSet(dropCur)
	toAdd, toDrop := toSet(normalizeCaps(add)), toSet(normalizeCaps(drop))
	if toAdd["RESET"] || toAdd["CAP_RESET"] {
		capAdd = map[string]bool{}
		delete(toAdd, "RESET")
		delete(toAdd, "CAP_RESET")
	}
	if toDrop["RESET"] || toDrop["CAP_RESET"] {
		capDrop = map[string]bool{}
		delete(toDrop, "RESET")
		delete(toDrop, "CAP_RESET")
	}
	for c := range toDrop {
		if toAdd[c] {
			continue
		}
		if capAdd[c] {
			delete(capAdd, c)
		} else {
			capDrop[c] = true
		}
	}
	for c := range toAdd {
		if capDrop[c] {
			delete(capDrop, c)
		} else {
			capAdd[c] = true
		}
	}
	list := func(m map[string]bool) []string {
		if len(m) == 0 {
			return nil
		}
		if m["ALL"] {
			return []string{"ALL"}
		}
		return sortedKeys(m)
	}
	return list(capAdd), list(capDrop)
}

// updateServiceSpec merges update flags onto spec in place, as docker's
// `service update` does client-side before POSTing the whole spec.
func (o *serviceOptions) updateServiceSpec(ctx context.Context, f *pflag.FlagSet, spec *swarm.ServiceSpec, resolveNet networkResolver) error {
	if spec.TaskTemplate.ContainerSpec == nil {
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{}
	}
	cs := spec.TaskTemplate.ContainerSpec
	task := &spec.TaskTemplate
	ch := func(names ...string) bool { return flagChanged(f, names...) }

	for _, l := range append(append([]string{}, o.labels...), o.containerLabels...) {
		if err := validateLabel(l); err != nil {
			return err
		}
	}
	if ch("label-add", "label", "label-rm") {
		spec.Labels = mergeLabels(spec.Labels, o.labels, o.labelRm)
	}
	if ch("container-label-add", "container-label-rm") {
		cs.Labels = mergeLabels(cs.Labels, o.containerLabels, o.containerLabelRm)
	}
	if ch("image") {
		cs.Image = o.image
	}
	if ch("args") {
		a, err := shellSplit(o.args)
		if err != nil {
			return err
		}
		cs.Args = a
	}
	if ch("entrypoint") {
		e, err := shellSplit(o.entrypoint)
		if err != nil {
			return err
		}
		cs.Command = e
	}
	if ch("env-add", "env", "env-rm") {
		env, err := mergeEnv(cs.Env, o.env, o.envRm)
		if err != nil {
			return err
		}
		cs.Env = env
	}
	if ch("workdir") {
		cs.Dir = o.workdir
	}
	if ch("user") {
		cs.User = o.user
	}
	if ch("hostname") {
		cs.Hostname = o.hostname
	}
	if ch("init") {
		v := o.init
		cs.Init = &v
	}
	if ch("isolation") {
		cs.Isolation = container.Isolation(o.isolation)
	}
	if ch("mount-add", "mount", "mount-rm") {
		m, err := mergeMounts(cs.Mounts, o.mounts, o.mountRm)
		if err != nil {
			return err
		}
		cs.Mounts = m
	}
	if ch("sysctl-add", "sysctl-rm") {
		var rmKeys []string
		for k := range kvMap(o.sysctlRm) {
			rmKeys = append(rmKeys, k)
		}
		cs.Sysctls = mergeLabels(cs.Sysctls, o.sysctls, rmKeys)
	}
	if ch("ulimit-add", "ulimit-rm") {
		add, err := parseUlimits(o.ulimits)
		if err != nil {
			return err
		}
		byName := map[string]*container.Ulimit{}
		for _, u := range cs.Ulimits {
			byName[u.Name] = u
		}
		for k := range kvMap(o.ulimitRm) {
			delete(byName, k)
		}
		for _, u := range add {
			byName[u.Name] = u
		}
		cs.Ulimits = nil
		for _, k := range sortedKeys(byName) {
			cs.Ulimits = append(cs.Ulimits, byName[k])
		}
	}
	resources := func() *swarm.ResourceRequirements {
		if task.Resources == nil {
			task.Resources = &swarm.ResourceRequirements{}
		}
		if task.Resources.Limits == nil {
			task.Resources.Limits = &swarm.Limit{}
		}
		if task.Resources.Reservations == nil {
			task.Resources.Reservations = &swarm.Resources{}
		}
		return task.Resources
	}
	if ch("limit-cpu", "limit-memory", "limit-pids") {
		r := resources()
		if ch("limit-cpu") {
			r.Limits.NanoCPUs = o.limitCPU.v
		}
		if ch("limit-memory") {
			r.Limits.MemoryBytes = o.limitMem.v
		}
		if ch("limit-pids") {
			r.Limits.Pids = o.limitPids
		}
	}
	if ch("reserve-cpu", "reserve-memory") {
		r := resources()
		if ch("reserve-cpu") {
			r.Reservations.NanoCPUs = o.resCPU.v
		}
		if ch("reserve-memory") {
			r.Reservations.MemoryBytes = o.resMem.v
		}
	}
	if ch("oom-score-adj") {
		cs.OomScoreAdj = o.oomScoreAdj
	}
	if ch("stop-grace-period") && o.stopGrace.v != nil {
		d := *o.stopGrace.v
		cs.StopGracePeriod = &d
	}
	rp, err := o.mergeRestartPolicy(f, task.RestartPolicy)
	if err != nil {
		return err
	}
	task.RestartPolicy = rp
	if ch("constraint-add", "constraint", "constraint-rm") {
		if task.Placement == nil {
			task.Placement = &swarm.Placement{}
		}
		task.Placement.Constraints = mergeStringList(task.Placement.Constraints, o.constraints, o.constraintRm, true)
	}
	if ch("placement-pref-add", "placement-pref-rm") {
		if task.Placement == nil {
			task.Placement = &swarm.Placement{}
		}
		var rmPrefs []swarm.PlacementPreference
		for _, p := range o.placementPrefRm {
			pp, err := parsePlacementPref(p)
			if err != nil {
				return err
			}
			rmPrefs = append(rmPrefs, pp)
		}
		var prefs []swarm.PlacementPreference
		for _, ex := range task.Placement.Preferences {
			removed := false
			for _, r := range rmPrefs {
				if ex.Spread != nil && r.Spread != nil && ex.Spread.SpreadDescriptor == r.Spread.SpreadDescriptor {
					removed = true
				}
			}
			if !removed {
				prefs = append(prefs, ex)
			}
		}
		for _, p := range o.placementPrefs {
			pp, err := parsePlacementPref(p)
			if err != nil {
				return err
			}
			prefs = append(prefs, pp)
		}
		task.Placement.Preferences = prefs
	}
	if ch("network-add", "network", "network-rm") {
		if err := mergeNetworks(ctx, spec, o.networks, o.networkRm, resolveNet); err != nil {
			return err
		}
	}
	if ch("replicas") {
		if spec.Mode.Replicated == nil && spec.Mode.ReplicatedJob == nil {
			return errors.New("replicas can only be used with replicated or replicated-job mode")
		}
		if spec.Mode.Replicated != nil {
			spec.Mode.Replicated.Replicas = o.replicas.v
		} else {
			spec.Mode.ReplicatedJob.TotalCompletions = o.replicas.v
		}
	}
	if ch("replicas-max-per-node") {
		if task.Placement == nil {
			task.Placement = &swarm.Placement{}
		}
		task.Placement.MaxReplicas = o.maxReplicas
	}
	if spec.UpdateConfig, err = mergeUpdateConfig(f, "update", o.update, spec.UpdateConfig); err != nil {
		return err
	}
	if spec.RollbackConfig, err = mergeUpdateConfig(f, "rollback", o.rollback, spec.RollbackConfig); err != nil {
		return err
	}
	if ch("endpoint-mode") {
		switch m := swarm.ResolutionMode(strings.ToLower(o.endpointMode)); m {
		case swarm.ResolutionModeVIP, swarm.ResolutionModeDNSRR:
			if spec.EndpointSpec == nil {
				spec.EndpointSpec = &swarm.EndpointSpec{}
			}
			spec.EndpointSpec.Mode = m
		default:
			return fmt.Errorf("invalid endpoint mode %q: must be \"vip\" or \"dnsrr\"", o.endpointMode)
		}
	}
	if ch("group-add", "group-rm") {
		cs.Groups = mergeStringList(cs.Groups, o.groups, o.groupRm, true)
	}
	if ch("publish-add", "publish", "publish-rm") {
		if spec.EndpointSpec == nil {
			spec.EndpointSpec = &swarm.EndpointSpec{}
		}
		ports, err := mergePorts(spec.EndpointSpec.Ports, o.publish, o.publishRm)
		if err != nil {
			return err
		}
		spec.EndpointSpec.Ports = ports
	}
	if ch("dns-add", "dns-rm", "dns-option-add", "dns-option-rm", "dns-search-add", "dns-search-rm") {
		if cs.DNSConfig == nil {
			cs.DNSConfig = &swarm.DNSConfig{}
		}
		var cur []string
		for _, a := range cs.DNSConfig.Nameservers {
			cur = append(cur, a.String())
		}
		ns, err := parseDNS(mergeStringList(cur, o.dns, o.dnsRm, false))
		if err != nil {
			return err
		}
		cs.DNSConfig.Nameservers = ns
		cs.DNSConfig.Search = mergeStringList(cs.DNSConfig.Search, o.dnsSearch, o.dnsSearchRm, false)
		cs.DNSConfig.Options = mergeStringList(cs.DNSConfig.Options, o.dnsOption, o.dnsOptionRm, false)
	}
	if ch("host-add", "host-rm") {
		cs.Hosts = mergeHosts(cs.Hosts, o.hosts, o.hostRm)
	}
	if ch("log-driver") {
		task.LogDriver = &swarm.Driver{Name: o.logDriver, Options: kvMapOrNil(o.logOpts)}
	} else if ch("log-opt") {
		if task.LogDriver == nil {
			return errors.New("no log driver is set on the service; use --log-driver to set one")
		}
		task.LogDriver.Options = kvMapOrNil(o.logOpts)
	}
	if o.force {
		task.ForceUpdate++
	}
	if ch("health-cmd", "health-interval", "health-timeout", "health-start-period", "health-retries", "no-healthcheck") {
		h, err := o.healthConfig(f)
		if err != nil {
			return err
		}
		if h != nil && cs.Healthcheck != nil && !o.noHealthcheck {
			// Merge onto the existing check, keeping unset fields.
			merged := *cs.Healthcheck
			if ch("health-cmd") {
				merged.Test = h.Test
			}
			if ch("health-interval") {
				merged.Interval = h.Interval
			}
			if ch("health-timeout") {
				merged.Timeout = h.Timeout
			}
			if ch("health-start-period") {
				merged.StartPeriod = h.StartPeriod
			}
			if ch("health-retries") {
				merged.Retries = h.Retries
			}
			h = &merged
		}
		cs.Healthcheck = h
	}
	if ch("tty") {
		cs.TTY = o.tty
	}
	if ch("read-only") {
		cs.ReadOnly = o.readOnly
	}
	if ch("stop-signal") {
		cs.StopSignal = o.stopSignal
	}
	if ch("cap-add", "cap-drop") {
		cs.CapabilityAdd, cs.CapabilityDrop = mergeCaps(cs.CapabilityAdd, cs.CapabilityDrop, o.capAdd, o.capDrop)
	}
	return nil
}

func mergeHosts(cur, add, rm []string) []string {
	type hm struct{ host, ip string }
	var rmList []hm
	for _, r := range rm {
		h, ip, _ := strings.Cut(r, ":")
		rmList = append(rmList, hm{h, ip})
	}
	var out []string
	for _, entry := range cur {
		fields := strings.Fields(entry)
		if len(fields) < 2 {
			continue
		}
		ip, names := fields[0], fields[1:]
		var kept []string
		for _, n := range names {
			drop := false
			for _, r := range rmList {
				if r.host == n && (r.ip == "" || r.ip == ip) {
					drop = true
				}
			}
			if !drop {
				kept = append(kept, n)
			}
		}
		if len(kept) > 0 {
			out = append(out, ip+" "+strings.Join(kept, " "))
		}
	}
	for _, h := range hostsToSwarm(add) {
		dup := false
		for _, e := range out {
			if e == h {
				dup = true
			}
		}
		if !dup {
			out = append(out, h)
		}
	}
	return out
}

func mergeNetworks(ctx context.Context, spec *swarm.ServiceSpec, add, rm []string, resolveNet networkResolver) error {
	resolve := func(ref string) (string, error) {
		if resolveNet == nil {
			return ref, nil
		}
		return resolveNet(ctx, ref)
	}
	rmIDs := map[string]bool{}
	for _, r := range rm {
		id, err := resolve(r)
		if err != nil {
			return err
		}
		rmIDs[id] = true
		rmIDs[r] = true
	}
	existing := map[string]bool{}
	var out []swarm.NetworkAttachmentConfig
	for _, n := range spec.TaskTemplate.Networks {
		if rmIDs[n.Target] {
			continue
		}
		out = append(out, n)
		existing[n.Target] = true
	}
	for _, a := range add {
		na, err := parseNetworkAttachment(a)
		if err != nil {
			return err
		}
		id, err := resolve(na.Target)
		if err != nil {
			return err
		}
		if existing[id] {
			return fmt.Errorf("service is already attached to network %s", na.Target)
		}
		na.Target = id
		out = append(out, na)
		existing[id] = true
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	spec.TaskTemplate.Networks = out
	return nil
}

// mergeSecretRefs removes --secret-rm names and adds resolved --secret-add.
func mergeSecretRefs(cur []*swarm.SecretReference, add []*swarm.SecretReference, rm []string) []*swarm.SecretReference {
	rmSet := toSet(rm)
	out := []*swarm.SecretReference{}
	for _, s := range cur {
		if !rmSet[s.SecretName] {
			out = append(out, s)
		}
	}
	return append(out, add...)
}

func mergeConfigRefs(cur []*swarm.ConfigReference, add []*swarm.ConfigReference, rm []string) []*swarm.ConfigReference {
	rmSet := toSet(rm)
	out := []*swarm.ConfigReference{}
	for _, s := range cur {
		if !rmSet[s.ConfigName] {
			out = append(out, s)
		}
	}
	return append(out, add...)
}
