package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

func TestEnqueue(t *testing.T) {
	tests := []struct {
		name          string
		batches       [][]string
		wantAccepted  []int
		wantDups      []int
		wantSubmitted uint64
	}{
		{"new tasks", [][]string{{"a", "b", "c"}}, []int{3}, []int{0}, 3},
		{"duplicate across batches", [][]string{{"a", "b"}, {"b", "c", "a"}}, []int{2, 1}, []int{0, 2}, 3},
		{"duplicate inside a batch", [][]string{{"a", "a", "b", "a"}}, []int{2}, []int{2}, 2},
		{"empty batch", [][]string{{}}, []int{0}, []int{0}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.mustOK(cmdCreate("s1", nil))
			for i, b := range tc.batches {
				r := h.mustOK(cmdEnqueue("s1", b...))
				if r.Accepted != tc.wantAccepted[i] || r.Duplicates != tc.wantDups[i] {
					t.Fatalf("batch %d: accepted %d dups %d, want %d %d",
						i, r.Accepted, r.Duplicates, tc.wantAccepted[i], tc.wantDups[i])
				}
			}
			got := info(t, h.f, "s1")
			if got.Submitted != tc.wantSubmitted || got.Pending != tc.wantSubmitted {
				t.Fatalf("submitted %d pending %d, want %d", got.Submitted, got.Pending, tc.wantSubmitted)
			}
		})
	}
}

func TestEnqueueKeepsFirstPayloadAndOrder(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", nil))
	c := cmdEnqueue("s1", "a", "b")
	c.GetEnqueue().UseSharedData = true
	c.GetEnqueue().RequiredSharedDataUpdateLevel = 7
	c.GetEnqueue().Tasks[1].Priority = 9
	h.mustOK(c)
	dup := cmdEnqueue("s1", "a")
	dup.GetEnqueue().Tasks[0].Payload = []byte("other")
	h.mustOK(dup)
	var got []Task
	h.f.Subscribe(nil, func(p []Task) { got = p })
	want := []Task{
		{Session: "s1", ID: "a", Payload: []byte("in-a"), Priority: 5, Seq: 1, UseSharedData: true, RequiredLevel: 7},
		{Session: "s1", ID: "b", Payload: []byte("in-b"), Priority: 9, Seq: 2, UseSharedData: true, RequiredLevel: 7},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("pending %+v\nwant %+v", got, want)
	}
}

