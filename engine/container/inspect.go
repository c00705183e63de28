package container

import (
	"context"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/api/types/storage"

	"github.com/shoal/shoal/engine/container/backend"
	"github.com/shoal/shoal/errdefs"
)

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Inspect returns docker's inspect view of a container.
func (s *Service) Inspect(ctx context.Context, ref string) (*container.InspectResponse, error) {
	c, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r := &c.rec
	st := r.State
	running := r.running() || st.Status == container.StateRestarting
	resp := &container.InspectResponse{
		ID:      r.ID,
		Created: formatTime(r.Created),
		Path:    r.Path,
		Args:    append([]string{}, r.Args...),
		State: &container.State{
			Status:     st.Status,
			Running:    running,
			Paused:     st.Status == container.StatePaused,
			Restarting: st.Status == container.StateRestarting,
			OOMKilled:  st.OOMKilled,
			Dead:       st.Status == container.StateDead,
			Pid:        st.Pid,
			ExitCode:   st.ExitCode,
			Error:      st.Error,
			StartedAt:  formatTime(st.StartedAt),
			FinishedAt: formatTime(st.FinishedAt),
		},
		Image:          r.Image,
		ResolvConfPath: filepath.Join(c.bundle, resolvFile),
		HostnamePath:   filepath.Join(c.bundle, hostnameFile),
		HostsPath:      filepath.Join(c.bundle, hostsFile),
		LogPath:        s.logPath(c),
		Name:           "/" + r.Name,
		RestartCount:   r.RestartCount,
		Driver:         "overlay2",
		Platform:       "linux",
		HostConfig:     r.HostConfig,
		GraphDriver: &storage.DriverData{Name: "overlay2", Data: map[string]string{
			"UpperDir":  filepath.Join(c.dir, upperDir),
			"WorkDir":   filepath.Join(c.dir, workDir),
			"MergedDir": filepath.Join(c.dir, rootfsDir),
		}},
		Mounts:          s.mountPoints(r),
		Config:          r.Config,
		NetworkSettings: networkSettings(r),
	}
	if len(c.execs) > 0 {
		resp.ExecIDs = append([]string{}, c.execs...)
	}
	return resp, nil
}

func (s *Service) mountPoints(r *record) []container.MountPoint {
	out := []container.MountPoint{}
	for _, m := range r.Mounts {
		mp := container.MountPoint{Type: m.Type, Destination: m.Destination, Mode: m.Mode, RW: !m.ReadOnly}
		switch m.Type {
		case mount.TypeBind:
			mp.Source = m.Source
			mp.Propagation = m.Propagation
			if mp.Propagation == "" {
				mp.Propagation = mount.PropagationRPrivate
			}
		case mount.TypeVolume:
			mp.Name = m.Source
			mp.Source = s.vols.path(m.Source)
			mp.Driver = "local"
		}
		out = append(out, mp)
	}
	return out
}

func networkSettings(r *record) *container.NetworkSettings {
	ns := &container.NetworkSettings{Ports: network.PortMap{}, Networks: map[string]*network.EndpointSettings{}}
	mode := string(r.HostConfig.NetworkMode)
	ep := &network.EndpointSettings{}
	if r.running() && r.Net != nil {
		ns.SandboxKey = r.Net.NetNSPath
		ep.Gateway = r.Net.Gateway
		ep.IPAddress = r.Net.IPAddress
		ep.IPPrefixLen = r.Net.PrefixLen
		if mac, err := net.ParseMAC(r.Net.MacAddress); err == nil {
			ep.MacAddress = network.HardwareAddr(mac)
		}
		for p, b := range r.Net.Ports {
			ns.Ports[p] = b
		}
	}
	for p := range r.Config.ExposedPorts {
		if _, ok := ns.Ports[p]; !ok {
			ns.Ports[p] = nil
		}
	}
	ns.Networks[mode] = ep
	return ns
}

