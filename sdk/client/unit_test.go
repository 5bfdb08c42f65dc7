package client

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gridd/gridd/rpc/griddpb"
)

var seedFlag = flag.Uint64("seed", 0, "seed for randomized tests (0: pick one)")

// testSeed returns the -seed flag or a fresh seed, and logs it so a failure
// can be replayed with go test -run <Test> -args -seed=N.
func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -args -seed=%d)", seed, seed)
	return seed
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not a wait for a condition
	}
}

func recvKick(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no kick: %s", what)
	}
}

// The inbox hands each id to the application once, in arrival order, and
// acknowledges a repeat of a delivered item again (its first ack was lost).
func TestInboxDropsRepeats(t *testing.T) {
	seed := testSeed(t)
	rnd := rand.New(rand.NewPCG(seed, 0))
	in := newInbox[string](4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { in.deliver(ctx); close(done) }()

	const n = 500
	var got []string
	pushed := 0
	for len(got) < n {
		// Push a fresh id or repeat a random earlier one.
		if pushed < n && (pushed == 0 || rnd.IntN(3) > 0) {
			if !in.push(fmt.Sprint(pushed), fmt.Sprint(pushed)) {
				t.Fatalf("fresh id %d reported as a repeat", pushed)
			}
			pushed++
		} else if pushed > 0 {
			if in.push(fmt.Sprint(rnd.IntN(pushed)), "repeat") {
				t.Fatal("a repeat was reported as new")
			}
		}
		for drained := false; !drained; {
			select {
			case v := <-in.out:
				got = append(got, v)
			default:
				drained = true
			}
		}
		if pushed == n && len(got) < n {
			got = append(got, <-in.out)
		}
	}
	for i, v := range got {
		if v != fmt.Sprint(i) {
			t.Fatalf("delivery %d is %q, want %d (order or dedup broken)", i, v, i)
		}
	}
	in.end()
	<-done
	if _, ok := <-in.out; ok {
		t.Fatal("channel not closed after end")
	}
	if in.handed.Load() != n {
		t.Fatalf("handed = %d, want %d", in.handed.Load(), n)
	}
	// Every delivered id is acknowledged at least once; re-acks of repeats allowed.
	acked := map[string]bool{}
	for _, id := range in.takeAcks() {
		acked[id] = true
	}
	if len(acked) != n {
		t.Fatalf("%d distinct ids acknowledged, want %d", len(acked), n)
	}
}

func TestInboxReacksRepeatOfDelivered(t *testing.T) {
	in := newInbox[int](1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.deliver(ctx)
	in.push("a", 1)
	<-in.out
	waitFor(t, "ack of a", func() bool { return in.pendingAcks() == 1 })
	if ids := in.takeAcks(); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("acks %v", ids)
	}
	if in.push("a", 1) {
		t.Fatal("repeat reported as new")
	}
	if ids := in.takeAcks(); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("repeat of a delivered result not acknowledged again: %v", ids)
	}
	if in.repeats.Load() != 1 {
		t.Fatalf("repeats = %d", in.repeats.Load())
	}
}

// Items not yet handed over are not acknowledged: stopping delivery leaves
// them with the server.
func TestInboxDoesNotAckUndelivered(t *testing.T) {
	in := newInbox[int](0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.deliver(ctx); close(done) }()
	in.push("a", 1)
	in.push("b", 2)
	<-in.out
	cancel()
	<-done
	waitFor(t, "ack of a", func() bool { return in.pendingAcks() == 1 })
	if ids := in.takeAcks(); !slices.Equal(ids, []string{"a"}) {
		t.Fatalf("acks %v, want only the delivered a", ids)
	}
	if in.push("b", 2) {
		t.Fatal("b reported as new")
	}
	if n := in.pendingAcks(); n != 0 {
		t.Fatalf("a repeat of an undelivered item was acknowledged (%d acks)", n)
	}
}