func TestEnqueueRejected(t *testing.T) {
	tests := []struct {
		name string
		cmd  *fsmpb.Command
		want error
		msg  string
	}{
		{"unknown session", cmdEnqueue("nope", "a"), ErrSessionNotFound, `"nope"`},
		{"closed session", cmdEnqueue("closed", "a"), ErrSessionClosed, `"closed"`},
		{"empty task id", cmdEnqueue("s1", "a", ""), ErrInvalid, "task 1 of the batch: id must be 1..256 bytes, got 0"},
		{"long task id", cmdEnqueue("s1", strings.Repeat("x", MaxTaskIDLen+1)), ErrInvalid, "got 257"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.mustOK(cmdCreate("s1", nil))
			h.mustOK(cmdCreate("closed", nil))
			h.mustOK(cmdClose("closed"))
			before := h.f.Hash()
			r := h.apply(tc.cmd)
			if !errors.Is(r.Err, tc.want) || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %v containing %q", r.Err, tc.want, tc.msg)
			}
			if r.Accepted != 0 || h.f.Hash() != before {
				t.Fatal("a rejected batch changed the state")
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	type step struct {
		oc   []*fsmpb.Outcome
		want Response
	}
	tests := []struct {
		name        string
		maxAttempts int32
		steps       []step
		wantResults []string
		wantDead    []string
		check       func(SessionInfo) bool
	}{
		{"result", 3, []step{{[]*fsmpb.Outcome{okOutcome("a")}, Response{Recorded: 1}}},
			[]string{"a"}, nil,
			func(i SessionInfo) bool { return i.Completed == 1 && i.Pending == 1 && i.ResultsUnacked == 1 }},
		{"second outcome ignored", 3, []step{
			{[]*fsmpb.Outcome{okOutcome("a"), okOutcome("a")}, Response{Recorded: 1, Ignored: 1}},
			{[]*fsmpb.Outcome{okOutcome("a"), failOutcome("a", "late")}, Response{Ignored: 2}},
		}, []string{"a"}, nil, func(i SessionInfo) bool { return i.Completed == 1 }},
		{"unknown task ignored", 3, []step{{[]*fsmpb.Outcome{okOutcome("zz")}, Response{Ignored: 1}}},
			nil, nil, func(i SessionInfo) bool { return i.Pending == 2 }},
		{"retry then result", 3, []step{
			{[]*fsmpb.Outcome{failOutcome("a", "e1")}, Response{Recorded: 1, Requeued: 1}},
			{[]*fsmpb.Outcome{failOutcome("a", "e2")}, Response{Recorded: 1, Requeued: 1}},
			{[]*fsmpb.Outcome{okOutcome("a")}, Response{Recorded: 1}},
		}, []string{"a"}, nil, func(i SessionInfo) bool { return i.Retried == 2 && i.Completed == 1 }},
		{"dead letter after max attempts", 3, []step{
			{[]*fsmpb.Outcome{failOutcome("a", "e1"), failOutcome("b", "x")}, Response{Recorded: 2, Requeued: 2}},
			{[]*fsmpb.Outcome{failOutcome("a", "e2")}, Response{Recorded: 1, Requeued: 1}},
			{[]*fsmpb.Outcome{failOutcome("a", "e3")}, Response{Recorded: 1, DeadLettered: 1}},
			{[]*fsmpb.Outcome{okOutcome("a")}, Response{Ignored: 1}},
		}, nil, []string{"a"}, func(i SessionInfo) bool {
			return i.DeadLettered == 1 && i.Retried == 3 && i.Pending == 1 && i.DeadLettersUnacked == 1
		}},
		{"one attempt", 1, []step{{[]*fsmpb.Outcome{failOutcome("b", "e")}, Response{Recorded: 1, DeadLettered: 1}}},
			nil, []string{"b"}, func(i SessionInfo) bool { return i.Retried == 0 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.mustOK(cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: tc.maxAttempts}))
			h.mustOK(cmdEnqueue("s1", "a", "b"))
			for i, st := range tc.steps {
				if r := h.mustOK(cmdOutcomes("s1", st.oc...)); sameResponse(r, st.want) != "" {
					t.Fatalf("step %d: %s", i, sameResponse(r, st.want))
				}
			}
			var res, dead []string
			for _, r := range h.f.ResultsAfter("s1", 0, 0) {
				res = append(res, r.TaskID)
			}
			for _, d := range h.f.DeadLettersAfter("s1", 0, 0) {
				dead = append(dead, d.TaskID)
			}
			if !slices.Equal(res, tc.wantResults) || !slices.Equal(dead, tc.wantDead) {
				t.Fatalf("results %q dead %q, want %q %q", res, dead, tc.wantResults, tc.wantDead)
			}
			if i := info(t, h.f, "s1"); !tc.check(i) {
				t.Fatalf("counters %+v", i)
			}
		})
	}
}

