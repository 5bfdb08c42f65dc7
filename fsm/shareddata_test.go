package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/gridd/gridd/fsm/fsmpb"
)

func cmdChunk(session, upload string, size, off int64, data []byte) *fsmpb.Command {
	return &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataChunk{SharedDataChunk: &fsmpb.SharedDataChunk{
		SessionId: session, UploadId: upload, Size: size, Offset: off, Data: data,
	}}}
}

func cmdCommit(key, session, upload string, set bool, level int64, data []byte, expires int64) *fsmpb.Command {
	sum := sha256.Sum256(data)
	return &fsmpb.Command{RequestId: key, Cmd: &fsmpb.Command_SharedDataCommit{SharedDataCommit: &fsmpb.SharedDataCommit{
		SessionId: session, UploadId: upload, Set: set, Level: level, Size: int64(len(data)), Sha256: sum[:],
		ExpiresUnixMs: expires, KeepLevels: 2,
	}}}
}

// upload applies data in chunks of at most chunk bytes, then the commit.
func (h *harness) upload(key, session, upload string, set bool, level int64, data []byte, chunk int, expires int64) Response {
	h.t.Helper()
	for off := 0; off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		h.mustOK(cmdChunk(session, upload, int64(len(data)), int64(off), data[off:end]))
	}
	return h.apply(cmdCommit(key, session, upload, set, level, data, expires))
}

func wantErr(t *testing.T, what string, r Response, sentinel error) {
	t.Helper()
	if !errors.Is(r.Err, sentinel) {
		t.Fatalf("%s: got %v, want %v", what, r.Err, sentinel)
	}
}

func getLevel(t *testing.T, f *FSM, session string, level int64) SharedLevel {
	t.Helper()
	l, err := f.SharedData(session, level)
	if err != nil {
		t.Fatalf("get level %d: %v", level, err)
	}
	if sum := sha256.Sum256(l.Data); !bytes.Equal(sum[:], l.SHA256) {
		t.Fatalf("level %d: data does not match its sha256", l.Level)
	}
	return l
}

func TestSharedDataLevels(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", nil))
	_, err := h.f.SharedData("s", 0)
	if !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("get before set: %v", err)
	}
	wantErr(t, "update before set", h.upload("u0", "s", "up0", false, 0, []byte("x"), 1, 0), ErrSharedDataNotFound)

	r := h.upload("k1", "s", "up1", true, 0, []byte("hello world"), 4, 5000)
	if r.Err != nil || r.Shared.Level != 1 {
		t.Fatalf("set: %+v", r)
	}
	wantErr(t, "second set", h.upload("k2", "s", "up2", true, 0, []byte("y"), 1, 0), ErrSharedDataExists)
	r = h.upload("k3", "s", "up3", false, 5, []byte("five"), 2, 6000)
	if r.Err != nil || r.Shared.Level != 5 || r.Shared.ExpiresUnixMs != 6000 {
		t.Fatalf("update to 5: %+v", r)
	}
	wantErr(t, "update to 5 again", h.upload("k4", "s", "up4", false, 5, []byte("x"), 1, 0), ErrInvalid)
	wantErr(t, "update backwards", h.upload("k5", "s", "up5", false, 3, []byte("x"), 1, 0), ErrInvalid)
	r = h.upload("k6", "s", "up6", false, 0, []byte("six"), 2, 7000)
	if r.Err != nil || r.Shared.Level != 6 {
		t.Fatalf("update to current+1: %+v", r)
	}

	// Keep 2: levels 5 and 6 remain, 1 is gone; the TTL of the data was
	// renewed by the update.
	if l := getLevel(t, h.f, "s", 0); l.Level != 6 || string(l.Data) != "six" || l.ExpiresUnixMs != 7000 {
		t.Fatalf("latest: %+v", l)
	}
	if l := getLevel(t, h.f, "s", 5); string(l.Data) != "five" {
		t.Fatalf("level 5: %q", l.Data)
	}
	if _, err := h.f.SharedData("s", 1); !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("level 1 after keep 2: %v", err)
	}
	if _, err := h.f.SharedData("s", 7); !errors.Is(err, ErrLevelNotWritten) {
		t.Fatalf("level 7: %v", err)
	}

	// A repeated key is answered with the first answer and changes nothing.
	before := h.f.Hash()
	r = h.apply(cmdCommit("k3", "s", "upX", false, 9, nil, 1))
	if r.Err != nil || r.Shared.Level != 5 || string(r.Shared.Data) != "five" {
		t.Fatalf("replayed commit: %+v", r)
	}
	if h.f.Hash() != before {
		t.Fatal("a replayed commit changed the state")
	}
}

