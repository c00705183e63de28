package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal/shoal/lab"
)

// TestEngine walks the node engine through both CLIs: images, containers,
// logs, exec, ports, save/load/import/tag, push/pull, and bad input.
func TestEngine(t *testing.T) {
	requireE2E(t)
	l := newLab(t, lab.Options{Nodes: 2, NoSwarm: true, NoImages: true})
	n1, n2 := l.Node("node1"), l.Node("node2")
	// Each subtest gets clients bound to itself, so failures stop only it.
	clis := func(t *testing.T) (*cli, *cli) { return shoalCLI(t, n1), dockerCLI(t, n1) }

	t.Run("version and info", func(t *testing.T) {
		sh, dk := clis(t)
		out := dk.ok("version", "--format", "{{.Server.APIVersion}} {{.Server.Os}}")
		if !strings.HasPrefix(out, "1.5") {
			t.Fatalf("docker version: %q", out)
		}
		if out := dk.ok("info", "--format", "{{.Name}} {{.Swarm.LocalNodeState}}"); strings.TrimSpace(out) != "node1 inactive" {
			t.Fatalf("docker info: %q", out)
		}
		if out := sh.ok("info"); !strings.Contains(out, "Name: node1") {
			t.Fatalf("shoal info: %s", out)
		}
	})

	t.Run("demo images", func(t *testing.T) {
		sh, dk := clis(t)
		sh.ok("demo", "build")
		out := dk.ok("images", "--format", "{{.Repository}}:{{.Tag}}")
		for _, img := range []string{"demo/busybox:latest", "demo/hostname:latest", "demo/dnstools:latest"} {
			if !strings.Contains(out, img) {
				t.Fatalf("docker images lacks %s:\n%s", img, out)
			}
		}
	})

	t.Run("run and attach", func(t *testing.T) {
		sh, dk := clis(t)
		if out := dk.ok("run", "--rm", "demo/busybox", "echo", "hi"); out != "hi\n" {
			t.Fatalf("docker run: %q", out)
		}
		if out := sh.ok("run", "--rm", "demo/busybox", "sh", "-c", "echo out; echo err >&2"); out != "out\n" {
			t.Fatalf("shoal run stdout: %q", out)
		}
		r := dk.run("run", "--rm", "demo/busybox", "sh", "-c", "exit 7")
		if r.Code != 7 {
			t.Fatalf("exit code: %s", r)
		}
		r = dk.runIn([]byte("piped\n"), "run", "--rm", "-i", "demo/busybox", "cat")
		if r.Code != 0 || r.Out != "piped\n" {
			t.Fatalf("stdin: %s", r)
		}
		if out := dk.ok("ps", "-a", "-q", "--filter", "ancestor=demo/busybox"); strings.TrimSpace(out) != "" {
			t.Fatalf("--rm left containers: %q", out)
		}
	})

	t.Run("detached web server with a published port", func(t *testing.T) {
		sh, dk := clis(t)
		id := strings.TrimSpace(sh.ok("run", "-d", "--name", "web", "-p", "8080:80", "demo/hostname"))
		if len(id) != 64 {
			t.Fatalf("run -d printed %q", id)
		}
		want := id[:12]
		for _, from := range []*lab.Node{n1, n2} {
			target := "127.0.0.1"
			if from != n1 {
				target = n1.IP
			}
			eventually(t, 10*time.Second, func() string {
				out, err := l.Exec(context.Background(), from.Name, "busybox", "wget", "-qO-", "http://"+target+":8080/")
				if err != nil || strings.TrimSpace(string(out)) != want {
					return fmt.Sprintf("from %s: %q %v", from.Name, out, err)
				}
				return ""
			})
		}
		ps := dk.ok("ps")
		if !strings.Contains(ps, "0.0.0.0:8080->80/tcp") || !strings.Contains(ps, "web") || !strings.Contains(ps, "Up ") {
			t.Fatalf("docker ps:\n%s", ps)
		}
		if out := sh.ok("inspect", "-f", "{{.State.Running}} {{.Config.Hostname}}", "web"); strings.TrimSpace(out) != "true "+want {
			t.Fatalf("inspect: %q", out)
		}
		if out := dk.ok("exec", "web", "hostname"); strings.TrimSpace(out) != want {
			t.Fatalf("exec: %q", out)
		}
		if r := sh.run("exec", "web", "sh", "-c", "exit 3"); r.Code != 3 {
			t.Fatalf("exec exit code: %s", r)
		}
		sh.fails("is already in use", "run", "-d", "--name", "web", "demo/busybox", "sleep", "60")
		dk.fails("container is running", "rm", "web")
		sh.fails("port is already allocated", "run", "-d", "--name", "web2", "-p", "8080:80", "demo/hostname")
		if out := dk.ok("ps", "-a", "--filter", "name=web2", "--format", "{{.Names}} {{.Status}}"); strings.Contains(out, "Up") {
			t.Fatalf("a failed start must not leave a running container: %q", out)
		}
		dk.ok("rm", "-f", "web2")
		sh.ok("stop", "web")
		if out := dk.ok("ps", "-a", "--filter", "name=web", "--format", "{{.Status}}"); !strings.HasPrefix(out, "Exited (") {
			t.Fatalf("after stop: %q", out)
		}
		sh.ok("rm", "web")
		dk.fails("No such object: web", "inspect", "web")
	})

	t.Run("logs", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() { dk.run("rm", "-f", "logger") })
		dk.ok("run", "-d", "--name", "logger", "demo/busybox", "sh", "-c", "echo one; echo two >&2; echo three; sleep 300")
		eventually(t, 10*time.Second, func() string {
			r := dk.run("logs", "logger")
			if r.Out != "one\nthree\n" || r.Err != "two\n" {
				return r.String()
			}
			return ""
		})
		// stdout and stderr are separate pipes: which of "two" and "three"
		// was logged last is up to the scheduler, but it is one line.
		if r := sh.run("logs", "--tail", "1", "logger"); r.Code != 0 || r.Out+r.Err != "three\n" && r.Out+r.Err != "two\n" {
			t.Fatalf("tail: %s", r)
		}
		if out := dk.ok("logs", "-t", "logger"); !strings.Contains(out, "Z one") {
			t.Fatalf("timestamps: %q", out)
		}
		sh.ok("rm", "-f", "logger")
	})

	t.Run("events", func(t *testing.T) {
		sh, dk := clis(t)
		start := time.Now().Add(-time.Second).Unix()
		dk.ok("run", "--name", "evented", "demo/busybox", "true")
		dk.ok("rm", "evented")
		until := fmt.Sprint(time.Now().Add(time.Second).Unix())
		want := "create\nattach\nstart\ndie\ndestroy\n"
		for _, c := range []*cli{dk, sh} {
			out := c.ok("events", "--since", fmt.Sprint(start), "--until", until, "--filter", "container=evented", "--format", "{{.Action}}")
			if out != want {
				t.Fatalf("%s events:\n%s\nwant:\n%s", c.bin, out, want)
			}
		}
		out := dk.ok("events", "--since", fmt.Sprint(start), "--until", until, "--filter", "event=die", "--filter", "container=evented")
		if !strings.Contains(out, " container die ") || !strings.Contains(out, "exitCode=0") || !strings.Contains(out, "name=evented") {
			t.Fatalf("docker events, default format: %q", out)
		}
		dk.fails("invalid filter", "events", "--until", until, "--filter", "colour=red")
	})

	t.Run("volumes", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() { dk.run("rm", "-f", "volwriter"); dk.run("volume", "rm", "-f", "shared") })
		if out := strings.TrimSpace(sh.ok("volume", "create", "--label", "team=a", "shared")); out != "shared" {
			t.Fatalf("volume create printed %q", out)
		}
		if out := dk.ok("volume", "ls", "--filter", "label=team=a", "--format", "{{.Driver}} {{.Name}}"); out != "local shared\n" {
			t.Fatalf("volume ls: %q", out)
		}
		dk.ok("run", "--rm", "-v", "shared:/data", "demo/busybox", "sh", "-c", "echo kept > /data/f")
		if out := sh.ok("run", "--rm", "-v", "shared:/data", "demo/busybox", "cat", "/data/f"); out != "kept\n" {
			t.Fatalf("data in the volume: %q", out)
		}
		dk.ok("run", "-d", "--name", "volwriter", "-v", "shared:/data", "demo/busybox", "sleep", "300")
		dk.fails("volume is in use", "volume", "rm", "shared")
		sh.fails("volume is in use", "volume", "rm", "shared")
		if out := dk.ok("volume", "inspect", "-f", "{{.Labels.team}} {{.Scope}}", "shared"); out != "a local\n" {
			t.Fatalf("volume inspect: %q", out)
		}
		dk.ok("rm", "-f", "volwriter")
		dk.ok("volume", "rm", "shared")
		dk.fails("no such volume", "volume", "inspect", "shared")
	})

	t.Run("cp", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() { dk.run("rm", "-f", "copier") })
		local := t.TempDir()
		os.MkdirAll(filepath.Join(local, "tree", "sub"), 0o755)
		os.WriteFile(filepath.Join(local, "tree", "a.txt"), []byte("alpha\n"), 0o644)
		os.WriteFile(filepath.Join(local, "tree", "sub", "b.txt"), []byte("beta\n"), 0o644)
		dk.ok("run", "-d", "--name", "copier", "-v", "cpvol:/vol", "demo/busybox", "sleep", "300")
		t.Cleanup(func() { dk.run("volume", "rm", "-f", "cpvol") })
		for i, c := range []*cli{dk, sh} {
			dst := fmt.Sprintf("/tmp/in%d", i)
			c.ok("cp", filepath.Join(local, "tree"), "copier:"+dst)
			c.ok("cp", filepath.Join(local, "tree", "a.txt"), "copier:/vol/")
			if out := dk.ok("exec", "copier", "cat", dst+"/a.txt", dst+"/sub/b.txt", "/vol/a.txt"); out != "alpha\nbeta\nalpha\n" {
				t.Fatalf("%s cp into the container: %q", c.bin, out)
			}
			back := filepath.Join(local, fmt.Sprint("back", i))
			c.ok("cp", "copier:"+dst, back)
			if b, err := os.ReadFile(filepath.Join(back, "sub", "b.txt")); err != nil || string(b) != "beta\n" {
				t.Fatalf("%s cp out of the container: %q %v", c.bin, b, err)
			}
			c.fails("Could not find the file", "cp", "copier:/no/such/file", local)
		}
		// A stopped container's files too (its rootfs is mounted for the
		// copy, then not any more).
		dk.ok("stop", "-t", "0", "copier")
		dk.ok("cp", filepath.Join(local, "tree", "a.txt"), "copier:/stopped.txt")
		if out := sh.ok("cp", "copier:/stopped.txt", "-"); !strings.Contains(out, "alpha") {
			t.Fatalf("cp - of a stopped container: %q", out)
		}
	})

	t.Run("diff and export", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() { dk.run("rm", "-f", "changer") })
		dk.ok("run", "--name", "changer", "demo/busybox", "sh", "-c", "echo x > /newfile; rm /bin/vi; echo z >> /etc/passwd")
		want := "C /bin\nD /bin/vi\nC /etc\nC /etc/passwd\nA /newfile\n"
		for _, c := range []*cli{dk, sh} {
			if out := c.ok("diff", "changer"); out != want {
				t.Fatalf("%s diff:\n%s\nwant:\n%s", c.bin, out, want)
			}
			tarball := filepath.Join(t.TempDir(), "fs.tar")
			c.ok("export", "-o", tarball, "changer")
			out, err := exec.Command("tar", "tf", tarball).Output()
			if err != nil || !strings.Contains(string(out), "\nnewfile\n") || strings.Contains(string(out), "bin/vi\n") || !strings.HasPrefix(string(out), "bin/\n") {
				t.Fatalf("%s export: %v\n%.300s", c.bin, err, out)
			}
		}
		dk.fails("No such container", "diff", "nosuch")

		// The container's writable layer shows in ps -s and system df.
		if out := dk.ok("ps", "-a", "-s", "--filter", "name=changer", "--format", "{{.Size}}"); strings.HasPrefix(out, "0B") {
			t.Fatalf("ps -s: %q", out)
		}
		out := dk.ok("system", "df", "--format", "{{.Type}} {{.TotalCount}}")
		if !strings.Contains(out, "Images 3\n") || !strings.Contains(out, "Containers ") || !strings.Contains(out, "Local Volumes ") {
			t.Fatalf("system df:\n%s", out)
		}
		if out := dk.ok("system", "df", "-v"); !strings.Contains(out, "changer") || !strings.Contains(out, "demo/busybox") {
			t.Fatalf("system df -v:\n%s", out)
		}
		// system prune: stopped containers go (no builder: no build cache).
		if out := dk.ok("system", "prune", "-f"); !strings.Contains(out, "Deleted Containers:") {
			t.Fatalf("system prune: %q", out)
		}
		dk.fails("No such object", "inspect", "changer")
		dk.ok("plugin", "ls")
	})

	t.Run("commit", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() {
			dk.run("rm", "-f", "committed")
			dk.run("rmi", "-f", "mine:dk", "mine:sh")
		})
		dk.ok("run", "-d", "--name", "committed", "-e", "FOO=bar", "demo/busybox", "sh", "-c", "echo made > /made; rm /bin/vi; sleep 300")
		eventually(t, 10*time.Second, func() string {
			if r := dk.run("exec", "committed", "cat", "/made"); r.Out != "made\n" {
				return r.String()
			}
			return ""
		})
		dk.ok("commit", "-m", "from docker", "-c", `CMD ["cat","/made"]`, "committed", "mine:dk")
		sh.ok("commit", "-m", "from shoal", "-c", `CMD ["cat","/made"]`, "committed", "mine:sh")
		for _, img := range []string{"mine:dk", "mine:sh"} {
			if out := dk.ok("run", "--rm", img); out != "made\n" {
				t.Fatalf("%s runs: %q", img, out)
			}
			if out := dk.ok("run", "--rm", img, "sh", "-c", "echo $FOO; ls /bin/vi 2>&1; true"); !strings.HasPrefix(out, "bar\n") || !strings.Contains(out, "No such file") {
				t.Fatalf("%s: env or deletion lost: %q", img, out)
			}
		}
		if out := dk.ok("history", "--format", "{{.Comment}}", "mine:sh"); !strings.HasPrefix(out, "from shoal\n") {
			t.Fatalf("history: %q", out)
		}
		// Paused for the commit, running again after.
		if out := dk.ok("inspect", "-f", "{{.State.Status}}", "committed"); out != "running\n" {
			t.Fatalf("after commit: %q", out)
		}
		dk.fails("No such container", "commit", "nosuch", "x:y")
	})

	t.Run("update", func(t *testing.T) {
		sh, dk := clis(t)
		t.Cleanup(func() { dk.run("rm", "-f", "updated") })
		dk.ok("run", "-d", "--name", "updated", "--memory", "64m", "demo/busybox", "sleep", "300")
		if out := strings.TrimSpace(dk.ok("update", "--memory", "96m", "--cpus", "0.5", "updated")); out != "updated" {
			t.Fatalf("docker update printed %q", out)
		}
		sh.ok("update", "--pids-limit", "40", "--restart", "on-failure:2", "updated")
		want := "100663296 500000000 40 on-failure:2\n"
		if out := dk.ok("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "updated"); out != want {
			t.Fatalf("after update: %q, want %q", out, want)
		}
		// The running container's cgroup has the new limit.
		if out := dk.ok("exec", "updated", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); strings.TrimSpace(out) != "100663296" {
			t.Fatalf("cgroup memory limit: %q", out)
		}
		dk.fails("Minimum memory limit", "update", "--memory", "1k", "updated")
		if out := dk.ok("inspect", "-f", "{{.HostConfig.Memory}}", "updated"); out != "100663296\n" {
			t.Fatalf("a refused update changed the memory to %q", out)
		}
	})

	t.Run("restart policy", func(t *testing.T) {
		_, dk := clis(t)
		dk.ok("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "demo/busybox", "sh", "-c", "exit 1")
		eventually(t, 30*time.Second, func() string {
			out := dk.ok("inspect", "-f", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "flaky")
			if strings.TrimSpace(out) != "2 exited 1" {
				return out
			}
			return ""
		})
		dk.ok("rm", "flaky")
	})

	t.Run("containers survive a daemon restart with their true state", func(t *testing.T) {
		sh, dk := clis(t)
		dk.ok("run", "-d", "--name", "survivor", "demo/busybox", "sh", "-c", "echo before; sleep 300")
		dk.ok("run", "-d", "--name", "leaver", "demo/busybox", "sh", "-c", "sleep 2; exit 42")
		pid := strings.TrimSpace(dk.ok("inspect", "-f", "{{.State.Pid}}", "survivor"))
		if err := l.RestartDaemon(context.Background(), "node1"); err != nil {
			t.Fatal(err)
		}
		// The same process runs on; the other one exited (perhaps while no
		// daemon ran) and its exit code is known.
		if out := strings.TrimSpace(dk.ok("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "survivor")); out != "running "+pid {
			t.Fatalf("after restart: %q, want running %s", out, pid)
		}
		eventually(t, 20*time.Second, func() string {
			out := strings.TrimSpace(sh.ok("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "leaver"))
			if out != "exited 42" {
				return out
			}
			return ""
		})
		if out := dk.ok("logs", "survivor"); out != "before\n" {
			t.Fatalf("logs after restart: %q", out)
		}
		if out := dk.ok("exec", "survivor", "echo", "still here"); out != "still here\n" {
			t.Fatalf("exec after restart: %q", out)
		}
		dk.ok("rm", "-f", "survivor", "leaver")
	})

	t.Run("images: save, load, tag, import, rmi", func(t *testing.T) {
		sh, dk := clis(t)
		dir := t.TempDir()
		tar := filepath.Join(dir, "busybox.tar")
		dk.ok("save", "-o", tar, "demo/busybox")
		dk.ok("tag", "demo/busybox", "copy/busybox:v1")
		dk.ok("rmi", "copy/busybox:v1")
		sh.ok("tag", "demo/busybox", "copy/busybox:v2")
		if out := sh.ok("rmi", "copy/busybox:v2"); !strings.Contains(out, "Untagged: copy/busybox:v2") {
			t.Fatalf("rmi: %q", out)
		}
		if out := dk.ok("load", "-i", tar); !strings.Contains(out, "Loaded image: demo/busybox:latest") {
			t.Fatalf("load: %q", out)
		}

		// A corrupt tarball is refused and imports nothing.
		before := dk.ok("images", "-q", "--no-trunc")
		b, err := os.ReadFile(tar)
		if err != nil {
			t.Fatal(err)
		}
		bad := filepath.Join(dir, "bad.tar")
		if err := os.WriteFile(bad, b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		r := dk.run("load", "-i", bad)
		if r.Code == 0 {
			t.Fatalf("truncated tarball loaded: %s", r)
		}
		if after := dk.ok("images", "-q", "--no-trunc"); after != before {
			t.Fatalf("a failed load changed the images:\n%s\nvs\n%s", before, after)
		}

		// import: a rootfs tar becomes a one-layer image.
		rootfs := buildRootfsTar(t, dir)
		dk.ok("import", "-c", "CMD [\"/bin/sh\",\"-c\",\"echo imported\"]", rootfs, "imported/fs:1")
		if out := dk.ok("run", "--rm", "imported/fs:1"); out != "imported\n" {
			t.Fatalf("imported image ran: %q", out)
		}
		dk.ok("rmi", "imported/fs:1")
		dk.fails("No such image", "rmi", "imported/fs:1")
	})

	t.Run("registry push and pull", func(t *testing.T) {
		_, dk := clis(t)
		reg := l.Registry()
		if reg == "" {
			t.Skip("lab has no registry")
		}
		ref := reg + "/e2e/busybox:1"
		// The lab registry asks for no credentials: docker login passes,
		// as against a registry:2 without auth; a dead one fails clearly.
		if r := dk.runIn([]byte("secret\n"), "login", "-u", "bob", "--password-stdin", reg); r.Code != 0 || !strings.Contains(r.Out, "Login Succeeded") {
			t.Fatalf("docker login: %s", r)
		}
		dk.fails("login to", "login", "-u", "bob", "-p", "x", "127.0.0.1:1")
		dk.ok("tag", "demo/busybox", ref)
		dk.ok("push", ref)
		d2 := dockerCLI(t, n2)
		if out := d2.ok("pull", ref); !strings.Contains(out, "Downloaded newer image") && !strings.Contains(out, "Pull complete") {
			t.Fatalf("pull on node2: %q", out)
		}
		if out := d2.ok("run", "--rm", ref, "echo", "pulled"); out != "pulled\n" {
			t.Fatalf("run pulled: %q", out)
		}
		s2 := shoalCLI(t, n2)
		s2.ok("rmi", ref)
		s2.ok("pull", ref)
		s2.fails("not found", "pull", reg+"/e2e/nothing:here")
	})

	t.Run("bad input", func(t *testing.T) {
		sh, dk := clis(t)
		dk.fails("Unable to find image", "run", "--rm", "no/such-image:here")
		sh.fails("Minimum memory limit allowed is 6MB", "run", "--rm", "-m", "1k", "demo/busybox", "true")
		dk.fails("invalid argument", "run", "--rm", "-m", "lots", "demo/busybox", "true")
		dk.fails("No such container", "logs", "ghost")
		dk.fails("No such image", "inspect", "--type", "image", "ghost")
		dk.ok("run", "-d", "--name", "busy", "demo/busybox", "sleep", "300")
		id := strings.TrimSpace(dk.ok("inspect", "-f", "{{.Image}}", "busy"))
		dk.fails("(cannot be forced) - image is being used by running container", "rmi", "-f", id)
		dk.ok("stop", "-t", "0", "busy")
		if r := dk.run("rmi", id); r.Code == 0 || !strings.Contains(r.Err, "(must be forced)") {
			t.Fatalf("rmi of an image a stopped container uses: %s\n%s", r, dk.ok("ps", "-a", "--no-trunc"))
		}
		dk.ok("rm", "-f", "busy")
	})
}

// buildRootfsTar writes a rootfs tarball of the demo busybox by saving the
// image and taking its single layer.
func buildRootfsTar(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := writeBusyboxRootfs(f); err != nil {
		t.Fatal(err)
	}
	return out
}
