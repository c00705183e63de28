package container

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// bareBundle copies the bundle shoald generated for c into a bundle of its
// own (same spec, its own overlay rootfs and cgroup), for plain runc runs.
func bareBundle(b *testing.B, e *env, id string, layers []string) (dir, runcRoot string) {
	b.Helper()
	c, _ := e.svc.lookup(id)
	spec, err := readSpec(c.bundle)
	if err != nil {
		b.Fatal(err)
	}
	dir = filepath.Join(e.dir, "bare-"+id[:8])
	if err := mountRootfs(dir, layers); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unmountRootfs(dir) })
	spec.Root.Path = filepath.Join(dir, rootfsDir)
	spec.Linux.CgroupsPath = "/" + e.cg + "/bare-" + id[:8]
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = ""
		}
	}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	return dir, filepath.Join(e.dir, "bare-runc")
}

// runc runs runc with /dev/null as stdio: a detached container inherits
// it, and would hold a pipe open forever.
func runc(b *testing.B, args ...string) {
	b.Helper()
	if err := exec.Command("runc", args...).Run(); err != nil {
		b.Fatalf("runc %v: %v", args, err)
	}
}

// BenchmarkStartToRunning compares shoald's start of a created container
// (until Start returns: rootfs mounted, network attached, shim spawned,
// runc started) with a bare "runc run -d" of the same spec.
func BenchmarkStartToRunning(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	id := e.create(&container.Config{Cmd: []string{"sleep", "1000"}}, &container.HostConfig{NetworkMode: "none"})
	if err := e.svc.Start(ctx, id); err != nil { // produce the bundle
		b.Fatal(err)
	}
	bare, root := bareBundle(b, e, id, e.images.img.LayerDirs)
	e.svc.Kill(ctx, id, "KILL")
	e.wait(id, container.WaitConditionNotRunning)

	var shoal, plain time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := e.svc.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		shoal += time.Since(t0)
		b.StopTimer()
		e.svc.Kill(ctx, id, "KILL")
		e.wait(id, container.WaitConditionNotRunning)
		b.StartTimer()

		bid := "shrt-bare-" + strconv.Itoa(i)
		t0 = time.Now()
		runc(b, "--root", root, "run", "--detach", "--bundle", bare, bid)
		plain += time.Since(t0)
		b.StopTimer()
		runc(b, "--root", root, "delete", "--force", bid)
		b.StartTimer()
	}
	report(b, shoal, plain)
}

// BenchmarkRunToExit compares a start-and-wait of /bin/true through shoald
// (until the exit is recorded and the run's resources released) with a
// foreground "runc run" of the same spec (which also deletes the container).
func BenchmarkRunToExit(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	id := e.create(&container.Config{Cmd: []string{"/bin/true"}}, &container.HostConfig{NetworkMode: "none"})
	if err := e.svc.Start(ctx, id); err != nil {
		b.Fatal(err)
	}
	e.wait(id, container.WaitConditionNotRunning)
	// The bundle is removed once the exit is handled: rebuild it from a
	// long-running twin with the same spec.
	twin := e.create(&container.Config{Cmd: []string{"/bin/true"}}, &container.HostConfig{NetworkMode: "none"})
	c, _ := e.svc.lookup(twin)
	c.rec.Config.Cmd = []string{"sleep", "1000"}
	if err := e.svc.Start(ctx, twin); err != nil {
		b.Fatal(err)
	}
	bare, root := bareBundle(b, e, twin, e.images.img.LayerDirs)
	e.svc.Kill(ctx, twin, "KILL")
	e.wait(twin, container.WaitConditionNotRunning)
	spec, _ := readSpec(bare)
	spec.Process.Args = []string{"/bin/true"}
	data, _ := json.Marshal(spec)
	os.WriteFile(filepath.Join(bare, "config.json"), data, 0o600)

	var shoal, plain time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ch, _ := e.svc.Wait(ctx, id, container.WaitConditionNextExit)
		if err := e.svc.Start(ctx, id); err != nil {
			b.Fatal(err)
		}
		if r := <-ch; r.StatusCode != 0 {
			b.Fatalf("exit %d", r.StatusCode)
		}
		shoal += time.Since(t0)

		t0 = time.Now()
		runc(b, "--root", root, "run", "--bundle", bare, "shrt-bare-"+strconv.Itoa(i))
		plain += time.Since(t0)
	}
	report(b, shoal, plain)
}

func report(b *testing.B, shoal, plain time.Duration) {
	n := float64(b.N)
	b.ReportMetric(float64(shoal.Microseconds())/1000/n, "shoal-ms/op")
	b.ReportMetric(float64(plain.Microseconds())/1000/n, "runc-ms/op")
	b.ReportMetric(float64(shoal)/float64(plain), "ratio")
}

// BenchmarkMemoryPerContainer starts 50 sleeping containers and reports
// what they cost shoald (Go heap+stacks, and process RSS) and what each
// shim costs (RSS, and PSS which splits the shared binary pages fairly).
func BenchmarkMemoryPerContainer(b *testing.B) {
	const n = 50
	for i := 0; i < b.N; i++ {
		e := newEnv(b)
		ctx := context.Background()
		debug.FreeOSMemory()
		heap0, rss0 := goMem(), selfRSS()
		var ids []string
		for j := 0; j < n; j++ {
			id := e.create(&container.Config{Cmd: []string{"sleep", "1000"}}, &container.HostConfig{NetworkMode: "none"})
			if err := e.svc.Start(ctx, id); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		debug.FreeOSMemory()
		heap1, rss1 := goMem(), selfRSS()
		var shimRSS, shimPSS float64
		for _, id := range ids {
			c, _ := e.svc.lookup(id)
			pid := shimPid(c.bundle)
			rss, pss := procMem(pid)
			shimRSS += rss
			shimPSS += pss
		}
		b.ReportMetric(float64(heap1-heap0)/n/1024, "shoald-heap-KiB/ctr")
		b.ReportMetric(float64(rss1-rss0)/n/1024, "shoald-rss-KiB/ctr")
		b.ReportMetric(shimRSS/n/1024, "shim-rss-KiB/ctr")
		b.ReportMetric(shimPSS/n/1024, "shim-pss-KiB/ctr")
		for _, id := range ids {
			e.svc.Remove(ctx, id, true, true)
		}
	}
}

func goMem() int64 {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return int64(ms.HeapInuse + ms.StackInuse)
}

func selfRSS() int64 {
	rss, _ := procMem(os.Getpid())
	return int64(rss)
}

// procMem returns a process's RSS and PSS in bytes.
func procMem(pid int) (rss, pss float64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "Rss:":
			rss = v * 1024
		case "Pss:":
			pss = v * 1024
		}
	}
	return rss, pss
}

// shimPid finds the shim serving bundle by its command line.
func shimPid(bundle string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if strings.Contains(string(cmd), "--bundle\x00"+bundle+"\x00") {
			return pid
		}
	}
	return 0
}
