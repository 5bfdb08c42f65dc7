package worker

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/gridd/gridd/rpc/griddpb"
)

// An abort instruction (immediate preemption) ends the binding but, unlike
// the loss of the WorkerUpdate stream, keeps a BIND received meanwhile, so
// the leader can give the session back to this worker.
func TestAbortInstructionKeepsRebind(t *testing.T) {
	cc, err := grpc.NewClient("passthrough:///unused", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	w := &worker{opts: Options{Concurrency: 1}, base: context.Background()}
	for _, final := range []bool{false, true} {
		b := newBinding(w, "s")
		b.abort(final)
		if b.ctx.Err() == nil {
			t.Fatalf("abort(%v) left the binding's context alive", final)
		}
		b.rebind(cc)
		if got := b.rebindConn() != nil; got == final {
			t.Fatalf("abort(%v): rebind kept %v", final, got)
		}
	}
}

// A stop cancels a running handler's context; a task not started yet is
// confirmed at once and never starts; a stop for a task no longer here,
// or for an older attempt, changes nothing.
func TestStopRunningAndQueued(t *testing.T) {
	w := &worker{opts: Options{Concurrency: 1}, base: context.Background()}
	b := newBinding(w, "s")
	defer b.cancel()
	m1 := &griddpb.Message{Id: "t1", Attempt: 1}
	m2 := &griddpb.Message{Id: "t2", Attempt: 1}
	m3 := &griddpb.Message{Id: "t3", Attempt: 2}
	b.enqueue(&griddpb.Batch{Messages: []*griddpb.Message{m1, m2, m3}})
	ctx1, _, ok := b.begin(m1)
	if !ok {
		t.Fatal("t1 did not start")
	}
	if err := ExtendLease(ctx1); err != nil {
		t.Fatalf("extend a running task: %v", err)
	}
	b.stop([]string{"t1", "t2", "gone"})
	if ctx1.Err() == nil {
		t.Fatal("the stop did not cancel t1's handler")
	}
	if err := ExtendLease(ctx1); err == nil {
		t.Fatal("extended the lease of a stopped task")
	}
	m := b.takeControl()
	if len(m.GetExtendLease()) != 1 || len(m.GetResults().GetMessages()) != 1 {
		t.Fatalf("control message %v, want t1's extension and t2's confirmation", m)
	}
	if c := m.GetResults().GetMessages()[0]; c.Id != "t2" || c.Attempt != 1 || c.Error != stoppedMsg {
		t.Fatalf("confirmation %v", c)
	}
	if !b.stoppedUnstarted(m2) {
		t.Fatal("t2 is not marked as stopped before its start")
	}
	if _, _, ok := b.begin(m2); ok {
		t.Fatal("the stopped t2 started")
	}
	if _, _, ok := b.begin(m3); !ok {
		t.Fatal("t3 did not start")
	}
	if b.takeControl() != nil {
		t.Fatal("a second control message with nothing to say")
	}
}
