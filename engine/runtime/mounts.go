package runtime

import (
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/shoal/shoal/errdefs"
)

// Mount is one user mount of a container, parsed from -v (Binds), --mount,
// --tmpfs and the volumes the container or image declares.
type Mount struct {
	Type         mount.Type // bind, volume or tmpfs
	Source       string     // host path (bind) or volume name ("" = anonymous until named)
	Destination  string
	ReadOnly     bool
	Propagation  mount.Propagation // binds; "" = rprivate
	NonRecursive bool              // bind without rbind
	NoCopy       bool              // volume: do not copy the image's content into a new volume
	CreateSource bool              // -v binds create a missing host directory, as docker does
	Anonymous    bool              // volume named by the engine; removed with the container (-v)
	Options      []string          // tmpfs mount options
	Mode         string            // the mode as written (-v ...:MODE), for inspect
}

var volumeNameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidVolumeName reports whether name is a valid local volume name.
func ValidVolumeName(name string) bool { return volumeNameRe.MatchString(name) }

// ParseMounts collects every mount a container asks for, in docker's order
// of precedence (-v, --mount, --tmpfs, then declared volumes not covered by
// any of them). Sources of binds must be absolute; --mount binds must exist.
func ParseMounts(cfg *container.Config, hc *container.HostConfig) ([]Mount, error) {
	var out []Mount
	seen := map[string]bool{}
	add := func(m Mount) error {
		if seen[m.Destination] {
			return errdefs.InvalidParameter("Duplicate mount point: %s", m.Destination)
		}
		seen[m.Destination] = true
		out = append(out, m)
		return nil
	}
	if hc != nil {
		for _, b := range hc.Binds {
			m, err := parseBind(b)
			if err != nil {
				return nil, err
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
		for _, mm := range hc.Mounts {
			m, err := parseMount(mm)
			if err != nil {
				return nil, err
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
		dests := make([]string, 0, len(hc.Tmpfs))
		for d := range hc.Tmpfs {
			dests = append(dests, d)
		}
		sort.Strings(dests)
		for _, d := range dests {
			if err := checkDestination("tmpfs", d); err != nil {
				return nil, err
			}
			opts := []string{"noexec", "nosuid", "nodev"}
			if o := hc.Tmpfs[d]; o != "" {
				opts = mergeOptions(opts, strings.Split(o, ","))
			}
			m := Mount{Type: mount.TypeTmpfs, Source: "tmpfs", Destination: path.Clean(d), Options: opts, Mode: hc.Tmpfs[d]}
			for _, o := range opts {
				if o == "ro" {
					m.ReadOnly = true
				}
			}
			if err := add(m); err != nil {
				return nil, err
			}
		}
	}
	if cfg != nil {
		dests := make([]string, 0, len(cfg.Volumes))
		for d := range cfg.Volumes {
			dests = append(dests, d)
		}
		sort.Strings(dests)
		for _, d := range dests {
			if err := checkDestination("volume", d); err != nil {
				return nil, err
			}
			if seen[path.Clean(d)] {
				continue // a user mount covers the declared volume
			}
			_ = add(Mount{Type: mount.TypeVolume, Destination: path.Clean(d), Anonymous: true})
		}
	}
	return out, nil
}

func checkDestination(typ, d string) error {
	if !path.IsAbs(d) {
		return errdefs.InvalidParameter("invalid mount config for type %q: invalid mount path: '%s' mount path must be absolute", typ, d)
	}
	if path.Clean(d) == "/" {
		return errdefs.InvalidParameter("invalid specification: destination can't be '/'")
	}
	return nil
}

// parseBind parses a -v spec: SRC:DST[:MODE] or DST.
func parseBind(spec string) (Mount, error) {
	bad := errdefs.InvalidParameter("invalid volume specification: '%s'", spec)
	parts := strings.Split(spec, ":")
	var m Mount
	switch len(parts) {
	case 1:
		m = Mount{Type: mount.TypeVolume, Destination: parts[0], Anonymous: true}
	case 2, 3:
		if parts[0] == "" || parts[1] == "" {
			return Mount{}, bad
		}
		m.Source, m.Destination = parts[0], parts[1]
		if len(parts) == 3 {
			m.Mode = parts[2]
		}
	default:
		return Mount{}, bad
	}
	if !path.IsAbs(m.Destination) {
		return Mount{}, errdefs.InvalidParameter("invalid volume specification: '%s': invalid mount config for type \"volume\": invalid mount path: '%s' mount path must be absolute", spec, m.Destination)
	}
	if path.Clean(m.Destination) == "/" {
		return Mount{}, errdefs.InvalidParameter("invalid specification: destination can't be '/'")
	}
	m.Destination = path.Clean(m.Destination)
	if m.Source != "" {
		if path.IsAbs(m.Source) {
			m.Type = mount.TypeBind
			m.Source = path.Clean(m.Source)
			m.CreateSource = true
		} else {
			if !ValidVolumeName(m.Source) {
				return Mount{}, errdefs.InvalidParameter("create %s: %q includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path", m.Source, m.Source)
			}
			m.Type = mount.TypeVolume
		}
	}
	if m.Mode != "" {
		for _, o := range strings.Split(m.Mode, ",") {
			switch o {
			case "ro":
				m.ReadOnly = true
			case "rw", "z", "Z", "consistent", "cached", "delegated", "":
			case "nocopy":
				if m.Type != mount.TypeVolume {
					return Mount{}, bad
				}
				m.NoCopy = true
			default:
				if !validPropagation(mount.Propagation(o)) || m.Type != mount.TypeBind {
					return Mount{}, errdefs.InvalidParameter("invalid mode: %s", m.Mode)
				}
				m.Propagation = mount.Propagation(o)
			}
		}
	}
	return m, nil
}

func validPropagation(p mount.Propagation) bool {
	for _, v := range mount.Propagations {
		if v == p {
			return true
		}
	}
	return false
}

// parseMount validates one --mount entry.
func parseMount(mm mount.Mount) (Mount, error) {
	typ := string(mm.Type)
	if mm.Target == "" {
		return Mount{}, errdefs.InvalidParameter("invalid mount config for type %q: field Target must not be empty", typ)
	}
	if err := checkDestination(typ, mm.Target); err != nil {
		return Mount{}, err
	}
	m := Mount{Type: mm.Type, Source: mm.Source, Destination: path.Clean(mm.Target), ReadOnly: mm.ReadOnly}
	switch mm.Type {
	case mount.TypeBind:
		if mm.Source == "" {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"bind\": field Source must not be empty")
		}
		if !path.IsAbs(mm.Source) {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"bind\": invalid mount path: '%s' mount path must be absolute", mm.Source)
		}
		if mm.VolumeOptions != nil || mm.TmpfsOptions != nil {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"bind\": only BindOptions may be set")
		}
		m.Source = path.Clean(mm.Source)
		if o := mm.BindOptions; o != nil {
			if o.Propagation != "" && !validPropagation(o.Propagation) {
				return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"bind\": invalid propagation mode: %s", o.Propagation)
			}
			m.Propagation = o.Propagation
			m.NonRecursive = o.NonRecursive
			m.CreateSource = o.CreateMountpoint
		}
		if !m.CreateSource {
			if _, err := os.Stat(m.Source); err != nil {
				return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"bind\": bind source path does not exist: %s", m.Source)
			}
		}
	case mount.TypeVolume:
		if mm.BindOptions != nil || mm.TmpfsOptions != nil {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"volume\": only VolumeOptions may be set")
		}
		if mm.Source == "" {
			m.Anonymous = true
		} else if !ValidVolumeName(mm.Source) {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"volume\": invalid volume name %q", mm.Source)
		}
		if o := mm.VolumeOptions; o != nil {
			m.NoCopy = o.NoCopy
			if o.DriverConfig != nil && o.DriverConfig.Name != "" && o.DriverConfig.Name != "local" {
				return Mount{}, errdefs.NotFound("volume driver %q not found", o.DriverConfig.Name)
			}
		}
	case mount.TypeTmpfs:
		if mm.Source != "" {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"tmpfs\": field Source must not be specified")
		}
		if mm.BindOptions != nil || mm.VolumeOptions != nil {
			return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"tmpfs\": only TmpfsOptions may be set")
		}
		m.Source = "tmpfs"
		m.Options = []string{"noexec", "nosuid", "nodev"}
		if o := mm.TmpfsOptions; o != nil {
			if o.SizeBytes < 0 {
				return Mount{}, errdefs.InvalidParameter("invalid mount config for type \"tmpfs\": invalid tmpfs size %d", o.SizeBytes)
			}
			if o.SizeBytes > 0 {
				m.Options = append(m.Options, "size="+strconv.FormatInt(o.SizeBytes, 10))
			}
			if o.Mode != 0 {
				// The raw bits in octal, as docker formats them (the CLI
				// sends tmpfs-mode=1777 as 0o1777, not os.ModeSticky).
				m.Options = append(m.Options, "mode="+strconv.FormatUint(uint64(o.Mode), 8))
			}
			for _, kv := range o.Options {
				m.Options = mergeOptions(m.Options, []string{strings.Join(kv, "=")})
			}
		}
		if m.ReadOnly {
			m.Options = append(m.Options, "ro")
		}
	default:
		return Mount{}, errdefs.InvalidParameter("invalid mount config for type %q: mount type unknown", typ)
	}
	return m, nil
}

// mergeOptions appends extra to base; an option in extra replaces one of
// base with the same key (or its negation: exec vs noexec).
func mergeOptions(base, extra []string) []string {
	key := func(o string) string {
		k, _, _ := strings.Cut(o, "=")
		return strings.TrimPrefix(k, "no")
	}
	out := append([]string(nil), base...)
	for _, e := range extra {
		if e == "" {
			continue
		}
		replaced := false
		for i, b := range out {
			if key(b) == key(e) {
				out[i] = e
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// SpecMount renders a resolved mount (Source is a host path for binds and
// volumes) for the OCI spec.
func SpecMount(m Mount) specs.Mount {
	if m.Type == mount.TypeTmpfs {
		return specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs", Options: m.Options}
	}
	opts := []string{"rbind"}
	if m.NonRecursive {
		opts[0] = "bind"
	}
	if m.ReadOnly {
		opts = append(opts, "ro")
	}
	prop := string(m.Propagation)
	if prop == "" {
		prop = string(mount.PropagationRPrivate)
	}
	opts = append(opts, prop)
	return specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source, Options: opts}
}
