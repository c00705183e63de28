package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/shoal/shoal/lab"
)

// BenchmarkLabEngineAPI measures `ps` (GET /containers/json?all=1) and
// `inspect` (GET /containers/{id}/json) requests per second against a real
// shoald holding 200 running containers, from 8 concurrent clients over the
// unix socket.
//
//	go test -run XXX -bench LabEngineAPI -benchtime 1x ./test/e2e
func BenchmarkLabEngineAPI(b *testing.B) {
	requireE2E(b)
	l := newLab(b, lab.Options{Nodes: 1, NoSwarm: true, NoImages: true})
	n := l.Node("node1")
	ctx := context.Background()
	c := shoalCLI(b, n)
	c.ok("demo", "build")
	const containers = 200
	ids := make([]string, containers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ids[i] = c.ok("run", "-d", "--name", fmt.Sprintf("c%03d", i), "demo/busybox", "sleep", "3600")[:12]
		}(i)
	}
	wg.Wait()
	cl, err := client.New(client.WithHost(n.Host()), client.WithAPIVersionNegotiation())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	rate := func(name string, call func(i int) error) {
		const clients = 8
		const window = 3 * time.Second
		var done atomic.Int64
		var failed atomic.Value
		deadline := time.Now().Add(window)
		var wg sync.WaitGroup
		for w := 0; w < clients; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; time.Now().Before(deadline); i += clients {
					if err := call(i); err != nil {
						failed.Store(err)
						return
					}
					done.Add(1)
				}
			}(w)
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		rps := float64(done.Load()) / window.Seconds()
		b.ReportMetric(rps, name+"/s")
		b.Logf("%s with %d containers, %d clients: %.0f requests/s", name, containers, clients, rps)
	}
	for i := 0; i < b.N; i++ {
		rate("ps", func(int) error {
			res, err := cl.ContainerList(ctx, client.ContainerListOptions{All: true})
			if err == nil && len(res.Items) != containers {
				err = fmt.Errorf("listed %d containers", len(res.Items))
			}
			return err
		})
		rate("inspect", func(i int) error {
			_, err := cl.ContainerInspect(ctx, ids[i%containers], client.ContainerInspectOptions{})
			return err
		})
	}
}
