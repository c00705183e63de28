package container

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/shoal/shoal/engine/runtime"
)

// recordFile is a container's persisted record inside its directory.
const recordFile = "container.json"

// record is what is persisted about a container.
type record struct {
	ID               string
	Name             string // without the leading "/"
	Created          time.Time
	Path             string
	Args             []string
	Config           *container.Config // merged with the image's
	HostConfig       *container.HostConfig
	NetworkingConfig *network.NetworkingConfig `json:",omitempty"`
	Image            string                    // image ID
	State            state
	RestartCount     int
	ManuallyStopped  bool            // stopped or killed by the user: no restart
	Mounts           []runtime.Mount // volumes named, binds resolved
	Net              *netState       `json:",omitempty"`
	Cgroup           string          // cgroupsPath
}

type state struct {
	Status     container.ContainerState
	Pid        int
	ExitCode   int
	OOMKilled  bool
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// netState is what the network provider gave the container at its last start.
type netState struct {
	Mode       string
	NetNSPath  string
	IPAddress  netip.Addr
	Gateway    netip.Addr
	PrefixLen  int
	MacAddress string
	Ports      network.PortMap
}

func (r *record) running() bool {
	return r.State.Status == container.StateRunning || r.State.Status == container.StatePaused
}

// ctr is a container in memory. mu guards rec and the run-time fields; op
// serialises lifecycle operations (start, stop, remove, exit handling) and
// is never taken while holding mu.
type ctr struct {
	op sync.Mutex
	mu sync.Mutex

	rec    record
	dir    string // Config.Root/<id>
	bundle string // ExecRoot/containers/<id>

	exitCh   chan struct{}            // closed when the current run has been handled; nil when not running
	starting *runtime.Spawned         // the shim of a start in progress
	watch    *runtime.Watch           // shim connection while running
	restart  restartState             // backoff of the restart policy
	timer    interface{ Stop() bool } // pending restart
	pending  []*pendingAttach         // attachers waiting for the next start
	waiters  []*waiter                // wait requests
	attaches sync.WaitGroup           // live attach streams (auto-remove waits for them)
	mounted  bool                     // rootfs overlay mounted
	removed  bool
	execs    []string // exec IDs
}

// save writes the record atomically.
func (c *ctr) save() error {
	b, err := json.Marshal(&c.rec)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, recordFile), b, 0o600)
}

func loadRecord(dir string) (record, error) {
	var r record
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return r, err
	}
	err = json.Unmarshal(b, &r)
	return r, err
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
