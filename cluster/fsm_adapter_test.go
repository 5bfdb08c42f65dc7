package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func commandLog(t *testing.T, index uint64, cmd *fsmpb.Command) *raft.Log {
	t.Helper()
	data, err := fsm.EncodeCommand(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

func setMemberCmd(id string) *fsmpb.Command {
	return &fsmpb.Command{RequestId: "m/" + id, Cmd: &fsmpb.Command_SetMember{
		SetMember: &fsmpb.SetMember{Id: id, RaftAddr: id + ":7337", GrpcAddr: id + ":1337"},
	}}
}

func newAdapter() *fsmAdapter {
	return &fsmAdapter{f: fsm.New(fsm.Options{}), restored: new(atomic.Uint64)}
}

func TestAdapterApplyBatch(t *testing.T) {
	a := newAdapter()
	logs := []*raft.Log{
		{Index: 1, Term: 1, Type: raft.LogConfiguration},
		commandLog(t, 2, setMemberCmd("a")),
		{Index: 3, Term: 1, Type: raft.LogNoop},
		commandLog(t, 4, setMemberCmd("b")),
		{Index: 5, Term: 1, Type: raft.LogBarrier},
	}
	out := a.ApplyBatch(logs)
	if len(out) != len(logs) {
		t.Fatalf("%d responses for %d logs", len(out), len(logs))
	}
	for i, r := range out {
		_, isResp := r.(fsm.Response)
		if isCmd := logs[i].Type == raft.LogCommand; isResp != isCmd {
			t.Errorf("log %d (%v): response %#v", i, logs[i].Type, r)
		}
	}
	if got := a.f.LastApplied(); got != 4 {
		t.Errorf("LastApplied = %d, want 4", got)
	}
	if got := a.f.Members(); len(got) != 2 {
		t.Errorf("members after apply: %+v", got)
	}
}

func TestAdapterPanicsOnUndecodableEntry(t *testing.T) {
	garbage := []byte{0xff, 0xff, 0xff, 0x07, 0x01}
	if _, err := fsm.DecodeCommand(garbage); err == nil {
		t.Fatal("fsm.DecodeCommand accepted garbage, so the adapter has nothing to panic on")
	}
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), "entry 7") {
			t.Fatalf("recovered %v, want a panic naming entry 7", r)
		}
	}()
	newAdapter().ApplyBatch([]*raft.Log{{Index: 7, Term: 1, Type: raft.LogCommand, Data: garbage}})
}

// TestAdapterSnapshotRoundTrip persists through a real file snapshot
// store and restores into a fresh FSM, which must end equal, LastApplied
// included.
func TestAdapterSnapshotRoundTrip(t *testing.T) {
	src := newAdapter()
	src.ApplyBatch([]*raft.Log{commandLog(t, 3, setMemberCmd("a")), commandLog(t, 4, setMemberCmd("b"))})
	store, err := raft.NewFileSnapshotStoreWithLogger(t.TempDir(), 1, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, 5, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	snap.Release()

	dst := newAdapter()
	_, rc, err := store.Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.Restore(rc); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if dst.f.Hash() != src.f.Hash() {
		t.Fatalf("hash after restore %q, want %q", dst.f.Hash(), src.f.Hash())
	}
	if got := dst.f.LastApplied(); got != 4 {
		t.Fatalf("LastApplied after restore = %d, want 4", got)
	}
	if got := dst.restored.Load(); got != 1 {
		t.Fatalf("restores counted: %d", got)
	}
	// An index at or below the snapshot's changes nothing.
	dst.ApplyBatch([]*raft.Log{commandLog(t, 4, setMemberCmd("c"))})
	if dst.f.Hash() != src.f.Hash() {
		t.Fatal("re-applying an index covered by the snapshot changed the state")
	}
}

func TestAdapterRestoreRejectsForeignSnapshot(t *testing.T) {
	a := newAdapter()
	for _, data := range []string{"", "short", "notgridd0123456789"} {
		if err := a.Restore(nopCloser{strings.NewReader(data)}); err == nil {
			t.Errorf("Restore(%q) succeeded", data)
		}
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

func TestHCLogAdapterFiltersAndNames(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := newHCLogAdapter(l, slog.LevelWarn).Named("snapshot").With("peer", "n2")
	h.Info("chatty")
	h.Debug("chattier")
	h.Warn("worth seeing", "error", "boom")
	h.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}).Print("from std log")
	out := buf.String()
	if strings.Contains(out, "chatty") {
		t.Errorf("Info/Debug passed the Warn filter:\n%s", out)
	}
	for _, want := range []string{"worth seeing", "component=raft", "subsystem=snapshot", "peer=n2", "error=boom", "from std log"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if h.IsInfo() || !h.IsWarn() || h.GetLevel() != hclog.Warn {
		t.Error("level queries disagree with the Warn filter")
	}
}
