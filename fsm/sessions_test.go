package fsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

func TestCreateSessionDefaults(t *testing.T) {
	h := newHarness(t, Options{})
	r := h.mustOK(cmdCreate("s1", nil))
	want := Attrs{
		Priority: DefaultPriority, IdleTimeoutMs: DefaultIdleTimeoutMs,
		MaxInflightBatchesPerWorker: DefaultMaxInflight, MaxAttempts: DefaultMaxAttempts,
		RetryBackoffMs: DefaultRetryBackoffMs, RetryBackoffMaxMs: DefaultRetryBackoffMax,
	}
	if r.Session == nil || !equalInfo(*r.Session, SessionInfo{
		ID: "s1", App: "app-s1", Attrs: want, CreatedUnixMs: h.log[0].NowUnixMs, UpdatedUnixMs: h.log[0].NowUnixMs,
	}) {
		t.Fatalf("create answered %+v", r.Session)
	}
	got := info(t, h.f, "s1")
	if !equalInfo(got, *r.Session) {
		t.Fatalf("Session = %+v, create answered %+v", got, *r.Session)
	}
}

func TestCreateSessionKeepsAttrs(t *testing.T) {
	h := newHarness(t, Options{})
	a := &fsmpb.SessionAttrs{
		Priority: 9, ClientId: "c", MinWorkers: 2, MaxWorkers: 4, IdleTimeoutMs: 5, Preemptible: true,
		CleanupOnClientExit: true, MaxInflightBatchesPerWorker: 3, Tags: []string{"x", "y"},
		TaskTimeoutMs: 7, MaxAttempts: 1, RetryBackoffMs: 20, RetryBackoffMaxMs: 500,
	}
	h.mustOK(cmdCreate("s1", a))
	got := info(t, h.f, "s1").Attrs
	want := Attrs{
		Priority: 9, ClientID: "c", MinWorkers: 2, MaxWorkers: 4, IdleTimeoutMs: 5, Preemptible: true,
		CleanupOnClientExit: true, MaxInflightBatchesPerWorker: 3, Tags: []string{"x", "y"},
		TaskTimeoutMs: 7, MaxAttempts: 1, RetryBackoffMs: 20, RetryBackoffMaxMs: 500,
	}
	if !equalInfo(SessionInfo{Attrs: got}, SessionInfo{Attrs: want}) {
		t.Fatalf("attrs = %+v, want %+v", got, want)
	}
	// The copy is the caller's: changing it changes nothing inside.
	got.Tags[0] = "changed"
	if info(t, h.f, "s1").Attrs.Tags[0] != "x" {
		t.Fatal("SessionInfo shares Tags with the state")
	}
}

func TestCreateSessionInvalid(t *testing.T) {
	tests := []struct {
		name  string
		id    string
		attrs *fsmpb.SessionAttrs
		msg   string
	}{
		{"empty id", "", nil, "session id must be 1..256 bytes, got 0"},
		{"long id", strings.Repeat("x", MaxSessionIDLen+1), nil, "got 257"},
		{"priority high", "s", &fsmpb.SessionAttrs{Priority: 11}, "priority 11 is outside 0..10"},
		{"priority negative", "s", &fsmpb.SessionAttrs{Priority: -1}, "priority -1"},
		{"min workers", "s", &fsmpb.SessionAttrs{MinWorkers: -1}, "min_workers -1 is negative"},
		{"max workers", "s", &fsmpb.SessionAttrs{MaxWorkers: -2}, "max_workers -2 is negative"},
		{"max below min", "s", &fsmpb.SessionAttrs{MinWorkers: 5, MaxWorkers: 4}, "max_workers 4 is below min_workers 5"},
		{"idle", "s", &fsmpb.SessionAttrs{IdleTimeoutMs: -1}, "idle_timeout_ms -1"},
		{"task timeout", "s", &fsmpb.SessionAttrs{TaskTimeoutMs: -1}, "task_timeout_ms -1"},
		{"attempts", "s", &fsmpb.SessionAttrs{MaxAttempts: -3}, "max_attempts -3 is below 1"},
		{"inflight", "s", &fsmpb.SessionAttrs{MaxInflightBatchesPerWorker: -1}, "max_inflight_batches_per_worker -1"},
		{"backoff negative", "s", &fsmpb.SessionAttrs{RetryBackoffMs: -1}, "retry_backoff_ms -1 is outside 1..3600000"},
		{"backoff too long", "s", &fsmpb.SessionAttrs{RetryBackoffMs: 3_600_001}, "retry_backoff_ms 3600001"},
		{"backoff max below base", "s", &fsmpb.SessionAttrs{RetryBackoffMs: 500, RetryBackoffMaxMs: 100},
			"retry_backoff_max_ms 100 must be between retry_backoff_ms (500) and 3600000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			before := h.f.Hash()
			r := h.apply(cmdCreate(tc.id, tc.attrs))
			if !errors.Is(r.Err, ErrInvalid) || !strings.Contains(r.Err.Error(), tc.msg) {
				t.Fatalf("err = %v, want ErrInvalid containing %q", r.Err, tc.msg)
			}
			if r.Session != nil || h.f.Hash() != before {
				t.Fatal("an invalid create changed the state or answered a session")
			}
		})
	}
}

