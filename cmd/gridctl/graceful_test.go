package main

import (
	"testing"

	"github.com/gridd/gridd/internal/testcluster"
)

// TestBenchLeaderGracefulStop stops the leader gracefully (as SIGTERM does)
// while bench runs, then restarts it: a leader exists the moment the stop
// returns, and bench's zero-loss check passes.
func TestBenchLeaderGracefulStop(t *testing.T) {
	benchWithLeaderFault(t, "the graceful stop", func(c *testcluster.Cluster, l int) {
		c.Stop(l)
		if c.Leader() < 0 {
			t.Errorf("no leader right after the graceful stop of n%d: it did not hand over", l+1)
		}
		c.Restart(l)
	})
}
