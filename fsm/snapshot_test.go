package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// richState builds a state with every kind of record and task state.
func richState(t testing.TB) *harness {
	h := newHarness(t, Options{RequestCacheSize: 10})
	h.mustOK(withKey("r1", cmdCreate("s1", &fsmpb.SessionAttrs{MaxAttempts: 2, Tags: []string{"a", "b"}, MinWorkers: 1})))
	h.mustOK(cmdCreate("s2", &fsmpb.SessionAttrs{Priority: 3}))
	h.mustOK(cmdCreate("s0", nil))
	h.apply(withKey("r2", cmdCreate("s1", nil))) // remembered error
	h.mustOK(cmdEnqueue("s1", "p1", "p2", "c1", "c2", "d1", "d2"))
	h.mustOK(cmdOutcomes("s1", okOutcome("c1"), okOutcome("c2"), failOutcome("d1", "e1"),
		failOutcome("d2", "e1"), failOutcome("p1", "once")))
	h.mustOK(cmdOutcomes("s1", failOutcome("d1", "e2"), failOutcome("d2", "e2")))
	h.mustOK(cmdAckResults("s1", "c1"))
	h.mustOK(cmdAckDead("s1", "d2"))
	h.mustOK(cmdEnqueue("s2", "x", "y"))
	h.mustOK(cmdOutcomes("s2", okOutcome("x")))
	h.mustOK(cmdClose("s2"))
	h.mustOK(withKey("r3", cmdSetMember("n2", "10.0.0.2:7337", "10.0.0.2:1337")))
	h.mustOK(cmdSetMember("n1", "10.0.0.1:7337", "10.0.0.1:1337"))
	return h
}

// view is everything the read API shows, to compare two FSMs.
func view(f *FSM) string {
	var b strings.Builder
	for _, s := range f.Sessions() {
		fmt.Fprintf(&b, "%+v\n", s)
		for _, r := range f.ResultsAfter(s.ID, 0, 0) {
			fmt.Fprintf(&b, "  result %s %q %d %d\n", r.TaskID, r.Payload, r.Seq, r.Attempt)
		}
		for _, d := range f.DeadLettersAfter(s.ID, 0, 0) {
			fmt.Fprintf(&b, "  dead %s %q %q %d %d\n", d.TaskID, d.Payload, d.Errors, d.Seq, d.Attempts)
		}
	}
	f.Subscribe(nil, func(p []Task) {
		for _, t := range p {
			fmt.Fprintf(&b, "pending %+v\n", t)
		}
	})
	fmt.Fprintf(&b, "members %+v\n", f.Members())
	return b.String()
}

func TestSnapshotRoundTrip(t *testing.T) {
	h := richState(t)
	data := snapshotBytes(t, h.f)
	g := New(Options{RequestCacheSize: 10})
	if err := g.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, g)
	if g.Hash() != h.f.Hash() {
		t.Fatal("restored state hashes differently")
	}
	if v1, v2 := view(h.f), view(g); v1 != v2 {
		t.Fatalf("restored view differs:\n%s\nvs\n%s", v1, v2)
	}
	if again := snapshotBytes(t, g); !bytes.Equal(again, data) {
		t.Fatal("snapshot of the restored state differs from the original")
	}
	// The restored FSM answers remembered keys and goes on numbering.
	if r := g.Apply(1000, withKey("r2", cmdCreate("zz", nil))); !errors.Is(r.Err, ErrSessionExists) {
		t.Fatalf("remembered error lost: %v", r.Err)
	}
	if r := g.Apply(1001, withKey("r1", cmdCreate("zz", nil))); r.Session == nil || r.Session.ID != "s1" {
		t.Fatalf("remembered answer lost: %+v", r)
	}
	r1 := h.f.Apply(1002, cmdEnqueue("s1", "new"))
	r2 := g.Apply(1002, cmdEnqueue("s1", "new"))
	if sameResponse(r1, r2) != "" || h.f.Hash() != g.Hash() {
		t.Fatal("original and restored diverge on the next command")
	}
}

