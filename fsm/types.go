package fsm

import (
	"errors"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// Sentinel errors returned (wrapped) in Response.Err. They are business
// errors: the command was applied and changed nothing. The rpc layer maps
// them to gRPC codes in one place.
var (
	// ErrSessionNotFound: the command names a session the state does not have.
	ErrSessionNotFound = errors.New("session not found")
	// ErrSessionExists: CreateSession with an id that is taken.
	ErrSessionExists = errors.New("session already exists")
	// ErrSessionClosed: the session is closed and accepts no tasks or updates.
	ErrSessionClosed = errors.New("session is closed")
	// ErrInvalid: the command is well formed but its values are not allowed
	// (for example max_workers below min_workers after an update).
	ErrInvalid = errors.New("invalid argument")
)

// Defaults applied to session attributes left at zero.
const (
	DefaultPriority         = 5
	MaxPriority             = 10
	DefaultIdleTimeoutMs    = 60_000
	DefaultMaxInflight      = 10
	DefaultMaxAttempts      = 3
	DefaultRetryBackoffMs   = 100
	DefaultRetryBackoffMax  = 10_000
	MaxRetryBackoffMs       = 3_600_000 // an hour: a longer wait is a mistake
	DefaultRequestCacheSize = 100_000
	MaxTaskIDLen            = 256
	MaxSessionIDLen         = 256
)

// Attrs are a session's attributes after defaults were applied.
type Attrs struct {
	Priority                    int32
	ClientID                    string
	MinWorkers                  int32
	MaxWorkers                  int32 // 0: unlimited
	IdleTimeoutMs               int64
	Preemptible                 bool
	CleanupOnClientExit         bool
	MaxInflightBatchesPerWorker int32
	Tags                        []string
	TaskTimeoutMs               int64 // 0: none
	MaxAttempts                 int32
	RetryBackoffMs              int64
	RetryBackoffMaxMs           int64
}

// SessionInfo is a copy of a session's metadata and counters; callers may
// keep it.
type SessionInfo struct {
	ID            string
	App           string
	Attrs         Attrs
	Closed        bool
	CreatedUnixMs int64
	UpdatedUnixMs int64

	Submitted          uint64 // tasks accepted (duplicates not counted)
	Pending            uint64 // tasks without an outcome
	Completed          uint64 // tasks with a result, acknowledged or not
	DeadLettered       uint64 // tasks that failed every attempt
	Retried            uint64 // failed attempts that were requeued
	Retrying           uint64 // pending tasks that failed at least once
	Cancelled          uint64 // tasks cancelled before an outcome
	TimedOut           uint64 // attempts that ran out their lease
	ResultsUnacked     uint64
	DeadLettersUnacked uint64
}

// Task is a copy of a pending task, as handed to the dispatcher. Payload is
// shared with the state and must not be modified.
type Task struct {
	Session       string
	ID            string
	Payload       []byte
	Priority      int32
	Attempts      int32  // failed attempts so far
	Seq           uint64 // order of acceptance, for FIFO within a priority
	UseSharedData bool
	RequiredLevel int64
	// NotBeforeUnixMs: a failed task waits for its retry backoff until this
	// time (leader's clock at the failure plus the backoff); 0 for none.
	NotBeforeUnixMs int64
}

// TaskStatus is the replicated part of a task's state, for GetTasks.
type TaskStatus struct {
	ID              string
	State           fsmpb.TaskState // UNSPECIFIED: unknown id
	Attempts        int32
	Errors          []string
	NotBeforeUnixMs int64
}

// Result is a copy of a result not yet acknowledged by the client.
type Result struct {
	TaskID  string
	Payload []byte
	Seq     uint64 // order of recording; results are read in this order
	Attempt int32  // the attempt that produced it, 1-based
}

// DeadLetter is a copy of a dead letter not yet acknowledged.
type DeadLetter struct {
	TaskID   string
	Payload  []byte // the task's payload
	Errors   []string
	Seq      uint64
	Attempts int32
}

// Member is a cluster node's addresses, replicated so that any node can
// forward to the leader's gRPC address.
type Member struct {
	ID       string
	RaftAddr string
	GRPCAddr string
}

// Response is what applying one command returns to its proposer.
type Response struct {
	// Err is nil or wraps one of the sentinel errors above.
	Err error
	// Session is set by session commands (create, update, close).
	Session *SessionInfo
	// Enqueue: tasks newly accepted, and ids the session already knew.
	Accepted, Duplicates int
	// Outcomes: outcomes recorded, and ignored (task unknown or already
	// has an outcome). Requeued and DeadLettered split the failures.
	Recorded, Ignored, Requeued, DeadLettered int
	// CancelTasks: tasks cancelled.
	Cancelled int
	// Ack: entries dropped.
	Acked int
	// SharedDataCommit: the level published.
	Shared *SharedLevel
	// SharedDataDelete, Expire, Abort: something was dropped.
	SharedDeleted bool
}

// Listener is told about state changes as they are applied, so that the
// leader's dispatcher and client streams can act without polling. Methods
// are called with the state machine's lock held: they must return quickly
// and must not call back into the FSM.
type Listener interface {
	// TasksReady: tasks became pending (accepted, or requeued after a failed
	// attempt).
	TasksReady(session string, tasks []Task)
	// TasksDone: tasks got an outcome (result or dead letter) or were
	// cancelled, and must not be dispatched again.
	TasksDone(session string, ids []string)
	// TasksCancelled: tasks were cancelled (CancelTasks). It comes before
	// the TasksDone of the same ids, so that a worker running one can be
	// told to stop: a completion needs no such message.
	TasksCancelled(session string, ids []string)
	// ResultsReady: the session has new results or dead letters to send.
	ResultsReady(session string)
	// SessionChanged: created, updated or closed.
	SessionChanged(info SessionInfo)
}
