package e2e

// Benchmarks of swarm mode on real labs: what a user waits for, measured
// from outside with the unmodified docker CLI driving the change and the
// API (what `service ls` and `node ls` read) as the finish line. They need
// root and run only when asked (-v: the per-run lines are the figures):
//
//	go test -v -run XXX -bench 'LabUp|LabFailover|LabScale|LabRollingUpdate|LabSelfHealing' \
//		-benchtime 1x -timeout 60m ./test/e2e
//
// Sub-benchmarks run alone too, e.g. -bench 'LabScale/warm$'. Each
// benchmark repeats its measurement itself (SHOAL_BENCH_RUNS overrides how
// often), logs every run and the median/max, and reports them as metrics.
// The machine may be shared: each run first waits (up to
// SHOAL_BENCH_QUIET_WAIT, default 2m) for the machine to be nearly idle,
// and notes how busy it was.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/lab"
)

// pollEvery is the finish-line resolution of the benchmarks (a
// `service ls` every 20 ms costs the leader well under 1 ms each).
const pollEvery = 20 * time.Millisecond

func requireBench(b *testing.B) {
	b.Helper()
	testutil.RequireRoot(b)
	testutil.RequireBinary(b, "runc", "nft", "ip", "docker")
	if binDir == "" {
		b.Skip("binaries not built")
	}
	b.ReportMetric(0, "ns/op") // one op is a whole lab scenario: meaningless
	load, _ := os.ReadFile("/proc/loadavg")
	b.Logf("%s, load average at start: %s", time.Now().UTC().Format(time.RFC3339), strings.TrimSpace(string(load)))
}

// benchRuns is how many times a benchmark measures: def, or SHOAL_BENCH_RUNS.
func benchRuns(b *testing.B, def int) int {
	if s := os.Getenv("SHOAL_BENCH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("SHOAL_BENCH_RUNS=%q: want a positive number", s)
		}
		return n
	}
	return def
}

// cpuTimes reads the machine's busy and total CPU time from /proc/stat.
func cpuTimes() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// busyOver samples how busy the machine was over d (0..1).
func busyOver(d time.Duration) float64 {
	b0, t0 := cpuTimes()
	time.Sleep(d)
	b1, t1 := cpuTimes()
	if t1 == t0 {
		return 0
	}
	return float64(b1-b0) / float64(t1-t0)
}

// busyMeter measures how busy the machine is from now until done is
// called: near 100% means the measurement was bound by CPU.
func busyMeter() (done func() string) {
	b0, t0 := cpuTimes()
	return func() string {
		b1, t1 := cpuTimes()
		if t1 == t0 {
			return "machine busy: unknown"
		}
		return fmt.Sprintf("machine %.0f%% busy during", float64(b1-b0)/float64(t1-t0)*100)
	}
}

// waitQuiet waits (at most SHOAL_BENCH_QUIET_WAIT, default 2m; 0 to not
// wait) until the machine is nearly idle before a measurement: others'
// builds and tests share its 2 cores and would be measured too. It returns
// a note with how busy the machine was just before.
func waitQuiet(b *testing.B) string {
	limit := 2 * time.Minute
	if s := os.Getenv("SHOAL_BENCH_QUIET_WAIT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			b.Fatalf("SHOAL_BENCH_QUIET_WAIT=%q: %v", s, err)
		}
		limit = d
	}
	deadline := time.Now().Add(limit)
	for {
		busy := busyOver(500 * time.Millisecond)
		if busy < 0.15 || time.Now().After(deadline) {
			return fmt.Sprintf("machine %.0f%% busy before", busy*100)
		}
	}
}

// figures collects the durations of one measurement.
type figures struct {
	b    *testing.B
	what string
	unit string // metric name prefix, no spaces
	ds   []time.Duration
}

func newFigures(b *testing.B, unit, what string) *figures {
	return &figures{b: b, what: what, unit: unit}
}

func (f *figures) add(d time.Duration, note string) {
	f.ds = append(f.ds, d)
	if note != "" {
		note = " (" + note + ")"
	}
	f.b.Logf("%s: run %d: %v%s", f.what, len(f.ds), d.Round(time.Millisecond), note)
}