func TestValidateAttrsAcceptsBounds(t *testing.T) {
	for _, a := range []Attrs{
		{Priority: 0, MaxAttempts: 1, MaxInflightBatchesPerWorker: 1, RetryBackoffMs: 1, RetryBackoffMaxMs: 1},
		{Priority: MaxPriority, MinWorkers: 3, MaxWorkers: 3, MaxAttempts: 1, MaxInflightBatchesPerWorker: 1,
			RetryBackoffMs: MaxRetryBackoffMs, RetryBackoffMaxMs: MaxRetryBackoffMs},
		{MinWorkers: 3, MaxWorkers: 0, MaxAttempts: 9, MaxInflightBatchesPerWorker: 9, RetryBackoffMs: 5, RetryBackoffMaxMs: 50},
	} {
		if err := ValidateAttrs(a); err != nil {
			t.Errorf("ValidateAttrs(%+v) = %v", a, err)
		}
	}
	if err := ValidateAttrs(DefaultAttrs(nil)); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
}

func TestCreateSessionExists(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", nil))
	r := h.apply(cmdCreate("s1", nil))
	if !errors.Is(r.Err, ErrSessionExists) || !strings.Contains(r.Err.Error(), `"s1"`) {
		t.Fatalf("err = %v, want ErrSessionExists naming s1", r.Err)
	}
	h.mustOK(cmdClose("s1"))
	if r := h.apply(cmdCreate("s1", nil)); !errors.Is(r.Err, ErrSessionExists) {
		t.Fatalf("create over a closed session: %v, want ErrSessionExists", r.Err)
	}
}

