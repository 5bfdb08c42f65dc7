package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
)

func TestHolders(t *testing.T) {
	r := newRig(t)
	r.create("s", 2)
	r.enqueue("s", "a", "b", "c", "d")
	if h := r.d.Holders("s", []string{"a"}); len(h) != 0 {
		t.Fatalf("an inactive dispatcher reports holders: %v", h)
	}
	r.d.Activate()
	st, _, err := r.d.OpenStream(context.Background(), "w1", "s")
	if err != nil {
		t.Fatal(err)
	}
	r.next(st) // a b c
	h := r.d.Holders("s", []string{"a", "d", "zz"})
	if len(h) != 1 || h["a"] != "w1" {
		t.Fatalf("holders %v, want only a on w1", h)
	}
	r.complete("s", "a")
	if h := r.d.Holders("s", []string{"a", "b"}); len(h) != 1 || h["b"] != "w1" {
		t.Fatalf("after a completed: %v, want only b on w1", h)
	}
	r.d.CloseStream(st)
	if h := r.d.Holders("s", []string{"b", "c"}); len(h) != 0 {
		t.Fatalf("tasks of a closed stream still held: %v", h)
	}
}

// exitRig is a dispatcher whose cleanup_on_client_exit closes are recorded
// instead of proposed.
func exitRig(t *testing.T, grace time.Duration, fail bool) (*rig, chan string) {
	f := fsm.New(fsm.Options{})
	closed := make(chan string, 16)
	d := New(f, Options{Logger: slog.New(slog.DiscardHandler), ClientExitGrace: grace,
		CloseSession: func(_ context.Context, id string) error {
			closed <- id
			if fail {
				return errors.New("no quorum")
			}
			return nil
		}})
	t.Cleanup(d.Deactivate)
	return &rig{t: t, f: f, d: d}, closed
}

func (r *rig) createCleanup(id string, cleanup bool) {
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_CreateSession{CreateSession: &fsmpb.CreateSession{
		SessionId: id, Attrs: &fsmpb.SessionAttrs{CleanupOnClientExit: cleanup}}}})
}

func expectClose(t *testing.T, closed chan string, want string) {
	t.Helper()
	select {
	case id := <-closed:
		if id != want {
			t.Fatalf("closed %q, want %q", id, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not closed", want)
	}
}

func expectNoClose(t *testing.T, closed chan string, wait time.Duration) {
	t.Helper()
	select {
	case id := <-closed:
		t.Fatalf("closed %q, want nothing closed", id)
	case <-time.After(wait):
	}
}

func TestClientExitCloses(t *testing.T) {
	r, closed := exitRig(t, 50*time.Millisecond, false)
	r.createCleanup("orphan", true)
	r.createCleanup("plain", false)
	// A new leader gives every such session without a client its grace.
	r.d.Activate()
	expectClose(t, closed, "orphan")

	// Created on this leader, claimed before the grace ends: kept.
	r.createCleanup("kept", true)
	_, _, release, err := r.d.ClaimClient(context.Background(), "kept", KindResults)
	if err != nil {
		t.Fatal(err)
	}
	expectNoClose(t, closed, 300*time.Millisecond)

	// A newer claim replaces the first; the first's release is not an exit.
	_, _, release2, err := r.d.ClaimClient(context.Background(), "kept", KindResults)
	if err != nil {
		t.Fatal(err)
	}
	release()
	expectNoClose(t, closed, 300*time.Millisecond)
	release2()
	expectClose(t, closed, "kept")

	// A dead-letter stream alone does not keep a session: the client
	// reads its results on the results stream.
	r.createCleanup("dl", true)
	_, _, releaseDL, err := r.d.ClaimClient(context.Background(), "dl", KindDeadLetters)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseDL()
	expectClose(t, closed, "dl")

	// Turning the attribute off stops the timer.
	r.createCleanup("changed", true)
	r.apply(&fsmpb.Command{Cmd: &fsmpb.Command_UpdateSession{UpdateSession: &fsmpb.UpdateSession{
		SessionId: "changed", CleanupOnClientExit: new(bool)}}})
	expectNoClose(t, closed, 300*time.Millisecond)
}

func TestClientExitStopsWithLeadership(t *testing.T) {
	r, closed := exitRig(t, 200*time.Millisecond, true)
	r.createCleanup("s", true)
	r.d.Activate()
	expectClose(t, closed, "s") // fails: retried by this leader later
	r.d.Deactivate()
	// No timer of the old leader fires, and none is left running.
	expectNoClose(t, closed, clientExitRetry+500*time.Millisecond)
	r.d.mu.Lock()
	n := len(r.d.exits.timers)
	r.d.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d timers left after Deactivate", n)
	}
}
