package fsm

import (
	"slices"
	"sort"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// sessionMeta is the part of a session a snapshot copies by value.
type sessionMeta struct {
	id      string
	app     string
	attrs   Attrs // attrs.Tags is replaced, never modified in place
	closed  bool
	created int64
	updated int64

	submitted    uint64
	completed    uint64
	deadLettered uint64
	retried      uint64
	cancelled    uint64
	timedOut     uint64
}

type session struct {
	sessionMeta
	// pending counts tasks in state pending (the other counters are kept by
	// the logs or in sessionMeta).
	pending uint64
	// retrying counts pending tasks with at least one failed attempt.
	retrying uint64
	// tasks holds every task id the session accepted, in any state, so that
	// a resubmission is recognised; dropped when the session closes.
	tasks   map[string]*task
	results seqLog[resultVal]
	dead    seqLog[deadVal]
	shared  sharedData
}

func newSession(m sessionMeta) *session {
	s := &session{sessionMeta: m}
	if !m.closed {
		s.tasks = make(map[string]*task)
	}
	return s
}

// info returns a copy of the session's metadata and counters.
func (s *session) info() SessionInfo {
	a := s.attrs
	a.Tags = slices.Clone(a.Tags)
	return SessionInfo{
		ID:                 s.id,
		App:                s.app,
		Attrs:              a,
		Closed:             s.closed,
		CreatedUnixMs:      s.created,
		UpdatedUnixMs:      s.updated,
		Submitted:          s.submitted,
		Pending:            s.pending,
		Completed:          s.completed,
		DeadLettered:       s.deadLettered,
		Retried:            s.retried,
		Retrying:           s.retrying,
		Cancelled:          s.cancelled,
		TimedOut:           s.timedOut,
		ResultsUnacked:     uint64(s.results.live),
		DeadLettersUnacked: uint64(s.dead.live),
	}
}

// DefaultAttrs converts protobuf attributes (nil allowed) to Attrs,
// replacing zero values that have a default. It does not validate.
func DefaultAttrs(a *fsmpb.SessionAttrs) Attrs {
	out := attrsFromProto(a)
	if out.Priority == 0 {
		out.Priority = DefaultPriority
	}
	if out.IdleTimeoutMs == 0 {
		out.IdleTimeoutMs = DefaultIdleTimeoutMs
	}
	if out.MaxInflightBatchesPerWorker == 0 {
		out.MaxInflightBatchesPerWorker = DefaultMaxInflight
	}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = DefaultMaxAttempts
	}
	if out.RetryBackoffMs == 0 {
		out.RetryBackoffMs = DefaultRetryBackoffMs
	}
	if out.RetryBackoffMaxMs == 0 {
		out.RetryBackoffMaxMs = max(DefaultRetryBackoffMax, out.RetryBackoffMs)
	}
	return out
}

// attrsFromProto converts without defaults, as snapshots store attributes
// after defaults were applied.
func attrsFromProto(a *fsmpb.SessionAttrs) Attrs {
	return Attrs{
		Priority:                    a.GetPriority(),
		ClientID:                    a.GetClientId(),
		MinWorkers:                  a.GetMinWorkers(),
		MaxWorkers:                  a.GetMaxWorkers(),
		IdleTimeoutMs:               a.GetIdleTimeoutMs(),
		Preemptible:                 a.GetPreemptible(),
		CleanupOnClientExit:         a.GetCleanupOnClientExit(),
		MaxInflightBatchesPerWorker: a.GetMaxInflightBatchesPerWorker(),
		Tags:                        slices.Clone(a.GetTags()),
		TaskTimeoutMs:               a.GetTaskTimeoutMs(),
		MaxAttempts:                 a.GetMaxAttempts(),
		RetryBackoffMs:              a.GetRetryBackoffMs(),
		RetryBackoffMaxMs:           a.GetRetryBackoffMaxMs(),
	}
}

