package server_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
)

// Central cache throughput on a real 3-node cluster in this process:
//
//	go test ./server -run '^$' -bench Cache -benchtime 20000x

// BenchmarkCacheGetLatest: Gets of the latest level (1 KiB) from 32
// concurrent callers on the leader; each confirms leadership with a quorum
// (monotonic reads).
func BenchmarkCacheGetLatest(b *testing.B) {
	benchGet(b, true, 0)
}

// BenchmarkCacheGetLevelFollower: Gets of an exact level (1 KiB) served by
// a follower from its own state.
func BenchmarkCacheGetLevelFollower(b *testing.B) {
	benchGet(b, false, 1)
}

func benchGet(b *testing.B, onLeader bool, level int64) {
	c := testcluster.Start(b, 3, testcluster.Options{})
	ctx := context.Background()
	leader := c.WaitLeader()
	lc, lq := cacheConn(b, c.Nodes[leader].Srv.GRPCAddr())
	sid := newSession(b, ctx, lq)
	if _, err := putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sid, Size: 1024}, make([]byte, 1024), 1024); err != nil {
		b.Fatal(err)
	}
	c.WaitConverged()
	cc := lc
	if !onLeader {
		cc, _ = cacheConn(b, c.Nodes[(leader+1)%3].Srv.GRPCAddr())
	}
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := getShared(ctx, cc, sid, level); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkCacheUpdate: Updates of 1 KiB levels from concurrent callers,
// each on its own session (updates of one session are sequential by
// nature). Each is two Raft entries, the chunk and the commit, proposed
// back to back; throughput grows with callers because concurrent entries
// share a disk write (up to 64 entries, 32 updates, per write).
func BenchmarkCacheUpdate(b *testing.B) {
	for _, callers := range []int{32, 128} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) { benchUpdate(b, callers) })
	}
}

func benchUpdate(b *testing.B, callers int) {
	c := testcluster.Start(b, 3, testcluster.Options{})
	ctx := context.Background()
	leader := c.WaitLeader()
	lc, lq := cacheConn(b, c.Nodes[leader].Srv.GRPCAddr())
	sessions := make([]string, callers)
	for i := range sessions {
		sessions[i] = newSession(b, ctx, lq)
		if _, err := putShared(ctx, lc, true, &griddpb.SharedDataHeader{SessionId: sessions[i], Size: 1}, []byte("x"), 1); err != nil {
			b.Fatal(err)
		}
	}
	data := make([]byte, 1024)
	var next atomic.Int32
	b.SetParallelism((callers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		sid := sessions[int(next.Add(1)-1)%callers]
		for pb.Next() {
			if _, err := putShared(ctx, lc, false, &griddpb.SharedDataHeader{SessionId: sid, Size: 1024}, data, 1024); err != nil {
				b.Errorf("update of session %s: %v", sid, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
