// Package e2e drives real shoald daemons on a lab (network namespaces on this
// machine) with the shoal CLI and the unmodified docker CLI. The tests need
// root, runc and the docker client; they skip without them and run in CI.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal/shoal/internal/testutil"
	"github.com/shoal/shoal/lab"
)

var binDir string // shoald, shoal, shoal-shim built for this run

func TestMain(m *testing.M) {
	code := func() int {
		if os.Geteuid() != 0 {
			return m.Run() // every test skips
		}
		dir, err := os.MkdirTemp("", "shoal-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if err := build(dir); err != nil {
			fmt.Fprintln(os.Stderr, "building binaries:", err)
			return 1
		}
		binDir = dir
		return m.Run()
	}()
	os.Exit(code)
}

func build(dir string) error {
	root, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return err
	}
	modDir := filepath.Dir(strings.TrimSpace(string(root)))
	for _, b := range []struct {
		pkg    string
		static bool
	}{{"./cmd/shoald", false}, {"./cmd/shoal", false}, {"./cmd/shoal-shim", true}} {
		cmd := exec.Command("go", "build", "-o", dir+"/", b.pkg)
		cmd.Dir = modDir
		cmd.Env = os.Environ()
		if b.static {
			cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", b.pkg, err, out)
		}
	}
	return nil
}

func requireE2E(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "runc", "nft", "ip")
	if binDir == "" {
		t.Skip("binaries not built")
	}
}

func randInt(n int64) int64 {
	v, _ := rand.Int(rand.Reader, big.NewInt(n))
	return v.Int64()
}

// newLab brings up a lab for one test and removes it when the test ends,
// whatever happened. Names and subnets are random so tests never meet a
// user's lab or each other.
func newLab(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	opts.Name, opts.Subnet = labID()
	opts.ShoaldPath = filepath.Join(binDir, "shoald")
	opts.ShoalPath = filepath.Join(binDir, "shoal")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes() {
				if b, err := os.ReadFile(n.Logs()); err == nil {
					t.Logf("--- %s daemon log (tail):\n%s", n.Name, tailLines(string(b), 40))
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := l.Down(ctx); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// labID returns a random lab name (≤ 8 characters) and subnet, so tests
// never meet a user's lab or each other.
func labID() (string, string) {
	return fmt.Sprintf("e%04d", randInt(10000)), fmt.Sprintf("10.%d.%d.0/24", 200+randInt(50), randInt(250))
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// result is what a CLI run gave.
type result struct {
	Out, Err string
	Code     int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.Code, r.Out, r.Err)
}

// cli runs a client binary (shoal or docker) against one node's daemon.
type cli struct {
	t    testing.TB
	bin  string
	host string
	env  []string
}

func shoalCLI(t testing.TB, n *lab.Node) *cli {
	return &cli{t: t, bin: filepath.Join(binDir, "shoal"), host: n.Host()}
}

func dockerCLI(t testing.TB, n *lab.Node) *cli {
	testutil.RequireBinary(t, "docker")
	// A fresh config dir: no user credentials or contexts leak in.
	return &cli{t: t, bin: "docker", host: n.Host(), env: []string{"DOCKER_CONFIG=" + t.TempDir()}}
}

func (c *cli) runIn(stdin []byte, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), "DOCKER_HOST="+c.host, "SHOAL_HOST="+c.host)
	cmd.Env = append(cmd.Env, c.env...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{Out: out.String(), Err: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("%s %v: %v", c.bin, args, err)
	}
	return r
}

func (c *cli) run(args ...string) result { c.t.Helper(); return c.runIn(nil, args...) }

// ok runs and fails the test unless the command succeeded; returns stdout.
func (c *cli) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.Code != 0 {
		c.t.Fatalf("%s %s: %s", filepath.Base(c.bin), strings.Join(args, " "), r)
	}
	return r.Out
}

// fails runs and fails the test unless the command failed with a message
// containing want on stderr.
func (c *cli) fails(want string, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.Code == 0 {
		c.t.Fatalf("%s %s succeeded, want failure containing %q: %s", filepath.Base(c.bin), strings.Join(args, " "), want, r)
	}
	if !strings.Contains(r.Err, want) {
		c.t.Fatalf("%s %s: stderr does not contain %q: %s", filepath.Base(c.bin), strings.Join(args, " "), want, r)
	}
	return r
}

// eventually retries fn until it returns "" or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, fn func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 20 * time.Millisecond
	for {
		msg := fn()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, msg)
		}
		time.Sleep(wait)
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}
