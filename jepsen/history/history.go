// Package history records what the jepsen harness's clients did and saw, as
// JSON lines a checker can read back: one Op per event, Jepsen-style. A
// client operation is an invoke followed by its completion on the same
// process (ok, fail or info); deliveries the client merely observes (a
// result, a dead letter) are single ok events.
package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Type is an event's kind, with Jepsen's meaning.
type Type string

const (
	// Invoke starts an operation.
	Invoke Type = "invoke"
	// OK completes an operation that certainly happened.
	OK Type = "ok"
	// Fail completes an operation that certainly did not happen.
	Fail Type = "fail"
	// Info completes an operation whose outcome is unknown (a timeout, an
	// Unavailable): the checkers must allow both.
	Info Type = "info"
)

// Operation names (Op.F).
const (
	Submit     = "submit"      // Value.Session, Value.Tasks (Value.Poison among them)
	Result     = "result"      // Value.Session, Value.Tasks[0]
	DeadLetter = "dead-letter" // Value.Session, Value.Tasks[0]
	Repeats    = "repeats"     // Value.Count wire repeats the SDK dropped
	Create     = "create"      // Value.Session, Value.Priority
	Update     = "update"      // Value.Session, Value.Priority
	Get        = "get"         // Value.Session; ok: Value.State, Value.Priority
	Close      = "close"       // Value.Session
	Nemesis    = "nemesis"     // Value.Fault, Value.Nodes
	// SharedWrite stores a level of a session's shared data (Set for level
	// 1, Update after): Value.Session, Value.Level, Value.Digest (SHA-256
	// of the bytes, hex) on invoke.
	SharedWrite = "shared-write"
	// SharedRead gets a level (Value.Level; 0 = the latest) on invoke; ok:
	// Value.Level and Value.Digest of what came back.
	SharedRead = "shared-read"
)

// Session states a get reports (Value.State).
const (
	StateOpen   = "open"
	StateClosed = "closed"
)

// Value is an operation's argument and, on completion, its answer.
type Value struct {
	Session  string   `json:"session,omitempty"`
	Tasks    []string `json:"tasks,omitempty"`
	Poison   []string `json:"poison,omitempty"`
	Priority int32    `json:"priority,omitempty"`
	State    string   `json:"state,omitempty"`
	// Code is the gRPC code name of a failed or unknown operation
	// ("NotFound", "Unavailable").
	Code  string   `json:"code,omitempty"`
	Error string   `json:"error,omitempty"`
	Count int      `json:"count,omitempty"`
	Fault string   `json:"fault,omitempty"`
	Nodes []string `json:"nodes,omitempty"`
	// Level and Digest: shared-data operations.
	Level  int64  `json:"level,omitempty"`
	Digest string `json:"digest,omitempty"`
}

// Op is one event of the history.
type Op struct {
	Index   int    `json:"index"`
	Process int    `json:"process"`
	Type    Type   `json:"type"`
	F       string `json:"f"`
	Value   Value  `json:"value"`
	// Time is nanoseconds since the run started (a monotonic clock).
	Time int64 `json:"time"`
}

// Recorder appends ops to an in-memory history and, when given a writer,
// streams each one as a JSON line so a crashed run still leaves its history.
// It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   []Op
	w     *bufio.Writer
	enc   *json.Encoder
	err   error
}

// NewRecorder returns a recorder whose clock starts now; w may be nil.
func NewRecorder(w io.Writer) *Recorder {
	r := &Recorder{start: time.Now()}
	if w != nil {
		r.w = bufio.NewWriter(w)
		r.enc = json.NewEncoder(r.w)
	}
	return r
}

// Add records op with the next index and the current time, and returns it.
func (r *Recorder) Add(process int, t Type, f string, v Value) Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op := Op{Index: len(r.ops), Process: process, Type: t, F: f, Value: v,
		Time: int64(time.Since(r.start))}
	r.ops = append(r.ops, op)
	if r.enc != nil && r.err == nil {
		if err := r.enc.Encode(op); err != nil {
			r.err = fmt.Errorf("history: write op %d: %w", op.Index, err)
		}
	}
	return op
}

// Ops returns a copy of the history so far.
func (r *Recorder) Ops() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// Flush writes buffered lines out and reports the first write error.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil && r.err == nil {
		if err := r.w.Flush(); err != nil {
			r.err = fmt.Errorf("history: flush: %w", err)
		}
	}
	return r.err
}

// Read parses a JSON-lines history.
func Read(rd io.Reader) ([]Op, error) {
	var ops []Op
	dec := json.NewDecoder(rd)
	for {
		var op Op
		err := dec.Decode(&op)
		if errors.Is(err, io.EOF) {
			return ops, nil
		}
		if err != nil {
			return ops, fmt.Errorf("history: op %d: %w", len(ops), err)
		}
		ops = append(ops, op)
	}
}

// ReadFile parses the JSON-lines history in path.
func ReadFile(path string) ([]Op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return Read(f)
}