func TestResultAndDeadLetterContent(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: 2}))
	h.mustOK(cmdEnqueue("s1", "a", "b"))                                        // seqs 1, 2
	h.mustOK(cmdOutcomes("s1", failOutcome("a", "e1"), failOutcome("b", "f1"))) // requeued
	h.mustOK(cmdOutcomes("s1", okOutcome("a"), failOutcome("b", "f2")))         // seqs 3, 4
	if h.f.TaskPending("s1", "a") || h.f.TaskPending("s1", "b") || h.f.TaskPending("x", "a") {
		t.Fatal("tasks with an outcome still pending")
	}
	res := h.f.ResultsAfter("s1", 0, 0)
	if len(res) != 1 || res[0].TaskID != "a" || res[0].Seq != 3 || res[0].Attempt != 2 ||
		string(res[0].Payload) != "out-a" {
		t.Fatalf("results %+v", res)
	}
	dl := h.f.DeadLettersAfter("s1", 0, 0)
	if len(dl) != 1 || dl[0].TaskID != "b" || string(dl[0].Payload) != "in-b" ||
		!slices.Equal(dl[0].Errors, []string{"f1", "f2"}) || dl[0].Seq != 4 || dl[0].Attempts != 2 {
		t.Fatalf("dead letters %+v", dl)
	}
	// A caller appending to Errors must not reach the state.
	_ = append(dl[0].Errors, "mine")
	if got := h.f.DeadLettersAfter("s1", 0, 0)[0].Errors; len(got) != 2 {
		t.Fatalf("errors changed to %q", got)
	}
}

func TestAcks(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: 1}))
	h.mustOK(cmdEnqueue("s1", "a", "b", "c", "d"))
	h.mustOK(cmdOutcomes("s1", okOutcome("a"), okOutcome("b"), failOutcome("c", "e")))

	tests := []struct {
		cmd  *fsmpb.Command
		want int
	}{
		{cmdAckResults("s1", "a", "a", "zz", "c", "d"), 1}, // repeat, unknown, dead, pending: ignored
		{cmdAckResults("s1", "a"), 0},
		{cmdAckDead("s1", "c", "b"), 1},
		{cmdAckDead("s1", "c"), 0},
		{cmdAckResults("nope", "b"), 0},
	}
	for i, tc := range tests {
		if r := h.mustOK(tc.cmd); r.Acked != tc.want {
			t.Fatalf("ack %d: acked %d, want %d", i, r.Acked, tc.want)
		}
	}
	i := info(t, h.f, "s1")
	if i.ResultsUnacked != 1 || i.DeadLettersUnacked != 0 || i.Completed != 2 || i.DeadLettered != 1 {
		t.Fatalf("counters %+v", i)
	}
	if res := h.f.ResultsAfter("s1", 0, 0); len(res) != 1 || res[0].TaskID != "b" {
		t.Fatalf("results after ack %+v", res)
	}
	// Resubmitting acknowledged (and any known) ids is a duplicate and
	// requeues nothing.
	before := h.f.Hash()
	if r := h.mustOK(cmdEnqueue("s1", "a", "b", "c", "d")); r.Duplicates != 4 || r.Accepted != 0 {
		t.Fatalf("resubmission %+v", r)
	}
	if h.f.Hash() != before || h.f.TaskPending("s1", "a") {
		t.Fatal("resubmission changed the state")
	}
	// Acks on a closed session are ignored.
	h.mustOK(cmdClose("s1"))
	if r := h.mustOK(cmdAckResults("s1", "b")); r.Acked != 0 {
		t.Fatal("ack on closed session")
	}
}

func TestOutcomesClosedOrUnknownSession(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", nil))
	h.mustOK(cmdEnqueue("s1", "a"))
	h.mustOK(cmdClose("s1"))
	for _, s := range []string{"s1", "nope"} {
		before := h.f.Hash()
		r := h.mustOK(cmdOutcomes(s, okOutcome("a"), failOutcome("a", "e")))
		if r.Ignored != 2 || r.Recorded != 0 || h.f.Hash() != before {
			t.Fatalf("outcomes on %s: %+v", s, r)
		}
	}
}

