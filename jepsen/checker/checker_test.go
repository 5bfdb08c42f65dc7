package checker

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/gridd/gridd/jepsen/history"
)

// hist builds a history with increasing times, one event per call.
type hist struct{ ops []history.Op }

func (h *hist) add(p int, t history.Type, f string, v history.Value) {
	h.ops = append(h.ops, history.Op{Index: len(h.ops), Process: p, Type: t, F: f, Value: v,
		Time: int64(len(h.ops) + 1)})
}

func (h *hist) submit(p int, t history.Type, tasks []string, poison ...string) {
	h.add(p, history.Invoke, history.Submit, history.Value{Session: "s", Tasks: tasks, Poison: poison})
	h.add(p, t, history.Submit, history.Value{Session: "s"})
}

func (h *hist) deliver(f string, ids ...string) {
	for _, id := range ids {
		h.add(100, history.OK, f, history.Value{Session: "s", Tasks: []string{id}})
	}
}

// healthy is a history every queue check must pass: acknowledged tasks each
// delivered once, a poison task dead-lettered, an unknown submit recovered,
// another unknown one never applied, and wire repeats.
func healthy() *hist {
	h := &hist{}
	h.submit(1, history.OK, []string{"a", "b", "p"}, "p")
	h.submit(2, history.Info, []string{"c"})
	h.submit(2, history.Info, []string{"d"})
	h.submit(3, history.Fail, []string{"e"})
	h.deliver(history.Result, "a", "b", "c")
	h.deliver(history.DeadLetter, "p")
	h.add(100, history.OK, history.Repeats, history.Value{Count: 7})
	return h
}

func TestQueuePass(t *testing.T) {
	r := Queue(healthy().ops)
	if !r.Valid {
		t.Fatalf("healthy history judged invalid: %+v", r)
	}
	want := QueueResult{Valid: true, Attempted: 6, Acknowledged: 3, Unknown: 2, Results: 3,
		DeadLetters: 1, Recovered: 1, WireRepeats: 7}
	if r.Attempted != want.Attempted || r.Acknowledged != want.Acknowledged || r.Unknown != want.Unknown ||
		r.Results != want.Results || r.DeadLetters != want.DeadLetters || r.Recovered != want.Recovered ||
		r.WireRepeats != want.WireRepeats {
		t.Fatalf("counts = %+v, want %+v", r, want)
	}
}

func TestQueueFail(t *testing.T) {
	cases := []struct {
		name  string
		plant func(h *hist)
		check func(r QueueResult) bool
	}{
		{"lost task", func(h *hist) { h.submit(4, history.OK, []string{"lost"}) },
			func(r QueueResult) bool { return r.Lost == 1 && r.LostExamples[0] == "s/lost" }},
		{"duplicated result", func(h *hist) { h.deliver(history.Result, "a") },
			func(r QueueResult) bool { return r.Duplicated == 1 }},
		{"result and dead letter", func(h *hist) { h.deliver(history.DeadLetter, "b") },
			func(r QueueResult) bool { return r.Duplicated == 1 }},
		{"never submitted", func(h *hist) { h.deliver(history.Result, "ghost") },
			func(r QueueResult) bool { return r.Unexpected == 1 }},
		{"failed submit delivered", func(h *hist) { h.deliver(history.Result, "e") },
			func(r QueueResult) bool { return r.Unexpected == 1 }},
		{"poison with a result", func(h *hist) {
			h.submit(5, history.OK, []string{"q"}, "q")
			h.deliver(history.Result, "q")
		}, func(r QueueResult) bool { return r.WrongOutcome == 1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := healthy()
			c.plant(h)
			r := Queue(h.ops)
			if r.Valid || !c.check(r) {
				t.Fatalf("planted %s not caught: %+v", c.name, r)
			}
		})
	}
}

func TestQueueOpenSubmitIsUnknown(t *testing.T) {
	h := &hist{}
	h.add(1, history.Invoke, history.Submit, history.Value{Session: "s", Tasks: []string{"x"}})
	h.deliver(history.Result, "x")
	if r := Queue(h.ops); !r.Valid || r.Recovered != 1 {
		t.Fatalf("submit without completion: %+v, want valid with 1 recovered", r)
	}
}

