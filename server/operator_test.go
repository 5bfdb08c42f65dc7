package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/rpc/griddpb"
	"github.com/gridd/gridd/sdk/client"
	"github.com/gridd/gridd/sdk/worker"
	"google.golang.org/grpc/codes"
)

// TestDeadLetterOperations: tasks that fail every attempt are listed,
// retried with a fresh budget (and then succeed), or purged; workers are
// listed with their binding.
func TestDeadLetterOperations(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	var healed atomic.Bool
	startWorkers(t, c.Addrs(), 1, func(_ context.Context, tk worker.Task) ([]byte, error) {
		if strings.HasPrefix(tk.ID, "bad") && !healed.Load() {
			return nil, errors.New("poison: " + tk.ID)
		}
		return []byte("ok"), nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	sess, err := cl.CreateSession(ctx, &griddpb.SessionAttributes{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	var tasks []client.Task
	for i := 0; i < 4; i++ {
		tasks = append(tasks, client.Task{ID: fmt.Sprintf("bad%d", i)}, client.Task{ID: fmt.Sprintf("good%d", i)})
	}
	if _, err := sess.Submit(ctx, tasks); err != nil {
		t.Fatal(err)
	}
	q := griddpb.NewQueueClient(dialRaw(t, c.Nodes[0].Cfg.GRPCAddr))
	sid := sess.ID()
	c.WaitFor("4 dead letters", 30*time.Second, func() bool {
		r, err := q.ListDeadLetters(ctx, &griddpb.ListDeadLettersRequest{SessionId: sid})
		return err == nil && r.Total == 4 && len(r.DeadLetters) == 4
	})
	r, _ := q.ListDeadLetters(ctx, &griddpb.ListDeadLettersRequest{SessionId: sid, Limit: 2})
	if len(r.DeadLetters) != 2 || r.Total != 4 || !strings.HasPrefix(r.DeadLetters[0].Error, "poison: bad") {
		t.Fatalf("limited list: %v", r)
	}

	ws, err := q.ListWorkers(ctx, &griddpb.ListWorkersRequest{})
	if err != nil || len(ws.Workers) != 1 || ws.Workers[0].Id != "w0" || !ws.Workers[0].Registered {
		t.Fatalf("workers: %v %v", ws, err)
	}

	// Retry two: they run again, now successfully.
	healed.Store(true)
	rr, err := q.RetryDeadLetters(ctx, &griddpb.RetryDeadLettersRequest{SessionId: sid, Ids: []string{"bad0", "bad1", "good0"}})
	if err != nil || rr.Retried != 2 {
		t.Fatalf("retry: %v %v, want 2 retried", rr, err)
	}
	got := map[string]bool{}
	for len(got) < 6 {
		select {
		case res := <-sess.Results():
			got[res.TaskID] = true
		case <-ctx.Done():
			t.Fatalf("results after retry: %v", got)
		}
	}
	if !got["bad0"] || !got["bad1"] {
		t.Fatalf("retried tasks have no result: %v", got)
	}

	// Purge the rest.
	pr, err := q.PurgeDeadLetters(ctx, &griddpb.PurgeDeadLettersRequest{SessionId: sid})
	if err != nil || pr.Purged != 2 {
		t.Fatalf("purge: %v %v, want 2", pr, err)
	}
	r, err = q.ListDeadLetters(ctx, &griddpb.ListDeadLettersRequest{SessionId: sid})
	if err != nil || r.Total != 0 || len(r.DeadLetters) != 0 {
		t.Fatalf("after purge: %v %v", r, err)
	}

	_, err = q.RetryDeadLetters(ctx, &griddpb.RetryDeadLettersRequest{SessionId: "nope"})
	wantCode(t, "retry on an unknown session", err, codes.NotFound)
	_, err = q.ListDeadLetters(ctx, &griddpb.ListDeadLettersRequest{SessionId: sid, Limit: -1})
	wantCode(t, "negative limit", err, codes.InvalidArgument)
	_, err = q.PurgeDeadLetters(ctx, &griddpb.PurgeDeadLettersRequest{SessionId: sid, Ids: []string{""}})
	wantCode(t, "empty id", err, codes.InvalidArgument)
}
