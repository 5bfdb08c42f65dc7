package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/internal/testcluster"
	"github.com/gridd/gridd/sdk/client"
)

// Tests of issue 3's SDK features: generated ids, Add/Flush batching,
// the in-flight bound, the results iterator, and exactly-once delivery when
// the leader dies during submission, during delivery, and across a client
// restart.

// Tasks without an id get unique ULIDs, written back and returned, and
// their results carry them.
func TestGeneratedIDs(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 1, echo)
	s, err := cl.CreateSession(ctx, nil, client.WithMaxBatch(40, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	ts := make([]client.Task, n)
	for i := range ts {
		ts[i].Payload = fmt.Appendf(nil, "p%d", i)
	}
	ts[7].ID = "chosen" // ids chosen by the caller are kept
	res, err := s.Submit(ctx, ts)
	if err != nil || res.Accepted != n || len(res.IDs) != n {
		t.Fatalf("submit: %+v, %v", res, err)
	}
	want := make(map[string]string, n) // id -> payload
	for i, id := range res.IDs {
		if ts[i].ID != id {
			t.Fatalf("task %d: id %q written back, %q returned", i, ts[i].ID, id)
		}
		if _, dup := want[id]; dup {
			t.Fatalf("id %s generated twice", id)
		}
		if _, err := ulid.ParseStrict(id); err != nil && i != 7 {
			t.Fatalf("generated id %q is not a ULID: %v", id, err)
		}
		want[id] = string(ts[i].Payload)
	}
	if res.IDs[7] != "chosen" {
		t.Fatalf("chosen id replaced by %q", res.IDs[7])
	}
	// Add generates ids too; the result names it.
	if err := s.Add(ctx, client.Task{Payload: []byte("added")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := 0
	for r, err := range s.All(ctx) {
		if err != nil {
			t.Fatalf("after %d results: %v", got, err)
		}
		p, ok := want[r.TaskID]
		switch {
		case ok && string(r.Payload) != "done:"+p:
			t.Fatalf("result %s: payload %q", r.TaskID, r.Payload)
		case !ok && string(r.Payload) != "done:added":
			t.Fatalf("unexpected result %s %q", r.TaskID, r.Payload)
		case !ok:
			if _, err := ulid.ParseStrict(r.TaskID); err != nil {
				t.Fatalf("Add's generated id %q: %v", r.TaskID, err)
			}
		}
		delete(want, r.TaskID)
		if got++; got == n+1 {
			break
		}
	}
	if len(want) != 0 {
		t.Fatalf("%d results missing", len(want))
	}
	// All ends with the context's error when no result comes.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	for _, err := range s.All(short) {
		if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("All after its context ended: %v", err)
		}
	}
}

// Add batches by size, by time and, adaptively, by what is in flight;
// Flush waits for the acknowledgements and reports rejected batches.
func TestAddFlushBatching(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())

	t.Run("by size", func(t *testing.T) {
		// No linger and no adaptive sends: only full batches and Flush.
		s, err := cl.CreateSession(ctx, nil, client.WithMaxBatch(100, 1<<20),
			client.WithLinger(-1), client.WithAdaptiveBatching(false))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks("size", 0, 1000) {
			if err := s.Add(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.BatchesAdded != 10 || st.TasksAccepted != 1000 || st.BatchesPending != 0 {
			t.Fatalf("after 1000 Adds: %+v", st)
		}
		for _, task := range tasks("size", 1000, 5) {
			if err := s.Add(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
		if st := s.Stats(); st.BatchesAdded != 10 {
			t.Fatalf("a partial batch left before Flush: %+v", st)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if st := s.Stats(); st.BatchesAdded != 11 || st.TasksAccepted != 1005 {
			t.Fatalf("after Flush: %+v", st)
		}
		// A rejected batch is Flush's error, with the server's code.
		if err := s.Add(ctx, client.Task{ID: strings.Repeat("x", 300)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Flush(ctx); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("Flush of a rejected batch: %v", err)
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatalf("second Flush: %v", err)
		}
		if err := s.Detach(); err != nil {
			t.Fatal(err)
		}
		if err := s.Add(ctx, tasks("late", 0, 1)[0]); !errors.Is(err, client.ErrDetached) {
			t.Fatalf("Add after Detach: %v", err)
		}
	})

	t.Run("by time", func(t *testing.T) {
		s, err := cl.CreateSession(ctx, nil, client.WithLinger(5*time.Millisecond),
			client.WithAdaptiveBatching(false))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Detach()
		if err := s.Add(ctx, tasks("time", 0, 1)[0]); err != nil {
			t.Fatal(err)
		}
		c.WaitFor("the lingering task sent without Flush", 10*time.Second, func() bool {
			return s.Stats().TasksAccepted == 1
		})
	})

	t.Run("adaptive", func(t *testing.T) {
		// Without a linger, only the adaptive rule can send this task.
		s, err := cl.CreateSession(ctx, nil, client.WithLinger(-1))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Detach()
		if err := s.Add(ctx, tasks("adaptive", 0, 1)[0]); err != nil {
			t.Fatal(err)
		}
		c.WaitFor("a lone task sent at once", 10*time.Second, func() bool {
			return s.Stats().TasksAccepted == 1
		})
		const n = 2000
		for _, task := range tasks("adaptive", 1, n) {
			if err := s.Add(ctx, task); err != nil {
				t.Fatal(err)
			}
		}
		// Every task added went out without Flush: each batch's ack sends
		// the tasks that waited for it.
		c.WaitFor("every task acknowledged", 10*time.Second, func() bool {
			return s.Stats().TasksAccepted == n+1
		})
		t.Logf("adaptive: %d tasks in %d batches", n+1, s.Stats().BatchesAdded)
	})
}

// Submit and Add wait while WithMaxInflightTasks tasks have no result
// handed over, and give up when their context ends.
func TestInflightBound(t *testing.T) {
	c := testcluster.Start(t, 1, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	const bound = 10
	s, err := cl.CreateSession(ctx, nil, client.WithMaxInflightTasks(bound))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(ctx, tasks("b", 0, bound)); err != nil {
		t.Fatal(err)
	}
	// Resubmitting ids in flight costs no slot.
	if res, err := s.Submit(ctx, tasks("b", 0, 3)); err != nil || res.Duplicates != 3 {
		t.Fatalf("resubmit in flight: %+v, %v", res, err)
	}
	full, cancelFull := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelFull()
	if _, err := s.Submit(full, tasks("b", bound, 1)); !errors.Is(err, context.DeadlineExceeded) ||
		status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("Submit when full: %v", err)
	}
	if err := s.Add(full, tasks("b", bound, 1)[0]); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Add when full: %v", err)
	}
	if st := s.Stats(); st.TasksInflight != bound || st.TasksAccepted != bound {
		t.Fatalf("stats when full: %+v", st)
	}
	// More tasks than the bound: they go through as results are read.
	const more = 50
	submitted := make(chan error, 1)
	go func() {
		for i := bound; i < bound+more; i++ {
			if _, err := s.Submit(ctx, tasks("b", i, 1)); err != nil {
				submitted <- err
				return
			}
		}
		submitted <- nil
	}()
	runWorkers(t, c.Addrs(), 1, echo)
	got := make(map[string]bool)
	for r, err := range s.All(ctx) {
		if err != nil {
			t.Fatalf("after %d results: %v", len(got), err)
		}
		if got[r.TaskID] {
			t.Fatalf("%s delivered twice", r.TaskID)
		}
		got[r.TaskID] = true
		if n := s.Stats().TasksInflight; n > bound {
			t.Fatalf("%d tasks in flight, bound %d", n, bound)
		}
		if len(got) == bound+more {
			break
		}
	}
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
	c.WaitFor("no task in flight", 10*time.Second, func() bool { return s.Stats().TasksInflight == 0 })
	// A Submit larger than the bound is let through when nothing is in flight.
	if res, err := s.Submit(ctx, tasks("big", 0, 3*bound)); err != nil || res.Accepted != 3*bound {
		t.Fatalf("Submit larger than the bound: %+v, %v", res, err)
	}
	// Detach wakes a waiting Submit with ErrDetached.
	blocked := make(chan error, 1)
	go func() {
		_, err := s.Submit(ctx, tasks("after", 0, 1))
		blocked <- err
	}()
	if err := s.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := <-blocked; !errors.Is(err, client.ErrDetached) {
		t.Fatalf("Submit waiting across Detach: %v", err)
	}
}

// exactlyOnce reads results until every id in want arrived, failing on a
// repeat, a wrong payload or the deadline.
func exactlyOnce(t *testing.T, ctx context.Context, s *client.Session, want map[string]bool,
	each func(got int)) {
	t.Helper()
	got := make(map[string]bool, len(want))
	for r, err := range s.All(ctx) {
		if err != nil {
			t.Fatalf("%d of %d results (stats %+v): %v", len(got), len(want), s.Stats(), err)
		}
		if got[r.TaskID] {
			t.Fatalf("result of %s delivered twice", r.TaskID)
		}
		if !want[r.TaskID] {
			t.Fatalf("unexpected result %s", r.TaskID)
		}
		if string(r.Payload) != "done:"+r.TaskID {
			t.Fatalf("result of %s has payload %q", r.TaskID, r.Payload)
		}
		got[r.TaskID] = true
		if each != nil {
			each(len(got))
		}
		if len(got) == len(want) {
			return
		}
	}
	t.Fatalf("results ended after %d of %d", len(got), len(want))
}

// The leader dies while Adds and Submits are in flight: every task is
// acknowledged and its result reaches the application exactly once.
func TestLeaderKillDuringSubmit(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 2, echo)
	s, err := cl.CreateSession(ctx, nil, client.WithMaxBatch(50, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000 // per path
	want := make(map[string]bool, 2*n)
	for _, task := range append(tasks("add", 0, n), tasks("sub", 0, n)...) {
		want[task.ID] = true
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, task := range tasks("add", 0, n) {
			if err := s.Add(ctx, task); err != nil {
				t.Errorf("add: %v", err)
				return
			}
		}
		if err := s.Flush(ctx); err != nil {
			t.Errorf("flush: %v", err)
		}
	})
	wg.Go(func() {
		for i := 0; i < n; i += 50 {
			if _, err := s.Submit(ctx, tasks("sub", i, 50)); err != nil {
				t.Errorf("submit: %v", err)
				return
			}
		}
	})
	// Kill once submissions are flowing, long before they are all in.
	c.WaitFor("submissions flowing", 30*time.Second, func() bool { return s.Stats().TasksAccepted >= 200 })
	l := c.WaitLeader()
	t.Logf("killing leader n%d after %d tasks accepted", l+1, s.Stats().TasksAccepted)
	c.Kill(l)
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		c.Restart(l)
	}()
	exactlyOnce(t, ctx, s, want, nil)
	wg.Wait()
	<-restarted
	st := s.Stats()
	t.Logf("stats %+v", st)
	if st.Reconnects == 0 {
		t.Error("the session never reconnected: the kill did not hit its leader")
	}
	if st.TasksAccepted+st.TasksDuplicate < 2*n {
		t.Errorf("acknowledged %d+%d tasks, want at least %d", st.TasksAccepted, st.TasksDuplicate, 2*n)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// The leader dies while results are being delivered and acknowledged:
// those handed over are not repeated, the others all arrive, once.
func TestLeaderKillDuringDelivery(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cl := dial(t, ctx, c.Addrs())
	runWorkers(t, c.Addrs(), 2, echo)
	s, err := cl.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	want := make(map[string]bool, n)
	for _, task := range tasks("dl", 0, n) {
		want[task.ID] = true
	}
	if _, err := s.Submit(ctx, tasks("dl", 0, n)); err != nil {
		t.Fatal(err)
	}
	// Every result is on the server, most not acknowledged, when the
	// leader dies in the middle of the reading.
	c.WaitFor("all tasks completed", time.Minute, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetCompleted() == n
	})
	restarted := make(chan struct{})
	exactlyOnce(t, ctx, s, want, func(got int) {
		if got == n/4 {
			l := c.WaitLeader()
			t.Logf("killing leader n%d after %d results", l+1, got)
			c.Kill(l)
			go func() {
				defer close(restarted)
				c.Restart(l)
			}()
			// The results already here but not read are unacknowledged:
			// the new leader sends them again, and the Session drops them.
			c.WaitFor("reconnected, repeats dropped", 30*time.Second, func() bool {
				st := s.Stats()
				return st.Reconnects > 0 && st.ResultRepeats > 0
			})
		}
	})
	<-restarted
	t.Logf("stats %+v", s.Stats())
	c.WaitFor("every result acknowledged", 30*time.Second, func() bool {
		info, err := cl.GetSession(ctx, s.ID())
		return err == nil && info.GetCounts().GetResultsUnacked() == 0
	})
}

// A client stops after reading part of the results; a new client (a new
// Dial, as after a process restart) reopens the session, across a leader
// failover, and receives every result the first did not acknowledge.
func TestClientRestartGetsUnacknowledgedResults(t *testing.T) {
	c := testcluster.Start(t, 3, testcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	runWorkers(t, c.Addrs(), 2, echo)
	first, err := client.Dial(ctx, c.Addrs(), client.WithBackoff(20*time.Millisecond, 500*time.Millisecond),
		client.WithLogger(testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := first.CreateSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := s.ID()
	const n, read = 1000, 300
	if _, err := s.Submit(ctx, tasks("cr", 0, n)); err != nil {
		t.Fatal(err)
	}
	seen := receive(t, ctx, s, read)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// The next process finds a new leader.
	l := c.WaitLeader()
	c.Kill(l)
	c.Restart(l)

	second := dial(t, ctx, c.Addrs())
	s2, err := second.OpenSession(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool, n-read)
	for _, task := range tasks("cr", 0, n) {
		if _, ok := seen[task.ID]; !ok {
			want[task.ID] = true
		}
	}
	exactlyOnce(t, ctx, s2, want, nil)
	c.WaitFor("every result acknowledged", 30*time.Second, func() bool {
		info, err := second.GetSession(ctx, id)
		return err == nil && info.GetCounts().GetResultsUnacked() == 0 && info.GetCounts().GetCompleted() == n
	})
	if err := s2.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
