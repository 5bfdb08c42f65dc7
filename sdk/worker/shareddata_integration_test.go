package worker_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/cache"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

func level(l int64, size int) []byte {
	unit := []byte(fmt.Sprintf("<level %d>", l))
	return bytes.Repeat(unit, size/len(unit)+1)[:size]
}

func hexSum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// The client helpers against the real central cache: Set, Update, Get of
// exact and latest levels, the API's error codes, Delete.
func TestClientSharedData(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Detach()
	one := level(1, 3<<20+5) // four chunks
	info, err := cl.SetSharedData(ctx, s.ID(), 0, one, time.Hour)
	if err != nil || info.Level != 1 || info.Size != int64(len(one)) {
		t.Fatalf("set: %+v, %v", info, err)
	}
	if _, err := cl.SetSharedData(ctx, s.ID(), 0, one, 0); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second set: %v, want AlreadyExists", err)
	}
	info, err = cl.UpdateSharedData(ctx, s.ID(), 0, level(2, 100), 0)
	if err != nil || info.Level != 2 {
		t.Fatalf("update to current+1: %+v, %v", info, err)
	}
	if _, err := cl.UpdateSharedData(ctx, s.ID(), 2, level(2, 100), 0); err == nil {
		t.Fatal("an update to the current level was accepted")
	}
	data, info, err := cl.GetSharedData(ctx, s.ID(), 1)
	if err != nil || info.Level != 1 || !bytes.Equal(data, one) {
		t.Fatalf("get level 1: %+v, %v", info, err)
	}
	data, info, err = cl.GetSharedData(ctx, s.ID(), 0)
	if err != nil || info.Level != 2 || !bytes.Equal(data, level(2, 100)) {
		t.Fatalf("get latest: %+v, %v", info, err)
	}
	if _, _, err := cl.GetSharedData(ctx, s.ID(), 3); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("get a level not written yet: %v, want FailedPrecondition", err)
	}
	if _, _, err := cl.GetSharedData(ctx, "", 0); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("get without a session: %v, want InvalidArgument", err)
	}
	if ok, err := cl.DeleteSharedData(ctx, s.ID()); err != nil || !ok {
		t.Fatalf("delete: %v, %v", ok, err)
	}
	if _, _, err := cl.GetSharedData(ctx, s.ID(), 0); status.Code(err) != codes.NotFound {
		t.Fatalf("get after delete: %v, want NotFound", err)
	}
}

// The iterative pattern end to end on three nodes: each level's tasks see
// exactly that level's bytes, and a
// leader killed between two levels loses nothing.
func TestWorkerGetsRequiredLevel(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	var calls, mismatches atomic.Int64
	h := func(_ context.Context, task worker.Task) ([]byte, error) {
		calls.Add(1)
		want := fmt.Sprintf("level-%d", task.SharedDataLevel)
		if !bytes.HasPrefix(task.Payload, []byte(want)) || !bytes.Equal(task.SharedData, level(task.SharedDataLevel, 200_000)) {
			mismatches.Add(1)
		}
		return []byte(hexSum(task.SharedData)), nil
	}
	start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 4}, h)
	start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 4}, h)
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 5, RetryBackoffMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Detach()
	const perLevel = 40
	for l := int64(1); l <= 3; l++ {
		data := level(l, 200_000)
		var err error
		if l == 1 {
			_, err = cl.SetSharedData(ctx, s.ID(), l, data, 0)
		} else {
			_, err = cl.UpdateSharedData(ctx, s.ID(), l, data, 0)
		}
		if err != nil {
			t.Fatalf("level %d: %v", l, err)
		}
		ts := make([]client.Task, perLevel)
		for i := range ts {
			ts[i] = client.Task{ID: fmt.Sprintf("l%d-%d", l, i), Payload: []byte(fmt.Sprintf("level-%d", l)),
				UseSharedData: true, SharedDataLevel: l}
		}
		if _, err := s.Submit(ctx, ts); err != nil {
			t.Fatal(err)
		}
		for range perLevel {
			select {
			case r := <-s.Results():
				if string(r.Payload) != hexSum(data) {
					t.Fatalf("level %d: task %s saw another level's bytes", l, r.TaskID)
				}
			case d := <-s.DeadLetters():
				t.Fatalf("level %d: task %s dead-lettered: %v", l, d.TaskID, d.Errors)
			case <-ctx.Done():
				t.Fatalf("level %d: results did not all come", l)
			}
		}
		if l == 1 {
			c.Kill(c.Leader())
			c.WaitLeader()
		}
	}
	if mismatches.Load() != 0 {
		t.Fatalf("%d of %d handler calls got other bytes than their level's", mismatches.Load(), calls.Load())
	}
}