func TestSharedDataPartialUploadDiscarded(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", nil))
	data := []byte("0123456789")
	h.mustOK(cmdChunk("s", "old", 10, 0, data[:4]))
	// A new upload (a retry after a leader died mid-stream) replaces it.
	h.mustOK(cmdChunk("s", "new", 10, 0, data[:3]))
	wantErr(t, "chunk of the replaced upload", h.apply(cmdChunk("s", "old", 10, 4, data[4:8])), ErrUploadGone)
	wantErr(t, "commit of the replaced upload", h.apply(cmdCommit("retry-me", "s", "old", true, 0, data, 0)), ErrUploadGone)
	wantErr(t, "chunk out of order", h.apply(cmdChunk("s", "new", 10, 5, data[5:])), ErrInvalid)
	wantErr(t, "chunk overruns", h.apply(cmdChunk("s", "new", 10, 3, make([]byte, 8))), ErrInvalid)
	h.mustOK(cmdChunk("s", "new", 10, 3, data[3:]))
	wantErr(t, "commit with a wrong sum", h.apply(cmdCommit("", "s", "new", true, 0, []byte("9876543210"), 0)), ErrInvalid)
	// The failed commit finished the upload: nothing was published.
	if _, err := h.f.SharedData("s", 0); !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("after a failed commit: %v", err)
	}

	// The key of a commit whose upload was gone is not remembered: its
	// retry with fresh chunks lands.
	if r := h.upload("retry-me", "s", "again", true, 0, data, 4, 0); r.Err != nil || r.Shared.Level != 1 {
		t.Fatalf("retry of a commit whose upload was gone: %+v", r)
	}

	// The leader's abort drops an unfinished upload, and only that one.
	h.mustOK(cmdChunk("s", "a", 10, 0, data[:2]))
	h.mustOK(&fsmpb.Command{Cmd: &fsmpb.Command_SharedDataAbort{SharedDataAbort: &fsmpb.SharedDataAbort{SessionId: "s", UploadId: "other"}}})
	if _, stale := h.f.SharedSweep(0, 1<<62); len(stale) != 1 || stale[0].UploadID != "a" {
		t.Fatalf("stale uploads: %v", stale)
	}
	h.mustOK(&fsmpb.Command{Cmd: &fsmpb.Command_SharedDataAbort{SharedDataAbort: &fsmpb.SharedDataAbort{SessionId: "s", UploadId: "a"}}})
	wantErr(t, "chunk after abort", h.apply(cmdChunk("s", "a", 10, 2, data[2:4])), ErrUploadGone)
}

