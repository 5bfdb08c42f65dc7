package cache

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	pb "github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/server"
)

// Hits of a small level through gRPC on loopback: what workers see. With
// one connection many concurrent streams share each write; with 8, each
// worker process has its own.
// go test -run '^$' -bench HitGRPC -benchtime 5s ./cache/
func BenchmarkHitGRPC(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) { benchHitGRPC(b, conns) })
	}
}

// The floor: a bare gRPC Cache server that sends one fixed 1 KiB message
// per GetSharedData, through the same client loop. The node cache's hits
// cost what gRPC costs.
func BenchmarkBareGRPCStream(b *testing.B) {
	f := startFake(b)
	f.put("s", 1, payload(1024, 1), 0)
	clients := []pb.CacheClient{dial(b, f.addr)}
	runHits(b, clients)
}

func benchHitGRPC(b *testing.B, conns int) {
	f := startFake(b)
	f.put("s", 1, payload(1024, 1), 0)
	s := startCache(b, []string{f.addr}, 64<<20, nil, false, nil)
	clients := make([]pb.CacheClient, conns)
	for i := range clients {
		clients[i] = dial(b, s.Addr())
	}
	runHits(b, clients)
	if st := s.Cache.Stats(); st.UpstreamFetches != 1 {
		b.Fatalf("hits went upstream: %+v", st)
	}
}

func runHits(b *testing.B, clients []pb.CacheClient) {
	ctx := context.Background()
	if _, _, err := download(ctx, clients[0], get("s", 1)); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(16)
	cpu0 := cpuTime()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[int(next.Add(1))%len(clients)]
		for pb.Next() {
			stream, err := c.GetSharedData(ctx, get("s", 1))
			if err != nil {
				b.Error(err)
				return
			}
			for {
				if _, err := stream.Recv(); err != nil {
					break
				}
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
	// The machine is shared: gets per CPU-second of this process (client
	// and server together) does not depend on what else runs.
	b.ReportMetric(float64(b.N)/(cpuTime()-cpu0).Seconds(), "gets/cpu-s")
}

// The same hits without gRPC: the cache's own cost.
func BenchmarkHitInProcess(b *testing.B) {
	f := startFake(b)
	f.put("s", 1, payload(1024, 1), 0)
	s := startCache(b, []string{f.addr}, 64<<20, nil, false, nil)
	ctx := context.Background()
	discard := func(*pb.SharedDataChunk) error { return nil }
	req := get("s", 1)
	if err := s.Cache.GetSharedData(ctx, req, false, discard); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Cache.GetSharedData(ctx, req, false, discard); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "gets/s")
}

// A new 100 MiB level read at once through 8 node caches (peers on
// loopback) from a real 3-node cluster: how many times the central cache
// sends it in full. go test -run '^$' -bench NewLevel8 -benchtime 3x ./cache/
func BenchmarkNewLevel8Caches(b *testing.B) {
	const size = 100 << 20
	// 100 MiB writes on a shared machine: Raft timeouts loose enough that
	// the upload does not cost the leader its office.
	r := startCentral(b, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 2*time.Second, 2*time.Second, time.Second
	}})
	caches := startGroup(b, r.c.Addrs(), 8, 256<<20)
	clients := make([]pb.CacheClient, len(caches))
	for i, s := range caches {
		clients[i] = dial(b, s.Addr())
	}
	sid := r.session(b)
	ctx := context.Background()
	before := sum(caches, func(s Stats) uint64 { return s.UpstreamFetches })
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		level := r.write(b, sid, i == 0, payload(size, byte(i)))
		b.StartTimer()
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Go(func() {
				if h, _, err := download(ctx, c, get(sid, level)); err != nil || h.UpdateLevel != level {
					b.Errorf("read level %d: %v", level, err)
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	reads := sum(caches, func(s Stats) uint64 { return s.UpstreamFetches }) - before
	b.ReportMetric(float64(reads)/float64(b.N), "central-reads/level")
	b.ReportMetric(float64(sum(caches, func(s Stats) uint64 { return s.PeerHits }))/float64(b.N), "peer-reads/level")
	b.SetBytes(size * int64(len(caches)))
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