// List returns docker's ps view of the containers, newest first.
func (s *Service) List(ctx context.Context, opts backend.ListOptions) ([]container.Summary, error) {
	f := opts.Filters
	if err := f.Validate(listFilters); err != nil {
		return nil, errdefs.InvalidParameter("%s", err.Error())
	}
	for _, st := range f.Get("status") {
		if container.ValidateContainerState(container.ContainerState(st)) != nil {
			return nil, errdefs.InvalidParameter("invalid filter 'status=%s'", st)
		}
	}
	var exited []int
	for _, v := range f.Get("exited") {
		code, err := strconv.Atoi(v)
		if err != nil {
			return nil, errdefs.InvalidParameter("invalid filter 'exited=%s'", v)
		}
		exited = append(exited, code)
	}
	all := s.all()
	before, since := time.Time{}, time.Time{}
	for _, v := range f.Get("before") {
		c, err := s.lookup(v)
		if err != nil {
			return nil, err
		}
		before = c.rec.Created
	}
	for _, v := range f.Get("since") {
		c, err := s.lookup(v)
		if err != nil {
			return nil, err
		}
		since = c.rec.Created
	}
	showAll := opts.All || opts.Limit > 0 || f.Contains("status") || f.Contains("exited")
	out := []container.Summary{}
	for _, c := range all {
		c.mu.Lock()
		sum, ok := s.summaryIfMatch(c, f, showAll, exited, before, since)
		c.mu.Unlock()
		if !ok {
			continue
		}
		if opts.Size {
			// The writable layer (`ps -s`, `system df`); the image's
			// size is not added in: SizeRootFs stays unset.
			sum.SizeRw = dirSize(filepath.Join(c.dir, upperDir))
		}
		out = append(out, sum)
		if opts.Limit > 0 && len(out) >= opts.Limit {
			break
		}
	}
	return out, nil
}

var listFilters = map[string]bool{
	"ancestor": true, "before": true, "expose": true, "exited": true, "health": true, "id": true,
	"isolation": true, "is-task": true, "label": true, "name": true, "network": true,
	"publish": true, "since": true, "status": true, "volume": true,
}

// summaryIfMatch builds c's summary if it passes the filters. c.mu is held.
func (s *Service) summaryIfMatch(c *ctr, f filters.Args, showAll bool, exited []int, before, since time.Time) (container.Summary, bool) {
	r := &c.rec
	st := r.State.Status
	if !showAll && !r.running() && st != container.StateRestarting {
		return container.Summary{}, false
	}
	if !f.Match("name", "/"+r.Name) && !f.Match("name", r.Name) {
		return container.Summary{}, false
	}
	if !f.Match("id", r.ID) || !f.MatchKVList("label", r.Config.Labels) || !f.ExactMatch("status", string(st)) {
		return container.Summary{}, false
	}
	if len(exited) > 0 {
		ok := false
		for _, code := range exited {
			if st == container.StateExited && r.State.ExitCode == code {
				ok = true
			}
		}
		if !ok {
			return container.Summary{}, false
		}
	}
	if !before.IsZero() && !r.Created.Before(before) {
		return container.Summary{}, false
	}
	if !since.IsZero() && !r.Created.After(since) {
		return container.Summary{}, false
	}
	if f.Contains("is-task") {
		_, isTask := r.Config.Labels["com.docker.swarm.task"]
		if !f.ExactMatch("is-task", strconv.FormatBool(isTask)) {
			return container.Summary{}, false
		}
	}
	if f.Contains("ancestor") {
		ok := false
		for _, a := range f.Get("ancestor") {
			if matchAncestor(a, r) {
				ok = true
			}
		}
		if !ok {
			return container.Summary{}, false
		}
	}
	if f.Contains("network") && !f.ExactMatch("network", string(r.HostConfig.NetworkMode)) {
		return container.Summary{}, false
	}
	if f.Contains("volume") {
		ok := false
		for _, m := range r.Mounts {
			if f.ExactMatch("volume", m.Source) || f.ExactMatch("volume", m.Destination) {
				ok = true
			}
		}
		if !ok {
			return container.Summary{}, false
		}
	}
	if f.Contains("expose") || f.Contains("publish") {
		ok := false
		for p := range r.Config.ExposedPorts {
			if f.ExactMatch("expose", p.String()) || f.ExactMatch("expose", strconv.Itoa(int(p.Num()))) {
				ok = true
			}
		}
		if r.Net != nil {
			for p, bs := range r.Net.Ports {
				for _, b := range bs {
					if f.ExactMatch("publish", b.HostPort) || f.ExactMatch("publish", b.HostPort+"/"+string(p.Proto())) {
						ok = true
					}
				}
			}
		}
		if !ok {
			return container.Summary{}, false
		}
	}
	return summary(r), true
}

