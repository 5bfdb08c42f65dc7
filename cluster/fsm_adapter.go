package cluster

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/gridd/gridd/fsm"
	"github.com/gridd/gridd/fsm/fsmpb"
	"github.com/hashicorp/raft"
)

// snapMagic starts every snapshot this adapter writes. It is followed by
// the FSM's last applied index (big endian), which raft's Restore does not
// pass to the FSM, then by the FSM's own stream.
const snapMagic = "griddsn1"

// fsmAdapter makes *fsm.FSM a raft.BatchingFSM. raft calls Apply,
// ApplyBatch, Snapshot and Restore from one goroutine, never concurrently.
type fsmAdapter struct {
	f        *fsm.FSM
	restored *atomic.Uint64 // counts successful restores, for Status
	obs      Observer       // nil in tests that build the adapter alone
}

var _ raft.BatchingFSM = (*fsmAdapter)(nil)

func (a *fsmAdapter) Apply(l *raft.Log) any { return a.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch panics on an entry it cannot decode: skipping it would let this
// node diverge silently from its peers.
func (a *fsmAdapter) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	idx, cmds, pos := []uint64(nil), []*fsmpb.Command(nil), []int(nil) // pos: slot in out
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue // configuration, barrier, noop: nil response
		}
		cmd, err := fsm.DecodeCommand(l.Data)
		if err != nil {
			panic(fmt.Sprintf("cluster: raft log entry %d (term %d) is not a valid command: %v", l.Index, l.Term, err))
		}
		idx, cmds, pos = append(idx, l.Index), append(cmds, cmd), append(pos, i)
	}
	if len(cmds) == 0 {
		return out
	}
	resps := a.f.ApplyBatch(idx, cmds) // once: one lock, one pass
	for j := range cmds {
		out[pos[j]] = resps[j] // a short slice panics: the fsm broke its contract
	}
	return out
}

// Snapshot reads LastApplied and captures the state with no Apply in
// between, because raft runs them on the same goroutine.
func (a *fsmAdapter) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{index: a.f.LastApplied(), snap: a.f.Snapshot(), obs: a.obs}, nil
}

func (a *fsmAdapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var hdr [len(snapMagic) + 8]byte
	if _, err := io.ReadFull(rc, hdr[:]); err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	if string(hdr[:len(snapMagic)]) != snapMagic {
		return fmt.Errorf("snapshot header %q is not %q", hdr[:len(snapMagic)], snapMagic)
	}
	if err := a.f.Restore(rc); err != nil {
		return fmt.Errorf("restore fsm: %w", err)
	}
	a.f.SetLastApplied(binary.BigEndian.Uint64(hdr[len(snapMagic):]))
	a.restored.Add(1)
	return nil
}

type fsmSnapshot struct {
	index uint64 // the FSM's LastApplied when snap was captured
	snap  *fsm.Snapshot
	obs   Observer
}

// Persist runs concurrently with Apply; the capture is independent of it.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	start := time.Now()
	cw := &countingWriter{w: sink}
	_, err := cw.Write(binary.BigEndian.AppendUint64([]byte(snapMagic), s.index))
	if err == nil {
		_, err = s.snap.WriteTo(cw)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.obs != nil {
		s.obs.ObserveSnapshot(time.Since(start), cw.n)
	}
	return nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (s *fsmSnapshot) Release() {}
