// Package leakcheck fails a test binary whose goroutines outlive its tests.
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Main runs the tests and then waits up to 10 s for every goroutine they
// started to end; it exits non-zero and prints the stacks of those that do
// not.
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := wait(10 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func wait(timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		leaked := foreign()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		<-tick.C
	}
}

func foreign() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		// A killed node's raft never answers commands it committed but had
		// not yet applied; the cluster's await helper then stays blocked
		// (see cluster.(*Node).await). Only Kill, a simulated crash, does it.
		if strings.Contains(g, "cluster.(*Node).await.func1") &&
			(strings.Contains(g, "raft.(*logFuture).Error") || strings.Contains(g, "raft.(*deferError).Error")) {
			continue
		}
		if strings.Contains(g, "testing.(*M).Run") || strings.Contains(g, "leakcheck.Main") ||
			strings.Contains(g, "runtime.goexit") && strings.Contains(g, "os/signal") ||
			strings.Contains(g, "testing.runFuzzTests") || strings.TrimSpace(g) == "" {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}
