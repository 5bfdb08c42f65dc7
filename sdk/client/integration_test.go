package client_test

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

// These tests run real gridd nodes in-process (internal/testcluster): real
// Raft, bbolt files and gRPC on loopback.

func echo(_ context.Context, t worker.Task) ([]byte, error) {
	return append([]byte("done:"), t.Payload...), nil
}

// runWorkers runs n SDK workers until the test ends.
func runWorkers(t *testing.T, addrs []string, n int, h worker.Handler) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := testLogger(t)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: fmt.Sprintf("%s-w%d", t.Name(), i),
				Concurrency: 4, HeartbeatInterval: 200 * time.Millisecond, Logger: log}, h)
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

func dial(t *testing.T, ctx context.Context, addrs []string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, addrs, client.WithBackoff(20*time.Millisecond, 500*time.Millisecond),
		client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func tasks(prefix string, from, n int) []client.Task {
	ts := make([]client.Task, n)
	for i := range ts {
		id := fmt.Sprintf("%s-%06d", prefix, from+i)
		ts[i] = client.Task{ID: id, Payload: []byte(id)}
	}
	return ts
}

// receive reads n results (or fails at the deadline) and checks each
// payload; it returns the results by task id.
func receive(t *testing.T, ctx context.Context, s *client.Session, n int) map[string]client.Result {
	t.Helper()
	got := make(map[string]client.Result, n)
	for len(got) < n {
		select {
		case r, ok := <-s.Results():
			if !ok {
				t.Fatalf("results closed after %d of %d", len(got), n)
			}
			if _, dup := got[r.TaskID]; dup {
				t.Fatalf("result of %s delivered twice", r.TaskID)
			}
			if string(r.Payload) != "done:"+r.TaskID {
				t.Fatalf("result of %s has payload %q", r.TaskID, r.Payload)
			}
			got[r.TaskID] = r
		case <-ctx.Done():
			t.Fatalf("got %d of %d results: %v", len(got), n, ctx.Err())
		}
	}
	return got
}

// sdkGoroutines lists the goroutines running SDK code.
func sdkGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "gridd/gridd/sdk/client.") && !strings.Contains(g, "_test.go") {
			out = append(out, g)
		}
	}
	return out
}

// checkNoLeaks waits until no goroutine runs SDK code.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		gs := sdkGoroutines()
		if len(gs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d SDK goroutines left after Close, e.g.:\n%s", len(gs), gs[0])
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestSubmitAndResultsRoundTrip(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 2, echo)

	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{Priority: 7}, client.WithApp("roundtrip"),
		client.WithMaxBatch(64, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	var wg sync.WaitGroup
	for g := range 4 { // concurrent Submits share the session's stream
		wg.Go(func() {
			res, err := s.Submit(ctx, tasks("rt", g*n/4, n/4))
			if err != nil || res.Accepted != n/4 || res.Duplicates != 0 {
				t.Errorf("submit %d: %+v, %v", g, res, err)
			}
		})
	}
	wg.Wait()
	got := receive(t, ctx, s, n)
	for id, r := range got {
		if r.Attempt != 1 {
			t.Errorf("%s: attempt %d, want 1", id, r.Attempt)
		}
	}
	// The deliverer counts a result just after the application took it.
	c.WaitFor("stats", 10*time.Second, func() bool { return s.Stats().ResultsDelivered == n })
	if st := s.Stats(); st.TasksAccepted != n || st.BatchesPending != 0 || st.ResultRepeats != 0 {
		t.Errorf("stats %+v", st)
	}
	info, err := cl.GetSession(ctx, s.ID())
	if err != nil || info.GetApp() != "roundtrip" || info.GetAttributes().GetPriority() != 7 ||
		info.GetCounts().GetSubmitted() != n {
		t.Fatalf("GetSession: %v, %v", info, err)
	}
	// Acknowledgements reach the server: it drops the results it holds.
	c.WaitFor("results acknowledged", 10*time.Second, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetResultsUnacked() == 0
	})
	checkClosed(t, ctx, cl, s)
}