func (f *figures) median() time.Duration {
	s := slices.Clone(f.ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// report logs median/max and reports them as metrics.
func (f *figures) report() {
	if len(f.ds) == 0 {
		return
	}
	med, mx := f.median(), slices.Max(f.ds)
	f.b.Logf("== %s: median %v, max %v over %d runs", f.what, med.Round(time.Millisecond), mx.Round(time.Millisecond), len(f.ds))
	f.b.ReportMetric(med.Seconds(), f.unit+"-median-s")
	f.b.ReportMetric(mx.Seconds(), f.unit+"-max-s")
}

// dockerAt runs the docker CLI against a node's daemon.
type dockerAt struct {
	tb   testing.TB
	host string
	cfg  string
}

func newDocker(tb testing.TB, n *lab.Node) *dockerAt {
	return &dockerAt{tb: tb, host: n.Host(), cfg: tb.TempDir()}
}

func (d *dockerAt) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+d.host, "DOCKER_CONFIG="+d.cfg)
	return cmd
}

// run runs a docker command; safe from any goroutine.
func (d *dockerAt) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := d.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("docker %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// ok runs a docker command and fails the benchmark unless it succeeded.
func (d *dockerAt) ok(args ...string) string {
	d.tb.Helper()
	out, err := d.run(args...)
	if err != nil {
		d.tb.Fatal(err)
	}
	return out
}

// pullEverywhere pulls ref on every node of the lab at once.
func pullEverywhere(tb testing.TB, l *lab.Lab, ref string) {
	tb.Helper()
	nodes := l.Nodes()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		d := newDocker(tb, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = d.run("pull", "-q", ref)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
}

// waitUntil polls cond every pollEvery until it holds and returns when it
// was first seen to hold; it fails tb after timeout with cond's last word.
func waitUntil(tb testing.TB, timeout time.Duration, cond func(ctx context.Context) (bool, string)) time.Time {
	tb.Helper()
	return waitEvery(tb, timeout, pollEvery, cond)
}

// waitEvery is waitUntil polling every interval.
func waitEvery(tb testing.TB, timeout, every time.Duration, cond func(ctx context.Context) (bool, string)) time.Time {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, why := cond(ctx)
		cancel()
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v: %s", timeout, why)
		}
		time.Sleep(every)
	}
}

// serviceStatus is what `service ls` shows: running/desired tasks.
func serviceStatus(ctx context.Context, c *client.Client, svc string) (running, desired uint64, err error) {
	res, err := c.ServiceList(ctx, client.ServiceListOptions{Status: true, Filters: make(client.Filters).Add("name", svc)})
	if err != nil {
		return 0, 0, err
	}
	for _, s := range res.Items {
		if s.Spec.Name == svc && s.ServiceStatus != nil {
			return s.ServiceStatus.RunningTasks, s.ServiceStatus.DesiredTasks, nil
		}
	}
	return 0, 0, fmt.Errorf("service %s not listed", svc)
}

// waitService waits until `service ls` shows want/want for svc.
func waitService(tb testing.TB, c *client.Client, svc string, want uint64, timeout time.Duration) time.Time {
	tb.Helper()
	return waitUntil(tb, timeout, func(ctx context.Context) (bool, string) {
		r, d, err := serviceStatus(ctx, c, svc)
		if err != nil {
			return false, err.Error()
		}
		return r == want && d == want, fmt.Sprintf("%s: %d/%d, want %d/%d", svc, r, d, want, want)
	})
}

// liveTasks lists svc's tasks meant to run.
func liveTasks(ctx context.Context, c *client.Client, svc string) ([]swarm.Task, error) {
	res, err := c.TaskList(ctx, client.TaskListOptions{Filters: make(client.Filters).Add("service", svc).Add("desired-state", "running")})
	if err != nil {
		return nil, err
	}
	return res.Items, nil
}

// runningContainers counts svc's running task containers on every running
// node of the lab (what `docker ps` shows there).
func runningContainers(ctx context.Context, l *lab.Lab, svc string) (int, error) {
	n := 0
	for _, node := range l.Nodes() {
		if st, _ := l.Status(node.Name); st != lab.StateRunning {
			continue
		}
		res, err := node.Client().ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", "com.docker.swarm.service.name="+svc)})
		if err != nil {
			return 0, fmt.Errorf("%s: %w", node.Name, err)
		}
		n += len(res.Items)
	}
	return n, nil
}

