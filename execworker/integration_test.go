package execworker

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// A shell script as the worker of a real (one-node) cluster: payloads
// starting with "fail" exit 3 on every attempt and end as dead letters that
// carry each attempt's stderr; the others come back upper-cased.
func TestExecWorkerAgainstACluster(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	r := newRunner(t, Config{Shell: true, Command: `read -r p
case "$p" in fail*) echo "cannot do $p (attempt $GRIDD_ATTEMPT)" >&2; exit 3;; esac
printf '%s' "$p" | tr a-z A-Z`})
	wctx, stopWorker := context.WithCancel(ctx)
	workerDone := make(chan error, 1)
	go func() {
		workerDone <- worker.Run(wctx, worker.Options{Addrs: c.Addrs(), Concurrency: 4, Logger: testLogger(t)}, r.Handle)
	}()
	defer func() {
		stopWorker()
		if err := <-workerDone; err != nil {
			t.Errorf("worker.Run: %v", err)
		}
		checkNoLeaks(t)
	}()

	cl, err := client.Dial(ctx, c.Addrs(), client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	const n = 30
	var tasks []client.Task
	for i := range n {
		p := fmt.Sprintf("ok-%d", i)
		if i%3 == 0 {
			p = fmt.Sprintf("fail-%d", i)
		}
		tasks = append(tasks, client.Task{ID: fmt.Sprintf("t%02d", i), Payload: []byte(p)})
	}
	if _, err := s.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}

	results, dead := map[string]string{}, map[string][]string{}
	for len(results)+len(dead) < n {
		select {
		case res := <-s.Results():
			results[res.TaskID] = string(res.Payload)
		case d := <-s.DeadLetters():
			dead[d.TaskID] = d.Errors
		case <-ctx.Done():
			t.Fatalf("%d results and %d dead letters of %d tasks", len(results), len(dead), n)
		}
	}
	for i, task := range tasks {
		p := string(task.Payload)
		if i%3 != 0 {
			if got, want := results[task.ID], strings.ToUpper(p); got != want {
				t.Errorf("task %s: result %q, want %q (dead letter: %q)", task.ID, got, want, dead[task.ID])
			}
			continue
		}
		errs, ok := dead[task.ID]
		if !ok || len(errs) != 2 {
			t.Errorf("task %s: dead letter errors %q (ok %v), want one per attempt", task.ID, errs, ok)
			continue
		}
		for a, e := range errs {
			want := fmt.Sprintf("exit status 3; stderr: cannot do %s (attempt %d)", p, a+1)
			if e != want {
				t.Errorf("task %s attempt %d: error %q, want %q", task.ID, a+1, e, want)
			}
		}
	}
	if err := s.Close(ctx); err != nil {
		t.Errorf("close session: %v", err)
	}
}

// checkNoLeaks fails if goroutines of this package or of the worker SDK
// outlive a stopped worker.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if (strings.Contains(g, "gridd/gridd/execworker.") || strings.Contains(g, "gridd/gridd/sdk/worker.")) &&
				!strings.Contains(g, "_test.go") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left, e.g.:\n%s", len(left), left[0])
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}
