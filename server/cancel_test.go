package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"github.com/gridd/gridd/server"
	"google.golang.org/grpc/codes"
)

// follower returns the index of a live node that does not lead.
func follower(c *testcluster.Cluster) int {
	l := c.WaitLeader()
	for i, n := range c.Nodes {
		if i != l && n.Srv != nil {
			return i
		}
	}
	return -1
}

func states(infos []client.TaskInfo) map[string]client.TaskState {
	out := map[string]client.TaskState{}
	for _, ti := range infos {
		out[ti.ID] = ti.State
	}
	return out
}

// TestCancelAndTaskStates walks tasks through every public state on a
// three-node cluster, asking a follower (which forwards to the leader):
// pending, running on a named worker, failed, completed, cancelled, not
// found. A cancelled running task's late result is ignored.
func TestCancelAndTaskStates(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f := follower(c)
	cl, err := client.Dial(ctx, []string{c.Nodes[f].Cfg.GRPCAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// A long backoff keeps the failed task waiting where a dispatcher
	// honours not-before times.
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 3, RetryBackoffMs: 60_000, RetryBackoffMaxMs: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "hang", "ok", "flaky"}
	var tasks []client.Task
	for _, id := range ids {
		tasks = append(tasks, client.Task{ID: id, Payload: []byte(id)})
	}
	if _, err := sess.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	infos, err := sess.Tasks(ctx, "a", "zzz")
	if err != nil {
		t.Fatal(err)
	}
	if st := states(infos); st["a"] != client.TaskPending || st["zzz"] != client.TaskNotFound || infos[0].ID != "a" {
		t.Fatalf("before any worker: %+v", infos)
	}
	n, err := sess.Cancel(ctx, "a", "b", "unknown")
	if err != nil || n != 2 {
		t.Fatalf("cancel a, b, unknown: %d, %v; want 2", n, err)
	}
	if n, err := sess.Cancel(ctx, "a"); err != nil || n != 0 {
		t.Fatalf("cancelling again: %d, %v; want 0", n, err)
	}

	release := make(chan struct{})
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	startWorkers(t, c.Addrs(), 1, func(wctx context.Context, tk worker.Task) ([]byte, error) {
		switch {
		case tk.ID == "a" || tk.ID == "b":
			t.Errorf("cancelled task %s was dispatched", tk.ID)
		case tk.ID == "hang", tk.ID == "flaky" && tk.Attempt > 1:
			select {
			case <-release:
			case <-wctx.Done():
			}
		case tk.ID == "flaky":
			return nil, errors.New("boom")
		}
		return []byte("done:" + tk.ID), nil
	})
	var got sync.Map
	go func() {
		for r := range sess.Results() {
			got.Store(r.TaskID, string(r.Payload))
		}
	}()
	c.WaitFor("ok completed, hang running", 30*time.Second, func() bool {
		infos, err := sess.Tasks(ctx, "ok", "hang")
		return err == nil && infos[0].State == client.TaskCompleted && infos[1].State == client.TaskRunning
	})
	infos, err = sess.Tasks(ctx, ids...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("states: %+v", infos)
	want := map[string]client.TaskState{"a": client.TaskCancelled, "b": client.TaskCancelled,
		"hang": client.TaskRunning, "ok": client.TaskCompleted}
	for i, id := range ids {
		if infos[i].ID != id {
			t.Fatalf("answer %d is %q, want %q: order must follow the request", i, infos[i].ID, id)
		}
		if w, ok := want[id]; ok && infos[i].State != w {
			t.Fatalf("%s: %v, want %v", id, infos[i].State, w)
		}
	}
	if infos[2].WorkerID != "w0" {
		t.Fatalf("hang runs on %q, want w0", infos[2].WorkerID)
	}
	c.WaitFor("flaky failed once", 30*time.Second, func() bool {
		infos, err := sess.Tasks(ctx, "flaky")
		return err == nil && infos[0].Attempts == 1
	})
	infos, _ = sess.Tasks(ctx, "flaky")
	fl := infos[0]
	if (fl.State != client.TaskFailed && fl.State != client.TaskRunning) || len(fl.Errors) != 1 ||
		fl.Errors[0] != "boom" || fl.NotBefore.IsZero() {
		t.Fatalf("flaky after one failure: %+v", fl)
	}

	n, err = sess.CancelAll(ctx)
	if err != nil || n != 2 {
		t.Fatalf("cancel all: %d, %v; want 2 (hang and flaky)", n, err)
	}
	releaseOnce.Do(func() { close(release) })
	info, err := cl.GetSession(ctx, sess.ID())
	if err != nil {
		t.Fatal(err)
	}
	if cn := info.GetCounts(); cn.GetCancelled() != 4 || cn.GetPending() != 0 || cn.GetCompleted() != 1 {
		t.Fatalf("counts after cancel all: %v", cn)
	}
	c.WaitFor("ok's result", 30*time.Second, func() bool { _, ok := got.Load("ok"); return ok })
	// The released handlers answer now; their results must be ignored.
	time.Sleep(300 * time.Millisecond)
	infos, _ = sess.Tasks(ctx, "hang", "flaky")
	if infos[0].State != client.TaskCancelled || infos[1].State != client.TaskCancelled {
		t.Fatalf("a late result revived a cancelled task: %+v", infos)
	}
	if info, _ := cl.GetSession(ctx, sess.ID()); info.GetCounts().GetCompleted() != 1 {
		t.Fatalf("late results were counted: %v", info.GetCounts())
	}
}

// TestCancelFreesInflightSlots: a client at its in-flight bound is not
// stuck behind tasks it cancelled, since they will never have an outcome.
func TestCancelFreesInflightSlots(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, nil, client.WithMaxInflightTasks(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Submit(ctx, []client.Task{{ID: "1"}, {ID: "2"}}); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = sess.Submit(short, []client.Task{{ID: "3"}})
	stop()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a third task at the bound of 2: %v; want it to wait", err)
	}
	if n, err := sess.Cancel(ctx, "1"); err != nil || n != 1 {
		t.Fatalf("cancel 1: %d, %v", n, err)
	}
	if _, err := sess.Submit(ctx, []client.Task{{ID: "3"}}); err != nil {
		t.Fatalf("after a cancel the slot must be free: %v", err)
	}
	if n, err := sess.CancelAll(ctx); err != nil || n != 2 {
		t.Fatalf("cancel all: %d, %v", n, err)
	}
	if st := sess.Stats(); st.TasksInflight != 0 {
		t.Fatalf("%d tasks still in flight after cancel all", st.TasksInflight)
	}
	// Resubmitting a cancelled id is a duplicate that takes no slot.
	res, err := sess.Submit(ctx, []client.Task{{ID: "1"}, {ID: "4"}, {ID: "5"}})
	if err != nil || res.Duplicates != 1 || sess.Stats().TasksInflight != 2 {
		t.Fatalf("resubmit: %+v, %v, in flight %d", res, err, sess.Stats().TasksInflight)
	}
}

// TestCancelAndGetTasksBadInput: bad requests get InvalidArgument (or
// NotFound, FailedPrecondition) and change nothing; a retried cancel with
// the same request id is answered from the first.
func TestCancelAndGetTasksBadInput(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	s, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{SessionId: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.OpenSession(ctx, s.Id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Submit(ctx, []client.Task{{ID: "t1"}, {ID: "t2"}}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 257)
	many := make([]string, 10_001)
	for i := range many {
		many[i] = "t1"
	}
	bad := []struct {
		name string
		req  *griddpb.CancelTasksRequest
		code codes.Code
	}{
		{"no session", &griddpb.CancelTasksRequest{Ids: []string{"t1"}}, codes.InvalidArgument},
		{"nothing", &griddpb.CancelTasksRequest{SessionId: "s1"}, codes.InvalidArgument},
		{"ids and all", &griddpb.CancelTasksRequest{SessionId: "s1", Ids: []string{"t1"}, All: true}, codes.InvalidArgument},
		{"empty id", &griddpb.CancelTasksRequest{SessionId: "s1", Ids: []string{"t1", ""}}, codes.InvalidArgument},
		{"long id", &griddpb.CancelTasksRequest{SessionId: "s1", Ids: []string{long}}, codes.InvalidArgument},
		{"too many", &griddpb.CancelTasksRequest{SessionId: "s1", Ids: many}, codes.InvalidArgument},
		{"long request id", &griddpb.CancelTasksRequest{SessionId: "s1", RequestId: long, All: true}, codes.InvalidArgument},
		{"unknown session", &griddpb.CancelTasksRequest{SessionId: "nope", All: true}, codes.NotFound},
	}
	for _, tc := range bad {
		_, err := q.CancelTasks(ctx, tc.req)
		wantCode(t, "cancel: "+tc.name, err, tc.code)
	}
	badGet := []struct {
		name string
		req  *griddpb.GetTasksRequest
		code codes.Code
	}{
		{"no ids", &griddpb.GetTasksRequest{SessionId: "s1"}, codes.InvalidArgument},
		{"too many", &griddpb.GetTasksRequest{SessionId: "s1", Ids: many[:1001]}, codes.InvalidArgument},
		{"long id", &griddpb.GetTasksRequest{SessionId: "s1", Ids: []string{long}}, codes.InvalidArgument},
		{"no session", &griddpb.GetTasksRequest{Ids: []string{"t1"}}, codes.InvalidArgument},
		{"unknown session", &griddpb.GetTasksRequest{SessionId: "nope", Ids: []string{"t1"}}, codes.NotFound},
	}
	for _, tc := range badGet {
		_, err := q.GetTasks(ctx, tc.req)
		wantCode(t, "get: "+tc.name, err, tc.code)
	}
	info, _ := q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "s1"})
	if info.Counts.Pending != 2 || info.Counts.Cancelled != 0 {
		t.Fatalf("bad input changed the session: %v", info.Counts)
	}

	// A retry with the same request id changes nothing and gets the
	// first answer's count back.
	req := &griddpb.CancelTasksRequest{RequestId: "r1", SessionId: "s1", Ids: []string{"t1"}}
	for i, want := range []uint32{1, 1} {
		resp, err := q.CancelTasks(ctx, req)
		if err != nil || resp.Cancelled != want {
			t.Fatalf("cancel with request id, call %d: %v, %v; want %d", i+1, resp, err, want)
		}
	}
	info, _ = q.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: "s1"})
	if info.Counts.Pending != 1 || info.Counts.Cancelled != 1 {
		t.Fatalf("after a repeated cancel: %v", info.Counts)
	}

	if _, err := q.CloseSession(ctx, &griddpb.CloseSessionRequest{SessionId: "s1"}); err != nil {
		t.Fatal(err)
	}
	_, err = q.CancelTasks(ctx, &griddpb.CancelTasksRequest{SessionId: "s1", All: true})
	wantCode(t, "cancel in a closed session", err, codes.FailedPrecondition)
	_, err = q.GetTasks(ctx, &griddpb.GetTasksRequest{SessionId: "s1", Ids: []string{"t1"}})
	wantCode(t, "get in a closed session", err, codes.FailedPrecondition)
	// A closed session's id stays taken.
	_, err = q.CreateSession(ctx, &griddpb.CreateSessionRequest{SessionId: "s1"})
	wantCode(t, "create with a closed session's id", err, codes.AlreadyExists)
}

