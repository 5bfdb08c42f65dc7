package dispatch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

func (r *rig) createAttrs(id string, a *fsmpb.SessionAttrs) {
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{
		SessionId: id, Attrs: a}}})
}

// failAt records failed attempts as the leader would at wall-clock now,
// so that the not-before times are real.
func (r *rig) failAt(session string, now time.Time, outs ...*fsmpb.Outcome) {
	r.t.Helper()
	r.idx++
	c := &fsmpb.Command{NowUnixMs: now.UnixMilli(), Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{
		SessionId: session, Outcomes: outs}}}
	if resp := r.f.Apply(r.idx, c); resp.Err != nil {
		r.t.Fatalf("apply: %v", resp.Err)
	}
}

func (r *rig) notBefore(session, id string) int64 {
	r.t.Helper()
	st, ok := r.f.TaskStatuses(session, []string{id})
	if !ok || st[0].NotBeforeUnixMs == 0 {
		r.t.Fatalf("task %s/%s has no not-before: %+v", session, id, st)
	}
	return st[0].NotBeforeUnixMs
}

// nextBatch waits for any batch (tasks or stops).
func (r *rig) nextBatch(st *Stream) *griddpb.Batch {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := r.d.Next(ctx, st)
	if err != nil {
		r.t.Fatalf("next: %v", err)
	}
	return b
}

// A failed task waits for its not-before time, also on a dispatcher that
// loads it after a failover, and tasks come back in not-before order, not
// in queue order. The session is not forgotten while all it has is delayed
// tasks.
func TestDispatchRetryBackoff(t *testing.T) {
	r := newRig(t)
	r.createAttrs("s", &fsmpb.SessionAttrs{RetryBackoffMs: 600, MaxAttempts: 5})
	r.enqueue("s", "a", "b", "c")
	// Failed under a previous leader: jitter 1000 waits the whole backoff,
	// 0 waits half of it. a comes back after b.
	now := time.Now()
	r.failAt("s", now, &fsmpb.Outcome{TaskId: "a", Error: "x", Jitter: 1000},
		&fsmpb.Outcome{TaskId: "b", Error: "y", Jitter: 0})
	nbA, nbB := r.notBefore("s", "a"), r.notBefore("s", "b")
	if nbB >= nbA {
		t.Fatalf("not-before b %d, a %d: want b first", nbB, nbA)
	}

	r.d.Activate()
	r.d.plan() // must keep the session although nothing is ready but c
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.next(st)); got != "[c]" {
		t.Fatalf("first batch %s, want [c] (a and b wait for their backoff)", got)
	}
	r.complete("s", "c")
	r.d.plan()

	var order []string
	for len(order) < 2 {
		b := r.nextBatch(st)
		at := time.Now().UnixMilli()
		for _, m := range b.GetMessages() {
			nb := map[string]int64{"a": nbA, "b": nbB}[m.Id]
			if at < nb {
				t.Fatalf("task %s dispatched at %d, before its not-before %d", m.Id, at, nb)
			}
			if m.Attempt != 2 {
				t.Fatalf("task %s attempt %d, want 2", m.Id, m.Attempt)
			}
			order = append(order, m.Id)
		}
	}
	if !slices.Equal(order, []string{"b", "a"}) {
		t.Fatalf("retries came in order %v, want [b a]", order)
	}
}

// A task requeued while queued (a late failure from an old stream) moves
// from the ready queue to the delay heap; one that completes while delayed
// never comes back.
func TestDispatchDelayedTransitions(t *testing.T) {
	r := newRig(t)
	r.createAttrs("s", &fsmpb.SessionAttrs{RetryBackoffMs: 3_600_000, MaxAttempts: 5})
	r.d.Activate()
	r.enqueue("s", "a", "b", "c")
	r.failAt("s", time.Now(), &fsmpb.Outcome{TaskId: "a", Error: "x"}, &fsmpb.Outcome{TaskId: "b", Error: "x"})
	r.complete("s", "b")
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.next(st)); got != "[c]" {
		t.Fatalf("batch %s, want [c]", got)
	}
	r.d.mu.Lock()
	s := r.d.sessions["s"]
	q, dl := s.queued, s.delayed
	r.d.mu.Unlock()
	if q != 0 || dl != 1 {
		t.Fatalf("queued %d delayed %d, want 0 and 1 (a)", q, dl)
	}
	r.none(st)
}

func TestTimerHeapOrder(t *testing.T) {
	var h timerHeap[int]
	for _, at := range []int64{50, 10, 40, 10, 30, 20, 60} {
		h.push(at, int(at))
	}
	if _, ok := h.due(5); ok {
		t.Fatal("an entry due at 10 popped at 5")
	}
	var got []int
	for {
		v, ok := h.due(45)
		if !ok {
			break
		}
		got = append(got, v)
	}
	if !slices.Equal(got, []int{10, 10, 20, 30, 40}) {
		t.Fatalf("due by 45: %v", got)
	}
	if at, _ := h.next(); at != 50 {
		t.Fatalf("next %d, want 50", at)
	}
}

