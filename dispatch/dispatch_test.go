package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/gridd/gridd/rpc/griddpb"
)

// rig drives a real state machine by hand, as the Raft log would.
type rig struct {
	t   *testing.T
	f   *fsm.FSM
	d   *Dispatcher
	idx uint64
}

func newRig(t *testing.T) *rig {
	f := fsm.New(fsm.Options{})
	d := New(f, Options{BatchSize: 3, Logger: slog.New(slog.DiscardHandler)})
	r := &rig{t: t, f: f, d: d}
	t.Cleanup(d.Deactivate)
	return r
}

func (r *rig) apply(c *fsmpb.Command) fsm.Response {
	r.t.Helper()
	r.idx++
	c.NowUnixMs = int64(r.idx)
	resp := r.f.Apply(r.idx, c)
	if resp.Err != nil {
		r.t.Fatalf("apply: %v", resp.Err)
	}
	return resp
}

func (r *rig) create(id string, inflight int32) {
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{
		SessionId: id, Attrs: &fsmpb.SessionAttrs{MaxInflightBatchesPerWorker: inflight}}}})
}

func (r *rig) enqueue(session string, ids ...string) {
	tasks := make([]*fsmpb.Task, len(ids))
	for i, id := range ids {
		tasks[i] = &fsmpb.Task{Id: id, Payload: []byte(id)}
	}
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{SessionId: session, Tasks: tasks}}})
}

func (r *rig) complete(session string, ids ...string) {
	outs := make([]*fsmpb.Outcome, len(ids))
	for i, id := range ids {
		outs[i] = &fsmpb.Outcome{TaskId: id}
	}
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{SessionId: session, Outcomes: outs}}})
}

// next takes one batch, failing the test if none comes.
func (r *rig) next(st *Stream) []string {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := r.d.Next(ctx, st)
	if err != nil {
		r.t.Fatalf("next: %v", err)
	}
	return ids(b)
}

// none checks that no batch is available now.
func (r *rig) none(st *Stream) {
	r.t.Helper()
	if b, err := r.d.take(st); b != nil || err != nil {
		r.t.Fatalf("expected no batch, got %v %v", ids(b), err)
	}
}

func ids(b *griddpb.Batch) []string {
	var out []string
	for _, m := range b.GetMessages() {
		out = append(out, m.Id)
	}
	return out
}

func TestDispatchLifecycle(t *testing.T) {
	r := newRig(t)
	r.create("s", 2)
	r.enqueue("s", "a", "b", "c", "d", "e", "f", "g")
	r.d.Activate() // loads what is pending, as a new leader does

	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	// Batches of at most BatchSize, FIFO, at most 2 in flight.
	if got := fmt.Sprint(r.next(st), r.next(st)); got != "[a b c] [d e f]" {
		t.Fatalf("first batches %s", got)
	}
	r.none(st)
	if n := r.d.Running("s"); n != 6 {
		t.Fatalf("running %d, want 6", n)
	}

	// A batch frees its slot only when all its tasks have an outcome.
	r.complete("s", "a", "b")
	r.none(st)
	r.complete("s", "c")
	if got := r.next(st); fmt.Sprint(got) != "[g]" {
		t.Fatalf("after the first batch completed: %v", got)
	}

	// The stream breaks: what it held is ready again, without an attempt.
	r.d.CloseStream(st)
	st2, _, err := r.d.OpenStream(context.Background(), "w2", "s")
	if err != nil {
		t.Fatal(err)
	}
	got := append(r.next(st2), r.next(st2)...)
	if fmt.Sprint(got) != "[d e f g]" {
		t.Fatalf("requeued after the break: %v", got)
	}

	// A task completed elsewhere (a late result of the old stream) is not
	// dispatched again, and frees the new holder's slot.
	r.complete("s", "d", "e", "f", "g")
	if n := r.d.Running("s"); n != 0 {
		t.Fatalf("running %d after every outcome, want 0", n)
	}
	r.none(st2)
}

