package dispatch

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func bind(w, s string) Decision { return Decision{Worker: w, Action: Bind, Session: s} }

func unbind(w, s string, why Reason) Decision {
	return Decision{Worker: w, Action: Unbind, Session: s, Reason: why}
}

func abort(w, s string) Decision {
	return Decision{Worker: w, Action: Unbind, Session: s, Abort: true, Reason: ReasonPreempt}
}

// idle returns n idle workers w1..wn.
func idle(n int) []WorkerView {
	out := make([]WorkerView, n)
	for i := range out {
		out[i] = WorkerView{ID: fmt.Sprintf("w%d", i+1)}
	}
	return out
}

// busyOn returns workers w1..wn, each bound to s and holding tasks.
func busyOn(s string, n int) []WorkerView {
	out := idle(n)
	for i := range out {
		out[i].Bound, out[i].Busy = s, true
	}
	return out
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name     string
		sessions []SessionView
		workers  []WorkerView
		mode     Preemption
		want     []Decision
	}{
		// Basics.
		{
			name:     "nothing to do",
			sessions: []SessionView{{ID: "a", Priority: 5}},
			workers:  idle(1),
		},
		{
			name:     "idle worker binds to the session with ready tasks",
			sessions: []SessionView{{ID: "a", Priority: 5}, {ID: "b", Priority: 5, Ready: 3}},
			workers:  idle(1),
			want:     []Decision{bind("w1", "b")},
		},
		{
			name:     "no more workers than ready tasks",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 2}},
			workers:  idle(4),
			want:     []Decision{bind("w1", "a"), bind("w2", "a")},
		},
		{
			name:     "a draining worker is never bound",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 10}},
			workers:  []WorkerView{{ID: "w1", Draining: true}, {ID: "w2"}},
			want:     []Decision{bind("w2", "a")},
		},
		{
			// A worker whose stream waits for a stopped (timed-out) task's
			// handler takes nothing new: the retry needs another worker.
			name:     "a blocked worker does not count as serving the ready task",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 1, Running: 1}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true, Blocked: true}, {ID: "w2"}},
			want:     []Decision{bind("w2", "a")},
		},
		{
			name:     "without the block one worker is enough for one ready task",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 1, Running: 1}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true}, {ID: "w2"}},
		},

		// Priorities.
		{
			name:     "higher priority first",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100}, {ID: "high", Priority: 9, Ready: 1}},
			workers:  idle(2),
			// high has one ready task: a second worker would sit empty.
			want: []Decision{bind("w1", "high"), bind("w2", "low")},
		},
		{
			name:     "higher priority takes every idle worker it can use",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100}, {ID: "high", Priority: 9, Ready: 100}},
			workers:  idle(4),
			want:     []Decision{bind("w1", "high"), bind("w2", "high"), bind("w3", "high"), bind("w4", "high")},
		},
		{
			name:     "a non-preemptible session keeps its workers against a higher priority",
			sessions: []SessionView{{ID: "a", Priority: 1, Ready: 5}, {ID: "b", Priority: 9, Ready: 10}},
			workers:  busyOn("a", 1),
		},

		// Min and max workers.
		{
			name:     "max_workers is respected",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, MaxWorkers: 1}},
			workers:  idle(2),
			want:     []Decision{bind("w1", "a")},
		},
		{
			name:     "workers beyond a lowered max_workers are released, empty-handed first",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, Running: 20, MaxWorkers: 2}},
			workers: []WorkerView{{ID: "w1", Bound: "a", Busy: true}, {ID: "w2", Bound: "a"},
				{ID: "w3", Bound: "a", Busy: true}},
			want: []Decision{unbind("w2", "a", ReasonMax)},
		},
		{
			name: "a session below min_workers is served before a higher priority",
			sessions: []SessionView{{ID: "high", Priority: 9, Ready: 100},
				{ID: "low", Priority: 1, Ready: 100, MinWorkers: 2}},
			workers: idle(4),
			want:    []Decision{bind("w1", "low"), bind("w2", "low"), bind("w3", "high"), bind("w4", "high")},
		},
		{
			name: "min_workers takes a worker from a session above its own floor, by drain",
			sessions: []SessionView{{ID: "high", Priority: 9, Ready: 100, Running: 20},
				{ID: "low", Priority: 1, Ready: 100, MinWorkers: 1}},
			workers: busyOn("high", 2),
			mode:    PreemptImmediate, // not a preemption: never aborts
			want:    []Decision{unbind("w1", "high", ReasonMin), bind("w1", "low")},
		},
		{
			name: "two sessions at their floors take nothing from each other",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, MinWorkers: 2, Running: 10},
				{ID: "b", Priority: 5, Ready: 100, MinWorkers: 3, Running: 10}},
			workers: append(busyOn("a", 2), WorkerView{ID: "w3", Bound: "b", Busy: true}),
		},
		{
			name:     "a session with nothing ready does not hold its min_workers",
			sessions: []SessionView{{ID: "a", Priority: 5, MinWorkers: 2, LastActive: t0}},
			workers:  idle(2),
		},

		// Preemption.
		{
			name: "drain: a higher priority takes workers of a preemptible session",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100, Running: 40, Preemptible: true},
				{ID: "high", Priority: 9, Ready: 2}},
			workers: busyOn("low", 4),
			want: []Decision{unbind("w1", "low", ReasonPreempt), bind("w1", "high"),
				unbind("w2", "low", ReasonPreempt), bind("w2", "high")},
		},
		{
			name: "immediate: the unbind aborts",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100, Running: 40, Preemptible: true},
				{ID: "high", Priority: 9, Ready: 1}},
			workers: busyOn("low", 4),
			mode:    PreemptImmediate,
			want:    []Decision{abort("w1", "low"), bind("w1", "high")},
		},
		{
			name: "preemption prefers a worker with nothing in hand",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100, Running: 10, Preemptible: true},
				{ID: "high", Priority: 9, Ready: 1}},
			workers: []WorkerView{{ID: "w1", Bound: "low", Busy: true}, {ID: "w2", Bound: "low"}},
			mode:    PreemptImmediate,
			want:    []Decision{abort("w2", "low"), bind("w2", "high")},
		},
		{
			name: "preemption never by an equal priority",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, Running: 10, Preemptible: true},
				{ID: "b", Priority: 5, Ready: 1}},
			workers: busyOn("a", 1),
		},
		{
			name: "preemption never takes a session below its min_workers",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100, Running: 30, Preemptible: true, MinWorkers: 3},
				{ID: "high", Priority: 9, Ready: 100}},
			workers: busyOn("low", 4),
			want:    []Decision{unbind("w1", "low", ReasonPreempt), bind("w1", "high")},
		},
		{
			name: "the lowest priority is preempted first",
			sessions: []SessionView{{ID: "mid", Priority: 5, Ready: 100, Running: 10, Preemptible: true},
				{ID: "low", Priority: 1, Ready: 100, Running: 10, Preemptible: true},
				{ID: "high", Priority: 9, Ready: 1}},
			workers: []WorkerView{{ID: "w1", Bound: "mid", Busy: true}, {ID: "w2", Bound: "low", Busy: true}},
			want:    []Decision{unbind("w2", "low", ReasonPreempt), bind("w2", "high")},
		},
		{
			name: "idle workers before preemption",
			sessions: []SessionView{{ID: "low", Priority: 1, Ready: 100, Running: 10, Preemptible: true},
				{ID: "high", Priority: 9, Ready: 1}},
			workers: append(busyOn("low", 1), WorkerView{ID: "w9"}),
			want:    []Decision{bind("w9", "high")},
		},

		// Fairness among equal priorities.
		{
			name:     "equal priorities share the workers",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100}, {ID: "b", Priority: 5, Ready: 100}},
			workers:  idle(4),
			want:     []Decision{bind("w1", "a"), bind("w2", "b"), bind("w3", "a"), bind("w4", "b")},
		},
		{
			name: "ties go to the session served longest ago",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100, LastServed: 7},
				{ID: "b", Priority: 5, Ready: 100, LastServed: 3}},
			workers: idle(1),
			want:    []Decision{bind("w1", "b")},
		},
		{
			name:     "existing bindings count towards fairness",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 100}, {ID: "b", Priority: 5, Ready: 100}},
			workers:  []WorkerView{{ID: "w1", Bound: "a", Busy: true}, {ID: "w2"}},
			want:     []Decision{bind("w2", "b")},
		},
		{
			name: "a newcomer gets a fair share from a busy equal-priority session, by drain",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 1000, Running: 40, Preemptible: true},
				{ID: "b", Priority: 5, Ready: 100}},
			workers: busyOn("a", 4),
			mode:    PreemptImmediate,
			want: []Decision{unbind("w1", "a", ReasonFair), bind("w1", "b"),
				unbind("w2", "a", ReasonFair), bind("w2", "b")},
		},
		{
			name: "shares that differ by one are left alone",
			sessions: []SessionView{{ID: "a", Priority: 5, Ready: 1000, Running: 20},
				{ID: "b", Priority: 5, Ready: 100, Running: 10}},
			workers: append(busyOn("a", 2), WorkerView{ID: "w3", Bound: "b", Busy: true}),
		},

		// Moving workers that have nothing to do.
		{
			name:     "an empty-handed worker moves to a session that needs it",
			sessions: []SessionView{{ID: "a", Priority: 5}, {ID: "b", Priority: 5, Ready: 10}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}},
			want:     []Decision{unbind("w1", "a", ReasonReclaim), bind("w1", "b")},
		},
		{
			name:     "a busy worker of a non-preemptible session stays",
			sessions: []SessionView{{ID: "a", Priority: 5, Running: 3}, {ID: "b", Priority: 9, Ready: 10}},
			workers:  busyOn("a", 1),
		},
		{
			name: "an active session keeps its floor of empty-handed workers",
			sessions: []SessionView{{ID: "a", Priority: 5, Running: 3, MinWorkers: 2},
				{ID: "b", Priority: 5, Ready: 10}},
			workers: []WorkerView{{ID: "w1", Bound: "a", Busy: true}, {ID: "w2", Bound: "a"}},
		},

		// Idle release and closed sessions.
		{
			name:     "an idle session keeps its workers until its idle timeout",
			sessions: []SessionView{{ID: "a", Priority: 5, LastActive: t0.Add(-59 * time.Second), IdleTimeout: time.Minute}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}},
		},
		{
			name:     "an idle session releases its workers after its idle timeout",
			sessions: []SessionView{{ID: "a", Priority: 5, LastActive: t0.Add(-time.Minute), IdleTimeout: time.Minute}},
			workers:  []WorkerView{{ID: "w1", Bound: "a"}, {ID: "w2", Bound: "a"}},
			want:     []Decision{unbind("w1", "a", ReasonIdle), unbind("w2", "a", ReasonIdle)},
		},
		{
			name:     "a session with running tasks is not idle",
			sessions: []SessionView{{ID: "a", Priority: 5, Running: 1, LastActive: t0.Add(-time.Hour), IdleTimeout: time.Minute}},
			workers:  busyOn("a", 1),
		},
		{
			name: "workers released by idleness serve another session at once",
			sessions: []SessionView{{ID: "a", Priority: 9, LastActive: t0.Add(-time.Hour), IdleTimeout: time.Minute},
				{ID: "b", Priority: 1, Ready: 10}},
			workers: []WorkerView{{ID: "w1", Bound: "a"}},
			want:    []Decision{unbind("w1", "a", ReasonIdle), bind("w1", "b")},
		},
		{
			name:     "closed session releases its workers",
			sessions: []SessionView{{ID: "a", Closed: true, Ready: 5}},
			workers:  busyOn("a", 1),
			want:     []Decision{unbind("w1", "a", ReasonClosed)},
		},
		{
			name:     "unknown session releases its workers",
			workers:  []WorkerView{{ID: "w1", Bound: "gone"}},
			want:     []Decision{unbind("w1", "gone", ReasonClosed)},
			sessions: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Now: t0, Sessions: tt.sessions, Workers: tt.workers, Preemption: tt.mode}
			got := Plan(in)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Plan() =\n%s\nwant\n%s", show(got), show(tt.want))
			}
			// Deterministic, whatever order the caller lists things in.
			in.Sessions = reversed(tt.sessions)
			in.Workers = reversed(tt.workers)
			if again := Plan(in); !reflect.DeepEqual(again, got) {
				t.Fatalf("Plan() depends on input order:\n%s\nthen\n%s", show(got), show(again))
			}
		})
	}
}

