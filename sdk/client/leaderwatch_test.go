package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// The leader stops answering without closing a connection (as a paused
// process does) and is cut off from the other nodes, which elect a new
// leader. The client and the workers notice the silence, find the new
// leader through the other nodes, and carry on there while the old one is
// still frozen; every task's result arrives exactly once.
func TestPausedLeaderClientMovesOn(t *testing.T) {
	const watch = 500 * time.Millisecond
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs(), client.WithBackoff(20*time.Millisecond, 500*time.Millisecond),
		client.WithLogger(testLogger(t)), client.WithLeaderWatch(watch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	wctx, stopWorkers := context.WithCancel(context.Background())
	var workers sync.WaitGroup
	t.Cleanup(func() {
		stopWorkers()
		workers.Wait()
	})
	for i := range 2 {
		workers.Go(func() {
			err := worker.Run(wctx, worker.Options{Addrs: c.Addrs(), WorkerID: fmt.Sprintf("pause-w%d", i),
				Concurrency: 4, HeartbeatInterval: 200 * time.Millisecond, Logger: testLogger(t),
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, LeaderWatch: watch}, echo)
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	s, err := cl.CreateSession(ctx, nil, client.WithMaxBatch(50, 1<<20))
	if err != nil {
		t.Fatal(err)
	}

	// Submit until told to stop, then report how many tasks went in.
	stop := make(chan struct{})
	submitted := make(chan int, 1)
	go func() {
		n := 0
		defer func() { submitted <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Submit(ctx, tasks("pz", n, 50)); err != nil {
				t.Errorf("submit: %v", err)
				return
			}
			n += 50
		}
	}()

	// Read results in the background; the check comes last.
	got := make(map[string]int)
	var mu sync.Mutex
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for r := range s.Results() {
			mu.Lock()
			got[r.TaskID]++
			mu.Unlock()
		}
	}()
	c.WaitFor("results flowing", 30*time.Second, func() bool { return s.Stats().ResultsDelivered >= 300 })
	l := c.Leader()
	c.Partition(l)
	c.Freeze(l)
	frozenAt := time.Now()
	before := s.Stats()
	t.Logf("froze leader n%d with %d results delivered", l+1, before.ResultsDelivered)
	c.WaitFor("a new leader", 30*time.Second, func() bool { return c.Leader() >= 0 && c.Leader() != l })
	t.Logf("n%d leads %v after the freeze", c.Leader()+1, time.Since(frozenAt).Round(time.Millisecond))
	// Without the watch nothing moves until the thaw: this would time out.
	c.WaitFor("results on the new leader while the old one is frozen", 30*time.Second, func() bool {
		return s.Stats().ResultsDelivered >= before.ResultsDelivered+500
	})
	t.Logf("500 more results %v after the freeze", time.Since(frozenAt).Round(time.Millisecond))
	close(stop)
	n := <-submitted
	c.Thaw(l)
	c.Heal()

	c.WaitFor("every result", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	})
	st := s.Stats()
	t.Logf("stats %+v", st)
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-readDone
	lost, dup := 0, 0
	for i := range n {
		switch got[fmt.Sprintf("pz-%06d", i)] {
		case 0:
			lost++
		case 1:
		default:
			dup++
		}
	}
	if lost != 0 || dup != 0 || len(got) != n {
		t.Fatalf("%d tasks submitted: %d lost, %d duplicated, %d distinct results", n, lost, dup, len(got))
	}
	if st.Reconnects == 0 {
		t.Error("the session never reconnected: the freeze did not hit its leader")
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t) // the watches ended with their streams
}

// A leader that stops answering for a while but keeps its office (no other
// node elects anyone) is not abandoned: the watch asks the other nodes,
// they name the same leader, and the session goes on on the same streams
// once the leader answers again.
func TestSlowLeaderIsNotAbandoned(t *testing.T) {
	const watch = 200 * time.Millisecond
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs(), client.WithLogger(testLogger(t)), client.WithLeaderWatch(watch))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := c.Leader()
	c.Freeze(l)
	// Work is outstanding while the leader is frozen: the batch waits for
	// its acknowledgement.
	done := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, tasks("slow", 0, 10))
		done <- err
	}()
	// Hold the freeze for several watch periods, so the watch probes.
	time.Sleep(10 * watch)
	c.Thaw(l)
	if err := <-done; err != nil {
		t.Fatalf("submit: %v", err)
	}
	runWorkers(t, c.Addrs(), 1, echo)
	receive(t, ctx, s, 10)
	if st := s.Stats(); st.Reconnects != 0 || st.BatchesResent != 0 {
		t.Errorf("stats %+v: the session left a leader that was only slow", st)
	}
	if c.Leader() != l {
		t.Errorf("leader changed from n%d to n%d: the test did not freeze a leader that stayed", l+1, c.Leader()+1)
	}
}
