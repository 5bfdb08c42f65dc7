package fsm

import (
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

func cmdRetryDead(session string, all bool, ids ...string) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_RetryDeadLetters{RetryDeadLetters: &fsmpb.RetryDeadLetters{
		SessionId: session, TaskIds: ids, All: all}}}
}

func TestRetryDeadLetters(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", &fsmpb.SessionAttrs{MaxAttempts: 1}))
	h.mustOK(cmdEnqueue("s", "a", "b", "c"))
	h.mustOK(cmdOutcomes("s", failOutcome("a", "boom"), failOutcome("b", "bang"), failOutcome("c", "bust")))
	if in := info(t, h.f, "s"); in.DeadLettered != 3 || in.DeadLettersUnacked != 3 || in.Pending != 0 {
		t.Fatalf("after failures: %+v", in)
	}

	// One by id: pending again with a fresh budget and its payload.
	if r := h.mustOK(cmdRetryDead("s", false, "a", "unknown")); r.Requeued != 1 {
		t.Fatalf("retry a: requeued %d, want 1", r.Requeued)
	}
	in := info(t, h.f, "s")
	if in.DeadLettered != 2 || in.DeadLettersUnacked != 2 || in.Pending != 1 || !h.f.TaskPending("s", "a") {
		t.Fatalf("after retry of a: %+v", in)
	}
	if r := h.mustOK(cmdOutcomes("s", okOutcome("a"))); r.Recorded != 1 {
		t.Fatalf("result of the retried task not recorded: %+v", r)
	}
	rs := h.f.ResultsAfter("s", 0, 0)
	if len(rs) != 1 || rs[0].TaskID != "a" || rs[0].Attempt != 1 {
		t.Fatalf("results %+v, want a at attempt 1", rs)
	}

	// A task that is not a dead letter, or an acked one, is not retried.
	h.mustOK(cmdAckDead("s", "b"))
	if r := h.mustOK(cmdRetryDead("s", false, "a", "b")); r.Requeued != 0 {
		t.Fatalf("retried %d non-dead tasks", r.Requeued)
	}

	// All: what is left.
	if r := h.mustOK(cmdRetryDead("s", true)); r.Requeued != 1 || !h.f.TaskPending("s", "c") {
		t.Fatalf("retry all: %+v", r)
	}
	checkInvariants(t, h.f)

	if r := h.apply(cmdRetryDead("nope", true)); r.Err == nil {
		t.Fatal("retry on an unknown session succeeded")
	}
}