func TestSnapshotIsPointInTime(t *testing.T) {
	h := richState(t)
	want := h.f.Hash()
	snap := h.f.Snapshot()
	h.mustOK(cmdEnqueue("s1", "late1", "late2"))
	h.mustOK(cmdOutcomes("s1", okOutcome("p2"), failOutcome("p1", "again")))
	h.mustOK(cmdAckResults("s1", "c2"))
	h.mustOK(cmdAckDead("s1", "d1"))
	h.mustOK(cmdUpdate(&fsmpb.UpdateSession{SessionId: "s1", ReplaceTags: true, Tags: []string{"new"}}))
	h.mustOK(cmdClose("s1"))
	h.mustOK(cmdRemoveMember("n1"))
	var buf bytes.Buffer
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	g := New(Options{RequestCacheSize: 10})
	if err := g.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != want {
		t.Fatal("snapshot saw commands applied after it was taken")
	}
}

// TestSnapshotConcurrentWithApply lets the race detector watch WriteTo run
// while commands are applied.
func TestSnapshotConcurrentWithApply(t *testing.T) {
	h := richState(t)
	snap := h.f.Snapshot()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			if _, err := snap.WriteTo(io.Discard); err != nil {
				errs <- err
			}
		})
	}
	for i := range 200 {
		id := fmt.Sprintf("t%d", i)
		h.mustOK(cmdEnqueue("s1", id))
		h.mustOK(cmdOutcomes("s1", failOutcome(id, "e"), failOutcome("p1", "e")))
		h.mustOK(cmdOutcomes("s1", okOutcome(id)))
		h.mustOK(cmdAckResults("s1", id))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestRestoreKeepsLastAppliedAndListener(t *testing.T) {
	h := richState(t)
	data := snapshotBytes(t, h.f)
	g := New(Options{})
	g.Apply(3, cmdCreate("old", nil))
	rec := &recorder{}
	g.Subscribe(rec, nil)
	rec.take()
	if err := g.Restore(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if len(rec.events) != 0 || g.LastApplied() != 3 {
		t.Fatalf("restore called the listener (%q) or moved LastApplied to %d", rec.events, g.LastApplied())
	}
	if _, ok := g.Session("old"); ok {
		t.Fatal("restore kept old state")
	}
	g.SetLastApplied(h.idx)
	g.Apply(h.idx+1, cmdEnqueue("s1", "z"))
	if len(rec.take()) != 1 {
		t.Fatal("listener not kept after restore")
	}
}

func TestRestoreEvictsBeyondCacheSize(t *testing.T) {
	h := richState(t) // three keys
	g := New(Options{RequestCacheSize: 2})
	if err := g.Restore(bytes.NewReader(snapshotBytes(t, h.f))); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, g)
	if r := g.Apply(100, withKey("r1", cmdCreate("s1", nil))); !errors.Is(r.Err, ErrSessionExists) {
		t.Fatalf("oldest key not evicted: %v", r.Err)
	}
}

// restoreFails checks that Restore rejects data with an ErrBadSnapshot
// whose text contains want, and leaves the previous state alone.
func restoreFails(t *testing.T, f *FSM, data []byte, want string) {
	t.Helper()
	before := f.Hash()
	err := f.Restore(bytes.NewReader(data))
	if err == nil {
		t.Fatalf("restore of bad snapshot succeeded (want %q)", want)
	}
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want ErrBadSnapshot containing %q", err, want)
	}
	if f.Hash() != before {
		t.Fatal("a failed restore changed the state")
	}
}

func TestRestoreRejectsTruncation(t *testing.T) {
	data := snapshotBytes(t, richState(t).f)
	f := richState(t).f
	restoreFails(t, f, nil, "empty")
	for n := 1; n < len(data); n++ {
		before := f.Hash()
		err := f.Restore(bytes.NewReader(data[:n]))
		if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "truncated") || f.Hash() != before {
			t.Fatalf("prefix of %d/%d bytes: %v", n, len(data), err)
		}
	}
}

func TestRestoreRejectsFlippedBytes(t *testing.T) {
	data := snapshotBytes(t, richState(t).f)
	f := richState(t).f
	for i := range data {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(data)
			bad[i] ^= mask
			before := f.Hash()
			if err := f.Restore(bytes.NewReader(bad)); err == nil || f.Hash() != before {
				t.Fatalf("byte %d ^ %#x: restore %v", i, mask, err)
			}
		}
	}
}

