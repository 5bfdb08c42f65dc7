package fsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

func TestRetryDelay(t *testing.T) {
	a := Attrs{RetryBackoffMs: 100, RetryBackoffMaxMs: 1000}
	tests := []struct {
		attempts int32
		jitter   uint32
		want     int64
	}{
		{1, 1000, 100}, // the full first backoff
		{1, 0, 50},     // half of it
		{1, 500, 75},
		{2, 1000, 200}, // doubles
		{3, 1000, 400},
		{4, 1000, 800},
		{5, 1000, 1000}, // capped
		{40, 1000, 1000},
		{40, 0, 500},
		{1, 5000, 100}, // jitter beyond 1000 is taken as 1000
	}
	for _, tc := range tests {
		if got := retryDelay(a, tc.attempts, tc.jitter); got != tc.want {
			t.Errorf("retryDelay(attempts %d, jitter %d) = %d, want %d", tc.attempts, tc.jitter, got, tc.want)
		}
	}
	// The largest allowed values do not overflow.
	big := Attrs{RetryBackoffMs: MaxRetryBackoffMs, RetryBackoffMaxMs: MaxRetryBackoffMs}
	if got := retryDelay(big, 1<<30, 1000); got != MaxRetryBackoffMs {
		t.Errorf("retryDelay at the limits = %d, want %d", got, MaxRetryBackoffMs)
	}
}

// A failed attempt records a not-before time computed from the leader's
// clock and jitter in the command; it survives a snapshot and restore, and
// a result or a dead-letter retry clears it.
func TestRetryNotBeforeIsReplicated(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", &fsmpb.SessionAttrs{MaxAttempts: 3, RetryBackoffMs: 200, RetryBackoffMaxMs: 300}))
	h.mustOK(cmdEnqueue("s", "a", "b"))

	fail := func(id string, jitter uint32, now int64) {
		t.Helper()
		oc := failOutcome(id, "boom")
		oc.Jitter = jitter
		c := cmdOutcomes("s", oc)
		c.NowUnixMs = now
		if r := h.mustOK(c); r.Requeued != 1 {
			t.Fatalf("failure of %s: %+v, want requeued", id, r)
		}
	}
	fail("a", 1000, 5_000)
	fail("b", 0, 5_000)
	fail("b", 1000, 6_000) // second failure: doubled, then capped at 300

	st, _ := h.f.TaskStatuses("s", []string{"a", "b"})
	if st[0].NotBeforeUnixMs != 5_200 || st[1].NotBeforeUnixMs != 6_300 {
		t.Fatalf("not-before = %d, %d; want 5200, 6300", st[0].NotBeforeUnixMs, st[1].NotBeforeUnixMs)
	}
	if got := info(t, h.f, "s"); got.Retrying != 2 || got.Retried != 3 {
		t.Fatalf("retrying %d retried %d, want 2 and 3", got.Retrying, got.Retried)
	}

	g := New(Options{})
	if err := g.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
		t.Fatal(err)
	}
	var pending []Task
	g.Subscribe(nil, func(p []Task) { pending = p })
	if len(pending) != 2 || pending[0].NotBeforeUnixMs != 5_200 || pending[1].NotBeforeUnixMs != 6_300 {
		t.Fatalf("after restore the dispatcher would load %+v", pending)
	}
	if got := info(t, g, "s"); got.Retrying != 2 {
		t.Fatalf("retrying after restore = %d, want 2", got.Retrying)
	}

	h.mustOK(cmdOutcomes("s", okOutcome("a")))
	if st, _ := h.f.TaskStatuses("s", []string{"a"}); st[0].NotBeforeUnixMs != 0 || st[0].State != fsmpb.TaskState_TASK_STATE_COMPLETED {
		t.Fatalf("completed task status %+v", st[0])
	}
	if r := h.mustOK(cmdOutcomes("s", failOutcome("b", "third"))); r.DeadLettered != 1 {
		t.Fatalf("third failure: %+v, want dead-lettered", r)
	}
	h.mustOK(&fsmpb.Command{Cmd: &fsmpb.Command_RetryDeadLetters{RetryDeadLetters: &fsmpb.RetryDeadLetters{SessionId: "s", All: true}}})
	if st, _ := h.f.TaskStatuses("s", []string{"b"}); st[0].NotBeforeUnixMs != 0 || st[0].Attempts != 0 {
		t.Fatalf("retried dead letter status %+v, want a fresh task", st[0])
	}
	if got := info(t, h.f, "s"); got.Retrying != 0 {
		t.Fatalf("retrying = %d, want 0", got.Retrying)
	}
}

func TestTimedOutAttemptCounts(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", &fsmpb.SessionAttrs{MaxAttempts: 2}))
	h.mustOK(cmdEnqueue("s", "a"))
	for i := range 2 {
		oc := failOutcome("a", "lease expired")
		oc.TimedOut = true
		h.mustOK(cmdOutcomes("s", oc))
		if got := info(t, h.f, "s"); got.TimedOut != uint64(i+1) {
			t.Fatalf("after %d timeouts: timed_out %d", i+1, got.TimedOut)
		}
	}
	if got := info(t, h.f, "s"); got.DeadLettered != 1 || got.Pending != 0 {
		t.Fatalf("two timeouts with max_attempts 2: %+v, want dead-lettered", got)
	}
}