// waitContainers waits until exactly want task containers of svc run.
func waitContainers(tb testing.TB, l *lab.Lab, svc string, want int, timeout time.Duration) {
	tb.Helper()
	waitUntil(tb, timeout, func(ctx context.Context) (bool, string) {
		n, err := runningContainers(ctx, l, svc)
		if err != nil {
			return false, err.Error()
		}
		return n == want, fmt.Sprintf("%d running containers of %s, want %d", n, svc, want)
	})
}

// startSpread describes when the tasks created at or after since went from
// creation to RUNNING (manager's CreatedAt to the agent's status time).
func startSpread(ctx context.Context, c *client.Client, svc string, since time.Time) string {
	tasks, err := liveTasks(ctx, c, svc)
	if err != nil {
		return err.Error()
	}
	var first, last time.Duration
	n := 0
	for _, t := range tasks {
		if t.CreatedAt.Before(since) || t.Status.State != swarm.TaskStateRunning {
			continue
		}
		d := t.Status.Timestamp.Sub(t.CreatedAt)
		if n == 0 || d < first {
			first = d
		}
		if d > last {
			last = d
		}
		n++
	}
	return fmt.Sprintf("%d new tasks: created→running first %v, last %v", n, first.Round(time.Millisecond), last.Round(time.Millisecond))
}

// --- lab up -----------------------------------------------------------

var progressLine = regexp.MustCompile(`^\[\s*([0-9.]+)s\] (.*)$`)

// BenchmarkLabUp times `shoal lab up --nodes 5 --managers 3` until it
// returns (it waits until a manager lists every node Ready), then checks
// that with `docker node ls` and times `shoal lab down`.
func BenchmarkLabUp(b *testing.B) {
	requireBench(b)
	up := newFigures(b, "up", "shoal lab up --nodes 5 --managers 3 → 5 nodes Ready")
	swarmPart := newFigures(b, "swarm", "of which forming the swarm (init, joins, all Ready)")
	down := newFigures(b, "down", "shoal lab down")
	shoal := filepath.Join(binDir, "shoal")
	for range benchRuns(b, 5) {
		name, subnet := labID()
		b.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			_, _ = lab.Down(ctx, name, lab.DownOptions{})
		})
		quiet := waitQuiet(b)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, shoal, "lab", "up", "--name", name, "--nodes", "5", "--managers", "3", "--subnet", subnet)
		cmd.Stderr = &stderr
		start := time.Now()
		out, err := cmd.Output()
		took := time.Since(start)
		cancel()
		if err != nil {
			b.Fatalf("shoal lab up: %v\n%s\n%s", err, out, stderr.String())
		}
		// The progress lines carry the lab's own clock: the swarm step
		// is the one after the images were pushed.
		var prev, swarmAt float64
		for _, line := range strings.Split(stderr.String(), "\n") {
			m := progressLine.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			at, _ := strconv.ParseFloat(m[1], 64)
			if strings.HasPrefix(m[2], "swarm ready") {
				swarmAt = at - prev
			}
			prev = at
		}
		l, err := lab.Open(name)
		if err != nil {
			b.Fatal(err)
		}
		ls := newDocker(b, l.Node("node1")).ok("node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}")
		if strings.Count(ls, "Ready") != 5 || strings.Count(ls, "Leader") != 1 || strings.Count(ls, "Reachable") != 2 {
			b.Fatalf("after lab up, node ls:\n%s", ls)
		}
		l.Close()
		up.add(took, quiet)
		swarmPart.add(time.Duration(swarmAt*float64(time.Second)), "")
		start = time.Now()
		if out, err := exec.Command(shoal, "lab", "down", "--name", name).CombinedOutput(); err != nil {
			b.Fatalf("shoal lab down: %v\n%s", err, out)
		}
		down.add(time.Since(start), "")
	}
	up.report()
	swarmPart.report()
	down.report()
}

// --- leader failover --------------------------------------------------

// managers returns the lab's manager node names and the current leader,
// as a running manager's node list says.
func clusterView(ctx context.Context, l *lab.Lab, ask string) (leader string, ids map[string]string, reachable, ready int, err error) {
	res, err := l.Client(ask).NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return "", nil, 0, 0, err
	}
	ids = map[string]string{}
	for _, n := range res.Items {
		if n.Status.State == swarm.NodeStateReady {
			ready++
			ids[n.Description.Hostname] = n.ID
		}
		if m := n.ManagerStatus; m != nil {
			if m.Leader {
				leader = n.Description.Hostname
			}
			if m.Reachability == swarm.ReachabilityReachable {
				reachable++
			}
		}
	}
	return leader, ids, reachable, ready, nil
}