func TestUpdateSession(t *testing.T) {
	tests := []struct {
		name    string
		u       *fsmpb.UpdateSession
		wantErr error
		check   func(Attrs) bool
	}{
		{"priority", &fsmpb.UpdateSession{Priority: ptr[int32](8)}, nil,
			func(a Attrs) bool { return a.Priority == 8 && a.MaxAttempts == 4 }},
		{"explicit zero priority", &fsmpb.UpdateSession{Priority: ptr[int32](0)}, nil,
			func(a Attrs) bool { return a.Priority == 0 }},
		{"workers", &fsmpb.UpdateSession{MinWorkers: ptr[int32](2), MaxWorkers: ptr[int32](6)}, nil,
			func(a Attrs) bool { return a.MinWorkers == 2 && a.MaxWorkers == 6 }},
		{"bools and timeouts", &fsmpb.UpdateSession{
			Preemptible: ptr(true), CleanupOnClientExit: ptr(true),
			IdleTimeoutMs: ptr[int64](9), TaskTimeoutMs: ptr[int64](8),
			MaxInflightBatchesPerWorker: ptr[int32](2), MaxAttempts: ptr[int32](1),
		}, nil, func(a Attrs) bool {
			return a.Preemptible && a.CleanupOnClientExit && a.IdleTimeoutMs == 9 && a.TaskTimeoutMs == 8 &&
				a.MaxInflightBatchesPerWorker == 2 && a.MaxAttempts == 1
		}},
		{"tags kept without replace", &fsmpb.UpdateSession{Tags: []string{"z"}}, nil,
			func(a Attrs) bool { return slices.Equal(a.Tags, []string{"t"}) }},
		{"tags replaced", &fsmpb.UpdateSession{ReplaceTags: true, Tags: []string{"z"}}, nil,
			func(a Attrs) bool { return slices.Equal(a.Tags, []string{"z"}) }},
		{"tags cleared", &fsmpb.UpdateSession{ReplaceTags: true}, nil,
			func(a Attrs) bool { return len(a.Tags) == 0 }},
		{"max below existing min", &fsmpb.UpdateSession{MaxWorkers: ptr[int32](1)}, ErrInvalid, nil},
		{"zero attempts", &fsmpb.UpdateSession{MaxAttempts: ptr[int32](0)}, ErrInvalid, nil},
		{"zero inflight", &fsmpb.UpdateSession{MaxInflightBatchesPerWorker: ptr[int32](0)}, ErrInvalid, nil},
		{"priority too high", &fsmpb.UpdateSession{Priority: ptr[int32](11)}, ErrInvalid, nil},
		{"unknown session", &fsmpb.UpdateSession{SessionId: "nope"}, ErrSessionNotFound, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.mustOK(cmdCreate("s1", &fsmpb.SessionAttrs{MinWorkers: 2, MaxAttempts: 4, Tags: []string{"t"}}))
			if tc.u.SessionId == "" {
				tc.u.SessionId = "s1"
			}
			before := h.f.Hash()
			r := h.apply(cmdUpdate(tc.u))
			if tc.wantErr != nil {
				if !errors.Is(r.Err, tc.wantErr) || h.f.Hash() != before {
					t.Fatalf("err = %v, want %v and no change", r.Err, tc.wantErr)
				}
				return
			}
			if r.Err != nil {
				t.Fatal(r.Err)
			}
			got := info(t, h.f, "s1")
			if !tc.check(got.Attrs) || !equalInfo(got, *r.Session) {
				t.Fatalf("attrs after update: %+v (answered %+v)", got.Attrs, r.Session.Attrs)
			}
			if got.UpdatedUnixMs != h.log[1].NowUnixMs || got.CreatedUnixMs != h.log[0].NowUnixMs {
				t.Fatalf("times %d/%d, want created at %d updated at %d",
					got.CreatedUnixMs, got.UpdatedUnixMs, h.log[0].NowUnixMs, h.log[1].NowUnixMs)
			}
		})
	}
}

func TestUpdateClosedSession(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s1", nil))
	h.mustOK(cmdClose("s1"))
	r := h.apply(cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", Priority: ptr[int32](1)}))
	if !errors.Is(r.Err, ErrSessionClosed) {
		t.Fatalf("err = %v, want ErrSessionClosed", r.Err)
	}
}

func TestCloseSession(t *testing.T) {
	h := newHarness(t, Options{})
	rec := &recorder{}
	h.f.Subscribe(rec, nil)
	h.mustOK(cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: 1}))
	h.mustOK(cmdEnqueue("s1", "a", "b", "c", "d", "e"))
	h.mustOK(cmdOutcomes("s1", okOutcome("a"), failOutcome("b", "boom")))
	rec.take()

	r := h.mustOK(cmdClose("s1"))
	if !r.Session.Closed {
		t.Fatal("close answered an open session")
	}
	if ev := rec.take(); !slices.Equal(ev, []string{"done s1 c,d,e", "session s1 closed=true"}) {
		t.Fatalf("events %q", ev)
	}
	got := info(t, h.f, "s1")
	want := SessionInfo{Submitted: 5, Completed: 1, DeadLettered: 1}
	if got.Submitted != want.Submitted || got.Completed != want.Completed || got.DeadLettered != want.DeadLettered ||
		got.Pending != 0 || got.ResultsUnacked != 0 || got.DeadLettersUnacked != 0 {
		t.Fatalf("counters after close: %+v", got)
	}
	if h.f.ResultsAfter("s1", 0, 0) != nil || h.f.DeadLettersAfter("s1", 0, 0) != nil || h.f.TaskPending("s1", "c") {
		t.Fatal("closed session still serves results, dead letters or pending tasks")
	}
	// Closing again answers the info and changes nothing.
	before := h.f.Hash()
	r = h.mustOK(cmdClose("s1"))
	if !r.Session.Closed || h.f.Hash() != before || len(rec.take()) != 0 {
		t.Fatal("second close changed something")
	}
	if r := h.apply(cmdClose("nope")); !errors.Is(r.Err, ErrSessionNotFound) {
		t.Fatalf("close unknown: %v", r.Err)
	}
}

