package logbroker_test

import (
	"context"
	"testing"
)

// BenchmarkServiceLogs streams b.N lines of one task from an agent through
// the dispatcher and the broker (everything in process, HTTP/1.1 and
// HTTP/2 on loopback). allocs/op are per line, for the whole path.
func BenchmarkServiceLogs(b *testing.B) {
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"http1", false}, {"h2", true}} {
		b.Run(proto.name, func(b *testing.B) {
			c := newCluster(b, proto.h2)
			c.src["n1"].mu.Lock()
			c.src["n1"].flood["t1"] = true
			c.src["n1"].mu.Unlock()
			ctx, cancel := context.WithCancel(context.Background())
			ch, err := c.b.Logs(ctx, "", "t1", all)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				m, ok := <-ch
				if !ok || m.Err != nil {
					b.Fatalf("stream ended: %v", m.Err)
				}
			}
			b.StopTimer()
			cancel()
			for range ch {
			}
		})
	}
}