// BenchmarkLabFailover kills the leader's host and times until a surviving
// manager accepts a write (a node label update), and until a new leader
// shows in `node ls`. The old leader is started again between runs.
func BenchmarkLabFailover(b *testing.B) {
	requireBench(b)
	l := newLab(b, lab.Options{Nodes: 5, Managers: 3})
	write := newFigures(b, "write", "leader killed → a surviving manager accepts node update --label-add")
	elected := newFigures(b, "leader", "leader killed → node ls on a survivor shows a new Leader")
	managers := []string{"node1", "node2", "node3"}
	for run := range benchRuns(b, 5) {
		var leader string
		var ids map[string]string
		waitUntil(b, 60*time.Second, func(ctx context.Context) (bool, string) {
			for _, m := range managers {
				ld, is, reach, ready, err := clusterView(ctx, l, m)
				if err != nil {
					continue
				}
				leader, ids = ld, is
				return ld != "" && reach == 3 && ready == 5, fmt.Sprintf("leader %q, %d reachable managers, %d ready nodes", ld, reach, ready)
			}
			return false, "no manager answers"
		})
		var survivors []string
		for _, m := range managers {
			if m != leader {
				survivors = append(survivors, m)
			}
		}
		quiet := waitQuiet(b)
		start := time.Now()
		if err := l.Kill(context.Background(), leader); err != nil {
			b.Fatal(err)
		}
		killTook := time.Since(start)

		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wrote, seen time.Duration
		var writer, newLeader string
		for _, s := range survivors {
			wg.Add(1)
			go func() { // each survivor labels its own node: no version races
				defer wg.Done()
				c := l.Client(s)
				for attempt := 0; ctx.Err() == nil; attempt++ {
					actx, acancel := context.WithTimeout(ctx, 2*time.Second)
					err := labelNode(actx, c, ids[s], "bench.failover", fmt.Sprintf("%d-%d", run, attempt))
					acancel()
					if err == nil {
						mu.Lock()
						if writer == "" {
							writer, wrote = s, time.Since(start)
						}
						mu.Unlock()
						return
					}
					time.Sleep(10 * time.Millisecond)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				ld, _, _, _, err := clusterView(actx, l, survivors[0])
				acancel()
				if err == nil && ld != "" && ld != leader {
					mu.Lock()
					seen, newLeader = time.Since(start), ld
					mu.Unlock()
					return
				}
				time.Sleep(pollEvery)
			}
		}()
		// Done when both are seen (or the deadline passes).
		for ctx.Err() == nil {
			mu.Lock()
			done := writer != "" && newLeader != ""
			mu.Unlock()
			if done {
				break
			}
			time.Sleep(pollEvery)
		}
		cancel()
		wg.Wait()
		if writer == "" || newLeader == "" {
			b.Fatalf("run %d: after killing leader %s: write accepted by %q, new leader %q", run, leader, writer, newLeader)
		}
		write.add(wrote, fmt.Sprintf("killed %s in %v, write accepted via %s, %s", leader, killTook.Round(time.Millisecond), writer, quiet))
		elected.add(seen, "new leader "+newLeader)

		if err := l.Start(context.Background(), leader); err != nil {
			b.Fatal(err)
		}
	}
	write.report()
	elected.report()
}

// labelNode sets one label on a node, as `node update --label-add` does.
func labelNode(ctx context.Context, c *client.Client, id, key, value string) error {
	n, err := c.NodeInspect(ctx, id, client.NodeInspectOptions{})
	if err != nil {
		return err
	}
	spec := n.Node.Spec
	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[key] = value
	spec.Labels = labels
	_, err = c.NodeUpdate(ctx, id, client.NodeUpdateOptions{Version: n.Node.Version, Spec: spec})
	return err
}

// --- scale ------------------------------------------------------------

// BenchmarkLabScale times `service scale web=50` from 1 replica: with -d
// until `service ls` shows 50/50 (cold: the image is on one node only;
// warm: on every node), and without -d until docker's own wait loop sees
// 50 running and until it exits (after its 5 s stability wait).
func BenchmarkLabScale(b *testing.B) {
	requireBench(b)
	l := newLab(b, lab.Options{Nodes: 5, Managers: 3})
	n1 := l.Node("node1")
	c := n1.Client()
	dk := newDocker(b, n1)
	img := l.Registry() + "/demo/hostname:latest"
	dk.ok("service", "create", "-d", "--name", "web", img)
	waitService(b, c, "web", 1, 60*time.Second)

	scaleTo := func(tb testing.TB, n int) time.Duration {
		start := time.Now()
		dk.ok("service", "scale", "-d", "web="+strconv.Itoa(n))
		return waitService(tb, c, "web", uint64(n), 2*time.Minute).Sub(start)
	}
	down := func(tb testing.TB) {
		scaleTo(tb, 1)
		waitContainers(tb, l, "web", 1, 2*time.Minute)
	}
	// Runs first, while only one node has the image.
	b.Run("cold", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		f := newFigures(b, "scale", "scale -d 1→50, image on 1 node only, until service ls 50/50")
		down(b)
		quiet := waitQuiet(b)
		busy := busyMeter()
		start := time.Now()
		d := scaleTo(b, 50)
		f.add(d, quiet+", "+busy()+"; "+startSpread(context.Background(), c, "web", start))
		f.report()
	})
	b.Run("warm", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		pullEverywhere(b, l, img)
		f := newFigures(b, "scale", "scale -d 1→50, image on every node, until service ls 50/50")
		for range benchRuns(b, 5) {
			down(b)
			quiet := waitQuiet(b)
			busy := busyMeter()
			start := time.Now()
			d := scaleTo(b, 50)
			f.add(d, quiet+", "+busy()+"; "+startSpread(context.Background(), c, "web", start))
		}
		f.report()
	})
	b.Run("cli", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		pullEverywhere(b, l, img)
		seen := newFigures(b, "running", "docker service scale web=50 (no -d): its wait loop shows 50/50")
		exit := newFigures(b, "exit", "docker service scale web=50 (no -d): command exits (5 s verify wait)")
		for range benchRuns(b, 3) {
			down(b)
			quiet := waitQuiet(b)
			at, took := cliWait(b, dk, "overall progress: 50 out of 50 tasks", "service", "scale", "web=50")
			seen.add(at, quiet)
			exit.add(took, "")
		}
		seen.report()
		exit.report()
	})
}

