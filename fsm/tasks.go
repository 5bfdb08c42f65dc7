package fsm

import (
	"slices"

	"github.com/gridd/gridd/fsm/fsmpb"
)

// task is one task id a session knows. Tasks are allocated in slabs, one
// per Enqueue batch, and never freed while their session is open (the id
// must be remembered for idempotent resubmission), so a slab never pins
// memory that would otherwise be released.
type task struct {
	payload []byte   // pending and dead tasks only; moved to the dead letter
	errors  []string // failed attempts so far; moved to the dead letter
	seq     uint64   // acceptance order
	// outSeq is the Seq of the task's result or dead letter, to find it in
	// its log on Ack.
	outSeq        uint64
	requiredLevel int64
	notBefore     int64 // retry backoff: not dispatched before (unix ms)
	priority      int32
	attempts      int32 // failed attempts
	state         fsmpb.TaskState
	useShared     bool
}

// export copies a task for the dispatcher.
func (t *task) export(session, id string) Task {
	return Task{
		Session:       session,
		ID:            id,
		Payload:       t.payload,
		Priority:      t.priority,
		Attempts:      t.attempts,
		Seq:           t.seq,
		UseSharedData: t.useShared,
		RequiredLevel: t.requiredLevel,

		NotBeforeUnixMs: t.notBefore,
	}
}

// pendingRef orders task ids by acceptance for listener events.
type pendingRef struct {
	id  string
	seq uint64
}

func sortedIDs(refs []pendingRef) []string {
	slices.SortFunc(refs, func(a, b pendingRef) int { return cmpUint64(a.seq, b.seq) })
	ids := make([]string, len(refs))
	for i, r := range refs {
		ids[i] = r.id
	}
	return ids
}

