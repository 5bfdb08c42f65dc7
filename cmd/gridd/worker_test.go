package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
)

func TestWorkerHelpTeaches(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := execute(context.Background(), []string{"worker", "--help"}, noEnv, &out, &errOut); code != 0 {
		t.Fatalf("worker --help exited %d: %s", code, errOut.String())
	}
	for _, s := range []string{"--exec 'tr a-z A-Z'", "stdin", "stdout", "GRIDD_TASK_ID", "GRIDD_ATTEMPT",
		"GRIDD_WORKER_ADDR", "--timeout", "--max-output", "--drain-timeout", "/bin/sh -c"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("worker help does not mention %q", s)
		}
	}
	out.Reset()
	if code := execute(context.Background(), []string{"--help"}, noEnv, &out, &errOut); code != 0 || !strings.Contains(out.String(), "worker") {
		t.Errorf("gridd --help does not list the worker command (exit %d)", code)
	}
}

func TestWorkerBadFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"worker"}, "--exec is required"},
		{[]string{"worker", "--exec", "cat", "--concurrency", "-1"}, "--concurrency"},
		{[]string{"worker", "--exec", "cat", "--timeout", "-1s"}, "--timeout"},
		{[]string{"worker", "--exec", "cat", "--max-output", "lots"}, "max-output"},
		{[]string{"worker", "--exec", "cat", "--max-output", "0"}, "--max-output"},
		{[]string{"worker", "--exec", "cat", "--addr", " , "}, "--addr"},
		{[]string{"worker", "--exec", "cat", "--log-level", "loud"}, "--log-level"},
		{[]string{"worker", "--exec", "no-such-command-gridd"}, "no-such-command-gridd"},
		{[]string{"worker", "--exec", "cat", "--bogus"}, "see gridd worker --help"},
	} {
		var out, errOut bytes.Buffer
		code := execute(context.Background(), tt.args, noEnv, &out, &errOut)
		msg := strings.TrimSpace(errOut.String())
		if code != 1 || !strings.HasPrefix(msg, "gridd: ") || !strings.Contains(msg, tt.want) || strings.Count(msg, "\n") != 0 {
			t.Errorf("%q: exit %d, stderr %q; want 1 and one line mentioning %q", tt.args, code, msg, tt.want)
		}
	}
}

// gridd worker against a real node, its address from GRIDD_WORKER_ADDR:
// tasks come back upper-cased, and cancelling the command (what SIGTERM
// does) drains it and exits 0.
func TestWorkerRunsTasksAndDrains(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	env := map[string]string{workerAddrEnv: strings.Join(c.Addrs(), ",")}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var out, errOut syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- execute(wctx, []string{"worker", "--exec", "tr a-z A-Z", "--concurrency", "3", "--id", "w-exec"}, lookup, &out, &errOut)
	}()

	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cl.Close() }()
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20
	tasks := make([]client.Task, n)
	for i := range tasks {
		tasks[i] = client.Task{ID: fmt.Sprintf("t%d", i), Payload: fmt.Appendf(nil, "payload %d", i)}
	}
	if _, err := s.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(got) < n {
		select {
		case r := <-s.Results():
			got[r.TaskID] = string(r.Payload)
		case d := <-s.DeadLetters():
			t.Fatalf("dead letter %s: %q\n%s", d.TaskID, d.Errors, errOut.String())
		case <-ctx.Done():
			t.Fatalf("%d of %d results\n%s", len(got), n, errOut.String())
		}
	}
	for i := range n {
		if want := fmt.Sprintf("PAYLOAD %d", i); got[fmt.Sprintf("t%d", i)] != want {
			t.Errorf("task t%d: %q, want %q", i, got[fmt.Sprintf("t%d", i)], want)
		}
	}

	stop()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("drained worker exited %d:\n%s", code, errOut.String())
		}
	case <-ctx.Done():
		t.Fatal("gridd worker did not stop after its context was cancelled")
	}
	if logs := errOut.String(); !strings.Contains(logs, "exec worker stopped") || !strings.Contains(logs, "w-exec") {
		t.Fatalf("no stopped line naming the worker:\n%s", logs)
	}
}
