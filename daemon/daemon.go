// Package daemon wires one node together: image store, network, containers,
// cluster membership and the API server. It holds no logic of its own beyond
// start-up order, the unix socket, and clean shutdown.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/swarm"

	"github.com/shoal/shoal/api"
	"github.com/shoal/shoal/cluster"
	"github.com/shoal/shoal/cluster/pipeline"
	"github.com/shoal/shoal/engine/container"
	"github.com/shoal/shoal/engine/image"
	"github.com/shoal/shoal/network/bridge"
	"github.com/shoal/shoal/network/ingress"
	"github.com/shoal/shoal/version"
)

// Config is the daemon's configuration; flag names follow dockerd's.
type Config struct {
	DataRoot           string   // --data-root
	ExecRoot           string   // --exec-root
	Hosts              []string // -H/--host, unix://PATH or tcp://ADDR
	Pidfile            string   // --pidfile
	Labels             []string // --label k=v (engine labels)
	InsecureRegistries []string // --insecure-registry
	CgroupParent       string   // --cgroup-parent
	Bridge             string   // --bridge (name of the node bridge)
	BIP                string   // --bip (bridge gateway CIDR)
	NftTable           string   // --nft-table
	// IngressNftTable is --ingress-nft-table: the nftables table (family
	// ip) of the node's share of the swarm routing mesh.
	IngressNftTable string
	// SwarmDefaultAdvertiseAddr is --swarm-default-advertise-addr: the
	// advertise address of swarm init/join when the request names none.
	SwarmDefaultAdvertiseAddr string
	Debug                     bool // -D
}

// Defaults fills unset fields with the daemon defaults.
func (c *Config) Defaults() {
	if c.DataRoot == "" {
		c.DataRoot = "/var/lib/shoal"
	}
	if c.ExecRoot == "" {
		c.ExecRoot = "/run/shoal"
	}
	if len(c.Hosts) == 0 {
		c.Hosts = []string{"unix://" + filepath.Join(c.ExecRoot, "shoald.sock")}
	}
	if c.Pidfile == "" {
		c.Pidfile = filepath.Join(c.ExecRoot, "shoald.pid")
	}
	if c.CgroupParent == "" {
		c.CgroupParent = "shoal"
	}
	if c.Bridge == "" {
		c.Bridge = "shoal0"
	}
	if c.BIP == "" {
		c.BIP = "172.18.0.1/16"
	}
	if c.NftTable == "" {
		c.NftTable = "shoal"
	}
	if c.IngressNftTable == "" {
		c.IngressNftTable = ingress.DefaultTable
	}
}

// Daemon is a running node.
type Daemon struct {
	cfg        Config
	log        *slog.Logger
	images     *image.Store
	network    *bridge.Manager
	mesh       *ingress.Mesh
	containers *container.Service
	cluster    *cluster.Cluster
	api        *api.Server

	mu        sync.Mutex
	servers   []*http.Server
	listeners []net.Listener
	started   time.Time
}