// enqueue accepts a batch: ids the session knows are duplicates, the rest
// become pending. A malformed id rejects the whole batch, changing nothing.
func (f *FSM) enqueue(e *fsmpb.Enqueue) Response {
	s, err := f.openSession(e.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	tasks := e.GetTasks()
	for i, pt := range tasks {
		if n := len(pt.GetId()); n == 0 || n > MaxTaskIDLen {
			return Response{Err: newError(ErrInvalid,
				"task %d of the batch: id must be 1..%d bytes, got %d", i, MaxTaskIDLen, n)}
		}
	}
	var (
		r     Response
		slab  []task
		ready []Task
	)
	for i, pt := range tasks {
		id := pt.GetId()
		if _, ok := s.tasks[id]; ok {
			r.Duplicates++
			continue
		}
		if len(slab) == 0 {
			slab = make([]task, len(tasks)-i)
		}
		t := &slab[0]
		slab = slab[1:]
		*t = task{
			payload:       pt.GetPayload(),
			seq:           f.st.seq(),
			priority:      pt.GetPriority(),
			state:         fsmpb.TaskState_TASK_STATE_PENDING,
			useShared:     e.GetUseSharedData(),
			requiredLevel: e.GetRequiredSharedDataUpdateLevel(),
		}
		s.tasks[id] = t
		s.pending++
		s.submitted++
		r.Accepted++
		if f.listener != nil {
			ready = append(ready, t.export(s.id, id))
		}
	}
	if len(ready) > 0 {
		f.listener.TasksReady(s.id, ready)
	}
	return r
}

// leavePending updates the counters of a pending task that is about to get
// an outcome or be cancelled.
func (s *session) leavePending(t *task) {
	s.pending--
	if t.attempts > 0 {
		s.retrying--
	}
	t.notBefore = 0
}

// retryDelay is the backoff before the next attempt of a task that has
// failed attempts times (attempts >= 1): retry_backoff_ms doubled for every
// failure after the first, capped at retry_backoff_max_ms, then scaled by
// jitter (0..1000) to between half and all of it, so that tasks failing
// together do not all come back together.
func retryDelay(a Attrs, attempts int32, jitter uint32) int64 {
	d := a.RetryBackoffMs
	for i := int32(1); i < attempts && d < a.RetryBackoffMaxMs; i++ {
		d *= 2
	}
	d = min(d, a.RetryBackoffMaxMs)
	j := int64(min(jitter, 1000))
	return d/2 + d*j/2000
}

// outcomes records what workers reported. Only a pending task takes an
// outcome: the first completion wins, later ones are ignored. A failed
// attempt is retried after its backoff, or dead-lettered after the last
// attempt.
func (f *FSM) outcomes(now int64, o *fsmpb.Outcomes) Response {
	var r Response
	s, ok := f.st.sessions[o.GetSessionId()]
	if !ok || s.closed {
		r.Ignored = len(o.GetOutcomes())
		return r
	}
	var (
		done    []string
		requeue []Task
	)
	for _, oc := range o.GetOutcomes() {
		id := oc.GetTaskId()
		t, ok := s.tasks[id]
		if !ok || t.state != fsmpb.TaskState_TASK_STATE_PENDING {
			r.Ignored++
			continue
		}
		r.Recorded++
		if oc.GetTimedOut() {
			s.timedOut++
		}
		switch {
		case oc.GetError() == "":
			s.recordResult(f.st.seq(), id, t, oc.GetPayload())
		case t.attempts+1 >= s.attrs.MaxAttempts:
			t.errors = append(t.errors, oc.GetError())
			s.leavePending(t)
			t.attempts++
			s.deadLetter(f.st.seq(), id, t)
			r.DeadLettered++
		default:
			t.errors = append(t.errors, oc.GetError())
			if t.attempts == 0 {
				s.retrying++
			}
			t.attempts++
			t.notBefore = now + retryDelay(s.attrs, t.attempts, oc.GetJitter())
			s.retried++
			r.Requeued++
			if f.listener != nil {
				requeue = append(requeue, t.export(s.id, id))
			}
			continue
		}
		if f.listener != nil {
			done = append(done, id)
		}
	}
	if f.listener != nil {
		if len(requeue) > 0 {
			f.listener.TasksReady(s.id, requeue)
		}
		if len(done) > 0 {
			f.listener.TasksDone(s.id, done)
		}
		if r.Recorded-r.Requeued > 0 {
			f.listener.ResultsReady(s.id)
		}
	}
	return r
}

// TaskPending reports whether the task exists and has no outcome yet.
func (f *FSM) TaskPending(session, id string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[session]
	if !ok {
		return false
	}
	t, ok := s.tasks[id]
	return ok && t.state == fsmpb.TaskState_TASK_STATE_PENDING
}

// UnknownTasks counts the ids the session does not know: the tasks a batch
// of them would add. The leader checks the pending limit with it before
// proposing, so that a resent batch (all duplicates) is never refused.
func (f *FSM) UnknownTasks(session string, ids []string) int {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[session]
	if !ok {
		return len(ids)
	}
	n := 0
	for _, id := range ids {
		if _, ok := s.tasks[id]; !ok {
			n++
		}
	}
	return n
}

// cancelTasks cancels pending tasks: their payload is dropped, they are
// never dispatched again and a late outcome is ignored. The id stays known,
// so resubmitting it is a duplicate. Unknown ids and tasks that already have
// an outcome are skipped; a malformed id rejects the command.
func (f *FSM) cancelTasks(c *fsmpb.CancelTasks) Response {
	s, err := f.openSession(c.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	var refs []pendingRef
	if c.GetAll() {
		for id, t := range s.tasks {
			if t.state == fsmpb.TaskState_TASK_STATE_PENDING {
				refs = append(refs, pendingRef{id: id, seq: t.seq})
			}
		}
	} else {
		for i, id := range c.GetTaskIds() {
			if n := len(id); n == 0 || n > MaxTaskIDLen {
				return Response{Err: newError(ErrInvalid, "task id %d: must be 1..%d bytes, got %d", i, MaxTaskIDLen, n)}
			}
		}
		for _, id := range c.GetTaskIds() {
			if t, ok := s.tasks[id]; ok && t.state == fsmpb.TaskState_TASK_STATE_PENDING {
				refs = append(refs, pendingRef{id: id, seq: t.seq})
			}
		}
	}
	var r Response
	for _, ref := range refs {
		t := s.tasks[ref.id]
		if t.state != fsmpb.TaskState_TASK_STATE_PENDING {
			continue // listed twice
		}
		s.leavePending(t)
		t.state = fsmpb.TaskState_TASK_STATE_CANCELLED
		t.payload, t.errors = nil, nil
		s.cancelled++
		r.Cancelled++
	}
	if r.Cancelled > 0 && f.listener != nil {
		// sortedIDs dedups nothing, but a repeated id was skipped above only
		// after its first cancellation, so drop repeats here too.
		ids := slices.Compact(sortedIDs(refs))
		f.listener.TasksCancelled(s.id, ids)
		f.listener.TasksDone(s.id, ids)
	}
	return r
}

// TaskStatuses returns the replicated state of each id, in the given
// order; an id the session does not know has State UNSPECIFIED. ok is false
// when the session does not exist.
func (f *FSM) TaskStatuses(session string, ids []string) (out []TaskStatus, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[session]
	if !ok {
		return nil, false
	}
	out = make([]TaskStatus, len(ids))
	for i, id := range ids {
		out[i].ID = id
		t, found := s.tasks[id]
		if !found {
			continue
		}
		out[i].State = t.state
		out[i].Attempts = t.attempts
		out[i].NotBeforeUnixMs = t.notBefore
		switch t.state {
		case fsmpb.TaskState_TASK_STATE_PENDING:
			out[i].Errors = slices.Clone(t.errors)
		case fsmpb.TaskState_TASK_STATE_DEAD:
			if v, ok := s.dead.get(t.outSeq); ok {
				out[i].Errors = slices.Clone(v.errors)
			}
		}
	}
	return out, true
}