// A full group of acks asks for a flush at once; a smaller one after a
// short delay; acks of a failed send come back first.
func TestAckBatching(t *testing.T) {
	in := newInbox[int](0)
	in.mu.Lock()
	for i := range ackFlushCount - 1 {
		in.addAckLocked(fmt.Sprint(i))
	}
	in.mu.Unlock()
	// The timer armed by the first ack fires later; drain it so the next
	// kick can only come from the full group.
	recvKick(t, in.ackKick, "timer flush of a partial group")
	in.mu.Lock()
	in.addAckLocked("last")
	in.mu.Unlock()
	select {
	case <-in.ackKick:
	default:
		t.Fatal("a full group of acks did not ask for a flush at once")
	}
	ids := in.takeAcks()
	if len(ids) != ackFlushCount || ids[0] != "0" || ids[len(ids)-1] != "last" {
		t.Fatalf("took %d acks (%v...)", len(ids), ids[:3])
	}
	if in.takeAcks() != nil {
		t.Fatal("acks not cleared by take")
	}
	in.mu.Lock()
	in.addAckLocked("new")
	in.mu.Unlock()
	in.restoreAcks([]string{"x", "y"})
	if ids := in.takeAcks(); !slices.Equal(ids, []string{"x", "y", "new"}) {
		t.Fatalf("after restore: %v, want the failed ones first", ids)
	}
	recvKick(t, in.ackKick, "timer flush after restore")
}

func batchOfIDs(ids ...string) *griddpb.Batch {
	b := &griddpb.Batch{SessionId: "s"}
	for _, id := range ids {
		b.Messages = append(b.Messages, &griddpb.Message{Id: id})
	}
	return b
}

// Batches stay until acknowledged; a reconnection queues them all again in
// order; late acks of resends are ignored; rejections become status errors.
func TestOutboxResendBookkeeping(t *testing.T) {
	o := newOutbox()
	p1, _ := o.add(batchOfIDs("a"))
	p2, _ := o.add(batchOfIDs("b"))
	p3, _ := o.add(batchOfIDs("c"))
	if p1.seq != 1 || p2.seq != 2 || p3.seq != 3 || p3.batch.Seq != 3 {
		t.Fatalf("seqs %d %d %d", p1.seq, p2.seq, p3.seq)
	}
	recvKick(t, o.kick, "add")
	if got := o.takeUnsent(); len(got) != 3 {
		t.Fatalf("unsent %d, want 3", len(got))
	}
	if got := o.takeUnsent(); len(got) != 0 {
		t.Fatal("unsent not cleared")
	}
	// The ack of batch 2 arrives, then the stream breaks.
	if !o.complete(&griddpb.SubmitAck{Seq: 2, Accepted: 1}) {
		t.Fatal("ack of a pending batch ignored")
	}
	if out := <-p2.done; out.err != nil || out.ack.GetAccepted() != 1 {
		t.Fatalf("outcome %+v", out)
	}
	o.drop(p3) // its submitter gave up
	if resent := o.resendAll(); resent != 1 {
		t.Fatalf("resent %d, want 1 (batch 1)", resent)
	}
	got := o.takeUnsent()
	if len(got) != 1 || got[0] != p1 || p1.sends != 2 {
		t.Fatalf("after reconnect: %d batches to send (first seq %v), sends %d", len(got), got, p1.sends)
	}
	// Both sends of batch 1 are answered; only the first counts.
	if !o.complete(&griddpb.SubmitAck{Seq: 1, Duplicates: 1}) {
		t.Fatal("ack of batch 1 ignored")
	}
	if o.complete(&griddpb.SubmitAck{Seq: 1, Duplicates: 1}) {
		t.Fatal("a second ack for the same seq settled something")
	}
	if o.len() != 0 {
		t.Fatalf("%d batches still pending", o.len())
	}
	p4, _ := o.add(batchOfIDs(""))
	o.complete(&griddpb.SubmitAck{Seq: p4.seq, Code: int32(codes.InvalidArgument), Message: "empty id"})
	out := <-p4.done
	if status.Code(out.err) != codes.InvalidArgument || !strings.Contains(out.err.Error(), "empty id") {
		t.Fatalf("rejection: %v", out.err)
	}
	p5, _ := o.add(batchOfIDs("e"))
	o.fail(ErrDetached)
	if out := <-p5.done; out.err != ErrDetached {
		t.Fatalf("pending batch after fail: %v", out.err)
	}
	if _, err := o.add(batchOfIDs("f")); err != ErrDetached {
		t.Fatalf("add after fail: %v", err)
	}
}