// A task requiring a level that never comes fails its attempts with an
// error naming the session and level, and dead-letters.
func TestMissingLevelFailsTheAttempt(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 2}, func(context.Context, worker.Task) ([]byte, error) {
		t.Error("the handler ran without its shared data")
		return nil, nil
	})
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Detach()
	if _, err := s.Submit(ctx, []client.Task{{ID: "x", UseSharedData: true, SharedDataLevel: 7}}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-s.DeadLetters():
		if len(d.Errors) != 1 || !bytes.Contains([]byte(d.Errors[0]), []byte("level 7")) {
			t.Fatalf("dead letter errors %q, want one naming level 7", d.Errors)
		}
		t.Logf("error: %s", d.Errors[0])
	case r := <-s.Results():
		t.Fatalf("result %+v without shared data", r)
	case <-ctx.Done():
		t.Fatal("no dead letter")
	}
}

// Workers with a real node cache (no peers) in front of the cluster: each
// level is read once from the central cache, and each worker downloads it
// once from the node cache. With the node cache gone, the workers fall
// back to the central cache and the tasks still complete.
func TestWorkersThroughNodeCache(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := cache.Start(cache.ServiceConfig{Addr: "127.0.0.1:0",
		Cache: cache.Config{MaxBytes: 64 << 20, Central: c.Addrs()}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = nc.Close()
		}
	}()
	cl := dial(t, ctx, c.Addrs())
	h := func(_ context.Context, task worker.Task) ([]byte, error) {
		return []byte(hexSum(task.SharedData)), nil
	}
	const workers = 3
	for range workers {
		start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 4, NodeCacheAddr: nc.Addr()}, h)
	}
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Detach()
	run := func(l int64) {
		t.Helper()
		data := level(l, 1<<20+17)
		var err error
		if l == 1 {
			_, err = cl.SetSharedData(ctx, s.ID(), l, data, 0)
		} else {
			_, err = cl.UpdateSharedData(ctx, s.ID(), l, data, 0)
		}
		if err != nil {
			t.Fatalf("level %d: %v", l, err)
		}
		ts := make([]client.Task, 60)
		for i := range ts {
			ts[i] = client.Task{ID: fmt.Sprintf("l%d-%d", l, i), UseSharedData: true, SharedDataLevel: l}
		}
		if _, err := s.Submit(ctx, ts); err != nil {
			t.Fatal(err)
		}
		for range ts {
			select {
			case r := <-s.Results():
				if string(r.Payload) != hexSum(data) {
					t.Fatalf("level %d: task %s saw other bytes", l, r.TaskID)
				}
			case d := <-s.DeadLetters():
				t.Fatalf("level %d: task %s dead-lettered: %v", l, d.TaskID, d.Errors)
			case <-ctx.Done():
				t.Fatalf("level %d: results did not all come", l)
			}
		}
	}
	run(1)
	run(2)
	st := nc.Cache.Stats()
	t.Logf("node cache: %+v", st)
	if st.UpstreamFetches != 2 || st.Hits+st.Misses > 2*workers {
		t.Fatalf("2 levels, %d workers: %d central reads (want 2), %d node-cache downloads (want <= %d)",
			workers, st.UpstreamFetches, st.Hits+st.Misses, 2*workers)
	}
	_ = nc.Close()
	closed = true
	run(3)
}

// BenchmarkSharedDataTransfer: one level of 32 MiB stored with
// UpdateSharedData and read back with GetSharedData on a one-node cluster;
// reports MiB/s each way.
func BenchmarkSharedDataTransfer(b *testing.B) {
	c := testcluster.Start(b, 1, testcluster.Options{})
	ctx := context.Background()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Detach()
	const size = 32 << 20
	data := level(1, size)
	var up, down time.Duration
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if i == 0 {
			_, err = cl.SetSharedData(ctx, s.ID(), 1, data, 0)
		} else {
			_, err = cl.UpdateSharedData(ctx, s.ID(), 0, data, 0)
		}
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		got, _, err := cl.GetSharedData(ctx, s.ID(), 0)
		if err != nil || len(got) != size {
			b.Fatalf("get: %d bytes, %v", len(got), err)
		}
		up, down = up+t1.Sub(t0), down+time.Since(t1)
	}
	mib := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(mib/up.Seconds(), "MiB/s-up")
	b.ReportMetric(mib/down.Seconds(), "MiB/s-down")
}
