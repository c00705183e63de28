package cluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/moby/moby/api/types/swarm"

	sraft "github.com/shoal/shoal/cluster/raft"
	"github.com/shoal/shoal/cluster/store"
)

// Benchmarks on three in-process managers: real TLS between them on
// loopback, raft-boltdb on disk, production Raft timing.
//
//	go test -run XXX -bench . -benchtime 20000x ./cluster/      (throughput)
//	go test -run XXX -bench Failover -benchtime 5x ./cluster/   (failover)

func benchSwarm(b *testing.B, n int) []*member {
	b.Helper()
	var ms []*member
	for i := 0; i < n; i++ {
		m := &member{name: fmt.Sprint("b", i), addr: freePort(b)}
		m.cfg = Config{
			Root:          b.TempDir() + "/swarm",
			EngineVersion: "bench",
			RaftTiming:    sraft.DefaultTiming(),
			Log:           testLog(m.name),
		}
		c, err := New(m.cfg)
		if err != nil {
			b.Fatal(err)
		}
		m.c = c
		ms = append(ms, m)
	}
	b.Cleanup(func() {
		for _, m := range ms {
			m.c.Close()
		}
	})
	ctx := context.Background()
	if _, err := ms[0].c.Init(ctx, swarm.InitRequest{ListenAddr: ms[0].addr, AdvertiseAddr: ms[0].addr}); err != nil {
		b.Fatal(err)
	}
	sw, err := ms[0].c.Inspect(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range ms[1:] {
		err := m.c.Join(ctx, swarm.JoinRequest{ListenAddr: m.addr, AdvertiseAddr: m.addr, RemoteAddrs: []string{ms[0].addr}, JoinToken: sw.JoinTokens.Manager})
		if err != nil {
			b.Fatal(err)
		}
	}
	return ms
}

func leaderManager(ms []*member) (*member, *store.Store) {
	if m := leaderOf(ms); m != nil {
		return m, m.c.node().manager().Store()
	}
	return nil, nil
}

// BenchmarkRaftThroughput: small node-label updates through store.Update
// on the leader, from concurrent clients; every update is a Raft entry
// committed by a quorum (fsync on disk) before Update returns.
func BenchmarkRaftThroughput(b *testing.B) {
	for _, clients := range []int{64, 256} {
		b.Run(fmt.Sprint("clients=", clients), func(b *testing.B) {
			ms := benchSwarm(b, 3)
			_, st := leaderManager(ms)
			ctx := context.Background()
			// One object per client so updates never race on a version.
			err := st.Update(ctx, func(tx store.Tx) error {
				for i := 0; i < clients; i++ {
					n := &store.Node{}
					n.ID = fmt.Sprintf("bench%04d", i)
					n.Spec.Role = swarm.NodeRoleWorker
					n.Status.State = swarm.NodeStateDown
					if err := tx.Create(n); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			var failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := fmt.Sprintf("bench%04d", c)
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						err := st.Update(ctx, func(tx store.Tx) error {
							n := tx.GetNode(id).Copy()
							n.Spec.Labels = map[string]string{"i": fmt.Sprint(i)}
							return tx.Update(n)
						})
						if err != nil {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d updates failed", f)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "updates/s")
			// Every manager applies everything.
			for _, m := range ms {
				s := m.c.node().manager().Store()
				deadline := time.Now().Add(30 * time.Second)
				for s.LastIndex() < st.LastIndex() && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if s.LastIndex() < st.LastIndex() {
					b.Fatalf("%s did not catch up", m.name)
				}
			}
		})
	}
}

// BenchmarkFailover: stop the leader's manager (it stops answering, as if
// killed), then time until a surviving manager accepts a write through the
// control API. The stopped manager is restarted between rounds.
func BenchmarkFailover(b *testing.B) {
	ms := benchSwarm(b, 3)
	ctx := context.Background()
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		var leader *member
		for deadline := time.Now().Add(30 * time.Second); leader == nil && time.Now().Before(deadline); {
			leader, _ = leaderManager(ms)
			time.Sleep(10 * time.Millisecond)
		}
		if leader == nil {
			b.Fatal("no leader")
		}
		var survivor *member
		for _, m := range ms {
			if m != leader {
				survivor = m
				break
			}
		}
		id := survivor.c.NodeID()
		// The clock starts before the stop: a conservative measure.
		start := time.Now()
		leader.c.Close()
		for {
			n, err := survivor.c.Node(ctx, id)
			if err == nil {
				sp := n.Spec
				sp.Labels = map[string]string{"round": fmt.Sprint(i)}
				if survivor.c.UpdateNode(ctx, id, n.Version.Index, sp) == nil {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				b.Fatal("no write accepted after failover")
			}
			time.Sleep(10 * time.Millisecond)
		}
		times = append(times, time.Since(start))
		// Bring the old leader back and let it catch up.
		c, err := New(leader.cfg)
		if err != nil {
			b.Fatal(err)
		}
		leader.c = c
		for deadline := time.Now().Add(30 * time.Second); ; {
			ns, err := c.Nodes(ctx, filters.NewArgs(filters.Arg("id", id)))
			if err == nil && len(ns) == 1 && ns[0].Spec.Labels["round"] == fmt.Sprint(i) {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("restarted manager did not catch up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	var sum time.Duration
	for _, t := range times {
		sum += t
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(len(times)), "ms/failover")
	b.ReportMetric(float64(times[len(times)-1].Milliseconds()), "max-ms")
	b.Logf("failover times: %v", times)
}