// TestPlanConverges applies each plan's decisions to its input and plans
// again, as the dispatcher does on its tick: the second plan must have
// nothing left to do, or the scheduler would move workers back and forth.
func TestPlanConverges(t *testing.T) {
	cases := []struct {
		name     string
		sessions []SessionView
		workers  []WorkerView
	}{
		{"preemption and fairness", []SessionView{
			{ID: "a", Priority: 1, Ready: 1000, Running: 40, Preemptible: true, MinWorkers: 1},
			{ID: "b", Priority: 5, Ready: 1000},
			{ID: "c", Priority: 5, Ready: 1000},
			{ID: "d", Priority: 3, Ready: 1000, MinWorkers: 2},
		}, busyOn("a", 7)},
		{"floors above the worker count", []SessionView{
			{ID: "a", Priority: 5, Ready: 1000, MinWorkers: 3},
			{ID: "b", Priority: 5, Ready: 1000, MinWorkers: 3},
		}, idle(4)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws := tc.workers
			for round := 0; round < 5; round++ {
				ds := Plan(Input{Now: t0, Sessions: tc.sessions, Workers: ws})
				if len(ds) == 0 {
					t.Logf("converged after %d plans: %v", round, ws)
					return
				}
				ws = applyDecisions(ws, ds)
			}
			t.Fatalf("still moving workers after 5 plans: %v", ws)
		})
	}
}