// New builds every component. Nothing listens until Serve.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Daemon, error) {
	cfg.Defaults()
	d := &Daemon{cfg: cfg, log: log, started: time.Now()}
	for _, dir := range []string{cfg.DataRoot, cfg.ExecRoot} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, err
		}
	}
	var err error
	// --- image store (engine/image)
	d.images, err = image.NewStore(image.Config{
		Root:               filepath.Join(cfg.DataRoot, "image"),
		InsecureRegistries: cfg.InsecureRegistries,
		Log:                log.With("component", "images"),
	})
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	// --- node bridge (network/bridge)
	d.network, err = bridge.New(bridge.Config{
		BridgeName: cfg.Bridge,
		CIDR:       cfg.BIP,
		NftTable:   cfg.NftTable,
		StateDir:   filepath.Join(cfg.ExecRoot, "network"),
		Log:        log.With("component", "network"),
	})
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	// --- the node's share of the swarm routing mesh (network/ingress):
	// the swarm agent programs it; it outlives swarm membership changes.
	// Made before containers start, so the published ports it held before
	// a restart are its again first.
	d.mesh, err = ingress.New(ingress.Config{Table: cfg.IngressNftTable, Log: log.With("component", "ingress")})
	if err != nil {
		return nil, fmt.Errorf("ingress: %w", err)
	}
	// --- containers (engine/container)
	d.containers, err = container.NewService(container.Config{
		Root:         filepath.Join(cfg.DataRoot, "containers"),
		VolumesRoot:  filepath.Join(cfg.DataRoot, "volumes"),
		ExecRoot:     cfg.ExecRoot,
		CgroupParent: cfg.CgroupParent,
		Images:       d.images,
		Network:      d.network,
		Log:          log.With("component", "containers"),
	})
	if err != nil {
		return nil, fmt.Errorf("containers: %w", err)
	}
	d.images.SetUsageFunc(func(imageID string) (image.Usage, bool) {
		ref, running, used := d.containers.ImageUsage(imageID)
		state := "stopped"
		if running {
			state = "running"
		}
		return image.Usage{Container: ref, State: state}, used
	})
	// --- swarm membership (cluster): resumes this node's role from
	// DataRoot/swarm.
	d.cluster, err = cluster.New(cluster.Config{
		Root:                 filepath.Join(cfg.DataRoot, "swarm"),
		EngineVersion:        version.Version,
		EngineLabels:         cfg.Labels,
		DefaultAdvertiseAddr: cfg.SwarmDefaultAdvertiseAddr,
		SkipInterfaces:       []string{cfg.Bridge},
		Components:           pipeline.Components(log),
		Dispatcher:           pipeline.Dispatcher(),
		NewAgent:             pipeline.Agent(d.containers, d.images, cfg.ExecRoot, d.mesh),
		Log:                  log.With("component", "cluster"),
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	if d.cluster.State() == string(swarm.LocalNodeStateInactive) {
		// Not in a swarm: a mesh table left behind (a crash while
		// leaving) must not keep forwarding.
		if err := d.mesh.Remove(); err != nil {
			log.Warn("removing a stale routing mesh table", "err", err)
		}
	}

	d.api = api.New(api.Backends{
		System:     d,
		Containers: d.containers,
		Images:     d.images,
		Swarm:      swarmBackend{d.cluster, d.mesh, log},
		Services:   d.cluster,
		Secrets:    d.cluster,
		Networks:   d.network,
		Events:     d.containers,
		Volumes:    d.containers,
		Archive:    d.containers,
		Commit:     d,
		Auth:       d.images,
	}, log.With("component", "api"))
	return d, nil
}

// Serve listens on every configured host and serves until ctx ends.
func (d *Daemon) Serve(ctx context.Context) error {
	if err := writePidfile(d.cfg.Pidfile); err != nil {
		return err
	}
	errc := make(chan error, len(d.cfg.Hosts))
	for _, h := range d.cfg.Hosts {
		l, err := listen(h)
		if err != nil {
			d.Shutdown(context.Background())
			return err
		}
		srv := &http.Server{Handler: d.api, ReadHeaderTimeout: 30 * time.Second}
		d.mu.Lock()
		d.servers = append(d.servers, srv)
		d.listeners = append(d.listeners, l)
		d.mu.Unlock()
		d.log.Info("API listening", "addr", h)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		d.Shutdown(context.Background())
		return err
	}
	return d.Shutdown(context.Background())
}

// Shutdown stops serving and closes components. Containers keep running.
func (d *Daemon) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d.mu.Lock()
	servers := d.servers
	d.servers = nil
	d.mu.Unlock()
	for _, s := range servers {
		_ = s.Shutdown(ctx)
	}
	if d.cluster != nil {
		_ = d.cluster.Close()
	}
	if d.containers != nil {
		_ = d.containers.Close()
	}
	if d.mesh != nil {
		// Releases sockets only: the table keeps forwarding until the
		// next daemon rebuilds it.
		_ = d.mesh.Close()
	}
	if d.network != nil {
		// Releases sockets only: containers keep their network.
		_ = d.network.Close()
	}
	for _, h := range d.cfg.Hosts {
		if p, ok := strings.CutPrefix(h, "unix://"); ok {
			_ = os.Remove(p)
		}
	}
	_ = os.Remove(d.cfg.Pidfile)
	d.log.Info("shut down")
	return nil
}

// swarmBackend is the cluster with one addition: a node that left the
// swarm no longer answers for the swarm's published ports. (A daemon that
// merely stops keeps its mesh table, as containers keep running.)
type swarmBackend struct {
	*cluster.Cluster
	mesh *ingress.Mesh
	log  *slog.Logger
}

func (s swarmBackend) Leave(ctx context.Context, force bool) error {
	if err := s.Cluster.Leave(ctx, force); err != nil {
		return err
	}
	if err := s.mesh.Remove(); err != nil {
		s.log.Warn("left the swarm, but could not remove the routing mesh table", "err", err)
	}
	return nil
}

func listen(host string) (net.Listener, error) {
	proto, addr, ok := strings.Cut(host, "://")
	if !ok {
		return nil, fmt.Errorf("invalid host %q: want unix://PATH or tcp://ADDR", host)
	}
	switch proto {
	case "unix":
		if err := os.MkdirAll(filepath.Dir(addr), 0o711); err != nil {
			return nil, err
		}
		_ = os.Remove(addr)
		l, err := net.Listen("unix", addr)
		if err != nil {
			return nil, err
		}
		// Root only, as docker's socket without a docker group.
		if err := os.Chmod(addr, 0o660); err != nil {
			l.Close()
			return nil, err
		}
		return l, nil
	case "tcp":
		return net.Listen("tcp", addr)
	}
	return nil, fmt.Errorf("invalid host %q: unsupported protocol %q", host, proto)
}

func writePidfile(path string) error {
	if b, err := os.ReadFile(path); err == nil {
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err == nil && pid > 0 && pid != os.Getpid() {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
				return fmt.Errorf("pid file %s names a running process (%d): is another shoald running with the same --pidfile?", path, pid)
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644)
}
