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
//
// Applied commands are owned by the state machine afterwards: payload
// slices and strings are kept without copying, so callers must not modify a
// command once they passed it to Apply.
package fsm

import (
	"fmt"
	"slices"
	"sync"

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

	mu          sync.RWMutex
	st          *state
	lastApplied uint64
	listener    Listener
}

// state is everything that is replicated. Restore builds a new one and
// swaps it in whole.
type state struct {
	sessions map[string]*session
	// ids of every session in sorted order, so that listings, Subscribe and
	// snapshots never sort under the lock.
	ids []string
	// nextSeq numbers tasks, results, dead letters and idempotency keys in
	// application order. Starts at 1 so that 0 can mean "before the first".
	nextSeq  uint64
	requests requestCache
	members  map[string]Member
}

func newState(opts Options) *state {
	size := opts.RequestCacheSize
	if size <= 0 {
		size = DefaultRequestCacheSize
	}
	return &state{
		sessions: make(map[string]*session),
		nextSeq:  1,
		requests: newRequestCache(size),
		members:  make(map[string]Member),
	}
}

// seq hands out the next sequence number.
func (st *state) seq() uint64 {
	s := st.nextSeq
	st.nextSeq++
	return s
}

// New returns an empty state machine.
func New(opts Options) *FSM {
	return &FSM{opts: opts, st: newState(opts)}
}

// Apply applies the command committed at index. An index at or below the
// last applied one changes nothing.
func (f *FSM) Apply(index uint64, cmd *fsmpb.Command) Response {
	return f.ApplyBatch([]uint64{index}, []*fsmpb.Command{cmd})[0]
}

// ApplyBatch applies consecutive committed commands under one lock and
// returns one response per command. indexes and cmds must have the same
// length.
func (f *FSM) ApplyBatch(indexes []uint64, cmds []*fsmpb.Command) []Response {
	if len(indexes) != len(cmds) {
		panic(fmt.Sprintf("fsm: ApplyBatch with %d indexes for %d commands", len(indexes), len(cmds)))
	}
	resps := make([]Response, len(cmds))
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, c := range cmds {
		// Raft re-applies entries after the last snapshot on restart; an
		// index we already have must not act twice.
		if indexes[i] <= f.lastApplied {
			continue
		}
		f.lastApplied = indexes[i]
		resps[i] = f.apply(c)
	}
	return resps
}

// apply hands a command to its handler. Called with the write lock held.
func (f *FSM) apply(c *fsmpb.Command) Response {
	now := c.GetNowUnixMs()
	switch body := c.GetCmd().(type) {
	case *fsmpb.Command_CreateSession:
		return f.keyed(c.GetRequestId(), body.CreateSession.GetSessionId(), func() Response {
			return f.createSession(now, body.CreateSession)
		})
	case *fsmpb.Command_UpdateSession:
		return f.keyed(c.GetRequestId(), body.UpdateSession.GetSessionId(), func() Response {
			return f.updateSession(now, body.UpdateSession)
		})
	case *fsmpb.Command_CloseSession:
		return f.keyed(c.GetRequestId(), body.CloseSession.GetSessionId(), func() Response {
			return f.closeSession(now, body.CloseSession)
		})
	case *fsmpb.Command_SetMember:
		return f.keyed(c.GetRequestId(), "", func() Response { return f.setMember(body.SetMember) })
	case *fsmpb.Command_RemoveMember:
		return f.keyed(c.GetRequestId(), "", func() Response { return f.removeMember(body.RemoveMember) })
	case *fsmpb.Command_Enqueue:
		return f.enqueue(body.Enqueue)
	case *fsmpb.Command_Outcomes:
		return f.outcomes(now, body.Outcomes)
	case *fsmpb.Command_AckResults:
		return f.ackResults(body.AckResults)
	case *fsmpb.Command_AckDeadLetters:
		return f.ackDeadLetters(body.AckDeadLetters)
	case *fsmpb.Command_RetryDeadLetters:
		return f.keyed(c.GetRequestId(), body.RetryDeadLetters.GetSessionId(), func() Response {
			return f.retryDeadLetters(body.RetryDeadLetters)
		})
	case *fsmpb.Command_CancelTasks:
		return f.keyed(c.GetRequestId(), body.CancelTasks.GetSessionId(), func() Response {
			return f.cancelTasks(body.CancelTasks)
		})
	case *fsmpb.Command_SharedDataChunk:
		return f.sharedChunk(now, body.SharedDataChunk)
	case *fsmpb.Command_SharedDataCommit:
		return f.keyed(c.GetRequestId(), body.SharedDataCommit.GetSessionId(), func() Response {
			return f.sharedCommit(body.SharedDataCommit)
		})
	case *fsmpb.Command_SharedDataDelete:
		return f.keyed(c.GetRequestId(), body.SharedDataDelete.GetSessionId(), func() Response {
			return f.sharedDelete(body.SharedDataDelete)
		})
	case *fsmpb.Command_SharedDataExpire:
		return f.sharedExpire(body.SharedDataExpire)
	case *fsmpb.Command_SharedDataAbort:
		return f.sharedAbort(body.SharedDataAbort)
	default:
		// DecodeCommand never lets such an entry through; a command built
		// in process without a body is a caller bug, answered the same way
		// on every replica.
		return Response{Err: newError(ErrInvalid, "command has no known body")}
	}
}

// LastApplied returns the index of the last applied command.
func (f *FSM) LastApplied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.lastApplied
}

// SetLastApplied sets the index of the last applied command. The cluster
// adapter calls it after Restore with the snapshot's index, because the
// snapshot itself does not carry Raft indexes.
func (f *FSM) SetLastApplied(i uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastApplied = i
}

// Subscribe installs l (nil removes it) and, atomically with that, calls
// load with every pending task of every open session, so that a new
// leader's dispatcher starts from a consistent state and misses no event.
// Tasks come ordered by session id, then Seq. load (if not nil) runs with
// the lock held and must not call back into the FSM.
func (f *FSM) Subscribe(l Listener, load func(pending []Task)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listener = l
	if load == nil {
		return
	}
	var pending []Task
	for _, id := range f.st.ids {
		s := f.st.sessions[id]
		if s.closed {
			continue
		}
		start := len(pending)
		for tid, t := range s.tasks {
			if t.state == fsmpb.TaskState_TASK_STATE_PENDING {
				pending = append(pending, t.export(s.id, tid))
			}
		}
		slices.SortFunc(pending[start:], func(a, b Task) int { return cmpUint64(a.Seq, b.Seq) })
	}
	load(pending)
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