func applyDecisions(ws []WorkerView, ds []Decision) []WorkerView {
	out := append([]WorkerView(nil), ws...)
	for _, d := range ds {
		for i := range out {
			if out[i].ID != d.Worker {
				continue
			}
			if d.Action == Bind {
				out[i].Bound, out[i].Busy = d.Session, true // it takes tasks at once
			} else {
				out[i].Bound, out[i].Busy = "", false
			}
		}
	}
	return out
}

func reversed[T any](in []T) []T {
	out := make([]T, len(in))
	for i, v := range in {
		out[len(in)-1-i] = v
	}
	return out
}

func show(ds []Decision) string {
	var b strings.Builder
	for _, d := range ds {
		act := "bind"
		if d.Action == Unbind {
			act = "unbind"
		}
		fmt.Fprintf(&b, "  %s %s %s abort=%v reason=%q\n", d.Worker, act, d.Session, d.Abort, d.Reason)
	}
	return b.String()
}

func TestParsePreemption(t *testing.T) {
	for _, s := range []string{"drain", "immediate"} {
		p, err := ParsePreemption(s)
		if err != nil || p.String() != s {
			t.Fatalf("ParsePreemption(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePreemption("now"); err == nil || !strings.Contains(err.Error(), "drain, immediate") {
		t.Fatalf("ParsePreemption(now): %v, want an error listing the modes", err)
	}
}