// checkClosed closes s and checks what the application sees afterwards.
func checkClosed(t *testing.T, ctx context.Context, cl *client.Client, s *client.Session) {
	t.Helper()
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-s.Results(); ok {
		t.Fatal("results channel open after Close")
	}
	if _, err := s.Submit(ctx, tasks("late", 0, 1)); !errors.Is(err, client.ErrDetached) ||
		status.Code(err) != codes.Canceled {
		t.Fatalf("Submit after Close: %v", err)
	}
	info, err := cl.GetSession(ctx, s.ID())
	if err != nil || info.GetState() != griddpb.SessionState_SESSION_STATE_CLOSED {
		t.Fatalf("after Close: %v, %v", info, err)
	}
	open, err := cl.ListSessions(ctx, false)
	if err != nil || len(open) != 0 {
		t.Fatalf("open sessions after Close: %v, %v", open, err)
	}
	all, err := cl.ListSessions(ctx, true)
	if err != nil || len(all) != 1 {
		t.Fatalf("all sessions: %v, %v", all, err)
	}
}

// Resubmitting task ids the session has is acknowledged as duplicates and
// runs nothing again.
func TestDuplicateResubmission(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	batch := tasks("dup", 0, 200)
	if res, err := s.Submit(ctx, batch); err != nil || res.Accepted != 200 {
		t.Fatalf("first submit: %+v, %v", res, err)
	}
	// Again, before any worker ran them, and again overlapping new ids.
	if res, err := s.Submit(ctx, batch); err != nil || res.Accepted != 0 || res.Duplicates != 200 {
		t.Fatalf("resubmit: %+v, %v", res, err)
	}
	if res, err := s.Submit(ctx, tasks("dup", 100, 200)); err != nil || res.Accepted != 100 || res.Duplicates != 100 {
		t.Fatalf("overlapping submit: %+v, %v", res, err)
	}
	runWorkers(t, c.Addrs(), 1, echo)
	receive(t, ctx, s, 300)
	// Resubmitting tasks that completed changes nothing either.
	if res, err := s.Submit(ctx, batch); err != nil || res.Duplicates != 200 {
		t.Fatalf("resubmit after completion: %+v, %v", res, err)
	}
	info, err := cl.GetSession(ctx, s.ID())
	if err != nil || info.GetCounts().GetSubmitted() != 300 {
		t.Fatalf("submitted = %d (%v), want 300", info.GetCounts().GetSubmitted(), err)
	}
	select {
	case r := <-s.Results():
		t.Fatalf("extra result %s after duplicates", r.TaskID)
	default:
	}
}

// A handler that always fails dead-letters each task after max_attempts,
// with every attempt's error, once.
func TestDeadLetters(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 1, func(_ context.Context, task worker.Task) ([]byte, error) {
		return nil, fmt.Errorf("boom %d", task.Attempt)
	})
	s, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	if _, err := s.Submit(ctx, tasks("dl", 0, n)); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for len(seen) < n {
		select {
		case d := <-s.DeadLetters():
			if seen[d.TaskID] {
				t.Fatalf("dead letter %s delivered twice", d.TaskID)
			}
			seen[d.TaskID] = true
			if d.Attempts != 2 || len(d.Errors) != 2 || d.Errors[0] != "boom 1" || d.Errors[1] != "boom 2" {
				t.Fatalf("dead letter %+v", d)
			}
			if string(d.Payload) != d.TaskID {
				t.Fatalf("dead letter %s payload %q", d.TaskID, d.Payload)
			}
		case r := <-s.Results():
			t.Fatalf("unexpected result %s", r.TaskID)
		case <-ctx.Done():
			t.Fatalf("%d of %d dead letters", len(seen), n)
		}
	}
	c.WaitFor("dead letters acknowledged", 10*time.Second, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetDeadLettersUnacked() == 0 && info.GetCounts().GetDeadLettered() == n
	})
}

