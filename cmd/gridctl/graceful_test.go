package main

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
)

// TestBenchLeaderGracefulStop stops the leader gracefully (as SIGTERM does)
// while bench runs, then restarts it: a leader exists the moment the stop
// returns, and bench's zero-loss check passes.
func TestBenchLeaderGracefulStop(t *testing.T) {
	noLeaks(t)
	c := testcluster.Start(t, 3, testcluster.Options{})
	const tasks = 20000
	var (
		wg          sync.WaitGroup
		code        int
		out, errOut string
		benchDone   = make(chan struct{})
	)
	wg.Go(func() {
		defer close(benchDone)
		code, out, errOut = run(t, nil, "--addr", strings.Join(c.Addrs(), ","), "bench", "--tasks", strconv.Itoa(tasks),
			"--batch", "20", "--submitters", "2", "--workers", "2", "--drain-timeout", "30s")
	})
	defer wg.Wait()

	done := completedOfBench(t, c)
	stopped := false
	deadline := time.Now().Add(60 * time.Second)
	for !stopped && time.Now().Before(deadline) {
		select {
		case <-benchDone:
			t.Fatal("bench ended before the leader was stopped; raise the task count")
		case <-time.After(20 * time.Millisecond):
		}
		if n := done(); n >= tasks/5 && n < tasks {
			l := c.Leader()
			if l < 0 {
				continue
			}
			t.Logf("stopping leader n%d gracefully after %d of %d results", l+1, n, tasks)
			c.Stop(l)
			if c.Leader() < 0 {
				t.Errorf("no leader right after the graceful stop of n%d: it did not hand over", l+1)
			}
			c.Restart(l)
			stopped = true
		}
	}
	if !stopped {
		t.Fatal("bench made no progress")
	}
	<-benchDone
	if code != 0 {
		t.Fatalf("bench exit %d: %s", code, errOut)
	}
	r := lastJSON(t, out)
	t.Logf("after the graceful stop: %+v", r)
	if r.Duplicates != 0 || r.Missing != 0 || r.Acked != tasks || r.Results != tasks {
		t.Fatalf("report %+v: the leader's graceful stop lost or repeated results", r)
	}
}
