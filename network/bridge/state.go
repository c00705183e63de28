package bridge

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const stateVersion = 1

// state is everything the manager must remember across daemon restarts: the
// kernel holds the rest (bridge, veths, namespaces, nftables) and is
// re-derived from this. On disk it is one file for the network and one per
// endpoint, so Attach and Detach write (or unlink) one small file instead of
// rewriting everything:
//
//	STATEDIR/network.json          networkFile
//	STATEDIR/endpoints/<ID>.json   endpoint
//	STATEDIR/netns/<ID>            namespace pin (package netns)
//
// The address allocations are the endpoints' addresses: IPAM is rebuilt from
// them on load.
type state struct {
	networkFile
	IPAM      *ipam
	Endpoints map[string]*endpoint // by container ID
}

type networkFile struct {
	Version   int          `json:"Version"`
	NetworkID string       `json:"NetworkID"`
	Created   time.Time    `json:"Created"`
	Subnet    netip.Prefix `json:"Subnet"`
	Gateway   netip.Addr   `json:"Gateway"`
}

// endpoint is one container's attachment.
type endpoint struct {
	ContainerID string        `json:"ContainerID"`
	Name        string        `json:"Name,omitempty"`
	EndpointID  string        `json:"EndpointID"`
	Mode        string        `json:"Mode"`           // ModeBridge or ModeNone
	NetNS       string        `json:"NetNS"`          // pin file
	Veth        string        `json:"Veth,omitempty"` // host side
	IP          netip.Addr    `json:"IP,omitzero"`    // bridge mode only
	MAC         string        `json:"MAC,omitempty"`  // container side
	Requested   []portRequest `json:"Requested"`      // as asked, normalised
	Ports       []portMapping `json:"Ports,omitempty"`
}

func newState(subnet netip.Prefix, gateway netip.Addr) *state {
	return &state{
		networkFile: networkFile{
			Version:   stateVersion,
			NetworkID: randomHex(32),
			Created:   time.Now().UTC(),
			Subnet:    subnet,
			Gateway:   gateway,
		},
		IPAM:      newIPAM(subnet, gateway),
		Endpoints: map[string]*endpoint{},
	}
}

func networkPath(dir string) string            { return filepath.Join(dir, "network.json") }
func endpointsDir(dir string) string           { return filepath.Join(dir, "endpoints") }
func endpointPath(dir, id string) string       { return filepath.Join(endpointsDir(dir), id+".json") }
func (st *state) saveNetwork(dir string) error { return writeJSON(networkPath(dir), st.networkFile) }

// loadState reads the state under dir; no network file yields (nil, nil).
// An unreadable endpoint file is reported through bad and skipped: its
// namespace then counts as an orphan.
func loadState(dir string, bad func(path string, err error)) (*state, error) {
	b, err := os.ReadFile(networkPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	st := &state{Endpoints: map[string]*endpoint{}}
	if err := json.Unmarshal(b, &st.networkFile); err != nil {
		return nil, fmt.Errorf("parse %s: %w", networkPath(dir), err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%s: unsupported state version %d", networkPath(dir), st.Version)
	}
	st.IPAM = newIPAM(st.Subnet, st.Gateway)
	entries, err := os.ReadDir(endpointsDir(dir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(endpointsDir(dir), name)
		var ep endpoint
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &ep)
		}
		if err == nil && ep.ContainerID+".json" != name {
			err = fmt.Errorf("names container %q", ep.ContainerID)
		}
		if err == nil && ep.IP.IsValid() {
			err = st.IPAM.Reserve(ep.IP, ep.ContainerID)
		}
		if err != nil {
			bad(path, err)
			continue
		}
		st.Endpoints[ep.ContainerID] = &ep
		// Continue allocating after the highest address in use.
		if ep.IP.IsValid() && (!st.IPAM.Last.IsValid() || st.IPAM.Last.Less(ep.IP)) {
			st.IPAM.Last = ep.IP
		}
	}
	return st, nil
}

func saveEndpoint(dir string, ep *endpoint) error {
	if err := os.MkdirAll(endpointsDir(dir), 0o700); err != nil {
		return err
	}
	return writeJSON(endpointPath(dir, ep.ContainerID), ep)
}

func removeEndpoint(dir, id string) error {
	err := os.Remove(endpointPath(dir, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// writeJSON writes atomically: a crashed daemon leaves the old file or the
// new one, never a torn one. There is no fsync: the files describe kernel
// objects (namespaces, veths) that a machine crash takes with it anyway, and
// adoption drops endpoints whose namespace is gone.
func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
