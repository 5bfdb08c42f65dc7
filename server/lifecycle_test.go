package server_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
)

// runWorker runs one SDK worker until the returned stop is called or the
// test ends.
func runWorker(t *testing.T, addrs []string, id string, h worker.Handler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = worker.Run(ctx, worker.Options{Addrs: addrs, WorkerID: id, Concurrency: 1,
			DrainTimeout: time.Second}, h)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func lifecycleSession(t *testing.T, ctx context.Context, c *testcluster.Cluster, attrs *griddpb.SessionAttributes) *client.Session {
	t.Helper()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	sess, err := cl.CreateSession(ctx, attrs)
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// taskStatus reads a task's replicated state on the current leader.
func taskStatus(c *testcluster.Cluster, session, id string) (fsm.TaskStatus, fsm.SessionInfo) {
	l := c.Leader()
	if l < 0 {
		return fsm.TaskStatus{}, fsm.SessionInfo{}
	}
	f := c.Nodes[l].Srv.Node().FSM()
	st, _ := f.TaskStatuses(session, []string{id})
	info, _ := f.Session(session)
	if len(st) == 0 {
		return fsm.TaskStatus{}, info
	}
	return st[0], info
}

func waitResult(t *testing.T, ctx context.Context, sess *client.Session) client.Result {
	t.Helper()
	select {
	case r := <-sess.Results():
		return r
	case d := <-sess.DeadLetters():
		t.Fatalf("task %s dead-lettered: %q", d.TaskID, d.Errors)
	case <-ctx.Done():
		t.Fatal("no result before the test deadline")
	}
	return client.Result{}
}

// A failed task's retry backoff is replicated: the leader is killed while
// the task waits, and the new leader still does not run it before its
// not-before time.
func TestRetryDelaySurvivesLeaderKill(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// A 6 s backoff waits 3..6 s: ample time to kill the leader and elect
	// another before the retry is due.
	sess := lifecycleSession(t, ctx, c, &griddpb.SessionAttributes{RetryBackoffMs: 6000, MaxAttempts: 3})
	var secondStart atomic.Int64
	runWorker(t, c.Addrs(), "w1", func(_ context.Context, tk worker.Task) ([]byte, error) {
		if tk.Attempt == 1 {
			return nil, errors.New("first attempt fails")
		}
		secondStart.CompareAndSwap(0, time.Now().UnixMilli())
		return []byte("ok"), nil
	})
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}

	var st fsm.TaskStatus
	c.WaitFor("the first attempt's failure", 30*time.Second, func() bool {
		st, _ = taskStatus(c, sess.ID(), "t1")
		return st.Attempts == 1 && st.NotBeforeUnixMs > 0
	})
	old := c.WaitLeader()
	c.Kill(old)
	killedAt := time.Now().UnixMilli()
	if killedAt >= st.NotBeforeUnixMs {
		t.Fatalf("the leader was killed at %d, after the retry was due (%d): the test proves nothing", killedAt, st.NotBeforeUnixMs)
	}
	nl := c.WaitLeader()
	t.Logf("killed n%d at %d; n%d leads; not-before %d", old+1, killedAt, nl+1, st.NotBeforeUnixMs)

	r := waitResult(t, ctx, sess)
	if r.TaskID != "t1" || r.Attempt != 2 {
		t.Fatalf("result %s attempt %d, want t1 attempt 2", r.TaskID, r.Attempt)
	}
	started := secondStart.Load()
	t.Logf("second attempt started %d ms after its not-before", started-st.NotBeforeUnixMs)
	if started < st.NotBeforeUnixMs {
		t.Fatalf("the new leader ran the retry at %d, before its not-before %d", started, st.NotBeforeUnixMs)
	}
}

// A worker whose handler hangs holds its task past task_timeout_ms: the
// leader counts a timed-out attempt, tells the worker to stop (its handler
// context is cancelled) and the task completes on another worker.
func TestHungWorkerTaskTimesOut(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// One batch in flight per worker, so that the hung worker does not
	// take t2 as well while it is stuck on t1.
	sess := lifecycleSession(t, ctx, c, &griddpb.SessionAttributes{TaskTimeoutMs: 1000, RetryBackoffMs: 10,
		MaxAttempts: 10, MaxInflightBatchesPerWorker: 1})

	hungStarted := make(chan struct{}, 16)
	var stopsSeen atomic.Int64
	release := make(chan struct{})
	defer close(release)
	runWorker(t, c.Addrs(), "hung", func(ctx context.Context, _ worker.Task) ([]byte, error) {
		hungStarted <- struct{}{}
		<-ctx.Done() // hangs until the server stops the task
		stopsSeen.Add(1)
		<-release // and keeps its slot: it is hung
		return []byte("hung"), nil
	})
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hungStarted:
	case <-ctx.Done():
		t.Fatal("the hung worker never got the task")
	}
	runWorker(t, c.Addrs(), "good", func(_ context.Context, tk worker.Task) ([]byte, error) {
		return []byte("good"), nil
	})
	// With two tasks ready once t1 times out, placement gives the session
	// a second worker; the hung one takes nothing while its handler has
	// not ended.
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t2", Payload: []byte("y")}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]client.Result{}
	for len(got) < 2 {
		r := waitResult(t, ctx, sess)
		got[r.TaskID] = r
	}
	if r := got["t1"]; string(r.Payload) != "good" || r.Attempt != 2 {
		t.Fatalf("t1: %q attempt %d, want the good worker's result of attempt 2", r.Payload, r.Attempt)
	}
	if r := got["t2"]; string(r.Payload) != "good" {
		t.Fatalf("t2: %q, want the good worker's result", r.Payload)
	}
	c.WaitFor("the hung handler to be stopped", 30*time.Second, func() bool { return stopsSeen.Load() >= 1 })
	var info fsm.SessionInfo
	c.WaitFor("the result to commit", 30*time.Second, func() bool {
		_, info = taskStatus(c, sess.ID(), "t1")
		return info.Completed == 2
	})
	if info.TimedOut != 1 || info.DeadLettered != 0 {
		t.Fatalf("counters %+v, want one timed-out attempt, no dead letter", info)
	}
}

