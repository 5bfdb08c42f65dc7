package client_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
)

// TestSubmitWaitsForPendingLimit submits ten times the session's pending
// limit at once: the server refuses batches with ResourceExhausted while
// the session is full, and the SDK resends them (same ids) until workers
// free room, so every task completes exactly once and Submit succeeds.
func TestSubmitWaitsForPendingLimit(t *testing.T) {
	const limit, n = 50, 500
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(_ int, cfg *server.Config) {
		cfg.MaxPendingPerSession = limit
	}})
	c.WaitMembers(3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	s, err := cl.CreateSession(ctx, nil, client.WithMaxBatch(10, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var ran sync.Map
	var reruns atomic.Int64
	runWorkers(t, c.Addrs(), 2, func(ctx context.Context, tk worker.Task) ([]byte, error) {
		if _, again := ran.LoadOrStore(tk.ID, true); again {
			reruns.Add(1)
		}
		time.Sleep(time.Millisecond) // slower than the submitter, so the session fills
		return echo(ctx, tk)
	})
	// Watch the server's count: the limit must hold throughout.
	var maxPending atomic.Uint64
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watch sync.WaitGroup
	watch.Go(func() {
		for watchCtx.Err() == nil {
			if info, err := cl.GetSession(watchCtx, s.ID()); err == nil {
				if p := info.GetCounts().GetPending(); p > maxPending.Load() {
					maxPending.Store(p)
				}
			}
			time.Sleep(5 * time.Millisecond) // polling interval
		}
	})
	type outcome struct {
		res client.SubmitResult
		err error
	}
	submitted := make(chan outcome, 1)
	go func() {
		res, err := s.Submit(ctx, tasks("cap", 0, n))
		if err == nil {
			err = s.Flush(ctx)
		}
		submitted <- outcome{res, err}
	}()
	got := receive(t, ctx, s, n)
	o := <-submitted
	if o.err != nil || o.res.Accepted != n || o.res.Duplicates != 0 {
		t.Fatalf("Submit: accepted %d, duplicates %d, %v", o.res.Accepted, o.res.Duplicates, o.err)
	}
	stopWatch()
	watch.Wait()
	if len(got) != n {
		t.Fatalf("%d results, want %d", len(got), n)
	}
	if p := maxPending.Load(); p > limit {
		t.Fatalf("the server held %d pending tasks, over the limit of %d", p, limit)
	}
	// Results can reach the client before their commit: wait for it.
	c.WaitFor("results committed", 10*time.Second, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetCompleted() == n
	})
	info, err := cl.GetSession(ctx, s.ID())
	if err != nil || info.GetCounts().GetSubmitted() != n {
		t.Fatalf("counts %v, %v", info.GetCounts(), err)
	}
	t.Logf("max pending seen %d (limit %d); %d handler reruns (redelivery, not duplicate results)",
		maxPending.Load(), limit, reruns.Load())
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
