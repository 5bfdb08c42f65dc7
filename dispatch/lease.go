package dispatch

import (
	"fmt"
	"time"

	"github.com/gridd/gridd/rpc/griddpb"
)

// Leases. When the session has a task_timeout_ms, a task handed to a worker
// is leased to it for that long; the worker may renew the lease
// (ExtendLease). A lease that runs out is a failed attempt: the dispatcher
// tells the stream's handler (TakeExpired) to propose a timed-out outcome,
// and tells the worker to stop the task (Batch.stop_ids). The task stays
// held by the stream until that outcome commits, so it is never running
// twice on the dispatcher's books; the commit requeues it (with its retry
// backoff) or dead-letters it. If the stream ends first, the task is ready
// again at once without counting an attempt, as for any broken stream.
//
// Stops. A task a stream holds is stopped when its lease runs out or it is
// cancelled. Its id goes out in the stream's next Batch.stop_ids, and a
// result the worker still sends for that attempt is dropped
// (DropStopped): the worker was told its result would be ignored. That
// result is also the worker's word that the handler ended: until it
// comes, the stream gets no new tasks, so that a worker whose handler
// hangs (and ignores its cancelled context) does not take the retry of the
// very task it is stuck on, nor anything else.

// LeaseExpiry is a lease that ran out: the stream's handler proposes it as
// a timed-out failed attempt.
type LeaseExpiry struct {
	TaskID  string
	Attempt int32 // 1-based attempt that timed out
	Worker  string
	Held    time.Duration // since the task was handed out
}

// Error is the attempt's error as the dead letter will show it.
func (e LeaseExpiry) Error() string {
	return fmt.Sprintf("timed out after %d ms on worker %s (attempt %d)", e.Held.Milliseconds(), e.Worker, e.Attempt)
}

type leaseEntry struct {
	s   *session
	id  string
	st  *Stream
	end int64 // unix ns, to recognise a stale entry after an extension
}

// leaseLocked starts or renews the lease of a task st holds.
func (d *Dispatcher) leaseLocked(s *session, ts *taskState, now time.Time) {
	if s.taskTimeout <= 0 {
		ts.leaseEnd = 0
		return
	}
	ts.leaseEnd = now.Add(s.taskTimeout).UnixNano()
	d.leases.push(ts.leaseEnd, leaseEntry{s: s, id: ts.task.ID, st: ts.stream, end: ts.leaseEnd})
	d.armLocked(ts.leaseEnd)
}

// expireLeasesLocked stops the tasks whose lease ran out by now.
func (d *Dispatcher) expireLeasesLocked(now time.Time) {
	for {
		e, ok := d.leases.due(now.UnixNano())
		if !ok {
			return
		}
		s := e.s
		if d.sessions[s.id] != s {
			continue
		}
		ts := s.tasks[e.id]
		if ts == nil || ts.stream != e.st || ts.leaseEnd != e.end {
			continue // done, requeued, stopped or extended since
		}
		ts.leaseEnd = 0
		exp := LeaseExpiry{TaskID: e.id, Attempt: ts.task.Attempts + 1, Worker: e.st.workerID, Held: now.Sub(ts.since)}
		e.st.expired = append(e.st.expired, exp)
		d.stopLocked(e.st, ts)
		d.log.Info("task lease expired", "session", s.id, "task", e.id, "worker", e.st.workerID,
			"attempt", exp.Attempt, "held", exp.Held.Round(time.Millisecond))
	}
}

// stopLocked tells st's worker to stop a task it holds and drops the
// result of that attempt if it comes anyway.
func (d *Dispatcher) stopLocked(st *Stream, ts *taskState) {
	ts.leaseEnd = 0
	attempt := ts.task.Attempts + 1
	if a, dup := st.stopped[ts.task.ID]; !dup || a != attempt {
		st.stopQ = append(st.stopQ, ts.task.ID)
	}
	st.stopped[ts.task.ID] = attempt
	st.signal()
}

// TasksCancelled implements fsm.Listener: the workers running them are
// told to stop. TasksDone follows and frees their slots.
func (d *Dispatcher) TasksCancelled(sessionID string, ids []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.sessions[sessionID]
	if s == nil {
		return
	}
	for _, id := range ids {
		if ts := s.tasks[id]; ts != nil && ts.stream != nil {
			d.stopLocked(ts.stream, ts)
		}
	}
}

// ExtendLease renews, for another task_timeout_ms from now, the leases of
// the listed tasks that st holds. Ids it does not hold (finished, stopped,
// or never given to it) are skipped: a late extension must not revive a
// task that already timed out. It returns how many leases it renewed.
func (d *Dispatcher) ExtendLease(st *Stream, ids []string) int {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	s := st.session
	if d.sessions[s.id] != s {
		return 0
	}
	n := 0
	for _, id := range ids {
		ts := s.tasks[id]
		if ts == nil || ts.stream != st || ts.leaseEnd == 0 {
			continue
		}
		d.leaseLocked(s, ts, now)
		n++
	}
	return n
}

// TakeExpired returns, once, the leases of st's tasks that ran out. The
// caller proposes each as a timed-out failed attempt.
func (d *Dispatcher) TakeExpired(st *Stream) []LeaseExpiry {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := st.expired
	st.expired = nil
	return out
}

// DropStopped returns msgs without the results of attempts st was told to
// stop (timed out, cancelled): those results are ignored, as the stop
// instruction promised. msgs is not modified.
func (d *Dispatcher) DropStopped(st *Stream, msgs []*griddpb.Message) []*griddpb.Message {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(st.stopped) == 0 {
		return msgs
	}
	var out []*griddpb.Message
	for i, m := range msgs {
		attempt, stopped := st.stopped[m.GetId()]
		// A worker that does not echo the attempt (0) is matched by id.
		if stopped && (m.GetAttempt() == attempt || m.GetAttempt() == 0) {
			delete(st.stopped, m.GetId())
			if out == nil {
				out = append(make([]*griddpb.Message, 0, len(msgs)), msgs[:i]...)
			}
			continue
		}
		if out != nil {
			out = append(out, m)
		}
	}
	if out == nil {
		return msgs
	}
	return out
}