func attrsToProto(a Attrs) *fsmpb.SessionAttrs {
	return &fsmpb.SessionAttrs{
		Priority:                    a.Priority,
		ClientId:                    a.ClientID,
		MinWorkers:                  a.MinWorkers,
		MaxWorkers:                  a.MaxWorkers,
		IdleTimeoutMs:               a.IdleTimeoutMs,
		Preemptible:                 a.Preemptible,
		CleanupOnClientExit:         a.CleanupOnClientExit,
		MaxInflightBatchesPerWorker: a.MaxInflightBatchesPerWorker,
		Tags:                        a.Tags,
		TaskTimeoutMs:               a.TaskTimeoutMs,
		MaxAttempts:                 a.MaxAttempts,
		RetryBackoffMs:              a.RetryBackoffMs,
		RetryBackoffMaxMs:           a.RetryBackoffMaxMs,
	}
}

// ValidateAttrs checks attributes after defaults. The error wraps
// ErrInvalid and names the first rule broken.
func ValidateAttrs(a Attrs) error {
	switch {
	case a.Priority < 0 || a.Priority > MaxPriority:
		return newError(ErrInvalid, "priority %d is outside 0..%d", a.Priority, MaxPriority)
	case a.MinWorkers < 0:
		return newError(ErrInvalid, "min_workers %d is negative", a.MinWorkers)
	case a.MaxWorkers < 0:
		return newError(ErrInvalid, "max_workers %d is negative", a.MaxWorkers)
	case a.MaxWorkers != 0 && a.MaxWorkers < a.MinWorkers:
		return newError(ErrInvalid, "max_workers %d is below min_workers %d (0 means unlimited)",
			a.MaxWorkers, a.MinWorkers)
	case a.IdleTimeoutMs < 0:
		return newError(ErrInvalid, "idle_timeout_ms %d is negative", a.IdleTimeoutMs)
	case a.TaskTimeoutMs < 0:
		return newError(ErrInvalid, "task_timeout_ms %d is negative", a.TaskTimeoutMs)
	case a.MaxAttempts < 1:
		return newError(ErrInvalid, "max_attempts %d is below 1", a.MaxAttempts)
	case a.RetryBackoffMs < 1 || a.RetryBackoffMs > MaxRetryBackoffMs:
		return newError(ErrInvalid, "retry_backoff_ms %d is outside 1..%d", a.RetryBackoffMs, MaxRetryBackoffMs)
	case a.RetryBackoffMaxMs < a.RetryBackoffMs || a.RetryBackoffMaxMs > MaxRetryBackoffMs:
		return newError(ErrInvalid, "retry_backoff_max_ms %d must be between retry_backoff_ms (%d) and %d",
			a.RetryBackoffMaxMs, a.RetryBackoffMs, MaxRetryBackoffMs)
	case a.MaxInflightBatchesPerWorker < 1:
		return newError(ErrInvalid, "max_inflight_batches_per_worker %d is below 1",
			a.MaxInflightBatchesPerWorker)
	}
	return nil
}

// ValidateSessionID checks that a session id is 1..MaxSessionIDLen bytes.
func ValidateSessionID(id string) error {
	if id == "" || len(id) > MaxSessionIDLen {
		return newError(ErrInvalid, "session id must be 1..%d bytes, got %d", MaxSessionIDLen, len(id))
	}
	return nil
}

// ApplyUpdate returns a with the fields set in u changed. An explicit zero
// is taken as given (it is not replaced by a default): ValidateAttrs then
// rejects the zeros that are not allowed.
func ApplyUpdate(a Attrs, u *fsmpb.UpdateSession) Attrs {
	set32 := func(dst *int32, src *int32) {
		if src != nil {
			*dst = *src
		}
	}
	set64 := func(dst *int64, src *int64) {
		if src != nil {
			*dst = *src
		}
	}
	setBool := func(dst *bool, src *bool) {
		if src != nil {
			*dst = *src
		}
	}
	set32(&a.Priority, u.Priority)
	set32(&a.MinWorkers, u.MinWorkers)
	set32(&a.MaxWorkers, u.MaxWorkers)
	set64(&a.IdleTimeoutMs, u.IdleTimeoutMs)
	setBool(&a.Preemptible, u.Preemptible)
	setBool(&a.CleanupOnClientExit, u.CleanupOnClientExit)
	set32(&a.MaxInflightBatchesPerWorker, u.MaxInflightBatchesPerWorker)
	set64(&a.TaskTimeoutMs, u.TaskTimeoutMs)
	set32(&a.MaxAttempts, u.MaxAttempts)
	set64(&a.RetryBackoffMs, u.RetryBackoffMs)
	set64(&a.RetryBackoffMaxMs, u.RetryBackoffMaxMs)
	if u.GetReplaceTags() {
		// A new slice: snapshots and SessionInfo copies share the old one.
		a.Tags = slices.Clone(u.GetTags())
	}
	return a
}

