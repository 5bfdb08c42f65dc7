package fsm

import (
	"github.com/gridd/gridd/fsm/fsmpb"
)

type deadVal struct {
	id       string
	payload  []byte
	errors   []string
	attempts int32
}

// deadLetter moves a task that spent its attempts to the dead letters,
// with its payload and every error. The caller has taken it out of the
// pending counters (leavePending) and counted its last attempt.
func (s *session) deadLetter(seq uint64, id string, t *task) {
	s.dead.append(seq, deadVal{id: id, payload: t.payload, errors: t.errors, attempts: t.attempts})
	t.state = fsmpb.TaskState_TASK_STATE_DEAD
	t.payload = nil
	t.errors = nil
	t.outSeq = seq
	s.deadLettered++
}

// ackDeadLetters drops acknowledged dead letters, like ackResults.
func (f *FSM) ackDeadLetters(a *fsmpb.Ack) Response {
	var r Response
	s, ok := f.st.sessions[a.GetSessionId()]
	if !ok || s.closed {
		return r
	}
	for _, id := range a.GetTaskIds() {
		t, ok := s.tasks[id]
		if !ok || t.state != fsmpb.TaskState_TASK_STATE_DEAD {
			continue
		}
		s.dead.remove(t.outSeq)
		t.state = fsmpb.TaskState_TASK_STATE_DEAD_ACKED
		t.outSeq = 0
		r.Acked++
	}
	return r
}

// retryDeadLetters gives dead letters a fresh attempt budget: they are
// pending again, with their payload, and dispatched like new tasks.
func (f *FSM) retryDeadLetters(c *fsmpb.RetryDeadLetters) Response {
	s, err := f.openSession(c.GetSessionId())
	if err != nil {
		return Response{Err: err}
	}
	ids := c.GetTaskIds()
	if c.GetAll() {
		ids = ids[:0:0]
		s.dead.after(0, 0, func(_ uint64, v deadVal) { ids = append(ids, v.id) })
	}
	var (
		r     Response
		ready []Task
	)
	for _, id := range ids {
		t, ok := s.tasks[id]
		if !ok || t.state != fsmpb.TaskState_TASK_STATE_DEAD {
			continue
		}
		v, ok := s.dead.take(t.outSeq)
		if !ok {
			continue
		}
		t.state = fsmpb.TaskState_TASK_STATE_PENDING
		t.payload, t.errors, t.attempts, t.outSeq, t.notBefore = v.payload, nil, 0, 0, 0
		s.pending++
		s.deadLettered--
		r.Requeued++
		ready = append(ready, t.export(s.id, id))
	}
	if len(ready) > 0 && f.listener != nil {
		f.listener.TasksReady(s.id, ready)
	}
	return r
}

// DeadLettersAfter is ResultsAfter for dead letters.
func (f *FSM) DeadLettersAfter(session string, after uint64, max int) []DeadLetter {
	f.mu.RLock()
	defer f.mu.RUnlock()
	s, ok := f.st.sessions[session]
	if !ok {
		return nil
	}
	var out []DeadLetter
	s.dead.after(after, max, func(seq uint64, v deadVal) {
		out = append(out, DeadLetter{
			TaskID:  v.id,
			Payload: v.payload,
			// Full slice expression: an append by the caller must not
			// write into the state's array.
			Errors:   v.errors[:len(v.errors):len(v.errors)],
			Seq:      seq,
			Attempts: v.attempts,
		})
	})
	return out
}
