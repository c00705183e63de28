package runtime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"

	"github.com/shoal/shoal/engine/runtime/runtimetest"
	"github.com/shoal/shoal/engine/runtime/shim"
	"github.com/shoal/shoal/internal/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	runtimetest.RemoveShim()
	os.Exit(code)
}

// rig is one runtime over a busybox rootfs, cleaned up with the test.
type rig struct {
	t      *testing.T
	rt     *Runtime
	dir    string
	rootfs string
	cg     string
}

func newRig(t *testing.T) *rig {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc", "busybox")
	dir, err := os.MkdirTemp("", "shrt")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dir: dir, rootfs: filepath.Join(dir, "rootfs"), cg: runtimetest.CgroupParent(t)}
	t.Cleanup(func() { os.RemoveAll(dir) })
	runtimetest.BusyboxRootfs(t, r.rootfs)
	r.rt, err = New(Config{ShimPath: runtimetest.BuildShim(t), Root: filepath.Join(dir, "runc")})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type ctr struct {
	id, bundle, log string
	spawned         *Spawned
	pid             int
}

// prepare writes a bundle for cfg/hc and spawns its shim.
func (r *rig) prepare(id string, cfg *container.Config, hc *container.HostConfig) *ctr {
	t := r.t
	t.Helper()
	if hc == nil {
		hc = &container.HostConfig{}
	}
	hc.NetworkMode = "none"
	c := &ctr{id: id, bundle: filepath.Join(r.dir, id), log: filepath.Join(r.dir, id+"-json.log")}
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		t.Fatal(err)
	}
	u, err := ResolveUser(r.rootfs, cfg.User, hc.GroupAdd)
	if err != nil {
		t.Fatal(err)
	}
	cgPath := "/" + r.cg + "/" + id
	spec, err := Spec(SpecInput{ID: id, Config: cfg, HostConfig: hc, Rootfs: r.rootfs, User: u,
		CgroupsPath: cgPath, InitPath: r.rt.ShimPath()})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.spawned, err = r.rt.Spawn(StartRequest{ID: id, Bundle: c.bundle, LogPath: c.log, Cgroup: cgPath, TTY: cfg.Tty, Stdin: cfg.OpenStdin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		Signal(c.bundle, syscall.SIGKILL)
		c.spawned.Process().Wait()
		r.rt.Delete(context.Background(), id)
	})
	return c
}

func (r *rig) start(c *ctr) {
	r.t.Helper()
	pid, err := c.spawned.Start()
	if err != nil {
		r.t.Fatal(err)
	}
	c.pid = pid
}

func (r *rig) wait(c *ctr) shim.Exit {
	r.t.Helper()
	w, err := WatchShim(c.bundle)
	if err != nil {
		// Exited (and its shim gone) before we looked.
		e, err2 := ReadExit(c.bundle)
		if err2 != nil {
			r.t.Fatalf("watch: %v; exit file: %v", err, err2)
		}
		return e
	}
	done := make(chan struct{})
	var e shim.Exit
	go func() { e, err = w.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.t.Fatal("container did not exit")
	}
	if err != nil {
		r.t.Fatal(err)
	}
	return e
}

func readLog(t *testing.T, path string) []map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestRunEchoLogsAndExitCode(t *testing.T) {
	r := newRig(t)
	c := r.prepare("shrt-echo", &container.Config{Cmd: []string{"sh", "-c", "echo hi; echo oops >&2; exit 3"}}, nil)
	r.start(c)
	e := r.wait(c)
	if e.Code != 3 || e.Signal != 0 {
		t.Fatalf("exit = %+v, want code 3", e)
	}
	logs := readLog(t, c.log)
	got := map[string]string{}
	for _, l := range logs {
		got[l["stream"]] += l["log"]
		if _, err := time.Parse(time.RFC3339Nano, l["time"]); err != nil {
			t.Errorf("bad time %q", l["time"])
		}
	}
	if got["stdout"] != "hi\n" || got["stderr"] != "oops\n" {
		t.Fatalf("logs = %#v", got)
	}
	if err := WaitGone(c.bundle, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.rt.RuncRoot(), c.id)); !os.IsNotExist(err) {
		t.Fatalf("runc state left behind: %v", err)
	}
}

func TestStartFailureIsReported(t *testing.T) {
	r := newRig(t)
	c := r.prepare("shrt-nocmd", &container.Config{Cmd: []string{"/nonexistent"}}, nil)
	_, err := c.spawned.Start()
	var se *StartError
	if !asStartError(err, &se) || se.ExitCode != 127 {
		t.Fatalf("err = %v, want StartError 127", err)
	}
	if !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("err = %v", err)
	}
}

func TestAttachBeforeStartGetsAllOutputAndStdin(t *testing.T) {
	r := newRig(t)
	c := r.prepare("shrt-attach", &container.Config{Cmd: []string{"sh", "-c", "read x; echo got $x; echo err >&2"}, OpenStdin: true}, nil)
	conn, err := c.spawned.Attach(AttachFlags{Stdin: true, Stdout: true, Stderr: true, CloseStdinOnEOF: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r.start(c)
	if _, err := conn.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	conn.CloseWrite()
	var stdout, stderr bytes.Buffer
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := stdcopy.StdCopy(&stdout, &stderr, conn); err != nil {
		t.Fatal(err)
	}
	if stdout.String() != "got hello\n" || stderr.String() != "err\n" {
		t.Fatalf("stdout %q stderr %q", stdout.String(), stderr.String())
	}
	if e := r.wait(c); e.Code != 0 {
		t.Fatalf("exit %+v", e)
	}
}

func TestSignalAndTTYAndResize(t *testing.T) {
	r := newRig(t)
	c := r.prepare("shrt-tty", &container.Config{Cmd: []string{"sh", "-c", "trap 'echo term; exit 7' TERM; stty size; while true; do sleep 0.1; done"}, Tty: true},
		&container.HostConfig{ConsoleSize: [2]uint{30, 100}})
	conn, err := c.spawned.Attach(AttachFlags{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	r.start(c)
	br := bufio.NewReader(conn)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	line, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "30 100" {
		t.Fatalf("stty size = %q, %v", line, err)
	}
	if err := Resize(c.bundle, 40, 120); err != nil {
		t.Fatal(err)
	}
	if err := Signal(c.bundle, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "term\r\n") {
		t.Fatalf("output %q", rest)
	}
	if e := r.wait(c); e.Code != 7 {
		t.Fatalf("exit %+v", e)
	}
}

func TestInitReapsAndForwardsSignals(t *testing.T) {
	r := newRig(t)
	yes := true
	c := r.prepare("shrt-init", &container.Config{Cmd: []string{"sh", "-c", "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); sleep 1000"}},
		&container.HostConfig{Init: &yes})
	conn, err := c.spawned.Attach(AttachFlags{Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	r.start(c)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	hdr := make([]byte, 8)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[4])<<24|int(hdr[5])<<16|int(hdr[6])<<8|int(hdr[7]))
	io.ReadFull(conn, body)
	if !strings.HasPrefix(string(body), "pid1=/sbin/shoal-init -- sh -c") {
		t.Fatalf("pid 1 is %q", body)
	}
	// sh as a child of init does not ignore SIGTERM: init forwards it.
	if err := Signal(c.bundle, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if e := r.wait(c); e.Code != 128+int(syscall.SIGTERM) {
		t.Fatalf("exit %+v, want 143", e)
	}
}

func asStartError(err error, target **StartError) bool {
	for err != nil {
		if se, ok := err.(*StartError); ok {
			*target = se
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}