func TestRestoreRejectsFraming(t *testing.T) {
	data := snapshotBytes(t, richState(t).f)
	hdr := &fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: 1, NextSeq: 10}}}
	sess := &fsmpb.Record{Rec: &fsmpb.Record_Session{Session: sessionRecord(&sessionMeta{
		id: "s", attrs: DefaultAttrs(nil),
	})}}
	f := richState(t).f
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"bad version", craft(t, &fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: 2, NextSeq: 1}}}),
			"unsupported version 2"},
		{"zero next seq", craft(t, &fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: 1}}}),
			"next seq is 0"},
		{"missing trailer", data[:len(data)-trailerLen(t, data)], "no trailer"},
		{"data after trailer", append(bytes.Clone(data), 0), "data after the trailer"},
		{"second snapshot after trailer", append(bytes.Clone(data), data...), "data after the trailer"},
		{"wrong count", craftTrailer(t, craft(t, hdr), 2, 0), "trailer counts 2 records, read 1"},
		{"wrong crc", craftTrailer(t, craft(t, hdr), 1, 12345), "checksum mismatch"},
		{"trailer first", craft(t), "trailer without a header"},
		{"no header", craft(t, sess), "first record is a session, want the header"},
		{"two headers", craft(t, hdr, hdr), "second header"},
		{"empty record", craft(t, hdr, &fsmpb.Record{}), "no known kind"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, "more than the"},
		{"bad varint", bytes.Repeat([]byte{0xff}, 11), "bad length prefix"},
		{"garbage record", []byte{3, 0xff, 0xff, 0xff}, "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { restoreFails(t, f, tc.data, tc.want) })
	}
}

// trailerLen returns the length of the last record of a snapshot, prefix
// included, by walking the length prefixes.
func trailerLen(t *testing.T, data []byte) int {
	t.Helper()
	start := 0
	for off := 0; off < len(data); {
		n, k := binary.Uvarint(data[off:])
		if k <= 0 {
			t.Fatalf("bad prefix at %d", off)
		}
		start = off
		off += k + int(n)
	}
	return len(data) - start
}

