package history

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	rec.Add(1, Invoke, Submit, Value{Session: "s", Tasks: []string{"a"}})
	rec.Add(1, OK, Submit, Value{Session: "s"})
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != 2 {
		t.Fatalf("%d lines, want 2:\n%s", n, buf.String())
	}
	ops, err := Read(&buf)
	if err != nil || len(ops) != 2 || ops[0].Value.Tasks[0] != "a" || ops[1].Type != OK || ops[1].Index != 1 {
		t.Fatalf("read back %+v, %v", ops, err)
	}
	if _, err := Read(strings.NewReader("{not json")); err == nil {
		t.Fatal("garbage read without an error")
	}
}

// TestConcurrentAdd checks that concurrent recorders get distinct indexes
// in time order and that every line is written whole.
func TestConcurrentAdd(t *testing.T) {
	var buf bytes.Buffer
	rec := NewRecorder(&buf)
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Go(func() {
			for range 100 {
				rec.Add(p, OK, Result, Value{Tasks: []string{"t"}})
			}
		})
	}
	wg.Wait()
	if err := rec.Flush(); err != nil {
		t.Fatal(err)
	}
	ops, err := Read(&buf)
	if err != nil || len(ops) != 800 {
		t.Fatalf("read %d ops, %v", len(ops), err)
	}
	for i, op := range ops {
		if op.Index != i || (i > 0 && op.Time < ops[i-1].Time) {
			t.Fatalf("op %d: index %d time %d after %d", i, op.Index, op.Time, ops[max(0, i-1)].Time)
		}
	}
}