func TestDispatchStaleQueueEntries(t *testing.T) {
	r := newRig(t)
	r.create("s", 10)
	r.d.Activate()
	r.enqueue("s", "a", "b", "c", "d")
	// Outcomes for queued tasks (a worker of a previous leader finished
	// them): they leave the queue without being dispatched.
	r.complete("s", "a", "c")
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(r.next(st)); got != "[b d]" {
		t.Fatalf("dispatched %s, want [b d]", got)
	}
}

func TestDispatchFailureRequeues(t *testing.T) {
	r := newRig(t)
	r.create("s", 10)
	r.d.Activate()
	r.enqueue("s", "a")
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	r.next(st)
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Outcomes{Outcomes: &fsmpb.Outcomes{SessionId: "s",
		Outcomes: []*fsmpb.Outcome{{TaskId: "a", Error: "boom"}}}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := r.d.Next(ctx, st)
	if err != nil || len(b.Messages) != 1 || b.Messages[0].Attempt != 2 {
		t.Fatalf("retry: %v %v, want task a at attempt 2", b, err)
	}
}

func TestDispatchInactiveAndClosed(t *testing.T) {
	r := newRig(t)
	r.create("s", 10)
	if _, _, err := r.d.OpenStream(context.Background(), "w1", "s"); !errors.Is(err, ErrNotActive) {
		t.Fatalf("open on an inactive dispatcher: %v", err)
	}
	r.d.Activate()
	if _, _, err := r.d.OpenStream(context.Background(), "w1", "nope"); !errors.Is(err, fsm.ErrSessionNotFound) {
		t.Fatalf("open on an unknown session: %v", err)
	}
	st, sctx, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CloseSession{CloseSession: &fsmpb.CloseSession{SessionId: "s"}}})
	select {
	case <-sctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("closing the session did not end its stream")
	}
	if _, err := r.d.Next(context.Background(), st); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("next after close: %v", err)
	}
	// Leadership lost: streams end, registrations are refused.
	r.d.Deactivate()
	if _, _, err := r.d.RegisterWorker(context.Background(), "w2", "", ""); !errors.Is(err, ErrNotActive) {
		t.Fatalf("register after deactivate: %v", err)
	}
}

func TestDispatchBindsRegisteredWorkers(t *testing.T) {
	r := newRig(t)
	r.create("s", 10)
	r.d.Activate()
	w, _, err := r.d.RegisterWorker(context.Background(), "w1", "node", "pod")
	if err != nil {
		t.Fatal(err)
	}
	r.enqueue("s", "a")
	select {
	case in := <-w.Instructions():
		if in.Type != griddpb.InstructionType_INSTRUCTION_TYPE_BIND || in.SessionId != "s" {
			t.Fatalf("instruction %v, want BIND s", in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no BIND for a session with a ready task")
	}
	ws := r.d.Workers()
	if len(ws) != 1 || ws[0].ID != "w1" || ws[0].Session != "s" || !ws[0].Registered {
		t.Fatalf("workers %+v", ws)
	}
}

// A batch carries one shared-data requirement: tasks that need different
// levels (a retried task of iteration 1 among new tasks of iteration 2)
// never share a batch, or one of them would run against the wrong level.
func TestDispatchBatchesKeepOneSharedDataLevel(t *testing.T) {
	r := newRig(t)
	r.create("s", 10)
	enq := func(level int64, use bool, ids ...string) {
		tasks := make([]*fsmpb.Task, len(ids))
		for i, id := range ids {
			tasks[i] = &fsmpb.Task{Id: id}
		}
		r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_Enqueue{Enqueue: &fsmpb.Enqueue{SessionId: "s", Tasks: tasks,
			UseSharedData: use, RequiredSharedDataUpdateLevel: level}}})
	}
	enq(1, true, "a1")
	enq(2, true, "b2", "c2")
	enq(0, false, "d")
	r.d.Activate()
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []string
	for range 3 {
		b, err := r.d.Next(ctx, st)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%v@%v/%d", ids(b), b.UseSharedData, b.RequiredSharedDataUpdateLevel))
	}
	if want := "[[a1]@true/1 [b2 c2]@true/2 [d]@false/0]"; fmt.Sprint(got) != want {
		t.Fatalf("batches %v, want %s", got, want)
	}
}