func TestSplitTasks(t *testing.T) {
	mk := func(n, size int) []Task {
		ts := make([]Task, n)
		for i := range ts {
			ts[i] = Task{ID: fmt.Sprint(i), Payload: make([]byte, size)}
		}
		return ts
	}
	cases := []struct {
		name             string
		tasks            []Task
		maxTasks, maxLen int
		want             []int
	}{
		{"one", mk(1, 10), 5, 1000, []int{1}},
		{"by count", mk(12, 1), 5, 1 << 20, []int{5, 5, 2}},
		{"exact", mk(10, 1), 5, 1 << 20, []int{5, 5}},
		{"by bytes", mk(6, 99), 100, 300, []int{3, 3}},
		{"huge task alone", []Task{{ID: "a"}, {ID: "b", Payload: make([]byte, 1000)}, {ID: "c"}}, 10, 100, []int{1, 1, 1}},
		{"shared-data level", []Task{{ID: "a"}, {ID: "b", UseSharedData: true, SharedDataLevel: 2},
			{ID: "c", UseSharedData: true, SharedDataLevel: 2}, {ID: "d", UseSharedData: true, SharedDataLevel: 3},
			{ID: "e", UseSharedData: true}}, 10, 1000, []int{1, 2, 1, 1}},
	}
	for _, c := range cases {
		got := splitTasks(c.tasks, c.maxTasks, c.maxLen)
		var sizes []int
		var ids []string
		for _, b := range got {
			sizes = append(sizes, len(b))
			for _, task := range b {
				ids = append(ids, task.ID)
			}
		}
		if !slices.Equal(sizes, c.want) {
			t.Errorf("%s: sizes %v, want %v", c.name, sizes, c.want)
		}
		for i, task := range c.tasks {
			if ids[i] != task.ID {
				t.Errorf("%s: task %d is %s, want %s", c.name, i, ids[i], task.ID)
			}
		}
	}
}

// A batch refused with ResourceExhausted (session full) stays pending and
// comes back to be sent after its backoff, not before; a reconnect does
// not send it early; fail stops the wait.
func TestOutboxWaitsWhenSessionFull(t *testing.T) {
	o := newOutbox()
	p, _ := o.add(batchOfIDs("a"))
	recvKick(t, o.kick, "add")
	o.takeUnsent()
	full := &griddpb.SubmitAck{Seq: p.seq, Code: int32(codes.ResourceExhausted), Message: "session s has 5 pending tasks"}
	if o.complete(full) {
		t.Fatal("a full session's refusal settled the batch")
	}
	if p.sends != 0 || p.full != 1 || o.len() != 1 {
		t.Fatalf("after the refusal: sends %d, full %d, pending %d", p.sends, p.full, o.len())
	}
	select {
	case out := <-p.done:
		t.Fatalf("batch settled: %+v", out)
	default:
	}
	if n := o.resendAll(); n != 0 || len(o.takeUnsent()) != 0 {
		t.Fatal("a reconnect sent the waiting batch before its backoff")
	}
	recvKick(t, o.kick, "backoff over")
	if got := o.takeUnsent(); len(got) != 1 || got[0] != p {
		t.Fatalf("after the backoff: %d batches to send", len(got))
	}
	if !o.complete(&griddpb.SubmitAck{Seq: p.seq, Accepted: 1}) {
		t.Fatal("the resend's ack was ignored")
	}
	if out := <-p.done; out.err != nil || out.ack.GetAccepted() != 1 {
		t.Fatalf("outcome %+v", out)
	}
	// Refused again, then the session detaches during the wait.
	q, _ := o.add(batchOfIDs("b"))
	o.takeUnsent()
	o.complete(&griddpb.SubmitAck{Seq: q.seq, Code: int32(codes.ResourceExhausted)})
	o.fail(ErrDetached)
	if out := <-q.done; out.err != ErrDetached {
		t.Fatalf("waiting batch after fail: %v", out.err)
	}
	o.mu.Lock()
	waits := len(o.waits)
	o.mu.Unlock()
	if waits != 0 {
		t.Fatalf("%d backoff timers left after fail", waits)
	}
}