func TestSharedDataExpiryAndDelete(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", nil))
	h.upload("k1", "s", "u1", true, 0, []byte("one"), 2, 1000)
	if exp, _ := h.f.SharedSweep(999, 0); len(exp) != 0 {
		t.Fatalf("expired before its time: %v", exp)
	}
	exp, _ := h.f.SharedSweep(1000, 0)
	if len(exp) != 1 || exp[0].ExpiresUnixMs != 1000 {
		t.Fatalf("sweep: %v", exp)
	}
	// An update renews the TTL before the sweeper's expire lands: the
	// expire of the old expiry changes nothing.
	h.upload("k2", "s", "u2", false, 0, []byte("two"), 2, 2000)
	expire := func(at int64) *fsmpb.Command {
		return &fsmpb.Command{Cmd: &fsmpb.Command_SharedDataExpire{SharedDataExpire: &fsmpb.SharedDataExpire{SessionId: "s", ExpiresUnixMs: at}}}
	}
	if r := h.mustOK(expire(1000)); r.SharedDeleted {
		t.Fatal("a stale expire dropped renewed data")
	}
	getLevel(t, h.f, "s", 2)
	if r := h.mustOK(expire(2000)); !r.SharedDeleted {
		t.Fatal("expire did not drop the data")
	}
	if _, err := h.f.SharedData("s", 2); !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("after expiry: %v", err)
	}
	// Levels never go backwards: a Set after expiry continues at 3.
	if r := h.upload("k3", "s", "u3", true, 0, []byte("three"), 2, 0); r.Err != nil || r.Shared.Level != 3 {
		t.Fatalf("set after expiry: %+v", r)
	}
	del := &fsmpb.Command{RequestId: "d1", Cmd: &fsmpb.Command_SharedDataDelete{SharedDataDelete: &fsmpb.SharedDataDelete{SessionId: "s"}}}
	if r := h.mustOK(del); !r.SharedDeleted {
		t.Fatal("delete did not delete")
	}
	if r := h.mustOK(del); !r.SharedDeleted {
		t.Fatal("a repeated delete is not answered with the first answer")
	}
	if _, err := h.f.SharedData("s", 3); !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if _, err := h.f.SharedData("s", 4); !errors.Is(err, ErrLevelNotWritten) {
		t.Fatalf("level 4 after delete: %v", err)
	}

	// Closing the session drops its shared data, and uploads stop.
	h.upload("k4", "s", "u4", true, 0, []byte("four"), 2, 0)
	h.mustOK(cmdChunk("s", "u5", 4, 0, []byte("ab")))
	h.mustOK(cmdClose("s"))
	if _, err := h.f.SharedData("s", 0); !errors.Is(err, ErrSharedDataNotFound) {
		t.Fatalf("after close: %v", err)
	}
	wantErr(t, "chunk on a closed session", h.apply(cmdChunk("s", "u6", 4, 0, []byte("ab"))), ErrSessionClosed)
	wantErr(t, "chunk on no session", h.apply(cmdChunk("nope", "u6", 4, 0, []byte("ab"))), ErrSessionNotFound)
}

func TestSharedDataBadInputChangesNothing(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("s", nil))
	h.upload("k1", "s", "u1", true, 0, []byte("one"), 2, 0)
	before := h.f.Hash()
	for name, c := range map[string]*fsmpb.Command{
		"no upload id":      cmdChunk("s", "", 3, 0, []byte("a")),
		"negative size":     cmdChunk("s", "x", -1, 0, nil),
		"huge size":         cmdChunk("s", "x", MaxSharedDataSize+1, 0, nil),
		"chunk over 1 MiB":  cmdChunk("s", "x", 4<<20, 0, make([]byte, MaxSharedChunk+1)),
		"negative offset":   cmdChunk("s", "x", 3, -1, []byte("a")),
		"past the size":     cmdChunk("s", "x", 3, 2, []byte("ab")),
		"negative level":    cmdCommit("", "s", "", false, -1, nil, 0),
		"short sha":         {Cmd: &fsmpb.Command_SharedDataCommit{SharedDataCommit: &fsmpb.SharedDataCommit{SessionId: "s", Sha256: []byte{1}}}},
		"commit of nothing": cmdCommit("", "s", "none", false, 0, []byte("abc"), 0),
	} {
		if r := h.apply(c); r.Err == nil {
			t.Errorf("%s: accepted", name)
		}
		if h.f.Hash() != before {
			t.Fatalf("%s: the state changed", name)
		}
	}
}

