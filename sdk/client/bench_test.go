package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// Benchmarks of the Add path on an in-process 3-node cluster with no-op
// workers and 100-byte payloads: go test -run - -bench . ./sdk/client

func benchSession(b *testing.B, workers int, opts ...client.SessionOption) *client.Session {
	b.Helper()
	c := testcluster.Start(b, 3, testcluster.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			_ = worker.Run(ctx, worker.Options{Addrs: c.Addrs(), WorkerID: fmt.Sprintf("bench-w%d", i),
				Concurrency: 8, Logger: quiet}, func(context.Context, worker.Task) ([]byte, error) { return nil, nil })
		})
	}
	cl, err := client.Dial(ctx, c.Addrs(), client.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	s, err := cl.CreateSession(ctx, nil, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = cl.Close()
		cancel()
		wg.Wait()
	})
	return s
}

// BenchmarkAddThroughput: one goroutine Adds, the results are read
// concurrently; adaptive batching.
func BenchmarkAddThroughput(b *testing.B) {
	s := benchSession(b, 4)
	ctx := context.Background()
	payload := make([]byte, 100)
	b.ResetTimer()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			if err := s.Add(ctx, client.Task{ID: fmt.Sprintf("t%d", i), Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
		if err := s.Flush(ctx); err != nil {
			b.Error(err)
		}
	}()
	for range b.N {
		<-s.Results()
	}
	<-done
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
	b.ReportMetric(float64(b.N)/float64(max(1, s.Stats().BatchesAdded)), "tasks/batch")
}

// BenchmarkAddPingPong: one task at a time, from Add to its result.
func BenchmarkAddPingPong(b *testing.B) {
	s := benchSession(b, 1)
	ctx := context.Background()
	payload := make([]byte, 100)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := s.Add(ctx, client.Task{ID: fmt.Sprintf("p%d", i), Payload: payload}); err != nil {
			b.Fatal(err)
		}
		<-s.Results()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
