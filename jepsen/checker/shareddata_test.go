package checker

import (
	"testing"

	"github.com/gridd/gridd/jepsen/history"
)

func (h *hist) sharedWrite(p int, t history.Type, level int64, digest string) {
	h.add(p, history.Invoke, history.SharedWrite, history.Value{Session: "s", Level: level, Digest: digest})
	v := history.Value{Session: "s"}
	if t == history.Fail {
		v.Code = "FailedPrecondition"
	}
	h.add(p, t, history.SharedWrite, v)
}

// sharedRead records a read of level asked answered with level got and
// digest, or, when code is set, failing with it.
func (h *hist) sharedRead(p int, asked, got int64, digest, code string) {
	h.add(p, history.Invoke, history.SharedRead, history.Value{Session: "s", Level: asked})
	if code != "" {
		h.add(p, history.Fail, history.SharedRead, history.Value{Session: "s", Code: code})
		return
	}
	h.add(p, history.OK, history.SharedRead, history.Value{Session: "s", Level: got, Digest: digest})
}

// healthyShared: levels 1..3 written (2 with an unknown outcome, which a
// reader may or may not see), readers of the latest and of exact levels,
// a level not kept any more and one not written yet.
func healthyShared() *hist {
	h := &hist{}
	h.sharedWrite(1, history.Fail, 1, "d1") // refused, then tried again
	h.sharedWrite(1, history.OK, 1, "d1")
	h.sharedRead(10, 0, 1, "d1", "")
	h.sharedRead(11, 2, 0, "", "FailedPrecondition")
	h.sharedWrite(1, history.Info, 2, "d2")
	h.sharedRead(10, 0, 2, "d2", "")
	h.sharedRead(11, 0, 1, "d1", "") // reader 11 has not seen 2: not backwards for it
	h.sharedWrite(1, history.Fail, 3, "d3-refused")
	h.sharedWrite(1, history.OK, 4, "d4")
	h.sharedRead(11, 4, 4, "d4", "")
	h.sharedRead(10, 1, 0, "", "NotFound")
	h.sharedRead(10, 0, 4, "d4", "")
	return h
}

func TestSharedDataPass(t *testing.T) {
	r := SharedData(healthyShared().ops)
	if !r.Valid || r.Stale != 0 {
		t.Fatalf("healthy history judged invalid: %+v", r)
	}
	if r.Writes != 5 || r.WritesAcked != 2 || r.MaxLevel != 4 || r.Reads != 7 || r.ReadsOK != 5 {
		t.Fatalf("counts = %+v", r)
	}
}

// Planted bugs, each alone in an otherwise healthy history.
func TestSharedDataFail(t *testing.T) {
	cases := []struct {
		name  string
		plant func(h *hist)
		check func(r SharedDataResult) bool
	}{
		{"latest goes backwards", func(h *hist) { h.sharedRead(10, 0, 2, "d2", "") },
			func(r SharedDataResult) bool { return r.Backwards == 1 }},
		{"backwards after an exact read", func(h *hist) {
			h.sharedWrite(1, history.OK, 5, "d5")
			h.sharedRead(12, 5, 5, "d5", "")
			h.sharedRead(12, 0, 4, "d4", "")
		}, func(r SharedDataResult) bool { return r.Backwards == 1 }},
		{"wrong bytes", func(h *hist) { h.sharedRead(12, 4, 4, "d2", "") },
			func(r SharedDataResult) bool { return r.WrongBytes == 1 }},
		{"another level than asked", func(h *hist) { h.sharedRead(12, 2, 4, "d4", "") },
			func(r SharedDataResult) bool { return r.WrongBytes == 1 }},
		{"a refused level read", func(h *hist) { h.sharedRead(12, 3, 3, "d3-refused", "") },
			func(r SharedDataResult) bool { return r.WrongBytes == 1 }},
		{"a level never written", func(h *hist) { h.sharedRead(12, 0, 9, "d9", "") },
			func(r SharedDataResult) bool { return r.WrongBytes == 1 }},
	}
	for _, c := range cases {
		h := healthyShared()
		c.plant(h)
		r := SharedData(h.ops)
		if r.Valid || !c.check(r) || len(r.Examples) == 0 {
			t.Errorf("%s: not caught: %+v", c.name, r)
		}
	}
}

// A read that begins after a higher level was acknowledged and sees an
// older one is counted stale, but is no violation of the promise.
func TestSharedDataStaleIsReported(t *testing.T) {
	h := healthyShared()
	h.sharedRead(12, 0, 2, "d2", "")
	h.sharedRead(12, 4, 0, "", "FailedPrecondition")
	r := SharedData(h.ops)
	if !r.Valid || r.Stale != 2 {
		t.Fatalf("stale reads: %+v", r)
	}
}
