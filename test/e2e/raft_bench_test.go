package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/shoal/shoal/lab"
)

// BenchmarkLabRaftThroughput measures Raft write throughput on a lab with 3
// managers, through the Docker API as `docker node update --label-add`
// does it: each client inspects a node for its version and updates its
// labels, in a loop. Every update is forwarded to the leader (if sent to a
// follower), committed by a quorum of managers with fsync, and applied;
// concurrent updates share Raft entries and disk syncs.
//
// A node's version is the store index of its last change, so clients
// writing the same node would mostly lose on the version check: each
// client owns one node, and the lab has as many nodes as the largest
// client count (SHOAL_BENCH_NODES, default 32; 3 of them managers).
// Clients spread over the three managers' API sockets.
//
//	go test -v -run XXX -bench LabRaftThroughput -benchtime 1x ./test/e2e
func BenchmarkLabRaftThroughput(b *testing.B) {
	requireBench(b)
	nodes := 32
	if v, err := strconv.Atoi(os.Getenv("SHOAL_BENCH_NODES")); err == nil && v >= 5 {
		nodes = v
	}
	l := newLab(b, lab.Options{Nodes: nodes, Managers: 3, NoRegistry: true})
	managers := []string{"node1", "node2", "node3"}
	var ids []string
	waitUntil(b, time.Minute, func(ctx context.Context) (bool, string) {
		_, byName, _, ready, err := clusterView(ctx, l, "node1")
		if err != nil {
			return false, err.Error()
		}
		ids = ids[:0]
		for _, id := range byName {
			ids = append(ids, id)
		}
		return ready == nodes, fmt.Sprintf("%d of %d nodes ready", ready, nodes)
	})
	leader, _, _, _, err := clusterView(context.Background(), l, "node1")
	if err != nil || leader == "" {
		b.Fatalf("no leader: %v", err)
	}
	const window = 10 * time.Second
	for _, run := range []struct {
		clients int
		via     []string // the managers the clients talk to, round-robin
	}{{5, managers}, {nodes, managers}, {nodes, []string{leader}}} {
		clients := run.clients
		name := fmt.Sprint("clients=", clients)
		if len(run.via) == 1 {
			name += ",leader-only"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportMetric(0, "ns/op")
			quiet := waitQuiet(b)
			busy := busyMeter()
			var done, conflicts, failed atomic.Int64
			var firstErr atomic.Value
			ctx, cancel := context.WithTimeout(context.Background(), window)
			defer cancel()
			var wg sync.WaitGroup
			for i := range clients {
				// A client of its own: its own connections, as separate
				// CLI processes would have.
				c, err := client.New(client.WithHost(l.Node(run.via[i%len(run.via)]).Host()), client.WithAPIVersionNegotiation())
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						err := labelNode(ctx, c, ids[i], "bench.raft", strconv.Itoa(n))
						if ctx.Err() != nil {
							return
						}
						switch {
						case err == nil:
							done.Add(1)
						case cerrdefs.IsConflict(err):
							// A read on a follower may trail the leader's
							// index by an entry: the version check refuses it.
							conflicts.Add(1)
						default:
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				}()
			}
			start := time.Now()
			wg.Wait()
			el := time.Since(start)
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d updates failed, first: %v", f, firstErr.Load())
			}
			rate := float64(done.Load()) / el.Seconds()
			b.Logf("%d clients over %d nodes via %v: %d updates in %v = %.0f updates/s; %d refused on version; %s, %s",
				clients, nodes, run.via, done.Load(), el.Round(time.Millisecond), rate, conflicts.Load(), quiet, busy())
			b.ReportMetric(rate, "updates/s")
		})
	}
}