func matchAncestor(a string, r *record) bool {
	img := r.Config.Image
	switch {
	case a == img, a+":latest" == img, img+":latest" == a:
		return true
	case strings.HasPrefix(r.Image, a), strings.HasPrefix(strings.TrimPrefix(r.Image, "sha256:"), a):
		return len(strings.TrimPrefix(a, "sha256:")) >= 4
	}
	return false
}

func summary(r *record) container.Summary {
	sum := container.Summary{
		ID:      r.ID,
		Names:   []string{"/" + r.Name},
		Image:   r.Config.Image,
		ImageID: r.Image,
		Command: strings.TrimSpace(strings.Join(append([]string{r.Path}, r.Args...), " ")),
		Created: r.Created.Unix(),
		Ports:   []container.PortSummary{},
		Labels:  r.Config.Labels,
		State:   r.State.Status,
		Status:  statusString(r.State, time.Now()),
		Mounts:  []container.MountPoint{},
	}
	if sum.Labels == nil {
		sum.Labels = map[string]string{}
	}
	sum.HostConfig.NetworkMode = string(r.HostConfig.NetworkMode)
	ns := networkSettings(r)
	sum.NetworkSettings = &container.NetworkSettingsSummary{Networks: ns.Networks}
	for p, bs := range ns.Ports {
		if len(bs) == 0 {
			sum.Ports = append(sum.Ports, container.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
			continue
		}
		for _, b := range bs {
			pub, _ := strconv.ParseUint(b.HostPort, 10, 16)
			sum.Ports = append(sum.Ports, container.PortSummary{IP: b.HostIP, PrivatePort: p.Num(), PublicPort: uint16(pub), Type: string(p.Proto())})
		}
	}
	sort.Slice(sum.Ports, func(i, j int) bool {
		a, b := sum.Ports[i], sum.Ports[j]
		if a.PrivatePort != b.PrivatePort {
			return a.PrivatePort < b.PrivatePort
		}
		return a.Type < b.Type
	})
	for _, m := range r.Mounts {
		mp := container.MountPoint{Type: m.Type, Destination: m.Destination, Mode: m.Mode, RW: !m.ReadOnly}
		if m.Type == mount.TypeVolume {
			mp.Name = m.Source
			mp.Driver = "local"
		} else if m.Type == mount.TypeBind {
			mp.Source = m.Source
		}
		sum.Mounts = append(sum.Mounts, mp)
	}
	return sum
}

// statusString is docker's human status ("Up 5 minutes", "Exited (0) 3
// seconds ago").
func statusString(st state, now time.Time) string {
	switch st.Status {
	case container.StateRunning:
		return "Up " + units.HumanDuration(now.Sub(st.StartedAt))
	case container.StatePaused:
		return "Up " + units.HumanDuration(now.Sub(st.StartedAt)) + " (Paused)"
	case container.StateRestarting:
		return "Restarting (" + strconv.Itoa(st.ExitCode) + ") " + units.HumanDuration(now.Sub(st.FinishedAt)) + " ago"
	case container.StateExited:
		if st.FinishedAt.IsZero() {
			return "Created"
		}
		return "Exited (" + strconv.Itoa(st.ExitCode) + ") " + units.HumanDuration(now.Sub(st.FinishedAt)) + " ago"
	case container.StateRemoving:
		return "Removal In Progress"
	case container.StateDead:
		return "Dead"
	}
	return "Created"
}
