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

// outcomes records what workers reported. Only a pending task takes an
// outcome: the first completion wins, later ones are ignored.
func (f *FSM) outcomes(o *fsmpb.Outcomes) Response {
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
		switch {
		case oc.GetError() == "":
			s.recordResult(f.st.seq(), id, t, oc.GetPayload())
		case t.attempts+1 >= s.attrs.MaxAttempts:
			t.errors = append(t.errors, oc.GetError())
			t.attempts++
			s.deadLetter(f.st.seq(), id, t)
			r.DeadLettered++
		default:
			t.errors = append(t.errors, oc.GetError())
			t.attempts++
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