// A lease that runs out stops the task on its stream, hands the handler a
// timed-out attempt to propose, and drops that attempt's late result; a
// cancelled task is stopped too.
func TestDispatchLeases(t *testing.T) {
	r := newRig(t)
	r.createAttrs("s", &fsmpb.SessionAttrs{TaskTimeoutMs: 3_600_000, RetryBackoffMs: 1, MaxAttempts: 3})
	r.d.Activate()
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	// b is leased for an hour, then the timeout drops to 50 ms for a and c.
	r.enqueue("s", "b")
	if got := fmt.Sprint(r.next(st)); got != "[b]" {
		t.Fatalf("batch %s", got)
	}
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_UpdateSession{UpdateSession: &fsmpb.UpdateSession{
		SessionId: "s", TaskTimeoutMs: ptr(int64(50))}}})
	r.enqueue("s", "a", "c")
	if got := fmt.Sprint(r.next(st)); got != "[a c]" {
		t.Fatalf("batch %s", got)
	}
	if n := r.d.ExtendLease(st, []string{"nope"}); n != 0 {
		t.Fatalf("extended %d leases of unknown tasks", n)
	}
	var stopped []string
	for len(stopped) < 2 {
		stopped = append(stopped, r.nextBatch(st).GetStopIds()...)
	}
	slices.Sort(stopped)
	if fmt.Sprint(stopped) != "[a c]" {
		t.Fatalf("stopped %v, want [a c]", stopped)
	}
	exp := r.d.TakeExpired(st)
	slices.SortFunc(exp, func(x, y LeaseExpiry) int { return strings.Compare(x.TaskID, y.TaskID) })
	if len(exp) != 2 || exp[0].TaskID != "a" || exp[0].Attempt != 1 || exp[0].Worker != "w1" ||
		!strings.Contains(exp[0].Error(), "timed out after") || !strings.Contains(exp[0].Error(), "on worker w1 (attempt 1)") {
		t.Fatalf("expired %+v", exp)
	}
	if again := r.d.TakeExpired(st); len(again) != 0 {
		t.Fatalf("expired twice: %+v", again)
	}
	// A stopped task cannot be extended back to life.
	if n := r.d.ExtendLease(st, []string{"a"}); n != 0 {
		t.Fatal("extended a stopped task")
	}
	// Until the worker confirms that the stopped handlers ended, its
	// stream takes no new task.
	r.enqueue("s", "d")
	r.none(st)
	// The late results of a's and c's first attempts are dropped (and
	// confirm the stops); b's is not.
	late := []*griddpb.Message{{Id: "a", Attempt: 1}, {Id: "b", Attempt: 1}, {Id: "c", Attempt: 1}}
	if got := r.d.DropStopped(st, late); len(got) != 1 || got[0].Id != "b" {
		t.Fatalf("kept %v, want only b", got)
	}
	if got := fmt.Sprint(r.next(st)); got != "[d]" {
		t.Fatalf("after the confirmations: %s, want [d]", got)
	}

	// The handler proposes the timeouts; a and c come back as attempt 2.
	r.failAt("s", time.Now(), &fsmpb.Outcome{TaskId: "a", Error: exp[0].Error(), TimedOut: true},
		&fsmpb.Outcome{TaskId: "c", Error: exp[1].Error(), TimedOut: true})
	info, _ := r.f.Session("s")
	if info.TimedOut != 2 {
		t.Fatalf("timed out %d, want 2", info.TimedOut)
	}
	var retried []string
	for len(retried) < 2 {
		for _, m := range r.nextBatch(st).GetMessages() {
			if m.Attempt != 2 {
				t.Fatalf("retry of %s is attempt %d", m.Id, m.Attempt)
			}
			retried = append(retried, m.Id)
		}
	}

	// b's lease can be renewed, and cancelling it stops it.
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_UpdateSession{UpdateSession: &fsmpb.UpdateSession{
		SessionId: "s", TaskTimeoutMs: ptr(int64(3_600_000))}}})
	if n := r.d.ExtendLease(st, []string{"b"}); n != 1 {
		t.Fatalf("extended %d leases, want 1", n)
	}
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CancelTasks{CancelTasks: &fsmpb.CancelTasks{SessionId: "s", TaskIds: []string{"b"}}}})
	if got := r.nextBatch(st).GetStopIds(); fmt.Sprint(got) != "[b]" {
		t.Fatalf("stop after cancel %v, want [b]", got)
	}
	if r.d.Running("s") != 3 {
		t.Fatalf("running %d, want 3 (a and c again, d)", r.d.Running("s"))
	}
}

func ptr[T any](v T) *T { return &v }
