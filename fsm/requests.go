package fsm

import (
	"errors"
	"fmt"

	"github.com/gridd/gridd/queue"
)

// errKind is the replicated form of a business error, so that a repeated
// request can be answered with the same sentinel after a snapshot restore.
type errKind int32

const (
	kindNone errKind = iota
	kindNotFound
	kindExists
	kindClosed
	kindInvalid
	kindSharedNotFound
	kindSharedExists
	kindLevelNotWritten
	kindUploadGone
	kindCount // one past the last valid kind
)

var kindSentinels = [kindCount]error{
	kindNotFound: ErrSessionNotFound,
	kindExists:   ErrSessionExists,
	kindClosed:   ErrSessionClosed,
	kindInvalid:  ErrInvalid,

	kindSharedNotFound:  ErrSharedDataNotFound,
	kindSharedExists:    ErrSharedDataExists,
	kindLevelNotWritten: ErrLevelNotWritten,
	kindUploadGone:      ErrUploadGone,
}

// cmdError is a business error: a sentinel plus the precise message. Its
// text is kept verbatim in the request cache, so a repeat gets the same
// text as the first answer.
type cmdError struct {
	kind errKind
	msg  string
}

func (e *cmdError) Error() string { return e.msg }
func (e *cmdError) Unwrap() error { return kindSentinels[e.kind] }

// newError builds a business error whose text starts with the sentinel's.
func newError(sentinel error, format string, args ...any) error {
	for k, s := range kindSentinels {
		if s == sentinel && s != nil {
			return &cmdError{kind: errKind(k), msg: sentinel.Error() + ": " + fmt.Sprintf(format, args...)}
		}
	}
	panic(fmt.Sprintf("fsm: %v is not a business error", sentinel))
}

// kindOf returns the kind and text of a handler's error.
func kindOf(err error) (errKind, string) {
	if err == nil {
		return kindNone, ""
	}
	if ce, ok := err.(*cmdError); ok {
		return ce.kind, ce.msg
	}
	// Handlers only return cmdErrors; anything else would not survive a
	// snapshot as the same sentinel.
	panic(fmt.Sprintf("fsm: handler returned a foreign error: %v", err))
}

// answer is the first answer to an idempotency key.
type answer struct {
	session string
	kind    errKind
	msg     string
	seq     uint64
	count   uint32 // CancelTasks, RetryDeadLetters: the count answered; SharedDataDelete: 1 if deleted
	level   int64  // SharedDataCommit: the level published
}

// requestCache remembers the answers to the most recent idempotency keys.
// Keys are never re-inserted (a repeat is answered, not applied), so the
// insertion FIFO is also the application order and evicts the oldest.
type requestCache struct {
	size  int
	byKey map[string]answer
	order queue.FIFO[string]
}

func newRequestCache(size int) requestCache {
	return requestCache{size: size, byKey: make(map[string]answer)}
}

func (c *requestCache) get(key string) (answer, bool) {
	a, ok := c.byKey[key]
	return a, ok
}

// put remembers a new key, evicting the oldest beyond the size bound.
func (c *requestCache) put(key string, a answer) {
	c.byKey[key] = a
	c.order.Push(key)
	for c.order.Len() > c.size {
		old, _ := c.order.Pop()
		delete(c.byKey, old)
	}
}

func (c *requestCache) len() int { return c.order.Len() }

// keyed applies a session or member command under its idempotency key: a
// key seen before gets the first answer (with the session's current info)
// and run is not called.
func (f *FSM) keyed(key, sessionID string, run func() Response) Response {
	st := f.st
	if key == "" {
		return run()
	}
	if a, ok := st.requests.get(key); ok {
		return f.replay(a)
	}
	r := run()
	if errors.Is(r.Err, ErrUploadGone) {
		// The data of this attempt is gone (a newer upload replaced it):
		// the retry re-sends it under the same key and must be applied,
		// not answered with this.
		return r
	}
	kind, msg := kindOf(r.Err)
	a := answer{session: sessionID, kind: kind, msg: msg, seq: st.seq(), count: uint32(r.Cancelled + r.Requeued)}
	if r.SharedDeleted {
		a.count = 1
	}
	if r.Shared != nil {
		a.level = r.Shared.Level
	}
	st.requests.put(key, a)
	return r
}

// replay rebuilds the first answer to a key.
func (f *FSM) replay(a answer) Response {
	if a.kind != kindNone {
		return Response{Err: &cmdError{kind: a.kind, msg: a.msg}}
	}
	// Only one of the counts is meaningful for any command kind; the
	// handler of that kind reads its own.
	r := Response{Cancelled: int(a.count), Requeued: int(a.count), SharedDeleted: a.count == 1}
	s, ok := f.st.sessions[a.session]
	if ok {
		info := s.info()
		r.Session = &info
	}
	if a.level != 0 {
		// The level may have been dropped since; the answer still names it.
		r.Shared = &SharedLevel{Session: a.session, Level: a.level}
		if ok {
			for _, l := range s.shared.levels {
				if l.level == a.level {
					r.Shared = s.levelInfo(l)
				}
			}
		}
	}
	return r
}