// TestCleanupOnClientExit: a session with cleanup_on_client_exit is closed
// when its client's results stream ends and no client comes back within
// the grace period; sessions with a client, or without the attribute, stay
// open. After an election the new leader starts the grace period of such a
// session that has no client.
func TestCleanupOnClientExit(t *testing.T) {
	// n1 bootstraps and leads first; its long grace shows that the close
	// after the election is the new leader's doing.
	c := testcluster.Start(t, 3, testcluster.Options{Configure: func(i int, cfg *server.Config) {
		cfg.ClientExitGrace = 3 * time.Second
		if i == 0 {
			cfg.ClientExitGrace = time.Hour
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if l := c.WaitLeader(); l != 0 {
		t.Fatalf("node %d leads; the test expects n1", l+1)
	}
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	// "orphan" never gets a client; "plain" has none either but no
	// attribute.
	for _, sc := range []struct {
		id      string
		cleanup bool
	}{{"orphan", true}, {"plain", false}} {
		if _, err := q.CreateSession(ctx, &griddpb.CreateSessionRequest{SessionId: sc.id,
			Attributes: &griddpb.SessionAttributes{CleanupOnClientExit: sc.cleanup}}); err != nil {
			t.Fatal(err)
		}
	}
	cl, err := client.Dial(ctx, c.Addrs(), client.WithBackoff(20*time.Millisecond, 200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	kept, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{CleanupOnClientExit: true})
	if err != nil {
		t.Fatal(err)
	}
	// Wait for kept's results stream on the leader before the election,
	// so the new leader sees it come back.
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	c.Kill(0)
	newLeader := c.WaitLeader()
	lq := griddpb.NewQueueClient(dialRaw(t, c.Nodes[newLeader].Cfg.GRPCAddr))
	closed := func(id string) bool {
		s, err := lq.GetSession(ctx, &griddpb.GetSessionRequest{SessionId: id})
		return err == nil && s.State == griddpb.SessionState_SESSION_STATE_CLOSED
	}
	c.WaitFor("the orphan session closed by the new leader", 30*time.Second, func() bool { return closed("orphan") })
	t.Logf("orphan closed %v after the leader was killed", time.Since(start))
	if closed(kept.ID()) || closed("plain") {
		t.Fatal("a session with a live client, or without cleanup_on_client_exit, was closed")
	}

	// The client leaves: its session closes after the grace period.
	if err := kept.Detach(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	c.WaitFor("the detached session closed", 30*time.Second, func() bool { return closed(kept.ID()) })
	t.Logf("detached session closed %v after its client left", time.Since(start))
	if closed("plain") {
		t.Fatal("a session without cleanup_on_client_exit was closed")
	}

	// A client that comes back within the grace period keeps its session.
	back, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{CleanupOnClientExit: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := back.Detach(); err != nil {
		t.Fatal(err)
	}
	again, err := cl.OpenSession(ctx, back.ID())
	if err != nil {
		t.Fatalf("reattach within the grace period: %v", err)
	}
	time.Sleep(4 * time.Second) // longer than the grace period
	if closed(again.ID()) {
		t.Fatal("a session whose client came back within the grace period was closed")
	}
}
