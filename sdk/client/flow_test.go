package client

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

func idTasks(ids ...string) []Task {
	ts := make([]Task, len(ids))
	for i, id := range ids {
		ts[i].ID = id
	}
	return ts
}

// The bound counts distinct ids, skips known ones, lets an oversized group
// through only when nothing is in flight, and wakes waiters on release and
// on close.
func TestFlowBound(t *testing.T) {
	ctx := context.Background()
	f := newFlow(3)
	known := func(id string) bool { return id == "old" }
	if got, err := f.acquire(ctx, idTasks("a", "b", "a", "old"), known); err != nil || len(got) != 2 {
		t.Fatalf("acquire a, b: %v, %v", got, err)
	}
	if got, err := f.acquire(ctx, idTasks("b", "c"), known); err != nil || len(got) != 1 || got[0] != "c" {
		t.Fatalf("acquire b, c: %v, %v", got, err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := f.acquire(short, idTasks("d"), known); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire when full: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := f.acquire(ctx, idTasks("d", "e"), known)
		got <- err
	}()
	f.release("a", "zzz") // one slot: not enough for two
	f.release("b")
	if err := <-got; err != nil || f.len() != 3 {
		t.Fatalf("acquire after release: %v, %d in flight", err, f.len())
	}
	f.release("c", "d", "e")
	if ids, err := f.acquire(ctx, idTasks("1", "2", "3", "4", "5"), nil); err != nil || len(ids) != 5 {
		t.Fatalf("oversized group with nothing in flight: %v, %v", ids, err)
	}
	go func() {
		_, err := f.acquire(ctx, idTasks("6"), nil)
		got <- err
	}()
	f.close(ErrDetached)
	if err := <-got; !errors.Is(err, ErrDetached) {
		t.Fatalf("acquire across close: %v", err)
	}
	if _, err := newFlow(-1).acquire(ctx, idTasks("x", "y"), nil); err != nil {
		t.Fatalf("unbounded: %v", err)
	}
}

// Acks that piled up go out in messages the server accepts, and those not
// sent when a send fails stay queued for the next stream.
func TestSendAcksSplits(t *testing.T) {
	in := newInbox[string](0)
	for i := range 2*maxAckIDs + 10 {
		in.addAckLocked(fmt.Sprint(i))
	}
	var sizes []int
	fail := errors.New("broken stream")
	err := sendAcks(in, func(a *griddpb.Ack) error {
		if len(sizes) == 2 {
			return fail
		}
		sizes = append(sizes, len(a.GetIds()))
		return nil
	})
	if !errors.Is(err, fail) || len(sizes) != 2 || sizes[0] != maxAckIDs || sizes[1] != maxAckIDs {
		t.Fatalf("sendAcks: %v, sizes %v", err, sizes)
	}
	if n := in.pendingAcks(); n != 10 {
		t.Fatalf("%d acks left queued, want 10", n)
	}
}