// A handler that runs three times its task_timeout_ms but keeps its lease
// is not timed out.
func TestExtendedLeaseIsNotTimedOut(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess := lifecycleSession(t, ctx, c, &griddpb.SessionAttributes{TaskTimeoutMs: 1000, RetryBackoffMs: 10})
	runWorker(t, c.Addrs(), "w1", func(ctx context.Context, _ worker.Task) ([]byte, error) {
		stop := worker.KeepLease(ctx, 150*time.Millisecond)
		defer stop()
		select {
		case <-time.After(3 * time.Second): // the work
			return []byte("long"), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1", Payload: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	r := waitResult(t, ctx, sess)
	if string(r.Payload) != "long" || r.Attempt != 1 {
		t.Fatalf("result %q attempt %d, want the first attempt's", r.Payload, r.Attempt)
	}
	if _, info := taskStatus(c, sess.ID(), "t1"); info.TimedOut != 0 {
		t.Fatalf("%d timed-out attempts, want 0", info.TimedOut)
	}
	if err := worker.ExtendLease(ctx); !errors.Is(err, worker.ErrNotTask) {
		t.Fatalf("ExtendLease outside a handler: %v, want ErrNotTask", err)
	}
}

// Cancelling a running task stops its handler; its result is never
// delivered.
func TestCancelStopsRunningTask(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess := lifecycleSession(t, ctx, c, &griddpb.SessionAttributes{})
	started, stopped := make(chan struct{}, 1), make(chan struct{}, 1)
	runWorker(t, c.Addrs(), "w1", func(ctx context.Context, tk worker.Task) ([]byte, error) {
		if tk.ID != "t1" {
			return []byte("ok"), nil
		}
		started <- struct{}{}
		<-ctx.Done()
		stopped <- struct{}{}
		return []byte("late"), nil // dropped: the task was cancelled
	})
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the task never started")
	}
	// The CancelTasks RPC is another change; propose the command itself.
	l := c.WaitLeader()
	if _, err := c.Nodes[l].Srv.Node().Propose(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_CancelTasks{
		CancelTasks: &fsmpb.CancelTasks{SessionId: sess.ID(), TaskIds: []string{"t1"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-stopped:
	case <-ctx.Done():
		t.Fatal("the cancelled task's handler was not stopped")
	}
	// A task submitted after it completes; t1's late result must not
	// come first (nor at all).
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t2"}}); err != nil {
		t.Fatal(err)
	}
	if r := waitResult(t, ctx, sess); r.TaskID != "t2" {
		t.Fatalf("got a result for %s, want only t2's", r.TaskID)
	}
	c.WaitFor("t2's outcome to commit", 30*time.Second, func() bool {
		_, info := taskStatus(c, sess.ID(), "t1")
		return info.Completed == 1
	})
	if _, info := taskStatus(c, sess.ID(), "t1"); info.Cancelled != 1 || info.Pending != 0 {
		t.Fatalf("counters %+v, want cancelled 1, nothing pending", info)
	}
}

// A task cancelled while it waits in the worker for a free slot never
// starts, and the worker's stream is not held up by it.
func TestCancelQueuedTaskNeverStarts(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sess := lifecycleSession(t, ctx, c, &griddpb.SessionAttributes{})
	started := make(chan string, 16)
	release := make(chan struct{})
	runWorker(t, c.Addrs(), "w1", func(ctx context.Context, tk worker.Task) ([]byte, error) {
		started <- tk.ID
		if tk.ID == "t1" {
			<-release
		}
		return []byte("ok"), nil
	})
	// One batch: the worker (one slot) runs t1 and holds t2 back.
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1"}, {ID: "t2"}}); err != nil {
		t.Fatal(err)
	}
	if id := <-started; id != "t1" {
		t.Fatalf("%s started first, want t1", id)
	}
	l := c.WaitLeader()
	if _, err := c.Nodes[l].Srv.Node().Propose(ctx, &fsmpb.Command{Cmd: &fsmpb.Command_CancelTasks{
		CancelTasks: &fsmpb.CancelTasks{SessionId: sess.ID(), TaskIds: []string{"t2"}}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t3"}}); err != nil {
		t.Fatal(err)
	}
	close(release)
	got := map[string]bool{}
	for len(got) < 2 {
		got[waitResult(t, ctx, sess).TaskID] = true
	}
	if !got["t1"] || !got["t3"] {
		t.Fatalf("results %v, want t1 and t3", got)
	}
	for {
		select {
		case id := <-started:
			if id == "t2" {
				t.Fatal("the cancelled task t2 started")
			}
			continue
		default:
		}
		break
	}
}