// A snapshot holds levels and an unfinished upload as chunked records,
// and restores to the same state; the upload can then be finished.
func TestSharedDataSnapshotRoundTrip(t *testing.T) {
	h := newHarness(t, Options{})
	h.mustOK(cmdCreate("a", nil))
	h.mustOK(cmdCreate("b", nil))
	big := make([]byte, 3*MaxSharedChunk+12345)
	for i := range big {
		big[i] = byte(i * 7)
	}
	h.upload("k1", "a", "u1", true, 0, big[:100], MaxSharedChunk, 10)
	h.upload("k2", "a", "u2", false, 0, big, MaxSharedChunk, 20)
	h.mustOK(cmdChunk("b", "ub", int64(len(big)), 0, big[:MaxSharedChunk]))
	h.mustOK(cmdChunk("b", "ub", int64(len(big)), MaxSharedChunk, big[MaxSharedChunk:2*MaxSharedChunk]))

	snap := snapshotBytes(t, h.f)
	g := New(Options{})
	if err := g.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if g.Hash() != h.f.Hash() {
		t.Fatal("restored state differs")
	}
	if l := getLevel(t, g, "a", 0); l.Level != 2 || !bytes.Equal(l.Data, big) || l.ExpiresUnixMs != 20 {
		t.Fatalf("restored level: %d, %d bytes", l.Level, len(l.Data))
	}
	// The upload goes on from where it was, on both.
	for _, f := range []*FSM{h.f, g} {
		hh := &harness{t: t, f: f, idx: f.LastApplied()}
		if f == g {
			hh.idx = h.idx
		}
		hh.mustOK(cmdChunk("b", "ub", int64(len(big)), 2*MaxSharedChunk, big[2*MaxSharedChunk:3*MaxSharedChunk]))
		hh.mustOK(cmdChunk("b", "ub", int64(len(big)), 3*MaxSharedChunk, big[3*MaxSharedChunk:]))
		if r := hh.apply(cmdCommit("kb", "b", "ub", true, 0, big, 30)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if g.Hash() != h.f.Hash() {
		t.Fatal("states differ after finishing the upload")
	}

	// Corrupt content under a valid checksum is refused.
	bad := craft(t,
		&fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: SnapshotVersion, NextSeq: 1}}},
		&fsmpb.Record{Rec: &fsmpb.Record_Session{Session: &fsmpb.SessionRecord{Id: "s", Attrs: attrsToProto(DefaultAttrs(nil))}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedData{SharedData: &fsmpb.SharedDataRecord{SessionId: "s", LastLevel: 1}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedBlob{SharedBlob: &fsmpb.SharedBlobRecord{Level: 1, Size: 3, Length: 3, Sha256: make([]byte, 32)}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedBytes{SharedBytes: &fsmpb.SharedBytesRecord{Data: []byte("abc")}}},
	)
	if err := New(Options{}).Restore(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a level with a wrong sum restored: %v", err)
	}
	short := craft(t,
		&fsmpb.Record{Rec: &fsmpb.Record_Header{Header: &fsmpb.SnapshotHeader{Version: SnapshotVersion, NextSeq: 1}}},
		&fsmpb.Record{Rec: &fsmpb.Record_Session{Session: &fsmpb.SessionRecord{Id: "s", Attrs: attrsToProto(DefaultAttrs(nil))}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedData{SharedData: &fsmpb.SharedDataRecord{SessionId: "s", LastLevel: 1}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedBlob{SharedBlob: &fsmpb.SharedBlobRecord{Level: 1, Size: 4, Length: 4, Sha256: make([]byte, 32)}}},
		&fsmpb.Record{Rec: &fsmpb.Record_SharedBytes{SharedBytes: &fsmpb.SharedBytesRecord{Data: []byte("abc")}}},
	)
	if err := New(Options{}).Restore(bytes.NewReader(short)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("a level missing bytes restored: %v", err)
	}
}