func TestSessionsSorted(t *testing.T) {
	h := newHarness(t, Options{})
	for _, id := range []string{"m", "b", "z", "a"} {
		h.mustOK(cmdCreate(id, nil))
	}
	var ids []string
	for _, s := range h.f.Sessions() {
		ids = append(ids, s.ID)
	}
	if !slices.Equal(ids, []string{"a", "b", "m", "z"}) {
		t.Fatalf("Sessions order %q", ids)
	}
	if _, ok := h.f.Session("nope"); ok {
		t.Fatal("unknown session found")
	}
}

func TestRequestIDRepeat(t *testing.T) {
	tests := []struct {
		name    string
		first   *fsmpb.Command
		between *fsmpb.Command // applied without a key between first and repeat
		wantErr error
	}{
		{"create", cmdCreate("s2", nil), cmdEnqueue("s2", "x"), nil},
		{"create exists", cmdCreate("s1", nil), nil, ErrSessionExists},
		{"create invalid", cmdCreate("s2", &fsmpb.SessionAttrs{Priority: 99}), cmdCreate("s2", nil), ErrInvalid},
		{"update", cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", Priority: ptr[int32](1)}),
			cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", Priority: ptr[int32](2)}), nil},
		{"update unknown", cmdUpdate(&fsmpb.UpdateSession{SessionId: "s2"}), cmdCreate("s2", nil), ErrSessionNotFound},
		{"close", cmdClose("s1"), nil, nil},
		{"set member", cmdSetMember("n1", "r", "g"), cmdRemoveMember("n1"), nil},
		{"set member invalid", cmdSetMember("", "r", "g"), nil, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.mustOK(cmdCreate("s1", nil))
			first := h.apply(withKey("k1", tc.first))
			if !errors.Is(first.Err, tc.wantErr) || (tc.wantErr == nil && first.Err != nil) {
				t.Fatalf("first answer %v, want %v", first.Err, tc.wantErr)
			}
			if tc.between != nil {
				h.apply(tc.between)
			}
			before := h.f.Hash()
			// The repeat carries a different body: the key alone decides.
			again := h.apply(withKey("k1", cmdCreate("s9", nil)))
			if h.f.Hash() != before {
				t.Fatal("a repeated key changed the state")
			}
			if (first.Err == nil) != (again.Err == nil) ||
				(first.Err != nil && (first.Err.Error() != again.Err.Error() || !errors.Is(again.Err, tc.wantErr))) {
				t.Fatalf("repeat answered %v, first %v", again.Err, first.Err)
			}
			// The repeat gets the first answer, not the session as it is
			// now: a later write by someone else must not show in it.
			if first.Session != nil {
				if again.Session == nil || !equalInfo(*again.Session, *first.Session) {
					t.Fatalf("repeat answered %+v, want the first answer %+v", again.Session, first.Session)
				}
				// Also after a snapshot and restore.
				g := New(Options{})
				if err := g.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
					t.Fatal(err)
				}
				r := g.Apply(h.idx+1, withKey("k1", cmdCreate("s9", nil)))
				if r.Session == nil || !equalInfo(*r.Session, *first.Session) {
					t.Fatalf("repeat after restore answered %+v, want %+v", r.Session, first.Session)
				}
			}
		})
	}
}

