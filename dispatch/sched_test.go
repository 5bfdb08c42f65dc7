package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

func newSchedRig(t *testing.T, mode Preemption) *rig {
	f := fsm.New(fsm.Options{})
	d := New(f, Options{BatchSize: 3, Preemption: mode, Logger: slog.New(slog.DiscardHandler)})
	r := &rig{t: t, f: f, d: d}
	t.Cleanup(d.Deactivate)
	return r
}

func (r *rig) createWith(id string, a *fsmpb.SessionAttrs) {
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{SessionId: id, Attrs: a}}})
}

// expect waits for the worker's next instruction and checks it.
func expect(t *testing.T, w *Worker, typ griddpb.InstructionType, session string, abort bool) {
	t.Helper()
	select {
	case in := <-w.Instructions():
		if in.Type != typ || in.SessionId != session || in.Abort != abort {
			t.Fatalf("instruction %v, want %v %s abort=%v", in, typ, session, abort)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no %v %s", typ, session)
	}
}

const (
	bindI   = griddpb.InstructionType_INSTRUCTION_TYPE_BIND
	unbindI = griddpb.InstructionType_INSTRUCTION_TYPE_UNBIND
)

// preempted sets up a worker bound to the preemptible session "low" whose
// stream holds a batch, then makes a high-priority session ready.
func preempted(t *testing.T, mode Preemption) (*rig, *Worker, *Stream, context.Context, []string) {
	r := newSchedRig(t, mode)
	r.createWith("low", &fsmpb.SessionAttrs{Priority: 1, Preemptible: true, MaxInflightBatchesPerWorker: 1})
	r.createWith("high", &fsmpb.SessionAttrs{Priority: 9})
	r.d.Activate()
	w, _, err := r.d.RegisterWorker(context.Background(), "w1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	r.enqueue("low", "a", "b", "c", "d")
	expect(t, w, bindI, "low", false)
	st, sctx, err := r.d.OpenStream(context.Background(), "w1", "low")
	if err != nil {
		t.Fatal(err)
	}
	held := r.next(st)
	r.enqueue("high", "h")
	return r, w, st, sctx, held
}

// Immediate preemption: UNBIND with abort, the held tasks are ready again
// at once (without an attempt) and the stream ends, so none of its late
// results can reach the server.
func TestDispatchImmediatePreemption(t *testing.T) {
	r, w, st, sctx, held := preempted(t, PreemptImmediate)
	expect(t, w, unbindI, "low", true)
	expect(t, w, bindI, "high", false)
	select {
	case <-sctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the preempted stream was not ended")
	}
	if n := r.d.Running("low"); n != 0 {
		t.Fatalf("low still has %d running tasks after the abort", n)
	}
	r.d.CloseStream(st) // what the stream's handler does as it ends

	// Another worker gets the same tasks, still at their first attempt.
	st2, _, err := r.d.OpenStream(context.Background(), "w2", "low")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := r.d.Next(ctx, st2)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(b); !slices.Equal(got, held) || b.Messages[0].Attempt != 1 {
		t.Fatalf("redispatched %v at attempt %d, want %v at attempt 1", got, b.Messages[0].Attempt, held)
	}
}

// Drain: UNBIND without abort; the stream keeps what it holds and takes
// nothing new, and the worker's stream for the new session does not end it.
func TestDispatchDrainPreemption(t *testing.T) {
	r, w, st, sctx, _ := preempted(t, PreemptDrain)
	expect(t, w, unbindI, "low", false)
	expect(t, w, bindI, "high", false)
	hst, _, err := r.d.OpenStream(context.Background(), "w1", "high")
	if err != nil {
		t.Fatal(err)
	}
	if got := r.next(hst); !slices.Equal(got, []string{"h"}) {
		t.Fatalf("high stream got %v", got)
	}
	if sctx.Err() != nil {
		t.Fatal("the drained stream was ended by the worker's new stream")
	}
	if n := r.d.Running("low"); n != 3 {
		t.Fatalf("low has %d running tasks while draining, want 3", n)
	}
	r.complete("low", "a", "b", "c")
	r.none(st) // unbound: no new batch although "d" is ready
	if n := r.d.Running("low"); n != 0 {
		t.Fatalf("low has %d running tasks after their outcomes", n)
	}
}

func TestWorkerReports(t *testing.T) {
	r := newSchedRig(t, PreemptDrain)
	r.create("s", 10)
	r.d.Activate()
	w1, _, err := r.d.RegisterWorker(context.Background(), "w1", "", "")
	if err != nil {
		t.Fatal(err)
	}
	w2, _, err := r.d.RegisterWorker(context.Background(), "w2", "", "")
	if err != nil {
		t.Fatal(err)
	}
	// w1 is shutting down: the ready task goes to w2.
	r.d.WorkerReport(w1, &griddpb.WorkerStatus{State: griddpb.WorkerState_WORKER_STATE_DRAINING, Concurrency: 4})
	r.enqueue("s", "a")
	expect(t, w2, bindI, "s", false)
	if len(w1.Instructions()) != 0 {
		t.Fatal("a draining worker got an instruction")
	}

	// w2 never opened its stream and says it is idle well after the BIND:
	// it is free again, and the next plan binds it anew.
	r.d.mu.Lock()
	w2.boundAt = time.Now().Add(-2 * bindGrace)
	r.d.mu.Unlock()
	r.d.WorkerReport(w2, &griddpb.WorkerStatus{State: griddpb.WorkerState_WORKER_STATE_IDLE})
	expect(t, w2, bindI, "s", false)
	// A report right after a BIND is not taken as lost.
	r.d.WorkerReport(w2, &griddpb.WorkerStatus{State: griddpb.WorkerState_WORKER_STATE_IDLE})
	ws := r.d.Workers()
	if len(ws) != 2 || ws[1].Session != "s" || ws[0].State != griddpb.WorkerState_WORKER_STATE_DRAINING ||
		ws[0].Concurrency != 4 || ws[0].LastReport.IsZero() {
		t.Fatalf("workers %+v", ws)
	}
}

// BenchmarkPlan: one placement decision over 1,000 workers and 100
// sessions, half of them wanting more workers than there are.
func BenchmarkPlan(b *testing.B) {
	var sessions []SessionView
	for i := range 100 {
		sessions = append(sessions, SessionView{ID: fmt.Sprintf("s%03d", i), Priority: int32(i % 10),
			Ready: 10_000 * (i % 2), Running: 100, Preemptible: i%3 == 0, MinWorkers: int32(i % 4)})
	}
	var workers []WorkerView
	for i := range 1000 {
		workers = append(workers, WorkerView{ID: fmt.Sprintf("w%04d", i), Bound: sessions[i%100].ID, Busy: true})
	}
	moving := Input{Now: t0, Sessions: sessions, Workers: workers}
	// A reshuffle this large takes a few plans (a worker moves at most
	// once per plan); steady is where they end.
	steady := moving
	for range 50 {
		ds := Plan(steady)
		if len(ds) == 0 {
			break
		}
		steady.Workers = applyDecisions(steady.Workers, ds)
	}
	for _, c := range []struct {
		name string
		in   Input
	}{{"rebalance", moving}, {"steady", steady}} {
		b.Run(c.name, func(b *testing.B) {
			n := 0
			for b.Loop() {
				n = len(Plan(c.in))
			}
			b.ReportMetric(float64(n), "decisions")
		})
	}
}
