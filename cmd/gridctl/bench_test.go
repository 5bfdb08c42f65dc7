package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
)

// lastJSON parses the last line of bench's output, failing unless it is
// the report.
func lastJSON(t *testing.T, out string) benchReport {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	var r benchReport
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("the last line is not the JSON report: %v\n%s", err, out)
	}
	return r
}

// checkReport holds bench to its promise; timings are not asserted.
func checkReport(t *testing.T, r benchReport, tasks int) {
	t.Helper()
	if r.Tasks != tasks || r.Acked != tasks || r.Results != tasks || r.Duplicates != 0 || r.Missing != 0 || r.DeadLetters != 0 {
		t.Fatalf("report %+v: want every one of %d tasks acknowledged and answered once", r, tasks)
	}
	if r.Seconds <= 0 || r.TasksPerSec <= 0 || r.P50Ms <= 0 || r.P99Ms < r.P50Ms || r.Session == "" {
		t.Fatalf("report %+v: figures missing", r)
	}
}

func TestBench(t *testing.T) {
	noLeaks(t)
	c := testcluster.Start(t, 3, testcluster.Options{})
	addr := strings.Join(c.Addrs(), ",")
	cases := []struct {
		mode  string
		tasks int
		args  []string
	}{
		{"batched", 3000, []string{"--batch", "50", "--submitters", "3"}},
		{"unbatched", 400, []string{"--submitters", "8"}},
		{"pingpong", 60, nil},
	}
	for _, tc := range cases {
		t.Run(tc.mode, func(t *testing.T) {
			args := append([]string{"--addr", addr, "bench", "--mode", tc.mode, "--tasks", strconv.Itoa(tc.tasks),
				"--workers", "2", "--payload", "100"}, tc.args...)
			code, out, errOut := run(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, s := range []string{"throughput", "latency", "p99"} {
				if !strings.Contains(out, s) {
					t.Errorf("table lacks %q", s)
				}
			}
			checkReport(t, lastJSON(t, out), tc.tasks)
		})
	}
	t.Run("json output is the report alone", func(t *testing.T) {
		code, out, errOut := run(t, nil, "--addr", addr, "-o", "json", "bench", "--tasks", "100", "--workers", "1")
		if code != 0 || strings.Count(out, "\n") != 1 {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		checkReport(t, lastJSON(t, out), 100)
	})
	t.Run("bad flags", func(t *testing.T) {
		code, _, errOut := run(t, nil, "--addr", addr, "bench", "--mode", "fast")
		if code != 1 || !strings.Contains(errOut, `--mode "fast": want batched, unbatched or pingpong`) {
			t.Fatalf("exit %d, %q", code, errOut)
		}
	})
	// Every bench session was closed at the end of its run.
	out := ok(t, "--addr", addr, "-o", "json", "session", "list")
	if n := len(parse(t, out, &griddpb.ListSessionsResponse{}).GetSessions()); n != 0 {
		t.Fatalf("%d bench sessions left open", n)
	}
}

// TestBenchLeaderKill kills the leader while bench runs: bench must end
// with every acknowledged task answered exactly once.
func TestBenchLeaderKill(t *testing.T) {
	benchWithLeaderFault(t, "the kill", func(c *testcluster.Cluster, l int) {
		c.Kill(l)
	})
}

// benchWithLeaderFault runs bench on a 3-node cluster, applies fault to
// the leader once a fifth of the results are in (watching the bench
// session's counts through a surviving connection), and checks bench's
// report: every acknowledged task answered exactly once.
func benchWithLeaderFault(t *testing.T, what string, fault func(c *testcluster.Cluster, leader int)) {
	t.Helper()
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
	applied := false
	deadline := time.Now().Add(60 * time.Second)
	for !applied && time.Now().Before(deadline) {
		select {
		case <-benchDone:
			t.Fatalf("bench ended before %s; raise the task count", what)
		case <-time.After(20 * time.Millisecond):
		}
		if n := done(); n >= tasks/5 && n < tasks {
			l := c.Leader()
			if l < 0 {
				continue
			}
			t.Logf("%s: leader n%d after %d of %d results", what, l+1, n, tasks)
			fault(c, l)
			applied = true
		}
	}
	if !applied {
		t.Fatal("bench made no progress")
	}
	<-benchDone
	if code != 0 {
		t.Fatalf("bench exit %d: %s", code, errOut)
	}
	r := lastJSON(t, out)
	t.Logf("after %s: %+v", what, r)
	if r.Duplicates != 0 || r.Missing != 0 || r.Acked != tasks || r.Results != tasks {
		t.Fatalf("report %+v: %s lost or repeated results", r, what)
	}
}

// completedOfBench returns a probe of the running bench session's
// completed count, 0 while it cannot tell (no session yet, an election).
func completedOfBench(t *testing.T, c *testcluster.Cluster) func() uint64 {
	return func() uint64 {
		for i, n := range c.Nodes {
			if n.Srv == nil {
				continue
			}
			cc, err := grpc.NewClient(c.Addrs()[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			resp, err := griddpb.NewQueueClient(cc).ListSessions(ctx, &griddpb.ListSessionsRequest{})
			cancel()
			cc.Close()
			if err != nil {
				continue
			}
			for _, s := range resp.GetSessions() {
				if s.GetApp() == "gridctl-bench" {
					return s.GetCounts().GetCompleted()
				}
			}
			return 0
		}
		return 0
	}
}