// craftTrailer replaces the trailer of data with one that says records
// and crc.
func craftTrailer(t *testing.T, data []byte, records uint64, crc uint32) []byte {
	t.Helper()
	out := bytes.Clone(data[:len(data)-trailerLen(t, data)])
	rec, err := proto.Marshal(&fsmpb.Record{Rec: &fsmpb.Record_Trailer{Trailer: &fsmpb.SnapshotTrailer{
		Records: records, Crc32C: crc,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	out = binary.AppendUvarint(out, uint64(len(rec)))
	return append(out, rec...)
}

func TestRestoreRejectsInconsistentState(t *testing.T) {
	hdr := &fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: 1, NextSeq: 100}}}
	meta := sessionMeta{id: "s", attrs: DefaultAttrs(nil), submitted: 1}
	sess := func(m sessionMeta) *fsmpb.Record {
		return &fsmpb.Record{Rec: &fsmpb.Record_Session{Session: sessionRecord(&m)}}
	}
	closed := meta
	closed.id, closed.closed = "c", true
	task := func(sid, id string, st fsmpb.TaskState, seq uint64) *fsmpb.Record {
		return &fsmpb.Record{Rec: &fsmpb.Record_Task{Task: &fsmpb.TaskRecord{SessionId: sid, Id: id, State: st, Seq: seq}}}
	}
	pending, completed := fsmpb.TaskState_TASK_STATE_PENDING, fsmpb.TaskState_TASK_STATE_COMPLETED
	result := func(id string, seq uint64, attempt int32) *fsmpb.Record {
		return &fsmpb.Record{Rec: &fsmpb.Record_Result{Result: &fsmpb.ResultRecord{SessionId: "s", TaskId: id, Seq: seq, Attempt: attempt}}}
	}
	req := func(key, sid string, kind int32, seq uint64) *fsmpb.Record {
		return &fsmpb.Record{Rec: &fsmpb.Record_Request{Request: &fsmpb.RequestRecord{RequestId: key, SessionId: sid, ErrKind: kind, Seq: seq}}}
	}
	member := func(id string) *fsmpb.Record {
		return &fsmpb.Record{Rec: &fsmpb.Record_Member{Member: &fsmpb.SetMember{Id: id}}}
	}
	badAttrs := meta
	badAttrs.attrs.MaxAttempts = 0
	withDone := meta
	withDone.completed = 1
	f := richState(t).f
	tests := []struct {
		name string
		recs []*fsmpb.Record
		want string
	}{
		{"session out of order", []*fsmpb.Record{hdr, sess(meta), sess(closed)}, `session "c" repeated or out of order`},
		{"session repeated", []*fsmpb.Record{hdr, sess(meta), sess(meta)}, "repeated"},
		{"session bad attrs", []*fsmpb.Record{hdr, sess(badAttrs)}, "max_attempts 0"},
		{"kinds out of order", []*fsmpb.Record{hdr, sess(meta), task("s", "a", pending, 1), sess(closed)},
			"session record after task records"},
		{"task of unknown session", []*fsmpb.Record{hdr, sess(meta), task("x", "a", pending, 1)}, `task "a" of unknown session "x"`},
		{"task of closed session", []*fsmpb.Record{hdr, sess(closed), sess(meta), task("c", "a", pending, 1)}, "closed session"},
		{"task repeated", []*fsmpb.Record{hdr, sess(meta), task("s", "a", pending, 1), task("s", "a", pending, 2)}, "repeated"},
		{"task seq too high", []*fsmpb.Record{hdr, sess(meta), task("s", "a", pending, 100)}, "seq 100 outside 1..99"},
		{"task unspecified", []*fsmpb.Record{hdr, sess(meta), task("s", "a", fsmpb.TaskState_TASK_STATE_UNSPECIFIED, 1)},
			"cannot be restored"},
		{"cancelled not counted", []*fsmpb.Record{hdr, sess(meta), task("s", "a", fsmpb.TaskState_TASK_STATE_CANCELLED, 1)},
			"0 cancelled but 1 cancelled tasks"},
		{"counter mismatch", []*fsmpb.Record{hdr, sess(meta)}, "1 submitted but 0 tasks"},
		{"completed without result", []*fsmpb.Record{hdr, sess(withDone), task("s", "a", completed, 1)},
			"1 unacknowledged completed tasks but 0 results"},
		{"result of pending task", []*fsmpb.Record{hdr, sess(meta), task("s", "a", pending, 1), result("a", 2, 1)},
			"result of task \"a\" in state TASK_STATE_PENDING"},
		{"second result", []*fsmpb.Record{hdr, sess(withDone), task("s", "a", completed, 1), result("a", 2, 1), result("a", 3, 1)},
			"second result"},
		{"result attempt 0", []*fsmpb.Record{hdr, sess(withDone), task("s", "a", completed, 1), result("a", 2, 0)}, "attempt 0"},
		{"request unknown kind", []*fsmpb.Record{hdr, req("k", "", 9, 1)}, "unknown error kind 9"},
		{"request of unknown session", []*fsmpb.Record{hdr, req("k", "nope", 0, 1)}, "unknown session"},
		{"request seq order", []*fsmpb.Record{hdr, req("k", "", 1, 5), req("j", "", 1, 5)}, "not above"},
		{"request repeated", []*fsmpb.Record{hdr, req("k", "", 1, 5), req("k", "", 1, 6)}, "repeated"},
		{"member repeated", []*fsmpb.Record{hdr, member("a"), member("a")}, "repeated or out of order"},
		{"member empty", []*fsmpb.Record{hdr, member("")}, "empty id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { restoreFails(t, f, craft(t, tc.recs...), tc.want) })
	}
}

type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestRestoreReaderError(t *testing.T) {
	data := snapshotBytes(t, richState(t).f)
	boom := errors.New("disk on fire")
	f := New(Options{})
	err := f.Restore(&failingReader{data: data[:len(data)/2], err: boom})
	if !errors.Is(err, boom) || errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("err = %v, want the reader's error and not ErrBadSnapshot", err)
	}
}

// FuzzRestore checks that no input makes Restore panic, and that whatever
// it accepts snapshots back to the same state.
func FuzzRestore(f *testing.F) {
	data := snapshotBytes(f, richState(f).f)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add(snapshotBytes(f, New(Options{})))
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		g := New(Options{RequestCacheSize: 10})
		if err := g.Restore(bytes.NewReader(b)); err != nil {
			return
		}
		if err := func() error { g.mu.RLock(); defer g.mu.RUnlock(); return stateInvariants(g.st) }(); err != nil {
			t.Fatalf("accepted a snapshot that breaks invariants: %v", err)
		}
		k := New(Options{RequestCacheSize: 10})
		if err := k.Restore(bytes.NewReader(snapshotBytes(t, g))); err != nil {
			t.Fatalf("re-restore: %v", err)
		}
		if k.Hash() != g.Hash() || !reflect.DeepEqual(view(k), view(g)) {
			t.Fatal("re-restored state differs")
		}
	})
}
