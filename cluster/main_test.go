package cluster_test

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMain fails the run if goroutines outlive the tests: every node is
// closed by its test, so raft, the transport and the watchers must be gone.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := waitGoroutines(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

// waitGoroutines polls until only the test runner's goroutines remain and
// returns the stacks of the others if some never end.
func waitGoroutines(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := foreignGoroutines()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		<-tick.C
	}
}

func foreignGoroutines() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// A killed node's raft never answers commands it committed but had
		// not yet applied; await's helper then stays blocked (see await).
		if strings.Contains(g, "cluster.(*Node).await.func1") && strings.Contains(g, "raft.(*logFuture).Error") {
			continue
		}
		if strings.Contains(g, "testing.(*M).Run") || strings.Contains(g, "main_test.go") ||
			strings.Contains(g, "runtime.goexit") && strings.Contains(g, "os/signal") ||
			strings.Contains(g, "testing.runFuzzTests") || strings.TrimSpace(g) == "" {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}