func TestRequestCacheEviction(t *testing.T) {
	h := newHarness(t, Options{RequestCacheSize: 3})
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		h.apply(withKey(k, cmdCreate("s-"+k, nil)))
	}
	// k1 was evicted (oldest): its repeat is applied anew and, the session
	// existing, fails; k2..k4 are still remembered.
	if r := h.apply(withKey("k1", cmdCreate("s-k1", nil))); !errors.Is(r.Err, ErrSessionExists) {
		t.Fatalf("evicted key: %v, want ErrSessionExists", r.Err)
	}
	for _, k := range []string{"k3", "k4"} {
		if r := h.apply(withKey(k, cmdCreate("s-"+k, nil))); r.Err != nil {
			t.Fatalf("remembered key %s: %v", k, r.Err)
		}
	}
	// Remembering k1 again evicted k2.
	if r := h.apply(withKey("k2", cmdCreate("s-k2", nil))); !errors.Is(r.Err, ErrSessionExists) {
		t.Fatalf("k2 should have been evicted: %v", r.Err)
	}
	// Empty keys are never remembered.
	h.apply(cmdCreate("s-empty", nil))
	if h.f.st.requests.len() != 3 {
		t.Fatalf("%d keys remembered, want 3", h.f.st.requests.len())
	}
}

func TestApplyOldIndexIsNoop(t *testing.T) {
	f := New(Options{})
	if r := f.Apply(5, cmdCreate("s1", nil)); r.Err != nil {
		t.Fatal(r.Err)
	}
	before := f.Hash()
	for _, idx := range []uint64{5, 4, 1} {
		r := f.Apply(idx, cmdCreate("s2", nil))
		if sameResponse(r, Response{}) != "" || f.Hash() != before {
			t.Fatalf("apply at old index %d answered %+v or changed state", idx, r)
		}
	}
	if f.LastApplied() != 5 {
		t.Fatalf("LastApplied = %d", f.LastApplied())
	}
	rs := f.ApplyBatch([]uint64{5, 6, 6, 7}, []*fsmpb.Command{
		cmdCreate("a", nil), cmdCreate("b", nil), cmdCreate("c", nil), cmdCreate("d", nil),
	})
	if rs[0].Session != nil || rs[1].Session == nil || rs[2].Session != nil || rs[3].Session == nil {
		t.Fatalf("batch answers %+v", rs)
	}
	if _, ok := f.Session("c"); ok || f.LastApplied() != 7 {
		t.Fatal("a repeated index inside a batch was applied")
	}
	f.SetLastApplied(100)
	if f.LastApplied() != 100 {
		t.Fatal("SetLastApplied")
	}
}

func TestApplyEmptyCommand(t *testing.T) {
	h := newHarness(t, Options{})
	before := h.f.Hash()
	if r := h.apply(&fsmpb.Command{}); !errors.Is(r.Err, ErrInvalid) || h.f.Hash() != before {
		t.Fatalf("empty command: %v", r.Err)
	}
}

func TestMembers(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdSetMember("n2", "r2", "g2"))
	h.mustOK(cmdSetMember("n1", "r1", "g1"))
	h.mustOK(cmdSetMember("n2", "r2b", "g2b"))
	want := []Member{{"n1", "r1", "g1"}, {"n2", "r2b", "g2b"}}
	if got := h.f.Members(); !slices.Equal(got, want) {
		t.Fatalf("Members = %+v", got)
	}
	h.mustOK(cmdRemoveMember("n1"))
	h.mustOK(cmdRemoveMember("n1"))
	if got := h.f.Members(); !slices.Equal(got, want[1:]) {
		t.Fatalf("Members after remove = %+v", got)
	}
}
