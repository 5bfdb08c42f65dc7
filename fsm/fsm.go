// Package fsm is gridd's replicated state machine: sessions, their pending
// tasks, results and dead letters, and the cluster's member addresses.
//
// The contract (the same as hashicorp/raft's FSM):
//   - Apply is deterministic: no wall clock, no randomness, no iteration over
//     Go maps where the order shows. The leader stamps time and ids into the
//     command before proposing it.
//   - Snapshot only captures a point in time; the capture is written out
//     later, concurrently with Apply.
//   - Restore discards the previous state, and only once the whole snapshot
//     was read and checked.
//
// The package does no I/O of its own and knows nothing of Raft: the cluster
// package adapts it to raft.BatchingFSM.
package fsm

import (
	"io"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// Options tune the state machine.
type Options struct {
	// RequestCacheSize bounds how many idempotency keys are remembered;
	// 0 means DefaultRequestCacheSize.
	RequestCacheSize int
}

// FSM is the state machine. All methods are safe for concurrent use.
type FSM struct {
	opts Options
}

// New returns an empty state machine.
func New(opts Options) *FSM {
	return &FSM{opts: opts}
}

// Apply applies the command committed at index. An index at or below the
// last applied one changes nothing.
func (f *FSM) Apply(index uint64, cmd *fsmpb.Command) Response {
	return f.ApplyBatch([]uint64{index}, []*fsmpb.Command{cmd})[0]
}

// ApplyBatch applies consecutive committed commands under one lock and
// returns one response per command.
func (f *FSM) ApplyBatch(indexes []uint64, cmds []*fsmpb.Command) []Response {
	return make([]Response, len(cmds))
}

// Snapshot captures the state at this instant. The capture is independent
// of later Apply calls and may be written out concurrently with them.
func (f *FSM) Snapshot() *Snapshot { return &Snapshot{} }

// Snapshot is a captured state.
type Snapshot struct{}

// WriteTo streams the snapshot as length-prefixed records.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) { return 0, nil }

// Restore replaces the state with the snapshot read from r. On any error
// the previous state is kept and the error names what was wrong.
func (f *FSM) Restore(r io.Reader) error { return nil }

// LastApplied returns the index of the last applied command.
func (f *FSM) LastApplied() uint64 { return 0 }

// Session returns a copy of a session's metadata.
func (f *FSM) Session(id string) (SessionInfo, bool) { return SessionInfo{}, false }

// Sessions returns every session, sorted by id.
func (f *FSM) Sessions() []SessionInfo { return nil }

// TaskPending reports whether the task exists and has no outcome yet.
func (f *FSM) TaskPending(session, id string) bool { return false }

// ResultsAfter returns up to max unacknowledged results of the session
// whose Seq is greater than after, in Seq order.
func (f *FSM) ResultsAfter(session string, after uint64, max int) []Result { return nil }

// DeadLettersAfter is ResultsAfter for dead letters.
func (f *FSM) DeadLettersAfter(session string, after uint64, max int) []DeadLetter { return nil }

// Members returns the known members, sorted by id.
func (f *FSM) Members() []Member { return nil }

// Hash returns a digest of the whole replicated state (canonical order), to
// compare replicas in tests and after healing.
func (f *FSM) Hash() string { return "" }

// Subscribe installs l (nil removes it) and, atomically with that, calls
// load with every pending task of every open session, so that a new
// leader's dispatcher starts from a consistent state and misses no event.
func (f *FSM) Subscribe(l Listener, load func(pending []Task)) {}

// EncodeCommand marshals a command for the Raft log.
func EncodeCommand(c *fsmpb.Command) ([]byte, error) { return nil, nil }

// DecodeCommand unmarshals and checks a Raft log entry. A corrupt entry is an
// error here; the cluster adapter turns it into a panic, because a node must
// never silently diverge from its peers.
func DecodeCommand(b []byte) (*fsmpb.Command, error) { return nil, nil }