// Input the server refuses fails the call with its code, without retries.
func TestErrorsCarryStatusCodes(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	if _, err := cl.GetSession(ctx, "no-such-session"); status.Code(err) != codes.NotFound {
		t.Fatalf("GetSession of an unknown id: %v", err)
	}
	if _, err := cl.OpenSession(ctx, "no-such-session"); status.Code(err) != codes.NotFound {
		t.Fatalf("OpenSession of an unknown id: %v", err)
	}
	if _, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{Priority: 11}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("CreateSession with priority 11: %v", err)
	}
	s, err := cl.CreateSession(ctx, nil, client.WithSessionID("fixed-id"))
	if err != nil || s.ID() != "fixed-id" {
		t.Fatalf("CreateSession with an id: %v", err)
	}
	if _, err := cl.CreateSession(ctx, nil, client.WithSessionID("fixed-id")); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("CreateSession with a taken id: %v", err)
	}
	// A rejected batch fails its Submit with the server's code; the
	// session keeps working.
	if _, err := s.Submit(ctx, []client.Task{{ID: strings.Repeat("x", 300)}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Submit of a 300-byte id: %v", err)
	}
	if res, err := s.Submit(ctx, tasks("ok", 0, 3)); err != nil || res.Accepted != 3 {
		t.Fatalf("Submit after a rejection: %+v, %v", res, err)
	}
	short, cancelShort := context.WithTimeout(ctx, time.Nanosecond)
	defer cancelShort()
	<-short.Done()
	if _, err := cl.GetSession(short, s.ID()); status.Code(err) != codes.DeadlineExceeded ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("GetSession with an expired context: %v", err)
	}
	if _, err := cl.UpdateSession(ctx, s.ID(), &griddpb.SessionUpdate{MaxAttempts: ptr(int32(5))}); err != nil {
		t.Fatalf("UpdateSession: %v", err)
	}
	if info, err := cl.GetSession(ctx, s.ID()); err != nil || info.GetAttributes().GetMaxAttempts() != 5 {
		t.Fatalf("after update: %v, %v", info, err)
	}
}

func ptr[T any](v T) *T { return &v }

// Dial fails, with Unavailable, when nothing answers.
func TestDialNothingListening(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Dial(ctx, []string{"127.0.0.1:1"}, client.WithCallTimeout(300*time.Millisecond))
	if err == nil || (status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded) {
		t.Fatalf("Dial: %v", err)
	}
	checkNoLeaks(t)
}

// Results not read before Detach stay with the server and reach the next
// attachment; those read are not delivered again.
func TestDetachAndReopen(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 1, echo)
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	if _, err := s.Submit(ctx, tasks("re", 0, n)); err != nil {
		t.Fatal(err)
	}
	first := receive(t, ctx, s, n/2)
	// Let the remaining results complete on the server before detaching.
	c.WaitFor("all tasks completed", 30*time.Second, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetCompleted() == n
	})
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := s.Detach(); !errors.Is(err, client.ErrDetached) {
		t.Fatalf("second Detach: %v", err)
	}
	s2, err := cl.OpenSession(ctx, s.ID())
	if err != nil {
		t.Fatal(err)
	}
	rest := receive(t, ctx, s2, n-len(first))
	for id := range rest {
		if _, ok := first[id]; ok {
			t.Fatalf("%s delivered to both attachments", id)
		}
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-s2.Results(); ok {
		t.Fatal("results open after Client.Close")
	}
	checkNoLeaks(t)
}

// The promise across failover: with the leader killed while tasks flow,
// every submitted task's result reaches the application exactly once.
func TestResultsExactlyOnceAcrossLeaderKill(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 2, echo)
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n, batch = 3000, 50
	submitted := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += batch {
			if _, err := s.Submit(ctx, tasks("fo", i, batch)); err != nil {
				submitted <- err
				return
			}
		}
		submitted <- nil
	}()
	got := make(map[string]bool, n)
	killed := false
	for len(got) < n {
		select {
		case r, ok := <-s.Results():
			if !ok {
				t.Fatalf("results closed after %d", len(got))
			}
			if got[r.TaskID] {
				t.Fatalf("result of %s delivered twice", r.TaskID)
			}
			if string(r.Payload) != "done:"+r.TaskID {
				t.Fatalf("result of %s has payload %q", r.TaskID, r.Payload)
			}
			got[r.TaskID] = true
		case <-ctx.Done():
			t.Fatalf("%d of %d results (stats %+v)", len(got), n, s.Stats())
		}
		if !killed && len(got) >= n/3 {
			killed = true
			l := c.Leader()
			t.Logf("killing leader n%d after %d results", l+1, len(got))
			c.Kill(l)
			go c.Restart(l)
		}
	}
	if err := <-submitted; err != nil {
		t.Fatalf("submit: %v", err)
	}
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.Reconnects == 0 {
		t.Error("the session never reconnected: the kill did not hit its leader")
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
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
