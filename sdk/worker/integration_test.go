package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// These tests run real gridd nodes in-process (internal/testcluster).

func dial(t *testing.T, ctx context.Context, addrs []string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, addrs, client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tasks(prefix string, n int) []client.Task {
	ts := make([]client.Task, n)
	for i := range ts {
		id := fmt.Sprintf("%s-%04d", prefix, i)
		ts[i] = client.Task{ID: id, Payload: []byte(id)}
	}
	return ts
}

// start runs worker.Run in the background; the returned function cancels
// it and returns Run's error.
func start(t *testing.T, opts worker.Options, h worker.Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, opts, h) }()
	var once atomic.Bool
	stop = func() error {
		cancel()
		if once.Swap(true) {
			return nil
		}
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("worker.Run did not return 30s after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var left []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "gridd/gridd/sdk/worker.") && !strings.Contains(g, "_test.go") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d SDK goroutines left, e.g.:\n%s", len(left), left[0])
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestOptionsAreChecked(t *testing.T) {
	ctx := context.Background()
	if err := worker.Run(ctx, worker.Options{}, func(context.Context, worker.Task) ([]byte, error) { return nil, nil }); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no addresses: %v", err)
	}
	if err := worker.Run(ctx, worker.Options{Addrs: []string{"127.0.0.1:1"}}, nil); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("nil handler: %v", err)
	}
	// With nothing to connect to, Run keeps retrying until its context ends.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := worker.Run(cctx, worker.Options{Addrs: []string{"127.0.0.1:1"}},
		func(context.Context, worker.Task) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatalf("Run against nothing: %v, want nil when its context ends", err)
	}
	checkNoLeaks(t)
}

// A panicking handler fails the attempt ("panic: ...") and the worker goes
// on running the other tasks.
func TestHandlerPanicIsAFailedAttempt(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 2}, func(_ context.Context, task worker.Task) ([]byte, error) {
		if strings.HasSuffix(task.ID, "7") {
			panic("seven " + task.ID)
		}
		if strings.HasSuffix(task.ID, "3") {
			return nil, errors.New("")
		}
		return []byte("ok"), nil
	})
	// Every attempt of a poisoned task fails, with a short retry backoff
	// between attempts; its dead letter carries each attempt's error.
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 3, RetryBackoffMs: 5})
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	if _, err := s.Submit(ctx, tasks("p", n)); err != nil {
		t.Fatal(err)
	}
	results, dead := 0, 0
	for results+dead < n {
		select {
		case r := <-s.Results():
			if strings.HasSuffix(r.TaskID, "7") || strings.HasSuffix(r.TaskID, "3") || string(r.Payload) != "ok" {
				t.Fatalf("unexpected result %+v", r)
			}
			results++
		case d := <-s.DeadLetters():
			dead++
			want := "panic: seven " + d.TaskID
			if strings.HasSuffix(d.TaskID, "3") {
				want = "" // an empty error message still fails the attempt
			}
			if len(d.Errors) != 3 || d.Errors[0] == "" {
				t.Fatalf("dead letter %s errors %q, want 3 times %q", d.TaskID, d.Errors, want)
			}
			for _, e := range d.Errors {
				if want != "" && e != want || e != d.Errors[0] {
					t.Fatalf("dead letter %s errors %q, want 3 times %q", d.TaskID, d.Errors, want)
				}
			}
		case <-ctx.Done():
			t.Fatalf("%d results, %d dead letters of %d", results, dead, n)
		}
	}
	if dead != 20 {
		t.Fatalf("%d dead letters, want 20", dead)
	}
}

// On cancellation the worker takes no new tasks, lets running ones finish
// with a live context, sends their results and returns nil.
func TestDrainFinishesRunningTasks(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	release := make(chan struct{})
	var started, cancelled atomic.Int32
	stop := start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 4, DrainTimeout: 20 * time.Second},
		func(hctx context.Context, task worker.Task) ([]byte, error) {
			started.Add(1)
			<-release
			if hctx.Err() != nil {
				cancelled.Add(1)
			}
			return []byte("drained"), nil
		})
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(ctx, tasks("d", 4)); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("4 tasks running", 20*time.Second, func() bool { return started.Load() == 4 })
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) with tasks still running", err)
	default:
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if cancelled.Load() != 0 {
		t.Fatalf("%d handlers saw their context cancelled during the drain", cancelled.Load())
	}
	for range 4 {
		select {
		case r := <-s.Results():
			if string(r.Payload) != "drained" {
				t.Fatalf("result %+v", r)
			}
		case <-ctx.Done():
			t.Fatal("results of the drained tasks never arrived")
		}
	}
}

// Past the drain deadline, running tasks are cancelled and Run returns.
func TestDrainDeadlineCancelsTasks(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	var started, cancelled atomic.Int32
	stop := start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 2, DrainTimeout: 100 * time.Millisecond},
		func(hctx context.Context, task worker.Task) ([]byte, error) {
			started.Add(1)
			<-hctx.Done()
			cancelled.Add(1)
			return nil, hctx.Err()
		})
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(ctx, tasks("x", 2)); err != nil {
		t.Fatal(err)
	}
	c.WaitFor("2 tasks running", 20*time.Second, func() bool { return started.Load() == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	c.WaitFor("handlers cancelled", 10*time.Second, func() bool { return cancelled.Load() == 2 })
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t)
}

// testLogger sends SDK logs to t.Log, so they show only for failing tests,
// and drops lines logged after the test ended.
func testLogger(t *testing.T) *slog.Logger {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	return slog.New(slog.NewTextHandler(logWriter{t, &done}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type logWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func (w logWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// A worker bound to a session that ran out of tasks is unbound (UNBIND)
// when another session has work, and follows it there (BIND).
func TestWorkerMovesBetweenSessions(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	var ran sync.Map
	start(t, worker.Options{Addrs: c.Addrs(), Concurrency: 1, HeartbeatInterval: 100 * time.Millisecond},
		func(_ context.Context, task worker.Task) ([]byte, error) {
			ran.Store(task.SessionID+"/"+task.ID, true)
			return []byte(task.SessionID), nil
		})
	for _, name := range []string{"first", "second", "third"} {
		s, err := cl.CreateSession(ctx, nil, client.WithSessionID(name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Submit(ctx, tasks(name, 5)); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			select {
			case r := <-s.Results():
				if string(r.Payload) != name {
					t.Fatalf("result of %s says session %q, want %q", r.TaskID, r.Payload, name)
				}
			case <-ctx.Done():
				t.Fatalf("session %s: the worker never came", name)
			}
		}
	}
	n := 0
	ran.Range(func(any, any) bool { n++; return true })
	if n != 15 {
		t.Fatalf("%d distinct tasks ran, want 15", n)
	}
}