func TestCancelTasks(t *testing.T) {
	h := newHarness(t, Options{})
	rec := &recorder{}
	h.f.Subscribe(rec, nil)
	h.mustOK(cmdCreate("s", nil))
	h.mustOK(cmdEnqueue("s", "a", "b", "c", "d"))
	h.mustOK(cmdOutcomes("s", okOutcome("d")))
	h.mustOK(cmdOutcomes("s", failOutcome("c", "x")))
	rec.take()

	// Unknown ids, completed tasks and repeats are skipped.
	r := h.mustOK(cmdCancel("s", "a", "a", "nope", "d", "c"))
	if r.Cancelled != 2 {
		t.Fatalf("cancelled %d, want 2 (a, c)", r.Cancelled)
	}
	if ev := rec.take(); !slices.Equal(ev, []string{"cancelled s a,c", "done s a,c"}) {
		t.Fatalf("listener got %q", ev)
	}
	got := info(t, h.f, "s")
	if got.Cancelled != 2 || got.Pending != 1 || got.Retrying != 0 || got.Completed != 1 {
		t.Fatalf("counters after cancel: %+v", got)
	}
	// A late result of a cancelled task is ignored, and its id stays taken.
	if r := h.mustOK(cmdOutcomes("s", okOutcome("a"))); r.Ignored != 1 {
		t.Fatalf("late result: %+v, want ignored", r)
	}
	if r := h.mustOK(cmdEnqueue("s", "a")); r.Duplicates != 1 {
		t.Fatalf("resubmitting a cancelled id: %+v, want a duplicate", r)
	}
	st, ok := h.f.TaskStatuses("s", []string{"a", "b", "d", "zz"})
	if !ok {
		t.Fatal("session not found")
	}
	wantStates := []fsmpb.TaskState{fsmpb.TaskState_TASK_STATE_CANCELLED, fsmpb.TaskState_TASK_STATE_PENDING,
		fsmpb.TaskState_TASK_STATE_COMPLETED, fsmpb.TaskState_TASK_STATE_UNSPECIFIED}
	for i, w := range wantStates {
		if st[i].State != w {
			t.Errorf("%s: state %v, want %v", st[i].ID, st[i].State, w)
		}
	}

	// all cancels what is left.
	if r := h.mustOK(cmdCancelAll("s")); r.Cancelled != 1 {
		t.Fatalf("cancel all: %+v, want 1", r)
	}
	var pending []Task
	h.f.Subscribe(nil, func(p []Task) { pending = p })
	if len(pending) != 0 {
		t.Fatalf("pending after cancel all: %+v", pending)
	}

	// Cancelled tasks survive a snapshot.
	g := New(Options{})
	if err := g.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != h.f.Hash() {
		t.Fatal("restored state differs")
	}
	if info(t, g, "s").Cancelled != 3 {
		t.Fatalf("cancelled after restore: %+v", info(t, g, "s"))
	}
}

func TestCancelTasksRejected(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", nil))
	h.mustOK(cmdEnqueue("s", "a"))
	before := h.f.Hash()
	for _, tc := range []struct {
		c    *fsmpb.Command
		want error
		msg  string
	}{
		{cmdCancel("nope", "a"), ErrSessionNotFound, "nope"},
		{cmdCancel("s", "a", ""), ErrInvalid, "task id 1: must be 1..256 bytes, got 0"},
		{cmdCancel("s", strings.Repeat("x", MaxTaskIDLen+1)), ErrInvalid, "got 257"},
	} {
		r := h.apply(tc.c)
		if !errors.Is(r.Err, tc.want) || !strings.Contains(r.Err.Error(), tc.msg) {
			t.Errorf("%v: err %v, want %v containing %q", tc.c, r.Err, tc.want, tc.msg)
		}
	}
	if h.f.Hash() != before {
		t.Fatal("a rejected cancel changed the state")
	}
	h.mustOK(cmdClose("s"))
	if r := h.apply(cmdCancel("s", "a")); !errors.Is(r.Err, ErrSessionClosed) {
		t.Fatalf("cancel on a closed session: %v", r.Err)
	}
}

// A repeated CancelTasks or RetryDeadLetters (same request id, after a
// lost answer) gets the first answer's count back, also after a restore,
// and changes nothing.
func TestCountAnswersAreIdempotent(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", &fsmpb.SessionAttrs{MaxAttempts: 1}))
	h.mustOK(cmdEnqueue("s", "a", "b", "c"))
	h.mustOK(cmdOutcomes("s", failOutcome("c", "x")))
	cancel := func() *fsmpb.Command { return withKey("cancel-1", cmdCancel("s", "a", "b")) }
	retry := func() *fsmpb.Command {
		return withKey("retry-1", &fsmpb.Command{Cmd: &fsmpb.Command_RetryDeadLetters{
			RetryDeadLetters: &fsmpb.RetryDeadLetters{SessionId: "s", All: true}}})
	}
	if r := h.mustOK(cancel()); r.Cancelled != 2 {
		t.Fatalf("first cancel: %+v", r)
	}
	if r := h.mustOK(retry()); r.Requeued != 1 {
		t.Fatalf("first retry: %+v", r)
	}
	before := h.f.Hash()
	if r := h.mustOK(cancel()); r.Cancelled != 2 {
		t.Fatalf("repeated cancel answered %+v, want the first count 2", r)
	}
	if r := h.mustOK(retry()); r.Requeued != 1 {
		t.Fatalf("repeated retry answered %+v, want the first count 1", r)
	}
	if h.f.Hash() != before {
		t.Fatal("a repeated request changed the state")
	}
	g := New(Options{})
	if err := g.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
		t.Fatal(err)
	}
	if r := g.Apply(h.idx+1, cancel()); r.Cancelled != 2 || r.Err != nil {
		t.Fatalf("repeated cancel after restore answered %+v", r)
	}
}
