package main

import (
	"testing"
	"time"

	"github.com/gridd/gridd/jepsen/checker"
	"github.com/gridd/gridd/jepsen/history"
)

// TestPlantFails checks that each planted bug turns a passing history into
// a failing verdict.
func TestPlantFails(t *testing.T) {
	rec := history.NewRecorder(nil)
	rec.Add(1, history.Invoke, history.Submit, history.Value{Session: "s", Tasks: []string{"a", "b"}})
	rec.Add(1, history.OK, history.Submit, history.Value{Session: "s"})
	rec.Add(1, history.OK, history.Result, history.Value{Session: "s", Tasks: []string{"a"}})
	rec.Add(1, history.OK, history.Result, history.Value{Session: "s", Tasks: []string{"b"}})
	rec.Add(2, history.Invoke, history.Create, history.Value{Session: "x", Priority: 3})
	rec.Add(2, history.OK, history.Create, history.Value{Session: "x", State: history.StateOpen, Priority: 3})
	rec.Add(2, history.Invoke, history.Get, history.Value{Session: "x"})
	rec.Add(2, history.OK, history.Get, history.Value{Session: "x", State: history.StateOpen, Priority: 3})
	rec.Add(3, history.Invoke, history.SharedWrite, history.Value{Session: "y", Level: 1, Digest: "d1"})
	rec.Add(3, history.OK, history.SharedWrite, history.Value{Session: "y", Level: 1})
	rec.Add(4, history.Invoke, history.SharedRead, history.Value{Session: "y"})
	rec.Add(4, history.OK, history.SharedRead, history.Value{Session: "y", Level: 1, Digest: "d1"})
	ops := rec.Ops()
	valid := func(ops []history.Op) bool {
		return checker.Queue(ops).Valid && checker.Sessions(ops, time.Minute).Valid &&
			checker.SharedData(ops).Valid
	}
	if !valid(ops) {
		t.Fatal("the unplanted history fails")
	}
	for _, k := range plantKinds {
		planted, err := plant(ops, k)
		if err != nil {
			t.Fatal(err)
		}
		if valid(planted) {
			t.Errorf("--plant %s: still PASS", k)
		}
	}
	if valid(ops) {
		t.Log("original history untouched")
	} else {
		t.Fatal("plant changed the original history")
	}
	if _, err := plant(ops[:2], "lost"); err == nil {
		t.Fatal("plant into a history without results did not fail")
	}
}