// cliWait runs a docker command that waits for convergence and returns
// when its output first held mark and when it exited.
func cliWait(b *testing.B, dk *dockerAt, mark string, args ...string) (at, took time.Duration) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := dk.command(ctx, args...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var out strings.Builder
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if at == 0 && strings.Contains(sc.Text(), mark) {
				at = time.Since(start)
			}
			out.WriteString(sc.Text() + "\n")
		}
	}()
	err := cmd.Wait()
	took = time.Since(start)
	pw.Close()
	<-scanned
	if err != nil {
		b.Fatalf("docker %s: %v\n%s\n%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	if at == 0 {
		b.Fatalf("docker %s never printed %q:\n%s", strings.Join(args, " "), mark, out.String())
	}
	return at, took
}

// --- rolling update ---------------------------------------------------

// directTransport never uses a proxy: the lab registry is on the bridge.
var directTransport = &http.Transport{Proxy: nil}

// pushVariant pushes a new image to the lab registry as
// REG/demo/hostname:tag: demo/hostname plus a small layer of its own, so
// nodes really have something new to pull.
func pushVariant(tb testing.TB, reg, tag string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := name.ParseReference(reg+"/demo/hostname:latest", name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	base, err := remote.Image(src, remote.WithContext(ctx), remote.WithTransport(directTransport))
	if err != nil {
		tb.Fatalf("read %s: %v", src, err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte("variant " + tag + "\n")
	if err := tw.WriteHeader(&tar.Header{Name: "etc/bench-variant", Mode: 0o644, Size: int64(len(content)), ModTime: time.Unix(0, 0)}); err != nil {
		tb.Fatal(err)
	}
	tw.Write(content)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		tb.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		tb.Fatal(err)
	}
	ref := reg + "/demo/hostname:" + tag
	dst, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		tb.Fatal(err)
	}
	if err := remote.Write(dst, img, remote.WithContext(ctx), remote.WithTransport(directTransport)); err != nil {
		tb.Fatalf("push %s: %v", ref, err)
	}
	return ref
}

// updateProgress reports how many of svc's tasks run image ref and the
// service's UpdateStatus state.
func updateProgress(ctx context.Context, c *client.Client, svc, ref string) (onNew int, state swarm.UpdateState, err error) {
	s, err := c.ServiceInspect(ctx, svc, client.ServiceInspectOptions{})
	if err != nil {
		return 0, "", err
	}
	if s.Service.UpdateStatus != nil {
		state = s.Service.UpdateStatus.State
	}
	tasks, err := liveTasks(ctx, c, svc)
	if err != nil {
		return 0, "", err
	}
	for _, t := range tasks {
		// The CLI pins the digest: "REF@sha256:...".
		if t.Status.State == swarm.TaskStateRunning && t.Spec.ContainerSpec != nil && strings.HasPrefix(t.Spec.ContainerSpec.Image, ref+"@") {
			onNew++
		}
	}
	return onNew, state, nil
}

// BenchmarkLabRollingUpdate updates 50 replicas to a new image at
// --update-parallelism 10 --update-delay 0s, and times until all 50 run the
// new image and until UpdateStatus is completed (which includes the
// monitor period after the last task started, as docker's). Variants: the
// image not pulled yet or pre-pulled on every node; the default monitor
// (5 s), `--update-monitor 0s` (which docker, and Shoal, read as "default"),
// and 1ms; and the docker CLI's own wait (no -d) until it exits.
func BenchmarkLabRollingUpdate(b *testing.B) {
	requireBench(b)
	l := newLab(b, lab.Options{Nodes: 5, Managers: 3})
	n1 := l.Node("node1")
	c := n1.Client()
	dk := newDocker(b, n1)
	reg := l.Registry()
	dk.ok("service", "create", "-d", "--name", "roll", "--replicas", "50",
		"--update-parallelism", "10", "--update-delay", "0s", reg+"/demo/hostname:latest")
	waitService(b, c, "roll", 50, 2*time.Minute)

	// Each variant gets the monitor it names (variants may run alone).
	variants := []struct {
		key, what string
		prepull   bool
		monitor   string
		detach    bool
	}{
		{"cold", "image not pulled, default monitor", false, "5s", true},
		{"warm", "image pre-pulled, default monitor", true, "5s", true},
		{"cli", "image pre-pulled, default monitor, docker CLI wait (no -d) until exit", true, "5s", false},
		{"monitor0s", "image pre-pulled, --update-monitor 0s", true, "0s", true},
		{"monitor1ms", "image pre-pulled, --update-monitor 1ms", true, "1ms", true},
	}
	for vi, v := range variants {
		b.Run(v.key, func(b *testing.B) {
			b.ReportMetric(0, "ns/op")
			newRunning := newFigures(b, "running", v.what+": all 50 running the new image")
			completed := newFigures(b, "completed", v.what+": UpdateStatus completed")
			if !v.detach {
				completed = newFigures(b, "exit", v.what+": docker service update exits")
			}
			for run := range benchRuns(b, 3) {
				ref := pushVariant(b, reg, fmt.Sprintf("b%d-%d-%d", vi, run, randInt(1000)))
				if v.prepull {
					pullEverywhere(b, l, ref)
				}
				args := []string{"service", "update", "--image", ref}
				// As a user runs it: no flag when the spec already has the
				// default monitor (unset, or 5s after another variant).
				cur, err := c.ServiceInspect(context.Background(), "roll", client.ServiceInspectOptions{})
				if err != nil {
					b.Fatal(err)
				}
				if uc := cur.Service.Spec.UpdateConfig; v.monitor != "5s" || (uc != nil && uc.Monitor != 0 && uc.Monitor != 5*time.Second) {
					args = append(args, "--update-monitor", v.monitor)
				}
				if v.detach {
					args = append(args, "-d")
				}
				args = append(args, "roll")
				quiet := waitQuiet(b)
				busy := busyMeter()
				start := time.Now()
				if !v.detach {
					_, took := cliWait(b, dk, "converged", args...)
					onNew, state, err := updateProgress(context.Background(), c, "roll", ref)
					if err != nil || onNew != 50 || state != swarm.UpdateStateCompleted {
						b.Fatalf("after docker service update exited: %d on the new image, state %q, err %v", onNew, state, err)
					}
					completed.add(took, quiet)
					continue
				}
				dk.ok(args...)
				var allNew time.Time
				var busyNote string
				// Listing 50+ tasks every 20 ms costs the 2 cores more than
				// `service ls` does: 50 ms is resolution enough here.
				done := waitEvery(b, 3*time.Minute, 50*time.Millisecond, func(ctx context.Context) (bool, string) {
					onNew, state, err := updateProgress(ctx, c, "roll", ref)
					if err != nil {
						return false, err.Error()
					}
					if onNew == 50 && allNew.IsZero() {
						allNew, busyNote = time.Now(), busy()
					}
					if state == swarm.UpdateStatePaused || state == swarm.UpdateStateRollbackStarted {
						b.Fatalf("update %s: state %s", ref, state)
					}
					return onNew == 50 && state == swarm.UpdateStateCompleted, fmt.Sprintf("%d/50 on %s, update %q", onNew, ref, state)
				})
				newRunning.add(allNew.Sub(start), quiet+", "+busyNote+"; "+startSpread(context.Background(), c, "roll", start))
				completed.add(done.Sub(start), "")
			}
			newRunning.report()
			completed.report()
		})
	}
}

// --- self-healing -----------------------------------------------------

// BenchmarkLabSelfHealing puts 10 tasks on worker node5 (the other nodes
// paused while they are created), then kills node5's host (kill), or cuts
// it off from every other node without closing a connection (partition),
// and times until node5 is Down in `node ls` and until 10 tasks run on the
// other nodes. Default heartbeat (5 s).
func BenchmarkLabSelfHealing(b *testing.B) {
	requireBench(b)
	l := newLab(b, lab.Options{Nodes: 5, Managers: 3})
	n1 := l.Node("node1")
	c := n1.Client()
	dk := newDocker(b, n1)
	img := l.Registry() + "/demo/hostname:latest"
	const victim = "node5"
	others := []string{"node1", "node2", "node3", "node4"}
	var victimID string
	waitUntil(b, 30*time.Second, func(ctx context.Context) (bool, string) {
		_, ids, _, _, err := clusterView(ctx, l, "node1")
		if err != nil {
			return false, err.Error()
		}
		victimID = ids[victim]
		return victimID != "", victim + " not ready"
	})
	pullEverywhere(b, l, img)

	fault := func(b *testing.B, cut func() error, restore func() error) {
		down := newFigures(b, "down", victim+" cut off → Down in node ls")
		healed := newFigures(b, "healed", victim+" cut off → its 10 tasks running on other nodes")
		for run := range benchRuns(b, 3) {
			svc := fmt.Sprintf("heal%d", run)
			for _, n := range others {
				dk.ok("node", "update", "--availability", "pause", n)
			}
			dk.ok("service", "create", "-d", "--name", svc, "--replicas", "10", img)
			waitService(b, c, svc, 10, time.Minute)
			for _, n := range others {
				dk.ok("node", "update", "--availability", "active", n)
			}
			quiet := waitQuiet(b)
			start := time.Now()
			if err := cut(); err != nil {
				b.Fatal(err)
			}
			var downAt time.Duration
			at := waitUntil(b, 2*time.Minute, func(ctx context.Context) (bool, string) {
				if downAt == 0 {
					n, err := c.NodeInspect(ctx, victimID, client.NodeInspectOptions{})
					if err == nil && n.Node.Status.State == swarm.NodeStateDown {
						downAt = time.Since(start)
					}
				}
				tasks, err := liveTasks(ctx, c, svc)
				if err != nil {
					return false, err.Error()
				}
				elsewhere := 0
				for _, t := range tasks {
					if t.NodeID != victimID && t.Status.State == swarm.TaskStateRunning {
						elsewhere++
					}
				}
				return elsewhere == 10 && downAt > 0, fmt.Sprintf("%d of 10 running elsewhere, down after %v", elsewhere, downAt)
			})
			down.add(downAt, quiet)
			healed.add(at.Sub(start), "")
			if err := restore(); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if err := l.WaitSwarmReady(ctx, time.Minute); err != nil {
				b.Fatal(err)
			}
			cancel()
			dk.ok("service", "rm", svc)
			waitContainers(b, l, svc, 0, time.Minute)
		}
		down.report()
		healed.report()
	}
	b.Run("kill", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		fault(b, func() error { return l.Kill(context.Background(), victim) },
			func() error { return l.Start(context.Background(), victim) })
	})
	b.Run("partition", func(b *testing.B) {
		b.ReportMetric(0, "ns/op")
		fault(b, func() error { return l.Partition(context.Background(), []string{victim}, nil) },
			func() error { return l.Heal(context.Background()) })
	})
}
