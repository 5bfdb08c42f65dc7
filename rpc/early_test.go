package rpc

import (
	"reflect"
	"testing"

	"github.com/gridd/gridd/rpc/griddpb"
)

func TestEarlyResults(t *testing.T) {
	e := newEarlyResults()
	msg := func(ids ...string) []*griddpb.Message {
		out := make([]*griddpb.Message, len(ids))
		for i, id := range ids {
			out[i] = &griddpb.Message{Id: id}
		}
		return out
	}
	ids := func(ms []*griddpb.Message) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.Id)
		}
		return out
	}
	if got := ids(e.add(msg("a", "b"))); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("first add: %v", got)
	}
	if got := ids(e.add(msg("b", "c"))); !reflect.DeepEqual(got, []string{"c"}) {
		t.Fatalf("a repeat is not sent twice: %v", got)
	}
	// The client acknowledges a (early, not committed) and x (committed).
	if got := e.holdAcks([]string{"a", "x"}); !reflect.DeepEqual(got, []string{"x"}) {
		t.Fatalf("held acks: got %v, want only x proposed now", got)
	}
	if early, acked := e.committed("a"); !early || !acked {
		t.Fatalf("a committed: early=%v acked=%v, want both", early, acked)
	}
	if early, acked := e.committed("b"); !early || acked {
		t.Fatalf("b committed: early=%v acked=%v, want early only", early, acked)
	}
	if early, _ := e.committed("z"); early {
		t.Fatal("z was never sent early")
	}
	// Once committed, an ack goes through at once.
	if got := e.holdAcks([]string{"a", "b"}); !reflect.DeepEqual(got, []string{"a", "b"}) {
		t.Fatalf("acks after commit: %v", got)
	}
}

// The acks a stream holds back are listed for the flush at its end: only
// those the client sent, never those of results it was not yet sent.
func TestHeldAckedListsHeldAcks(t *testing.T) {
	e := newEarlyResults()
	e.add([]*griddpb.Message{{Id: "b"}, {Id: "a"}, {Id: "c"}})
	if got := e.heldAcked(); len(got) != 0 {
		t.Fatalf("held before any ack: %v", got)
	}
	if now := e.holdAcks([]string{"c", "a", "x"}); len(now) != 1 || now[0] != "x" {
		t.Fatalf("acks to send now: %v, want [x]", now)
	}
	if got := e.heldAcked(); len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Fatalf("held acks %v, want [a c]", got)
	}
	e.committed("a") // seen committed: its ack went out with the commit
	if got := e.heldAcked(); len(got) != 1 || got[0] != "c" {
		t.Fatalf("held acks after a's commit %v, want [c]", got)
	}
}