// sess records one complete session operation.
func (h *hist) sess(p int, f string, session string, prio int32, t history.Type, ans history.Value) {
	h.add(p, history.Invoke, f, history.Value{Session: session, Priority: prio})
	ans.Session = session
	h.add(p, t, f, ans)
}

func TestSessionsLinearizable(t *testing.T) {
	h := &hist{}
	h.sess(1, history.Get, "s1", 0, history.Fail, history.Value{Code: "NotFound"})
	h.sess(1, history.Create, "s1", 3, history.OK, history.Value{})
	h.sess(2, history.Create, "s1", 4, history.Fail, history.Value{Code: "AlreadyExists"})
	h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateOpen, Priority: 3})
	h.sess(1, history.Update, "s1", 7, history.OK, history.Value{Priority: 7})
	// An update whose outcome is unknown may take effect at any later point:
	// a read of 9 after it is legal.
	h.sess(3, history.Update, "s1", 9, history.Info, history.Value{Code: "Unavailable"})
	h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateOpen, Priority: 9})
	h.sess(1, history.Close, "s1", 0, history.OK, history.Value{})
	h.sess(2, history.Update, "s1", 2, history.Fail, history.Value{Code: "FailedPrecondition"})
	h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateClosed, Priority: 9})
	// Concurrent operations on another session: a get overlapping an update
	// may see either value.
	h.add(4, history.Invoke, history.Create, history.Value{Session: "s2", Priority: 1})
	h.add(4, history.OK, history.Create, history.Value{Session: "s2"})
	h.add(4, history.Invoke, history.Update, history.Value{Session: "s2", Priority: 5})
	h.add(5, history.Invoke, history.Get, history.Value{Session: "s2"})
	h.add(5, history.OK, history.Get, history.Value{Session: "s2", State: history.StateOpen, Priority: 5})
	h.add(4, history.OK, history.Update, history.Value{Session: "s2", Priority: 5})
	r := Sessions(h.ops, 0)
	if !r.Valid || r.Sessions != 2 || r.Unknown != 1 {
		t.Fatalf("linearizable history judged %+v", r)
	}
	path := filepath.Join(t.TempDir(), "sessions.html")
	if err := r.Visualize(path); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || !bytes.Contains(b, []byte("<html")) {
		t.Fatalf("visualization: %v, %d bytes", err, len(b))
	}
}

func TestSessionsNotLinearizable(t *testing.T) {
	cases := []struct {
		name  string
		plant func(h *hist)
	}{
		{"stale read", func(h *hist) {
			h.sess(1, history.Create, "s1", 3, history.OK, history.Value{})
			h.sess(1, history.Update, "s1", 7, history.OK, history.Value{Priority: 7})
			h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateOpen, Priority: 3})
		}},
		{"read of a failed write", func(h *hist) {
			h.sess(1, history.Create, "s1", 3, history.OK, history.Value{})
			h.sess(1, history.Close, "s1", 0, history.OK, history.Value{})
			h.sess(1, history.Update, "s1", 7, history.Fail, history.Value{Code: "FailedPrecondition"})
			h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateClosed, Priority: 7})
		}},
		{"created twice", func(h *hist) {
			h.sess(1, history.Create, "s1", 3, history.OK, history.Value{})
			h.sess(2, history.Create, "s1", 4, history.OK, history.Value{})
		}},
		{"reopened", func(h *hist) {
			h.sess(1, history.Create, "s1", 3, history.OK, history.Value{})
			h.sess(1, history.Close, "s1", 0, history.OK, history.Value{})
			h.sess(2, history.Get, "s1", 0, history.OK, history.Value{State: history.StateOpen, Priority: 3})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := &hist{}
			c.plant(h)
			r := Sessions(h.ops, 0)
			if r.Valid || r.Result != "Illegal" {
				t.Fatalf("planted %s not caught: %+v", c.name, r)
			}
		})
	}
}