func TestListenerEvents(t *testing.T) {
	h := newHarness(t, Options{})
	rec := &recorder{}
	h.f.Subscribe(rec, nil)
	steps := []struct {
		cmd  *fsmpb.Command
		want []string
	}{
		{cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: 2}), []string{"session s1 closed=false"}},
		{cmdEnqueue("s1", "a", "b", "c", "a"), []string{"ready s1 a/a0,b/a0,c/a0"}},
		{cmdEnqueue("s1", "a"), nil},
		{cmdOutcomes("s1", okOutcome("a"), failOutcome("b", "e"), failOutcome("c", "e")),
			[]string{"ready s1 b/a1,c/a1", "done s1 a", "results s1"}},
		{cmdOutcomes("s1", failOutcome("b", "e")), []string{"done s1 b", "results s1"}},
		{cmdOutcomes("s1", okOutcome("b")), nil},
		{cmdAckResults("s1", "a"), nil},
		{cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", Priority: ptr[int32](2)}), []string{"session s1 closed=false"}},
		{cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", Priority: ptr[int32](20)}), nil},
		{cmdClose("s1"), []string{"done s1 c", "session s1 closed=true"}},
	}
	for i, st := range steps {
		h.apply(st.cmd)
		if ev := rec.take(); !slices.Equal(ev, st.want) {
			t.Fatalf("step %d: events %q, want %q", i, ev, st.want)
		}
	}
	h.f.Subscribe(nil, nil)
	h.apply(cmdCreate("s2", nil))
	if len(rec.events) != 0 {
		t.Fatal("events after unsubscribing")
	}
}

func TestSubscribeLoadsPending(t *testing.T) {
	h := newHarness(t, Options{})
	for _, s := range []string{"b", "a", "c"} {
		h.mustOK(cmdCreate(s, nil))
	}
	h.mustOK(cmdEnqueue("b", "z", "y"))
	h.mustOK(cmdEnqueue("a", "q"))
	h.mustOK(cmdEnqueue("c", "w"))
	h.mustOK(cmdEnqueue("a", "p", "o"))
	h.mustOK(cmdOutcomes("a", okOutcome("p")))
	h.mustOK(cmdClose("c"))
	var got []string
	h.f.Subscribe(&recorder{}, func(p []Task) {
		for _, t := range p {
			got = append(got, t.Session+"/"+t.ID)
		}
	})
	if want := []string{"a/q", "a/o", "b/z", "b/y"}; !slices.Equal(got, want) {
		t.Fatalf("loaded %q, want %q", got, want)
	}
}

func TestResultsAfterPaging(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", nil))
	const n = 1000
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("t%04d", i)
	}
	h.mustOK(cmdEnqueue("s1", ids...))
	oc := make([]*fsmpb.Outcome, n)
	for i, id := range ids {
		oc[i] = okOutcome(id)
	}
	h.mustOK(cmdOutcomes("s1", oc...))
	// Ack every other result, then most of the first half, so the log
	// both skips and compacts.
	var acks []string
	for i := 0; i < n; i += 2 {
		acks = append(acks, ids[i])
	}
	h.mustOK(cmdAckResults("s1", acks...))
	acks = acks[:0]
	for i := 1; i < n/2; i += 2 {
		acks = append(acks, ids[i])
	}
	h.mustOK(cmdAckResults("s1", acks...))
	if l := &h.f.st.sessions["s1"].results; len(l.entries) > 2*l.live+compactMin {
		t.Fatalf("log holds %d entries for %d live: not compacted", len(l.entries), l.live)
	}
	var got []string
	var after uint64
	for {
		page := h.f.ResultsAfter("s1", after, 37)
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.Seq <= after {
				t.Fatalf("seq %d not after %d", r.Seq, after)
			}
			after = r.Seq
			got = append(got, r.TaskID)
		}
	}
	var want []string
	for i := n/2 + 1; i < n; i += 2 {
		want = append(want, ids[i])
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged %d results, want %d", len(got), len(want))
	}
	if r := h.f.ResultsAfter("nope", 0, 5); r != nil {
		t.Fatal("results of unknown session")
	}
}
