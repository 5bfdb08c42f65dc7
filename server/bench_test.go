package server_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
)

// These benchmarks run a real 3-node cluster in this process (Raft over
// loopback TCP with fsync, gRPC, SDK client and workers) and report tasks/s
// and latency. The nodes, workers and client share the machine's cores,
// as they would with three processes on one host.
//
//	go test ./server -run '^$' -bench . -benchtime 100000x

var quiet = slog.New(slog.DiscardHandler)

func noop(context.Context, worker.Task) ([]byte, error) { return nil, nil }

func benchCluster(b *testing.B, workers int, configure ...func(int, *server.Config)) (*client.Session, func()) {
	b.Helper()
	var opts testcluster.Options
	if len(configure) > 0 {
		opts.Configure = configure[0]
	}
	c := testcluster.Start(b, 3, opts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = worker.Run(ctx, worker.Options{Addrs: c.Addrs(), WorkerID: fmt.Sprintf("bw%d", i), Concurrency: 8, Logger: quiet}, noop)
		}()
	}
	cl, err := client.Dial(ctx, c.Addrs(), client.WithLogger(quiet))
	if err != nil {
		b.Fatal(err)
	}
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{})
	if err != nil {
		b.Fatal(err)
	}
	return sess, func() {
		_ = sess.Detach()
		_ = cl.Close()
		cancel()
		wg.Wait()
	}
}

// BenchmarkBatched: 100-task batches of 100-byte payloads from 4
// submitters, results streamed back; one op is one task end to end.
func BenchmarkBatched(b *testing.B) { benchBatched(b) }

// BenchmarkBatchedPendingCap is BenchmarkBatched with gridd's default
// --max-pending-per-session (1,000,000, never reached here): the cost of
// the leader's check on every batch.
func BenchmarkBatchedPendingCap(b *testing.B) {
	benchBatched(b, func(_ int, cfg *server.Config) { cfg.MaxPendingPerSession = 1_000_000 })
}

func benchBatched(b *testing.B, configure ...func(int, *server.Config)) {
	sess, stop := benchCluster(b, 4, configure...)
	defer stop()
	ctx := context.Background()
	payload := make([]byte, 100)
	const batch, submitters = 100, 4
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < submitters; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g * batch; i < b.N; i += batch * submitters {
				n := min(batch, b.N-i)
				tasks := make([]client.Task, n)
				for j := range tasks {
					tasks[j] = client.Task{ID: fmt.Sprintf("t%d", i+j), Payload: payload}
				}
				if _, err := sess.Submit(ctx, tasks); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for got := 0; got < b.N; got++ {
		<-sess.Results()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkUnbatched: one task a batch, 16 concurrent submitters.
func BenchmarkUnbatched(b *testing.B) {
	sess, stop := benchCluster(b, 4)
	defer stop()
	ctx := context.Background()
	payload := make([]byte, 100)
	const submitters = 16
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < submitters; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < b.N; i += submitters {
				if _, err := sess.Submit(ctx, []client.Task{{ID: fmt.Sprintf("u%d", i), Payload: payload}}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for got := 0; got < b.N; got++ {
		<-sess.Results()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkPingPong: one task at a time, from submit to its result.
func BenchmarkPingPong(b *testing.B) {
	sess, stop := benchCluster(b, 1)
	defer stop()
	ctx := context.Background()
	payload := make([]byte, 100)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := sess.Submit(ctx, []client.Task{{ID: fmt.Sprintf("p%d", i), Payload: payload}}); err != nil {
			b.Fatal(err)
		}
		<-sess.Results()
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