func (f *FSM) createSession(now int64, c *fsmpb.CreateSession) Response {
	st := f.st
	id := c.GetSessionId()
	if err := ValidateSessionID(id); err != nil {
		return Response{Err: err}
	}
	if _, ok := st.sessions[id]; ok {
		return Response{Err: newError(ErrSessionExists, "%q", id)}
	}
	attrs := DefaultAttrs(c.GetAttrs())
	if err := ValidateAttrs(attrs); err != nil {
		return Response{Err: err}
	}
	s := newSession(sessionMeta{id: id, app: c.GetApp(), attrs: attrs, created: now, updated: now})
	st.addSession(s)
	return f.sessionChanged(s)
}

// addSession inserts a session, keeping ids sorted.
func (st *state) addSession(s *session) {
	st.sessions[s.id] = s
	i := sort.SearchStrings(st.ids, s.id)
	st.ids = slices.Insert(st.ids, i, s.id)
}

func (f *FSM) updateSession(now int64, u *fsmpb.UpdateSession) Response {
	s, err := f.openSession(u.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	attrs := ApplyUpdate(s.attrs, u)
	if err := ValidateAttrs(attrs); err != nil {
		return Response{Err: err}
	}
	s.attrs = attrs
	s.updated = now
	return f.sessionChanged(s)
}

// closeSession cancels the pending tasks and drops everything but the
// session's metadata and counters, which stay readable.
func (f *FSM) closeSession(now int64, c *fsmpb.CloseSession) Response {
	s, ok := f.st.sessions[c.GetSessionId()]
	if !ok {
		return Response{Err: newError(ErrSessionNotFound, "%q", c.GetSessionId())}
	}
	if s.closed {
		info := s.info()
		return Response{Session: &info}
	}
	var cancelled []pendingRef
	for id, t := range s.tasks {
		if t.state == fsmpb.TaskState_TASK_STATE_PENDING {
			cancelled = append(cancelled, pendingRef{id: id, seq: t.seq})
		}
	}
	s.closed = true
	s.updated = now
	s.tasks = nil
	s.pending = 0
	s.retrying = 0
	s.results = seqLog[resultVal]{}
	s.dead = seqLog[deadVal]{}
	s.shared = sharedData{}
	if f.listener != nil && len(cancelled) > 0 {
		f.listener.TasksDone(s.id, sortedIDs(cancelled))
	}
	return f.sessionChanged(s)
}

// sessionChanged tells the listener and answers with the session's info.
func (f *FSM) sessionChanged(s *session) Response {
	info := s.info()
	if f.listener != nil {
		f.listener.SessionChanged(s.info())
	}
	return Response{Session: &info}
}

// openSession finds a session that accepts commands.
func (f *FSM) openSession(id string) (*session, error) {
	s, ok := f.st.sessions[id]
	if !ok {
		return nil, newError(ErrSessionNotFound, "%q", id)
	}
	if s.closed {
		return nil, newError(ErrSessionClosed, "%q", id)
	}
	return s, nil
}

// Session returns a copy of a session's metadata.
func (f *FSM) Session(id string) (SessionInfo, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[id]
	if !ok {
		return SessionInfo{}, false
	}
	return s.info(), true
}

// Sessions returns every session, sorted by id.
func (f *FSM) Sessions() []SessionInfo {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := make([]SessionInfo, 0, len(f.st.ids))
	for _, id := range f.st.ids {
		out = append(out, f.st.sessions[id].info())
	}
	return out
}

// OpenSessions counts the sessions of app that are not closed, for the
// leader's sessions-per-app limit.
func (f *FSM) OpenSessions(app string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := 0
	for _, s := range f.st.sessions {
		if s.app == app && !s.closed {
			n++
		}
	}
	return n
}
